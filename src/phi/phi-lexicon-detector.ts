import { CUE, PATTERN_CUE_WORDS } from './phi-pattern-detectors.js';
import { DIAGNOSES, LAB_TESTS, MEDICATIONS, PART2_TERMS } from './phi-lexicon.js';
import type { Finding, FindingType } from './phi-types.js';

/**
 * One pass over the words of a text: medications, diagnoses, Part 2 terms,
 * lab results (a test name followed by a value), contact names and names
 * after salutation or label cues. Words are looked up in hash maps, so the
 * cost does not grow with the size of the lists.
 */

/**
 * A set of small non-negative integers (word hashes) with open addressing in
 * an Int32Array: the membership test of the word pass, for every word, is a
 * couple of array reads instead of a call into Set.prototype.has.
 */
class IntSet {
  private readonly table: Int32Array;
  private readonly mask: number;
  constructor(values: Iterable<number>) {
    const list = [...new Set(values)];
    let cap = 16;
    while (cap < list.length * 4) cap *= 2;
    this.table = new Int32Array(cap).fill(-1);
    this.mask = cap - 1;
    for (const v of list) {
      let k = Math.imul(v, 0x9e3779b1) >>> 0;
      for (;;) {
        const slot = k & this.mask;
        if (this.table[slot] === -1) {
          this.table[slot] = v;
          break;
        }
        k++;
      }
    }
  }
  has(v: number): boolean {
    let k = Math.imul(v, 0x9e3779b1) >>> 0;
    for (;;) {
      const x = this.table[k & this.mask]!;
      if (x === v) return true;
      if (x === -1) return false;
      k++;
    }
  }
  values(): number[] {
    return [...this.table].filter((x) => x !== -1);
  }
}

type Entry = { rest: readonly string[]; type: FindingType | 'lab'; confidence: number; upper: boolean };

/** Short acronyms that are also English words or too ambiguous in lower case: match only when written in capitals. */
const UPPER_ONLY = new Set(['aids', 'hiv', 'ibs', 'copd', 'ckd', 'uti', 'ptsd', 'adhd', 'gerd', 'pcos', 'hpv', 'moud', 'hctz', 'afib']);

const addTerms = (map: Map<string, Entry[]>, terms: readonly string[], type: Entry['type'], confidence: number) => {
  for (const term of terms) {
    const words = term.split(' ');
    const head = words[0]!;
    const list = map.get(head) ?? [];
    list.push({ rest: words.slice(1), type, confidence, upper: UPPER_ONLY.has(term) });
    map.set(head, list);
  }
};

const LEXICON = (() => {
  const map = new Map<string, Entry[]>();
  addTerms(map, PART2_TERMS, 'part2', 0.9);
  addTerms(map, MEDICATIONS, 'medication', 0.85);
  addTerms(map, DIAGNOSES, 'diagnosis', 0.8);
  addTerms(map, LAB_TESTS, 'lab', 0.85);
  // Longest phrase first, so "heart failure" beats nothing and "congestive heart failure" beats "heart failure".
  for (const list of map.values()) list.sort((a, b) => b.rest.length - a.rest.length);
  return map;
})();

/** What may follow a lab test name to make it a result: optional wording, a number, an optional unit. */
const LAB_VALUE_TAIL =
  /(?:\s+(?:level|levels|count|result|value|reading))?\s*(?:(?:is|was|of|at|came back at|came back|=|:|-)\s*)?(?:(?:high|low|elevated|normal|slightly elevated)\s*(?:at\s*)?)?[<>≤≥]?\s*\d{1,4}(?:[.,]\d{1,3})?(?:\s*(?:%|mg\/dl|mmol\/l|miu\/l|uiu\/ml|µiu\/ml|g\/dl|ng\/ml|ng\/dl|pg\/ml|k\/ul|k\/µl|x\s?10\^?[39]\/l|u\/l|iu\/l|meq\/l|ml\/min(?:\/1\.73\s?m2)?|copies\/ml|cells\/mm3|mm\/hr|mg\/l|seconds|sec))?/iy;

/**
 * USAN stems (the naming scheme of generic drugs): an unknown word with one of
 * these endings is very likely a drug ("nifedipine", "meloxicam").
 */
