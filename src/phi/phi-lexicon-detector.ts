import { DIAGNOSES, LAB_TESTS, MEDICATIONS, PART2_TERMS } from './phi-lexicon.js';
import type { Finding, FindingType } from './phi-types.js';

/**
 * One pass over the words of a text: medications, diagnoses, Part 2 terms,
 * lab results (a test name followed by a value), contact names and names
 * after salutation or label cues. Words are looked up in hash maps, so the
 * cost does not grow with the size of the lists.
 */

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

const TITLES = new Set(['mr', 'mrs', 'ms', 'miss', 'mx']);
const CLINICIAN_TITLES = new Set(['dr', 'doctor', 'prof', 'professor', 'nurse']);

/** Capitalised words that follow cues but are not names. */
const NOT_NAMES = new Set([
  'the', 'a', 'an', 'your', 'our', 'this', 'that', 'thank', 'thanks', 'please', 'we', 'you', 'hello', 'hi', 'team',
  'all', 'colleague', 'colleagues', 'sir', 'madam', 'patient', 'patients', 'name', 'dob', 'mrn', 'date', 'family',
  'friend', 'parent', 'parents', 'guardian', 'provider', 'member', 'customer', 'valued', 'staff', 'everyone', 'front',
  'billing', 'scheduling', 'pharmacy', 'clinic', 'department', 'records', 'referral', 'lab', 'results', 'account',
  'appointment', 'reminder', 'new', 'unknown', 'see', 'per', 'is', 'has', 'was', 'will', 'needs', 'and', 'or',
  'january', 'february', 'march', 'april', 'may', 'june', 'july', 'august', 'september', 'october', 'november',
  'december', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday', 'mr', 'mrs', 'ms',
  'dr', 'doctor', 'nurse', 'care', 'coordinator', 'manager', 'office', 'hospital', 'health', 'medical', 'id',
]);

/** First names that are also everyday words: alone at the start of a sentence they are not taken as names. */
const WORDLIKE_NAMES = new Set(['will', 'may', 'june', 'april', 'grace', 'hope', 'mark', 'bill', 'faith', 'joy', 'rose', 'dawn', 'summer', 'art', 'rich', 'frank', 'sue', 'pat', 'august', 'max', 'sage', 'sky']);

type ContactIndex = Map<string, { first: boolean; last: boolean }>;

/** Indexes contact names by lower-case word; the scan matches them only where written with a capital. */
export const indexContacts = (contacts: readonly string[]): ContactIndex => {
  const idx: ContactIndex = new Map();
  for (const full of contacts) {
    const words = full.trim().split(/\s+/).filter((w) => w.length > 1);
    words.forEach((w, i) => {
      const k = w.toLowerCase().replace(/[’]/g, "'").replace(/\.$/, '');
      const cur = idx.get(k) ?? { first: false, last: false };
      if (i === 0) cur.first = true;
      if (i === words.length - 1 && i > 0) cur.last = true;
      idx.set(k, cur);
    });
  }
  return idx;
};

const isAlnum = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || (c >= 0xc0 && c <= 0x24f);
const isUpper = (c: number) => (c >= 65 && c <= 90) || (c >= 0xc0 && c <= 0xde);
const isSpace = (c: number) => c === 32 || c === 9 || c === 10 || c === 13 || c === 0xa0;

/** Word tokens: letters and digits, with inner hyphens and apostrophes ("O'Brien", "covid-19"). */
const tokenize = (text: string) => {
  const starts: number[] = [];
  const ends: number[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    if (!isAlnum(text.charCodeAt(i))) {
      i++;
      continue;
    }
    const s = i;
    i++;
    for (;;) {
      while (i < n && isAlnum(text.charCodeAt(i))) i++;
      const c = text.charCodeAt(i);
      if ((c === 45 || c === 39 || c === 0x2019) && i + 1 < n && isAlnum(text.charCodeAt(i + 1))) {
        i++;
        continue;
      }
      break;
    }
    starts.push(s);
    ends.push(i);
  }
  return { starts, ends };
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
  if (e - s > 3 && (text.charCodeAt(e - 2) === 39 || text.charCodeAt(e - 2) === 0x2019) && (text.charCodeAt(e - 1) === 115 || text.charCodeAt(e - 1) === 83)) return e - 2;
  return e;
};