const DRUG_STEMS = [
  'pril',
  'sartan',
  'olol',
  'statin',
  'dipine',
  'prazole',
  'conazole',
  'nidazole',
  'mab',
  'tinib',
  'cillin',
  'mycin',
  'floxacin',
  'cycline',
  'oxetine',
  'gliflozin',
  'gliptin',
  'glutide',
  'triptan',
  'afil',
  'icam',
  'parin',
  'xaban',
  'azepam',
  'zolam',
  'tidine',
  'setron',
  'lukast',
  'thiazide',
  'semide',
  'profen',
  'codone',
  'barbital',
  'olone',
  'asone',
  'ciclovir',
  'clovir',
  'navir',
  'previr',
  'buvir',
  'vudine',
  'platin',
  'rubicin',
  'tadine',
  'triptyline',
  'peridone',
  'apine',
  'etine',
  'vastatin',
  'lamide',
  'formin',
  'gliptin',
  'terol',
  'tropium',
  'nacin',
  // More USAN stems (none whose last three letters end common English words, such as -cept or -tecan): antivirals, anticoagulants, antiplatelets, bisphosphonates, gabapentinoids, alpha blockers, NSAIDs,
  // aromatase inhibitors, antiandrogens, taxanes, antidepressants, antipsychotics, stimulants, steroids, kinase inhibitors.
  'ovir',
  'tegravir',
  'citabine',
  'gatran',
  'idogrel',
  'sugrel',
  'gabalin',
  'pentin',
  'zosin',
  'fenac',
  'trozole',
  'lutamide',
  'taxel',
  'pramine',
  'faxine',
  'traline',
  'talopram',
  'sidone',
  'phenidate',
  'trigine',
  'morphone',
  'sonide',
  'isone',
  'ciclib',
  'parib',
  'rafenib',
  'patide',
  'glinide',
  'vaptan',
  'dazole',
  'penem',
  'mustine',
  'zomib',
  'gestrel',
];
const tailKey = (w: string) =>
  ((w.charCodeAt(w.length - 3) << 16) ^ (w.charCodeAt(w.length - 2) << 8) ^ w.charCodeAt(w.length - 1)) & 0x3fffffff;
const STEMS_BY_TAIL = (() => {
  const m = new Map<number, string[]>();
  for (const st of DRUG_STEMS) m.set(tailKey(st), [...(m.get(tailKey(st)) ?? []), st]);
  return m;
})();
const ALPHA_LOWER = /^[a-z]+$/;
/** tailKey of the last three characters of text before `end`, lower-cased. */
const tailKeyAt = (text: string, end: number) =>
  (((text.charCodeAt(end - 3) | 0x20) << 16) ^ ((text.charCodeAt(end - 2) | 0x20) << 8) ^ (text.charCodeAt(end - 1) | 0x20)) & 0x3fffffff;
const CONDITION_TAILS = new Set(['itis', 'osis', 'oma', 'emia', 'pathy'].map(tailKey));
/** Tails of drug stems and condition endings: one look-up decides whether a long word needs a closer look. */
const TAILS = new IntSet([...STEMS_BY_TAIL.keys(), ...CONDITION_TAILS]);
const CONDITION_ENDING_RE = /(?:itis|oma|emia|osis|pathy)$/;

/** Endings of condition names (CONDITION_ENDING_RE): inflammation (-itis), tumours (-oma), blood (-emia), disease processes (-osis), -pathy. */
const NOT_CONDITIONS = new Set([
  'diagnosis',
  'prognosis',
  'osmosis',
  'hypnosis',
  'diploma',
  'aroma',
  'academia',
  'stoma',
  'sympathy',
  'empathy',
  'apathy',
  'telepathy',
  'antipathy',
  'homeopathy',
]);
/** Head nouns of condition names: with the word before them they name a condition ("vitamin D deficiency"). */
const CONDITION_HEADS = new Set([
  'deficiency',
  'insufficiency',
  'disease',
  'disorder',
  'syndrome',
  'infection',
  'fasciitis',
  'neoplasm',
  'stenosis',
  'tumor',
  'tumour',
]);
const NOT_MODIFIERS = new Set([
  'the',
  'a',
  'an',
  'of',
  'any',
  'no',
  'your',
  'this',
  'that',
  'for',
  'with',
  'and',
  'or',
  'to',
  'in',
  'on',
  'his',
  'her',
  'their',
  'my',
  'our',
  'control',
  'prevention',
]);

/** Courtesy titles before a surname, also Spanish, Portuguese, French and Haitian Creole ones ("Sra. Pagán", "Madan Joseph"). */
const TITLES = new Set(['mr', 'mrs', 'ms', 'miss', 'mx', 'sr', 'sra', 'srta', 'mme', 'mlle', 'madame', 'monsieur', 'madan', 'mesye']);
/** Labels of the person an order, receipt, invoice or delivery is for ("Customer: ...", "Bill to: ..."): a colon is needed. */
const PERSON_LABELS = new Set(['customer', 'client', 'clients', 'member', 'recipient', 'consignee']);
/** "Bill to", "Ship to", "Deliver to": the word before "to" that makes what follows the person's name. */
const TO_LABELS = new Set(['bill', 'billed', 'ship', 'shipped', 'deliver', 'delivery', 'sold', 'dispensed']);
/** "Receipt for", "Order #123 for": the document nouns whose "for" introduces the person. */
const FOR_DOCUMENT_RE = /\b(?:receipt|order|invoice|statement|shipment|prescription|rx|refill|superbill|claim|delivery)\b[^\n.]{0,24}$/i;
const CUE_WORDS = new Set([
  ...TITLES,
  ...PERSON_LABELS,
  'dear',
  'hi',
  'hello',
  'hola',
  'estimado',
  'estimada',
  'querido',
  'querida',
  'bonjour',
  'bonjou',
  'patient',
  'pt',
  'name',
  'guardian',
  'resident',
  'to',
  'for',
]);
/** Words of an organisation's name: a label's value with one of these (or followed by one) is no person. */
const ORG_WORDS = new Set([
  'medicine',
  'medical',
  'clinic',
  'clinica',
  'health',
  'healthcare',
  'hospital',
  'pharmacy',
  'practice',
  'center',
  'centre',
  'group',
  'services',
  'supply',
  'supplies',
  'labs',
  'laboratory',
  'laboratories',
  'inc',
  'llc',
  'ltd',
  'corp',
  'company',
  'associates',
  'partners',
  'office',
  'department',
  'dept',
  'care',
  'university',
  'school',
  'foundation',
  'institute',
  'surgery',
  'dental',
  'pediatrics',
  'paediatrics',
  'family',
  'community',
  'county',
  'city',
  'district',
  'ward',
  'unit',
]);
const SALUTATION_WORDS = new Set(['dear', 'hi', 'hello', 'hola', 'estimado', 'estimada', 'querido', 'querida', 'bonjour', 'bonjou']);
const CLINICIAN_TITLES = new Set(['dr', 'doctor', 'prof', 'professor', 'nurse']);

/** Capitalised words that follow cues but are not names. */
const NOT_NAMES = new Set([
  'the',
  'a',
  'an',
  'your',
  'our',
  'this',
  'that',
  'thank',
  'thanks',
  'please',
  'we',
  'you',
  'hello',
  'hi',
  'team',
  'all',
  'colleague',
  'colleagues',
  'sir',
  'madam',
  'patient',
  'patients',
  'name',
  'dob',
  'mrn',
  'date',
  'family',
  'friend',
  'parent',
  'parents',
  'guardian',
  'provider',
  'member',
  'customer',
  'valued',
  'staff',
  'everyone',
  'front',
  'billing',
  'scheduling',
  'pharmacy',
  'clinic',
  'department',
  'records',
  'referral',
  'lab',
  'results',
  'account',
  'appointment',
  'reminder',
  'new',
  'unknown',
  'see',
  'per',
  'is',
  'has',
  'was',
  'will',
  'needs',
  'and',
  'or',
  'january',
  'february',
  'march',
  'april',
  'may',
  'june',
  'july',
  'august',
  'september',
  'october',
  'november',
  'december',
  'monday',
  'tuesday',
  'wednesday',
  'thursday',
  'friday',
  'saturday',
  'sunday',
  'mr',
  'mrs',
  'ms',
  'dr',
  'doctor',
  'nurse',
  'care',
  'coordinator',
  'manager',
  'office',
  'hospital',
  'health',
  'medical',
  'id',
  // Hospital department names that follow "Patient": Patient Portal, Patient Services, Patient Safety...
  'portal',
  'services',
  'service',
  'safety',
  'experience',
  'relations',
  'advocate',
  'advocacy',
  'access',
  'financial',
  'intake',
  'navigator',
  'transport',
  'education',
  'information',
  'registration',
  'accounts',
  'support',
  'liaison',
]);