export const scanLexicon = (text: string, contacts: ContactIndex | null, out: Finding[]) => {
  const { starts, ends } = tokenize(text);
  const n = starts.length;
  const low: (string | undefined)[] = new Array(n);
  const lowerAt = (j: number) => {
    let w = low[j];
    if (w === undefined) {
      w = text.slice(starts[j], ends[j]).toLowerCase();
      if (w.includes('’')) w = w.replace(/’/g, "'");
      low[j] = w;
    }
    return w;
  };

  /** Name run from token j: up to `max` capitalised words separated by spaces (or one comma for "Lopez, Maria"). */
  const nameRun = (j: number, max: number, allowComma: boolean): number => {
    let k = j;
    let count = 0;
    while (k < n && count < max && nameLike(text, starts[k]!, ends[k]!) && !NOT_NAMES.has(lowerAt(k))) {
      count++;
      if (k + 1 >= n) break;
      const gapOk = onlySpaces(text, ends[k]!, starts[k + 1]!) || (allowComma && text.charCodeAt(ends[k]!) === 44 && onlySpaces(text, ends[k]! + 1, starts[k + 1]!));
      if (!gapOk || !nameLike(text, starts[k + 1]!, ends[k + 1]!) || NOT_NAMES.has(lowerAt(k + 1))) break;
      k++;
    }
    return count === 0 ? -1 : k;
  };

  const pushName = (j: number, k: number, confidence: number, detector: string) => {
    out.push({ type: 'name', start: starts[j]!, end: stripPossessive(text, starts[k]!, ends[k]!), confidence, detector });
  };

  let skipUntil = -1;
  for (let i = 0; i < n; i++) {
    if (i <= skipUntil) continue;
    const s = starts[i]!;
    const w = lowerAt(i);

    // Clinical vocabulary and Part 2 terms.
    const entries = LEXICON.get(w);
    if (entries) {
      let matched = false;
      for (const en of entries) {
        const last = i + en.rest.length;
        if (last >= n) continue;
        let ok = true;
        for (let r = 0; r < en.rest.length && ok; r++) {
          ok = lowerAt(i + r + 1) === en.rest[r] && onlySpaces(text, ends[i + r]!, starts[i + r + 1]!);
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

    // Names after cues: "Mr. Okafor", "Dear Maria,", "Patient: Lopez, Maria", "our patient Ana Ruiz".
    if (i + 1 < n) {
      const gap = text.slice(ends[i], starts[i + 1]);
      if (TITLES.has(w) && /^\.?\s+$/.test(gap)) {
        const k = nameRun(i + 1, 3, false);
        if (k >= 0) {
          pushName(i + 1, k, 0.9, 'cue.title');
          skipUntil = k;
          continue;
        }
      } else if (w === 'dear' && /^\s+$/.test(gap)) {
        const next = lowerAt(i + 1);
        if (!TITLES.has(next) && !CLINICIAN_TITLES.has(next)) {
          const k = nameRun(i + 1, 2, false);
          if (k >= 0) {
            pushName(i + 1, k, 0.85, 'cue.salutation');
            skipUntil = k;
            continue;
          }
        }
      } else if ((w === 'patient' || w === 'pt' || w === 'name' || w === 'guardian' || w === 'resident') && /^\s*(?::|-)?\s+$|^:$/.test(gap)) {
        let j = i + 1;
        // "Patient Name: ..." / "Patient's name: ..."
        if (lowerAt(j) === 'name' && j + 1 < n && /^\s*:\s*$/.test(text.slice(ends[j], starts[j + 1]))) j++;
        const labelled = gap.includes(':') || j > i + 1 || gap.includes('-');
        if (labelled || w === 'patient') {
          const next = lowerAt(j);
          if (!TITLES.has(next) && !CLINICIAN_TITLES.has(next)) {
            const k = nameRun(j, 3, labelled);
            if (k >= 0) {
              pushName(j, k, labelled ? 0.9 : 0.75, 'cue.label');
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
      const hit = contacts.get(key);
      if (hit && nameLike(text, s, e0)) {
        let k = i;
        while (k + 1 < n && onlySpaces(text, ends[k]!, starts[k + 1]!) && nameLike(text, starts[k + 1]!, ends[k + 1]!)) {
          const e1 = stripPossessive(text, starts[k + 1]!, ends[k + 1]!);
          const key1 = e1 === ends[k + 1] ? lowerAt(k + 1) : lowerAt(k + 1).slice(0, e1 - starts[k + 1]!);
          if (!contacts.has(key1)) break;
          k++;
          if (e1 !== ends[k]) break;
        }
        let confidence = k > i ? 0.95 : hit.last ? 0.8 : 0.7;
        // "Will you confirm ..." is not a name even if a contact is called Will.
        if (k === i && WORDLIKE_NAMES.has(key) && sentenceStart(text, s)) confidence = 0.3;
        pushName(i, k, confidence, 'contacts');
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