/** Hashes of every word the pass acts on; others are skipped after one integer look-up. */
// "to" and "for" are left out: among the commonest words, they are looked at only before a capital (H_TO, H_FOR below).
const HOT = new IntSet(
  [...LEXICON.keys(), ...[...CUE_WORDS].filter((w) => w !== 'to' && w !== 'for'), ...CONDITION_HEADS, ...PATTERN_CUE_WORDS.keys()].map(
    (w) => hashWord(w),
  ),
);
const H_TO = hashWord('to');
const H_FOR = hashWord('for');
const PATTERN_CUES = new Map<number, number>([...PATTERN_CUE_WORDS].map(([w, b]) => [hashWord(w), b]));

/** Words after which a capitalised run is a group, not a person: "Hi Nephrology team". */
const GROUP_NOUNS = new Set([
  'team',
  'staff',
  'department',
  'dept',
  'clinic',
  'office',
  'group',
  'unit',
  'desk',
  'colleagues',
  'nurses',
  'providers',
  'all',
  'folks',
]);

/** First names that are also everyday words: alone at the start of a sentence they are not taken as names. */
const WORDLIKE_NAMES = new Set([
  'will',
  'may',
  'june',
  'april',
  'grace',
  'hope',
  'mark',
  'bill',
  'faith',
  'joy',
  'rose',
  'dawn',
  'summer',
  'art',
  'rich',
  'frank',
  'sue',
  'pat',
  'august',
  'max',
  'sage',
  'sky',
]);

type ContactIndex = { words: Map<string, { first: boolean; last: boolean }>; hashes: Set<number>; hot: IntSet };

/** Indexes contact names by lower-case word; the scan matches them only where written with a capital. */
export const indexContacts = (contacts: readonly string[]): ContactIndex => {
  const words = new Map<string, { first: boolean; last: boolean }>();
  for (const full of contacts) {
    const parts = full
      .trim()
      .split(/\s+/)
      .filter((w) => w.length > 1);
    parts.forEach((w, i) => {
      const k = w.toLowerCase().replace(/[’]/g, "'").replace(/\.$/, '');
      const cur = words.get(k) ?? { first: false, last: false };
      if (i === 0) cur.first = true;
      if (i === parts.length - 1 && i > 0) cur.last = true;
      words.set(k, cur);
    });
  }
  const hashes = new Set([...words.keys()].map(hashWord));
  // One set for the fast rejection: the fixed vocabulary plus these contacts.
  return { words, hashes, hot: new IntSet([...HOT.values(), ...hashes]) };
};

/**
 * Hash of a lower-case word, the same one tokenize computes from the text
 * without allocating: most words are rejected by one integer set look-up.
 */
function hashWord(w: string): number {
  let h = 0;
  for (let k = 0; k < w.length; k++) h = (Math.imul(h, 31) + w.charCodeAt(k)) & 0x3fffffff;
  return h;
}

/** ASCII letters and digits to their lower case; 0 for everything else. */
const LOWER_ASCII = (() => {
  const t = new Int32Array(128);
  for (let c = 48; c <= 57; c++) t[c] = c;
  for (let c = 65; c <= 90; c++) t[c] = c + 32;
  for (let c = 97; c <= 122; c++) t[c] = c;
  return t;
})();
/** Beyond ASCII: Latin-1 letters lower-cased like toLowerCase; other Latin letters -1 (slow path); anything else 0. */
const lowerWide = (c: number) => {
  if (c < 0xc0 || c > 0x24f || c === 0xd7 || c === 0xf7) return 0;
  if (c <= 0xde) return c + 32;
  if (c <= 0xff) return c;
  return -1;
};
const isAlnum = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || (c >= 0xc0 && c <= 0x24f);
const isUpper = (c: number) => (c >= 65 && c <= 90) || (c >= 0xc0 && c <= 0xde);
const isSpace = (c: number) => c === 32 || c === 9 || c === 10 || c === 13 || c === 0xa0;

// Word buffers reused by every call (the scan is synchronous and not re-entrant): no allocation per word.
let T_START = new Int32Array(256);
let T_END = new Int32Array(256);
let T_HASH = new Int32Array(256);
let T_BASE = new Int32Array(256);
let T_FLAGS = new Uint8Array(256);
const F_DIGIT = 1;
const F_SLOW = 2;
const ensureCapacity = (n: number) => {
  if (n <= T_START.length) return;
  const cap = Math.max(n, T_START.length * 2);
  T_START = new Int32Array(cap);
  T_END = new Int32Array(cap);
  T_HASH = new Int32Array(cap);
  T_BASE = new Int32Array(cap);
  T_FLAGS = new Uint8Array(cap);
};

/**
 * Splits `text` into words (letters and digits, with inner hyphens and
 * apostrophes: "O'Brien", "covid-19") into the shared buffers: start, end,
 * the hash of the lower-case word and of it without a possessive "'s", and
 * flags (has a digit; has a character with no cheap lower case, which takes
 * the slow path). Returns the number of words.
 */
export const tokenize = (text: string): number => {
  const len = text.length;
  ensureCapacity((len >> 1) + 2);
  let count = 0;
  let i = 0;
  while (i < len) {
    const c0 = text.charCodeAt(i);
    if ((c0 < 128 ? LOWER_ASCII[c0]! : lowerWide(c0)) === 0) {
      i++;
      continue;
    }
    const s = i;
    let h = 0;
    let base = 0;
    let flags = 0;
    for (;;) {
      while (i < len) {
        const c = text.charCodeAt(i);
        const l = c < 128 ? LOWER_ASCII[c]! : lowerWide(c);
        if (l === 0) break;
        if (l < 0) flags |= F_SLOW;
        else if (l <= 57) flags |= F_DIGIT;
        // Kept within 30 bits so V8 keeps it a small integer.
        h = (Math.imul(h, 31) + l) & 0x3fffffff;
        i++;
      }
      if (i + 1 >= len) break;
      const c = text.charCodeAt(i);
      if ((c === 45 || c === 39 || c === 0x2019) && isAlnum(text.charCodeAt(i + 1))) {
        base = h;
        h = (Math.imul(h, 31) + (c === 45 ? 45 : 39)) & 0x3fffffff;
        i++;
        continue;
      }
      break;
    }
    const possessive =
      i - s > 3 && (text.charCodeAt(i - 2) === 39 || text.charCodeAt(i - 2) === 0x2019) && (text.charCodeAt(i - 1) | 0x20) === 115;
    T_START[count] = s;
    T_END[count] = i;
    T_HASH[count] = h;
    T_BASE[count] = possessive ? base : h;
    T_FLAGS[count] = flags;
    count++;
  }
  return count;
};

const onlySpaces = (text: string, from: number, to: number) => {
  if (to <= from) return false;
  for (let k = from; k < to; k++) if (!isSpace(text.charCodeAt(k))) return false;
  return true;
};

/** A capitalised word that can be part of a name: "Maria", "O'Brien", "McNeil", not "MRN" or "Room". */
const nameLike = (text: string, s: number, e: number) => {
  if (!isUpper(text.charCodeAt(s)) || e - s < 2) return false;
  let lower = 0;
  for (let k = s + 1; k < e; k++) {
    const c = text.charCodeAt(k);
    if (c >= 48 && c <= 57) return false;
    if (c >= 97 && c <= 122) lower++;
  }
  return lower > 0;
};

const stripPossessive = (text: string, s: number, e: number) => {
  if (
    e - s > 3 &&
    (text.charCodeAt(e - 2) === 39 || text.charCodeAt(e - 2) === 0x2019) &&
    (text.charCodeAt(e - 1) === 115 || text.charCodeAt(e - 1) === 83)
  )
    return e - 2;
  return e;
};

/** The words of one text, lower-cased on demand. A class, so that no closures are made per message. */
class Words {
  private readonly low: (string | undefined)[];
  constructor(
    private readonly text: string,
    private readonly starts: Int32Array,
    private readonly ends: Int32Array,
    private readonly n: number,
  ) {
    this.low = new Array(n);
  }

  lower(j: number): string {
    let w = this.low[j];
    if (w === undefined) {
      w = this.text.slice(this.starts[j], this.ends[j]).toLowerCase();
      if (w.includes('’')) w = w.replace(/’/g, "'");
      this.low[j] = w;
    }
    return w;
  }

  /** Name run from word j: up to `max` capitalised words separated by spaces (or one comma for "Lopez, Maria"). */
  nameRun(j: number, max: number, allowComma: boolean): number {
    const { text, starts, ends, n } = this;
    let k = j;
    let count = 0;
    while (k < n && count < max && nameLike(text, starts[k]!, ends[k]!) && !NOT_NAMES.has(this.lower(k))) {
      count++;
      if (k + 1 >= n) break;
      const gapOk =
        onlySpaces(text, ends[k]!, starts[k + 1]!) ||
        (allowComma && text.charCodeAt(ends[k]!) === 44 && onlySpaces(text, ends[k]! + 1, starts[k + 1]!));
      if (!gapOk || !nameLike(text, starts[k + 1]!, ends[k + 1]!) || NOT_NAMES.has(this.lower(k + 1))) break;
      k++;
    }
    return count === 0 ? -1 : k;
  }

  /**
   * nameRun, ended at a line break: a label's value is the rest of its line ("Bill to: Karim Nassar\nVasectomy ...");
   * -1 when the run names an organisation ("Customer: Larkspur Family Medicine", "Ship to: Harbor Clinic").
   */
  nameRunOnLine(j: number, max: number, allowComma: boolean): number {
    let k = this.nameRun(j, max, allowComma);
    while (k > j && this.text.slice(this.ends[k - 1]!, this.starts[k]!).includes('\n')) k--;
    if (k < 0) return k;
    for (let q = j; q <= k + 1 && q < this.n; q++) if (ORG_WORDS.has(this.lower(q))) return -1;
    return k;
  }

  pushName(out: Finding[], j: number, k: number, confidence: number, detector: string) {
    out.push({
      type: 'name',
      start: this.starts[j]!,
      end: stripPossessive(this.text, this.starts[k]!, this.ends[k]!),
      confidence,
      detector,
    });
  }
}

/**
 * The word pass. `onCue.at(cue, start)` is called at each word that can begin
 * a pattern (CUE bits: a number, a capitalised code, a state, a month, a
 * label such as "MRN"...), so the patterns run only there instead of over
 * the whole text.
 */
export const scanLexicon = (
  text: string,
  contacts: ContactIndex | null,
  out: Finding[],
  onCue?: { at: (cue: number, start: number) => void },
) => {
  const n = tokenize(text);
  const starts = T_START;
  const ends = T_END;
  const hashes = T_HASH;
  const bases = T_BASE;
  const flags = T_FLAGS;
  const wd = new Words(text, starts, ends, n);
  const hot = contacts ? contacts.hot : HOT;
  let skipUntil = -1;
  for (let i = 0; i < n; i++) {
    const s = starts[i]!;
    const h = hashes[i]!;
    const len = ends[i]! - s;
    if (onCue !== undefined) {
      const c0 = text.charCodeAt(s);
      if (c0 >= 48 && c0 <= 57) {
        onCue.at(CUE.digit, s);
        continue;
      }
      if (isUpper(c0)) {
        if (flags[i]! & F_DIGIT) onCue.at(CUE.upperDigit, s);
        else if (len === 2 && isUpper(text.charCodeAt(s + 1))) onCue.at(CUE.state, s);
      }
    }
    // Fast rejection: neither a known word, nor a contact, nor a drug or condition shape.
    if (
      !(flags[i]! & F_SLOW) &&
      !hot.has(h) &&
      !(bases[i] !== h && hot.has(bases[i]!)) &&
      !((h === H_TO || h === H_FOR) && i + 1 < n && isUpper(text.charCodeAt(starts[i + 1]!))) &&
      !(len >= 6 && TAILS.has(tailKeyAt(text, ends[i]!)))
    ) {
      continue;
    }
    if (onCue !== undefined) {
      const cue = PATTERN_CUES.get(h);
      if (cue !== undefined) onCue.at(cue, s);
    }
    const w = wd.lower(i);
    if (i <= skipUntil) continue;

    // Clinical vocabulary and Part 2 terms.
    const entries = LEXICON.get(w);
    if (entries) {
      let matched = false;
      for (const en of entries) {
        const last = i + en.rest.length;
        if (last >= n) continue;
        let ok = true;
        for (let r = 0; r < en.rest.length && ok; r++) {
          ok = wd.lower(i + r + 1) === en.rest[r] && onlySpaces(text, ends[i + r]!, starts[i + r + 1]!);
        }
        if (!ok) continue;
        if (en.upper && !isUpper(text.charCodeAt(s + 1))) continue;
        const end = ends[last]!;
        if (en.type === 'lab') {
          LAB_VALUE_TAIL.lastIndex = end;
          const m = LAB_VALUE_TAIL.exec(text);
          if (!m) continue;
          out.push({ type: 'lab_value', start: s, end: end + m[0].length, confidence: en.confidence, detector: 'lexicon.lab' });
          // Skip the words of the value so "LDL 162" is not read again.
          let k = last;
          while (k + 1 < n && starts[k + 1]! < end + m[0].length) k++;
          skipUntil = k;
        } else {
          out.push({ type: en.type, start: s, end, confidence: en.confidence, detector: `lexicon.${en.type}` });
          skipUntil = last;
        }
        matched = true;
        break;
      }
      if (matched) continue;
    }

    // Words that look clinical though not in the lists: drug stems, condition endings and heads.
    // (Not for a word of the lists that did not match here, such as "cholesterol" with no value.)
    if (w.length >= 6 && !entries) {
      const stems = STEMS_BY_TAIL.get(tailKey(w));
      if (stems && w.length >= 7 && ALPHA_LOWER.test(w) && stems.some((st) => w.endsWith(st))) {
        out.push({ type: 'medication', start: s, end: ends[i]!, confidence: 0.7, detector: 'lexicon.drug_stem' });
        continue;
      }
      const last = w.charCodeAt(w.length - 1);
      const mayEnd = last === 115 || last === 97 || last === 121; // s (-itis, -osis), a (-oma, -emia), y (-pathy)
      if (
        CONDITION_HEADS.has(w) ||
        (mayEnd && w.length >= 7 && CONDITION_ENDING_RE.test(w) && !NOT_CONDITIONS.has(w) && ALPHA_LOWER.test(w))
      ) {
        let from = i;
        // Take up to two modifiers before the head ("plantar fasciitis", "vitamin D deficiency").
        for (let back = 1; back <= 2 && from - 1 > skipUntil && from - 1 >= 0; back++) {
          const prev = wd.lower(from - 1);
          if (NOT_MODIFIERS.has(prev) || !onlySpaces(text, ends[from - 1]!, starts[from]!) || !/^[a-z0-9'-]+$/.test(prev)) break;
          from--;
          if (prev.length > 2) break;
        }
        if (from < i || !CONDITION_HEADS.has(w)) {
          out.push({ type: 'diagnosis', start: starts[from]!, end: ends[i]!, confidence: 0.7, detector: 'lexicon.condition_shape' });
          continue;
        }
      }
    }

    // Names after cues: "Mr. Okafor", "Dear Maria,", "Patient: Lopez, Maria", "our patient Ana Ruiz".
    // "to" and "for" are cues only before a capital (checked first: they are among the commonest words).
    if (i + 1 < n && CUE_WORDS.has(w) && (!(w === 'to' || w === 'for') || isUpper(text.charCodeAt(starts[i + 1]!)))) {
      const gap = text.slice(ends[i], starts[i + 1]);
      if (TITLES.has(w) && /^\.?\s+$/.test(gap)) {
        const k = wd.nameRun(i + 1, 3, false);
        if (k >= 0) {
          wd.pushName(out, i + 1, k, 0.9, 'cue.title');
          skipUntil = k;
          continue;
        }
      } else if (SALUTATION_WORDS.has(w) && /^\s+$/.test(gap)) {
        const next = wd.lower(i + 1);
        if (!TITLES.has(next) && !CLINICIAN_TITLES.has(next)) {
          const k = wd.nameRun(i + 1, 2, false);
          if (k >= 0 && !(k + 1 < n && GROUP_NOUNS.has(wd.lower(k + 1)))) {
            wd.pushName(out, i + 1, k, w === 'dear' ? 0.85 : 0.75, 'cue.salutation');
            skipUntil = k;
            continue;
          }
        }
      } else if (
        (w === 'to' || w === 'for') &&
        /^\s*:?\s+$/.test(gap) &&
        i > 0 &&
        (w === 'to' ? TO_LABELS.has(wd.lower(i - 1)) : FOR_DOCUMENT_RE.test(text.slice(Math.max(0, s - 40), s)))
      ) {
        // "Bill to: Karim Nassar", "Delivery to Lourdes Pagán", "Receipt for Andre Lewis", "Order #RXD-558201 for Colin Marsh".
        const k = wd.nameRunOnLine(i + 1, 3, gap.includes(':'));
        if (k >= 0) {
          wd.pushName(out, i + 1, k, 0.8, 'cue.label');
          skipUntil = k;
          continue;
        }
      } else if (PERSON_LABELS.has(w) && /^\s*:\s+$/.test(gap)) {
        const k = wd.nameRunOnLine(i + 1, 3, true);
        if (k >= 0) {
          wd.pushName(out, i + 1, k, 0.8, 'cue.label');
          skipUntil = k;
          continue;
        }
      } else if (
        (w === 'patient' || w === 'pt' || w === 'name' || w === 'guardian' || w === 'resident') &&
        /^\s*(?::|-)?\s+$|^:$/.test(gap)
      ) {
        let j = i + 1;
        // "Patient Name: ..." / "Patient's name: ..."
        if (wd.lower(j) === 'name' && j + 1 < n && /^\s*:\s*$/.test(text.slice(ends[j], starts[j + 1]))) j++;
        const labelled = gap.includes(':') || j > i + 1 || gap.includes('-');
        if (labelled || w === 'patient') {
          const next = wd.lower(j);
          if (!TITLES.has(next) && !CLINICIAN_TITLES.has(next)) {
            const k = wd.nameRun(j, 3, labelled);
            if (k >= 0) {
              wd.pushName(out, j, k, labelled ? 0.9 : 0.75, 'cue.label');
              skipUntil = k;
              continue;
            }
          }
        }
      }
    }

    // Contact names, written with a capital.
    if (contacts && isUpper(text.charCodeAt(s))) {
      const e0 = stripPossessive(text, s, ends[i]!);
      const key = e0 === ends[i] ? w : w.slice(0, e0 - s);
      const hit = contacts.words.get(key);
      if (hit && nameLike(text, s, e0)) {
        let k = i;
        while (k + 1 < n && onlySpaces(text, ends[k]!, starts[k + 1]!) && nameLike(text, starts[k + 1]!, ends[k + 1]!)) {
          const e1 = stripPossessive(text, starts[k + 1]!, ends[k + 1]!);
          const key1 = e1 === ends[k + 1] ? wd.lower(k + 1) : wd.lower(k + 1).slice(0, e1 - starts[k + 1]!);
          if (!contacts.words.has(key1)) break;
          k++;
          if (e1 !== ends[k]) break;
        }
        let confidence = k > i ? 0.95 : hit.last ? 0.8 : 0.7;
        // "Will you confirm ..." is not a name even if a contact is called Will.
        if (k === i && WORDLIKE_NAMES.has(key) && sentenceStart(text, s)) confidence = 0.3;
        wd.pushName(out, i, k, confidence, 'contacts');
        skipUntil = k;
      }
    }
  }
};

const sentenceStart = (text: string, s: number) => {
  let k = s - 1;
  while (k >= 0 && isSpace(text.charCodeAt(k))) k--;
  if (k < 0) return true;
  const c = text.charCodeAt(k);
  return c === 46 || c === 33 || c === 63 || c === 10 || c === 58 || c === 34;
};
