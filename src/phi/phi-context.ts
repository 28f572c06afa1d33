import {
  BROADCAST_TERMS,
  CONDITION_ENDINGS,
  CONDITION_TERMS,
  type Disclosure,
  GENERAL_SENTENCE_TERMS,
  ID_LABEL_RE_SOURCE,
  ID_LABELS,
  INSTITUTION_NOUNS,
  MEDICATION_TERMS,
  MENTAL_HEALTH_TERMS,
  NOT_ID_LABEL_RE_SOURCE,
  PART2_CUE_FAMILIES,
  PART2_DIRECT_TERMS,
  PART2_LOGISTICS_RE_SOURCE,
  PART2_SETTING_RE_SOURCE,
  PREGNANCY_TERMS,
  PROCEDURE_ENDINGS,
  PROCEDURE_TERMS,
  REFERRAL_RE_SOURCE,
  RESULT_TERMS,
  SPECIALIST_TERMS,
} from './phi-context-lexicon.js';
import { classifyMessage } from './phi-classifier.js';
import { blankHtml, type MessageToScan, scanMessageFindings } from './phi-scanner.js';
import { checksumIdentifiers } from './phi-id-checksums.js';
import type { Finding, FindingType, IdentifierType, ScanOptions, Sensitivity } from './phi-types.js';

/**
 * The message-level PHI judgement. HIPAA's test (45 CFR 160.103, "individually
 * identifiable health information") is whether a message ties an identifiable
 * individual to their health information, or carries a sensitive identifier of
 * theirs; a list of words cannot decide that. So this asks three questions of
 * the whole message, and holds on the answer, not on the words:
 *
 * 1. who is it about: the recipient ("you"), a named or otherwise identifiable
 *    person ("Mr. Okafor", "Patient: ...", "your son", "the patient in room 4"),
 *    or nobody (an announcement to everyone, staff logistics, a vendor);
 * 2. what does it disclose about them: a condition or symptom, a result (also
 *    told in words: "came back negative"), a medication, a procedure or test, a
 *    referral reason, pregnancy, mental-health or substance-use care, with the
 *    clinic's, department's and class's own names ("Halvorsen Cancer Institute")
 *    and general sentences ("if you ever notice...") taken out;
 * 3. does it carry a sensitive identifier (SSN, MRN, member, subscriber, policy,
 *    Medicare or patient account number) in any common format: plain, dashed,
 *    prefixed, grouped; order, invoice, ticket and tracking numbers do not count.
 *
 * Pure and synchronous; nothing is logged. The span findings of the scanner are
 * kept for the reviewer's highlights.
 */

export type About = 'recipient' | 'named' | 'nobody';

export type ContextOptions = ScanOptions & {
  /** The organisation's own names (clinic, practice, programme): never a disclosure (LABELING.md P3). */
  orgNames?: readonly string[];
};

export type Assessment = {
  /** The span findings (type, offsets, confidence) for highlighting; the decision does not count them. */
  findings: Finding[];
  /** Where each disclosure was found (offsets into subject or text), for highlighting. */
  cues: Cue[];
  about: About;
  /** Whether the message is addressed to everyone (announcement, recall, newsletter, job post). */
  broadcast: boolean;
  disclosures: Disclosure[];
  /** Sensitive identifiers of the person found (45 CFR 164.514(b)(2)(i)(G)-(J)). */
  identifiers: IdentifierType[];
  /** 42 CFR Part 2: substance-use-disorder treatment tied to a person. */
  part2: boolean;
  /** The subject line alone discloses health information or an identifier. */
  subjectPhi: boolean;
  /** Whether the message holds PHI worth holding (a disclosure about someone, or an identifier). */
  phi: boolean;
  /**
   * restricted: Part 2; high: health information tied to a person; moderate: a
   * sensitive identifier alone; low: a name, date or address only (a minimal
   * reminder); none: nothing.
   */
  sensitivity: Sensitivity;
  /** 0..1, how sure the rules are (a model can raise it; see phi-model.ts). */
  confidence: number;
  /** Set when a local model (MAILWARD_PHI_MODEL) scored the message: its probability that the message should be held. */
  modelProbability?: number;
  /**
   * The trained classifier's score (phi-classifier.ts), set by assessMessage:
   * its probability that the message should be held, its threshold, and the
   * features that weighed most towards a hold (names, never text).
   */
  classifier?: { probability: number; threshold: number; top: string[] };
};

const alternation = (terms: readonly string[]) => terms.join('|');
const termsRe = (terms: readonly string[], flags = 'gi') => new RegExp(`\\b(?:${alternation(terms)})(?![\\w-])`, flags);

type Category = Disclosure | 'weak_result' | 'specialist';
/** The categories and their vocabulary (phi-context-lexicon.ts), in the order that wins where two overlap. */
const CATEGORIES: readonly { cat: Category; terms: readonly string[] }[] = [
  { cat: 'substance_use', terms: PART2_DIRECT_TERMS },
  { cat: 'condition', terms: CONDITION_TERMS },
  { cat: 'procedure', terms: PROCEDURE_TERMS },
  { cat: 'medication', terms: MEDICATION_TERMS },
  { cat: 'pregnancy', terms: PREGNANCY_TERMS },
  { cat: 'mental_health', terms: MENTAL_HEALTH_TERMS },
  { cat: 'weak_result', terms: RESULT_TERMS },
  { cat: 'specialist', terms: SPECIALIST_TERMS },
];
/**
 * All categories in one pass, tried only at the start of a word: one walk over
 * the text instead of one per category. The alternatives are bucketed by their
 * first letter ("a(?:sthma|nemia...)|b(?:...)"), so at each word the engine
 * tries only the terms that can begin there. Each run of terms of one category
 * keeps a capture group whose number says its category (GROUP_CATEGORY).
 *
 * On the lower-cased text the walk runs a copy without capture groups
 * (MERGED_SCAN_RE: the same alternatives, so the same matches, found faster and
 * without a result of hundreds of captures per match); each match's category
 * then comes from the small capturing pattern of its first character
 * (START_RES: that letter's bucket and the terms that can begin with it, in the
 * same order as in the whole alternation), run once at the match's start.
 * With the `i` flag, when lower-casing would change the text's length, the
 * whole capturing alternation runs as one pattern (MERGED_I_RE).
 */
const GROUP_CATEGORY: Category[] = [];
/** The first character a term must start with, when it is a plain lower-case letter or digit after any lookbehind. */
const firstChar = (t: string): string | null => {
  const body = t.replace(/^\(\?<[!=](?:[^()\\]|\\.)*\)/, '');
  if (/^[a-z0-9]/.test(body)) return body[0]!;
  if (body.startsWith('\\d')) return '\\d';
  return null;
};
/** One alternative of the whole alternation: a first letter's bucket (`head`) or the terms bucketed by a lookahead (`first`). */
type MergedPart = { head: string | null; first: string | null; src: string; cats: Category[] };
/** Builds the alternation's parts, in order; with `capture` false the runs are non-capturing groups (same matches). */
const mergedParts = (capture: boolean): MergedPart[] => {
  let cats: Category[] = [];
  const group = (cat: Category, src: string) => {
    cats.push(cat);
    return capture ? `(${src})` : `(?:${src})`;
  };
  // First the bucketed terms, in category order; a term that starts with a lookbehind, a digit class or a
  // quantified letter is bucketed by a lookahead on its first character.
  const plain: { cat: Category; head: string; tail: string }[] = [];
  const other: { cat: Category; src: string; first: string | null }[] = [];
  for (const { cat, terms } of CATEGORIES) {
    for (const t of terms) {
      if (/^[a-z0-9][^?*+{]/.test(t) || /^[a-z0-9]$/.test(t)) plain.push({ cat, head: t[0]!, tail: t.slice(1) });
      else other.push({ cat, src: t, first: firstChar(t) });
    }
  }
  // Group numbers follow the order of the groups in the source: build it in one order and record categories as we go.
  // One capture group per run of terms of the same category (not per term): the engine resets every capture
  // register at each position it tries, so fewer groups is faster.
  const runs = (items: { cat: Category; src: string }[]) => {
    const out: string[] = [];
    for (let i = 0; i < items.length; ) {
      let j = i;
      while (j < items.length && items[j]!.cat === items[i]!.cat) j++;
      out.push(
        group(
          items[i]!.cat,
          items
            .slice(i, j)
            .map((x) => x.src)
            .join('|'),
        ),
      );
      i = j;
    }
    return out.join('|');
  };
  const esc = (c: string) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const heads = [...new Set(plain.map((p) => p.head))];
  const parts: MergedPart[] = [];
  for (const h of heads) {
    cats = [];
    // Within a first letter, bucket again on the second when it is a plain character ("th", "ta"...), so a common
    // word such as "the" tries only the terms that begin with it; the others follow in their order.
    const items = plain.filter((p) => p.head === h);
    const second = (t: string) => (/^[a-z0-9 '-][^?*+{]/.test(t) || /^[a-z0-9 '-]$/.test(t) ? t[0]! : null);
    const subs = [...new Set(items.map((p) => second(p.tail)).filter((x): x is string => x !== null))];
    const inner: string[] = [];
    for (const c of subs) {
      const alts = runs(items.filter((p) => second(p.tail) === c).map((p) => ({ cat: p.cat, src: p.tail.slice(1) })));
      inner.push(`${esc(c)}(?:${alts})`);
    }
    const others = items.filter((p) => second(p.tail) === null);
    if (others.length > 0) inner.push(runs(others.map((p) => ({ cat: p.cat, src: p.tail }))));
    parts.push({ head: h, first: null, src: `${esc(h)}(?:${inner.join('|')})`, cats });
  }
  const firsts = [...new Set(other.map((o) => o.first))];
  for (const f of firsts) {
    cats = [];
    const alts = runs(other.filter((o) => o.first === f));
    parts.push({ head: null, first: f, src: f === null ? alts : `(?=${f})(?:${alts})`, cats });
  }
  return parts;
};
const wholeSource = (parts: readonly MergedPart[]) =>
  `(?<![a-z0-9_\u00c0-\u024f])(?=[a-z0-9])(?:${parts.map((p) => p.src).join('|')})(?![\\w-])`;
const CAPTURING_PARTS = mergedParts(true);
GROUP_CATEGORY.push(...CAPTURING_PARTS.flatMap((p) => p.cats));
const MERGED_I_RE = new RegExp(wholeSource(CAPTURING_PARTS), 'gi');
const MERGED_SCAN_RE = new RegExp(wholeSource(mergedParts(false)), 'g');
const MERGED_SCAN_Y = new RegExp(MERGED_SCAN_RE.source, 'y');
/** Per first character code (a-z, 0-9): the parts that can match there, in order, capturing, sticky, with their groups' categories. */
const START_RES: { re: RegExp; cats: Category[] }[] = [];
for (const ch of 'abcdefghijklmnopqrstuvwxyz0123456789') {
  const digit = ch >= '0' && ch <= '9';
  const parts = CAPTURING_PARTS.filter(
    (p) => p.head === ch || (p.head === null && (p.first === null || p.first === ch || (digit && p.first === '\\d'))),
  );
  START_RES[ch.charCodeAt(0)] = {
    re: new RegExp(`(?:${parts.map((p) => p.src).join('|')})(?![\\w-])`, 'y'),
    cats: parts.flatMap((p) => p.cats),
  };
}
/**
 * The vocabulary scan runs the merged pattern only at word starts where a term can begin: a walk over the text in
 * front of it. The merged pattern matches only at a word start (a letter or digit after none of
 * [a-z0-9_\u00c0-\u024f]). Call the word's run the letters and digits ([a-z0-9]) from there to the first other
 * character: a match either has a character outside [a-z0-9] (so it opens with the whole run, which stops there) or
 * is all run and ends where `(?![\w-])` holds (so it is the whole run). Either way a match opens with the run, ended
 * where the match's own letters and digits end. EXACT_RUN and PREFIX_RUN hold, for every term, the runs its matches
 * can open with: exact runs, or prefixes (any run that begins with them) where the term goes on in a way the
 * expansion (addFirstRuns) does not follow (a repetition, `\w`, a wide class). The expansion only drops assertions
 * and follows alternatives, so it describes a superset of each term's matches; a position whose run none of them
 * allows cannot match, and at every other word start the merged pattern itself runs (sticky, MERGED_SCAN_Y), so the
 * matches are the merged pattern's (phi-context.test.ts compares the two scans on every corpus message and on
 * generated text). Runs are kept as 18-bit hashes in two bit tables: a collision only lets one more position through
 * to the pattern. A first run that opens terms only with a character and a second run after it ("your knee", "is
 * getting worse", "5 mg", "7.5 mmol/l") is PAIRED: it lets a position through only with one of those characters and
 * second runs after it, so common words and numbers reach the pattern only where such a term could follow (on the
 * span corpus, 1,063 of 17,488 word starts, for 465 matches). One pattern, not one per first character: measured,
 * 36 smaller sticky patterns made the judgement slower (0.87x), though each alone scanned as fast; one pattern's
 * code stays hot. Written here because no regular-expression engine at hand reports the positions where a pattern
 * can open.
 */
const isRunChar = (c: number) => (c >= 97 && c <= 122) || (c >= 48 && c <= 57);
const RUN_BITS = 1 << 18;
const runStep = (h: number, c: number) => (Math.imul(h, 31) + c) & (RUN_BITS - 1);
const EXACT_RUN = new Uint8Array(RUN_BITS);
const PREFIX_RUN = new Uint8Array(RUN_BITS);
/**
 * The lengths (in run characters, 31 for any longer) that prefixes in PREFIX_RUN and PAIR_PREFIX have, as bits: the
 * walk looks a prefix up only at those lengths (measured: a table look-up at every character cost more than the scan
 * it saves).
 */
let PREFIX_LENGTHS = 0;
let PAIR_PREFIX_LENGTHS = 0;
const lengthBit = (len: number) => 1 << Math.min(len, 31);
/** Every word start is a candidate: set when a term opens in a way the expansion does not follow. */
let EVERY_RUN = false;
/**
 * Runs are read with every sequence of digits as one '#' ("b12" and "b7" are both "b#", "0100" is "#"), so a term's
 * "\d+" or "\d{1,2}" is one character of its run; a superset still (any number of digits reads the same).
 */
const DIGITS = 35;
const appendRun = (acc: string, ch: string) => {
  const c = ch.charCodeAt(0);
  if (c < 48 || c > 57) return acc + ch;
  return acc.endsWith('#') ? acc : `${acc}#`;
};
const runHash = (run: string) => {
  let h = 0;
  for (let k = 0; k < run.length; k++) h = runStep(h, run.charCodeAt(k));
  return h;
};
/** The index after the group or character class that opens at `src[i]`, skipping escapes and classes inside. */
const closingOf = (src: string, i: number): number => {
  if (src[i] === '[') {
    let j = i + 1;
    if (src[j] === '^') j++;
    if (src[j] === ']') j++;
    while (j < src.length && src[j] !== ']') j += src[j] === '\\' ? 2 : 1;
    return j + 1;
  }
  let depth = 0;
  for (let j = i; j < src.length; j++) {
    const c = src[j]!;
    if (c === '\\') j++;
    else if (c === '[') j = closingOf(src, j) - 1;
    else if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return j + 1;
  }
  throw new Error(`unbalanced vocabulary term: ${src}`);
};
/** The top-level alternatives of a source (split at each `|` outside groups and classes). */
const topAlternatives = (src: string): string[] => {
  const out: string[] = [];
  let from = 0;
  for (let j = 0; j < src.length; j++) {
    const c = src[j]!;
    if (c === '\\') j++;
    else if (c === '(' || c === '[') j = closingOf(src, j) - 1;
    else if (c === '|') {
      out.push(src.slice(from, j));
      from = j + 1;
    }
  }
  out.push(src.slice(from));
  return out;
};
/** The characters of a simple class (`[sz]`, `[4-9]`, `[a-z0-9]`); null for a negated class or one with escapes. */
const classChars = (body: string): string[] | null => {
  if (body.startsWith('^') || body.includes('\\')) return null;
  const out: string[] = [];
  for (let k = 0; k < body.length; k++) {
    if (body[k + 1] === '-' && k + 2 < body.length) {
      for (let c = body.charCodeAt(k); c <= body.charCodeAt(k + 2); c++) out.push(String.fromCharCode(c));
      k += 2;
    } else out.push(body[k]!);
  }
  return out;
};
/**
 * First runs that are common words ("the", "your", "is") or numbers open few terms, each with one character and a
 * second run after it ("your knee", "is getting worse", "5 mg"): for those, PAIRED marks the first run, and PAIR_EXACT
 * / PAIR_PREFIX hold the second runs that may follow it after that character (hashed with the first run and the
 * character, pairKey). A first run lets a position through when EXACT_RUN or PREFIX_RUN allow it whatever follows, or
 * when it is PAIRED and the character and the run after it are allowed.
 */
const PAIRED = new Uint8Array(RUN_BITS);
const PAIR_EXACT = new Uint8Array(RUN_BITS);
const PAIR_PREFIX = new Uint8Array(RUN_BITS);
const pairHash = (first: number, second: number) => (Math.imul(first, 0x9e3779b1) ^ second) & (RUN_BITS - 1);
/** The key of a first run (its hash) and the one character after it, for the second runs. */
const pairKey = (firstRun: number, sep: number) => (Math.imul(firstRun, 31) + sep) & (RUN_BITS - 1);
/** The run ends here: the whole first run (first < 0), or the second run after the first run and character `first` (pairKey). */
const endRun = (first: number, acc: string) => {
  if (first < 0) {
    if (acc !== '') EXACT_RUN[runHash(acc)] = 1;
  } else PAIR_EXACT[pairHash(first, runHash(acc))] = 1;
};
/** Any run that begins with `acc` (as the first run, or as the second after `first`; `base` is the first run's hash). */
const prefixRun = (first: number, acc: string, base: number) => {
  if (first < 0) {
    if (acc === '') EVERY_RUN = true;
    else {
      PREFIX_RUN[runHash(acc)] = 1;
      PREFIX_LENGTHS |= lengthBit(acc.length);
    }
  } else if (acc === '') EXACT_RUN[base] = 1;
  else {
    PAIR_PREFIX[pairHash(first, runHash(acc))] = 1;
    PAIR_PREFIX_LENGTHS |= lengthBit(acc.length);
  }
};
/** A character after a first run that starts a second run (PAIRED): any the term has literally (not `\s`, read as a tab). */
const isSeparator = (ch: string) => ch !== '\t';
/**
 * Adds the first runs of the matches of `src` that begin with the run `acc` (see EXACT_RUN above); with `first` (the
 * hash of a first run that ended with one space), the second runs instead. `budget` bounds the branching: past it,
 * `acc` is kept as a prefix (a superset).
 */
const addFirstRuns = (src: string, acc: string, budget: { left: number }, first = -1, base = -1): void => {
  if (--budget.left < 0) {
    prefixRun(first, acc, base);
    return;
  }
  /** The first run `acc` ends with the separator `ch`: the second runs of `rest` follow. */
  const second = (ch: string, rest: string) => {
    const h = runHash(acc);
    PAIRED[h] = 1;
    addFirstRuns(rest, '', budget, pairKey(h, ch.charCodeAt(0)), h);
  };
  for (let i = 0; ; ) {
    if (i >= src.length) {
      endRun(first, acc);
      return;
    }
    const c = src[i]!;
    // The atom at i (its end j), and its quantifier.
    let j: number;
    let chars: string[] | null = null; // the characters the atom matches, when it is one character
    let group: string | null = null; // the body of a group
    if (c === '(') {
      j = closingOf(src, i);
      if (/^\(\?(?:=|!|<=|<!)/.test(src.slice(i, i + 4))) {
        // An assertion: dropped (every match of the term matches without it).
        i = j;
        continue;
      }
      group = src.slice(src.startsWith('(?:', i) ? i + 3 : i + 1, j - 1);
      if (group.startsWith('?')) throw new Error(`a vocabulary term with a group the expansion does not know: ${src}`);
    } else if (c === '[') {
      j = closingOf(src, i);
      chars = classChars(src.slice(i + 1, j - 1));
    } else if (c === '\\') {
      j = i + 2;
      const e = src[i + 1]!;
      if (e === 'b' || e === 'B') {
        i = j;
        continue;
      }
      if (e === 'd') chars = [...'0123456789'];
      // Any white space: it ends a run, but is not the one space a PAIRED first run needs.
      else if (e === 's') chars = ['\t'];
      else if (!/[a-zA-Z0-9]/.test(e)) chars = [e];
    } else if (c === '^' || c === '$') {
      i++;
      continue;
    } else if (c === '.' || c === '|' || c === ')') {
      j = i + 1;
    } else {
      j = i + 1;
      chars = [c];
    }
    const q = src[j];
    // Digits repeated ("\d+", "\d{1,2}", "[0-9]*"): one '#' of the run, or none when the repetition may be empty.
    if (chars?.every((ch) => ch >= '0' && ch <= '9') && (q === '+' || q === '*' || q === '{')) {
      let close = q === '{' ? src.indexOf('}', j) + 1 : j + 1;
      if (src[close] === '?') close++;
      const after = src.slice(close);
      if (q === '*' || /^\{0\b/.test(src.slice(j))) addFirstRuns(after, acc, budget, first, base);
      addFirstRuns(after, appendRun(acc, '0'), budget, first, base);
      return;
    }
    // A character repeated at least once ("a+"): the run goes on with one of its characters, then anything.
    if (chars !== null && (q === '+' || (q === '{' && !/^\{0\b/.test(src.slice(j))))) {
      for (const ch of chars) {
        if (isRunChar(ch.charCodeAt(0))) prefixRun(first, appendRun(acc, ch), base);
        else endRun(first, acc);
      }
      return;
    }
    if (q === '*' || q === '+' || q === '{' || (group === null && chars === null)) {
      prefixRun(first, acc, base);
      return;
    }
    const optional = q === '?';
    const rest = src.slice(optional ? (src[j + 1] === '?' ? j + 2 : j + 1) : j);
    if (optional) addFirstRuns(rest, acc, budget, first, base);
    if (group !== null) {
      for (const alt of topAlternatives(group)) addFirstRuns(alt + rest, acc, budget, first, base);
      return;
    }
    // One character: a run character goes on with the run; any other ends it (a match cannot open with one). A
    // separator after a first run starts the second run.
    if (chars!.length === 1 && !optional) {
      const ch = chars![0]!;
      if (!isRunChar(ch.charCodeAt(0))) {
        if (first < 0 && acc !== '' && isSeparator(ch)) second(ch, rest);
        else endRun(first, acc);
        return;
      }
      acc = appendRun(acc, ch);
      i = j;
      continue;
    }
    for (const ch of chars!) {
      if (isRunChar(ch.charCodeAt(0))) addFirstRuns(rest, appendRun(acc, ch), budget, first, base);
      else if (first < 0 && acc !== '' && isSeparator(ch)) second(ch, rest);
      else endRun(first, acc);
    }
    return;
  }
};
for (const { terms } of CATEGORIES) for (const t of terms) for (const alt of topAlternatives(t)) addFirstRuns(alt, '', { left: 4096 });
/**
 * The next match of the merged vocabulary pattern in `low` at or after `from` (a word start, or the end of the
 * previous match), as [start, end], or null: the walk above; the same matches as MERGED_SCAN_RE's scan.
 */
export const nextVocabularyMatch = (low: string, from: number): [number, number] | null => {
  const n = low.length;
  let i = from;
  while (i < n) {
    if (!isRunChar(low.charCodeAt(i))) {
      i++;
      continue;
    }
    const p = i;
    const prev = p > 0 ? low.charCodeAt(p - 1) : 32;
    let h = 0;
    let len = 0;
    let maybe = EVERY_RUN;
    let digit = false;
    for (; i < n; i++) {
      const c = low.charCodeAt(i);
      if (!isRunChar(c)) break;
      if (c <= 57) {
        // A sequence of digits reads as one '#' (appendRun).
        if (digit) continue;
        digit = true;
        h = runStep(h, DIGITS);
      } else {
        digit = false;
        h = runStep(h, c);
      }
      len++;
      if ((PREFIX_LENGTHS & lengthBit(len)) !== 0 && PREFIX_RUN[h] === 1) maybe = true;
    }
    // A word start: the run opens after none of [a-z0-9_\u00c0-\u024f] (runs are taken whole, so prev is not a run character).
    if (prev === 95 || (prev >= 0xc0 && prev <= 0x24f)) continue;
    if (!maybe && EXACT_RUN[h] !== 1) {
      // A PAIRED first run: a separator and an allowed second run after it.
      if (PAIRED[h] !== 1 || i >= n) continue;
      const key = pairKey(h, low.charCodeAt(i));
      let h2 = 0;
      let len2 = 0;
      let k = i + 1;
      let digit2 = false;
      let allowed = false;
      for (; k < n; k++) {
        const c = low.charCodeAt(k);
        if (!isRunChar(c)) break;
        if (c <= 57) {
          if (digit2) continue;
          digit2 = true;
          h2 = runStep(h2, DIGITS);
        } else {
          digit2 = false;
          h2 = runStep(h2, c);
        }
        len2++;
        if ((PAIR_PREFIX_LENGTHS & lengthBit(len2)) !== 0 && PAIR_PREFIX[pairHash(key, h2)] === 1) {
          allowed = true;
          break;
        }
      }
      if (!allowed && PAIR_EXACT[pairHash(key, h2)] !== 1) continue;
    }
    MERGED_SCAN_Y.lastIndex = p;
    if (MERGED_SCAN_Y.test(low)) return [p, MERGED_SCAN_Y.lastIndex];
  }
  return null;
};
/** For the tests: whether the walk lets every word start through (a term the expansion could not read), and its table sizes. */
export const vocabularyRunFilter = () => ({
  everyRun: EVERY_RUN,
  exact: EXACT_RUN.reduce((a, b) => a + b, 0),
  prefixes: PREFIX_RUN.reduce((a, b) => a + b, 0),
});
/** For the tests: the matches of the merged pattern itself over `low`, as [start, end]. */
export const vocabularyMatchesByPattern = (low: string): [number, number][] => {
  const out: [number, number][] = [];
  MERGED_SCAN_RE.lastIndex = 0;
  for (let m = MERGED_SCAN_RE.exec(low); m !== null; m = MERGED_SCAN_RE.exec(low)) out.push([m.index, m.index + m[0].length]);
  return out;
};
/** The whole capturing alternation, sticky: the fallback should a first character's pattern ever disagree with the scan. */
const MERGED_Y_RE = new RegExp(wholeSource(CAPTURING_PARTS), 'y');
/**
 * Removes the assertions (lookarounds, `\b`, `^`, `$`) from a pattern's source: what is left matches every string
 * the pattern matches, whatever surrounds it (a superset), so it can say which strings a term could ever produce.
 */
const withoutAssertions = (src: string): string => {
  /** The index after the character class that opens at `i`. */
  const classEnd = (i: number) => {
    let j = i + 1;
    if (src[j] === '^') j++;
    if (src[j] === ']') j++;
    while (j < src.length && src[j] !== ']') j += src[j] === '\\' ? 2 : 1;
    return j + 1;
  };
  let out = '';
  for (let i = 0; i < src.length; ) {
    const c = src[i]!;
    if (c === '\\') {
      if (src[i + 1] !== 'b' && src[i + 1] !== 'B') out += src.slice(i, i + 2);
      i += 2;
    } else if (c === '[') {
      const j = classEnd(i);
      out += src.slice(i, j);
      i = j;
    } else if (/^\(\?(?:=|!|<=|<!)/.test(src.slice(i, i + 4))) {
      let depth = 0;
      let j = i;
      for (; j < src.length; j++) {
        if (src[j] === '\\') j++;
        else if (src[j] === '[') j = classEnd(j) - 1;
        else if (src[j] === '(') depth++;
        else if (src[j] === ')' && --depth === 0) break;
      }
      i = j + 1;
      // A quantified assertion would leave its quantifier on whatever precedes it.
      if (/[?*+{]/.test(src[i] ?? '')) throw new Error('a quantified assertion in a vocabulary term');
    } else {
      if (c !== '^' && c !== '$') out += c;
      i++;
    }
  }
  return out;
};
const ASSERTION_RE = /\(\?(?:=|!|<=|<!)|\\[bB]|\^|\$/;
/**
 * Whether a match could come from a term with an assertion: those terms with their assertions removed. For any other
 * match `w` the category is `w`'s alone, wherever it occurs: the alternatives are tried in order and the first that
 * matches wins, and an alternative without assertions that can produce `w` matches wherever `w` is the match (the
 * text of `w` and the shared end check are the same), so the winner is always the first alternative that can
 * produce `w`. The judgement remembers such a match's category (CATEGORY_OF) instead of running START_RES again.
 */
const ASSERTED_TERM_RE = new RegExp(
  `^(?:${CATEGORIES.flatMap(({ terms }) => terms.filter((t) => ASSERTION_RE.test(t)).map(withoutAssertions)).join('|')})$`,
);
/** Whether the judgement may remember a vocabulary match's category by its text (ASSERTED_TERM_RE): for the tests. */
export const categoryIsContextFree = (match: string): boolean => !ASSERTED_TERM_RE.test(match);
/** The category of a match without assertions (see ASSERTED_TERM_RE), from its first occurrence; null: none. Bounded. */
const CATEGORY_OF = new Map<string, Category | null>();
const CATEGORY_MEMO_LIMIT = 8192;
/**
 * V8 compiles a pattern of more than 20 KiB of source without its optimisations (kRegExpTooLargeToOptimize): measured
 * here, the scan then runs about four times slower. The merged patterns must stay below it (phi-context.test.ts); a
 * vocabulary that outgrows it needs splitting in two passes.
 */
export const MERGED_PATTERN_LIMIT = 20 * 1024;
/** The source lengths of the merged vocabulary patterns, for the test that keeps them under MERGED_PATTERN_LIMIT. */
export const mergedPatternLengths = (): number[] => [MERGED_SCAN_RE.source.length, MERGED_I_RE.source.length];
/**
 * Word endings (CONDITION_ENDINGS, PROCEDURE_ENDINGS), found from the ending back to the word's start: no backtracking
 * over every word. Group 1 is a condition's ending, group 2 a procedure's. The three lower-case letters the ending
 * needs before it are checked at each match (endingAt) instead of by a look-behind: a pattern that opens with its
 * literal endings lets the engine skip ahead to them, and where the check fails at a match the scan goes on one
 * character further, as the look-behind's scan would (it tests the same endings at the same positions).
 */
const ENDINGS_RE = new RegExp(`(?:(${CONDITION_ENDINGS.join('|')})|(${PROCEDURE_ENDINGS.join('|')}))(?![\\w-])`, 'g');
const isLowerAlpha = (c: number) => c >= 97 && c <= 122;
/** The next match of ENDINGS_RE in `low` from its lastIndex with three lower-case letters before it, as `(?<=[a-z]{3})` would. */
const endingAt = (low: string): RegExpExecArray | null => {
  for (let m = ENDINGS_RE.exec(low); m !== null; m = ENDINGS_RE.exec(low)) {
    const i = m.index;
    if (i >= 3 && isLowerAlpha(low.charCodeAt(i - 1)) && isLowerAlpha(low.charCodeAt(i - 2)) && isLowerAlpha(low.charCodeAt(i - 3)))
      return m;
    ENDINGS_RE.lastIndex = i + 1;
  }
  return null;
};
const isWordChar = (c: number) => (c >= 48 && c <= 57) || isLowerAlpha(c) || c === 95 || (c >= 0xc0 && c <= 0x24f);
const BROADCAST_RE = termsRe(BROADCAST_TERMS, 'i');
const GENERAL_RE = termsRe(GENERAL_SENTENCE_TERMS, 'i');
const REFERRAL_RE = new RegExp(REFERRAL_RE_SOURCE, 'i');
const PART2_LOGISTICS_RE = new RegExp(PART2_LOGISTICS_RE_SOURCE, 'i');
const PART2_SETTING_RE = new RegExp(PART2_SETTING_RE_SOURCE, 'gi');
const PART2_SETTING_LOW_RE = new RegExp(PART2_SETTING_RE_SOURCE, 'g');
/** All Part 2 cue families in one pass: capture group i + 1 is family i. */
const PART2_FAMILIES_SOURCE = `\\b(?:${PART2_CUE_FAMILIES.map((f) => `(${f.source})`).join('|')})(?![\\w-])`;
const PART2_FAMILIES_RE = new RegExp(PART2_FAMILIES_SOURCE, 'gi');
const PART2_FAMILIES_LOW_RE = new RegExp(PART2_FAMILIES_SOURCE, 'g');
/** Words that make a vague result phrase ("it wasn't what we hoped for") about a test. */
const TEST_CONTEXT_RE =
  /\b(?:results?|tests?|tested|labs?|blood ?work|scans?|x-?rays?|reports?|cultures?|swabs?|screens?|biops(?:y|ies)|levels?|numbers|counts?|readings?|pathology|imaging|mammo\w*|pap|ecg|ekg|mri|ct|ultrasound|smear|panel|samples?|specimens?|cells|tissue|bloods|swabs?|tracing|trace)\b/i;
const INSTITUTION = new Set(INSTITUTION_NOUNS);
/** An administrative or product noun right after a clinical word: "infection control logs", "detox juice" (a topic or product, not a person). Sticky. */
const ADMIN_NOUN_AFTER_RE =
  /\s+(?:control|prevention|policy|policies|committee|audit|audits|training|protocol|protocols|guidelines?|lead|leads|champion|awareness|logs?|register|registers|procedures?|strategy|budget|stock|supplies|products?|vaccines?|vaccinations?|jabs?|shots?|boosters?|immuni[sz]ations?|juices?|teas?|smoothies?|cleanses?|retreats?|diets?|drinks?|wraps?|massages?|packages?)\b/iy;
/** A dose of a supplement or vitamin ("vitamin C 500 mg"): over the counter, not a condition. */
const SUPPLEMENT_BEFORE_RE =
  /\b(?:vitamins?(?: [a-z]\d?)?|multivitamins?|supplements?|fish oil|omega-?3|magnesium|zinc|calcium|probiotics?|melatonin|paracetamol|ibuprofen|aspirin|sunscreen|spf)\s*(?:\d+\s*)?$/i;
/** Vets' mail (HIPAA covers people, not animals): a pet's "patient ID" or injection is not PHI. */
const VET_RE =
  /\b(?:vet|vets|pet insurance|animal (?:hospital|clinic)|veterinary|veterinarian|pet|pets|puppy|kitten|heartworm|flea|worming|desex\w*|spay\w*|neuter\w*|canine|feline)\b/i;
/** Quoted titles of books, leaflets and courses ("What to Expect When You're Expecting"): two or more capitalised words in quotes. */
const QUOTED_TITLE_RE = /['‘“"]((?:[A-Z][\w'’-]*[ ,:]+){1,}[\w'’ ,:-]*?)['’”"]/g;
/** The reader addressed as a person: then the message is to someone, even with no name in it. */
const SECOND_PERSON_RE = /\b(?:you|your|yours|yourself|u|ur|you're|you've|you'll|you'd)\b/i;
/**
 * A person named where the span detector may not see a name: after "for", "customer:", "client", "confirms that"; a
 * vocative first word ("Tomás, time for..."); a relative ("dad's", "Nana").
 */
const PERSON_HINT_RE =
  /\b(?:[Cc]ustomer|[Cc]lient|[Rr]esident|[Pp]atient|[Nn]ame|[Ff]or|[Rr]e|[Cc]onfirms? that|[Cc]ertif(?:y|ies) that|[Aa]ttention|CUSTOMER|CLIENT|PATIENT|NAME)\b[:\s]+(?:<[^>]+>\s*)?[A-Z][a-z\u00e0-\u00ff'’-]+\s+[A-Z][a-zA-Z\u00e0-\u00ff'’-]+|^\s*[A-Z][a-z\u00e0-\u00ff'’-]+,\s|,\s+[A-Z][a-z\u00e0-\u00ff'’-]+[.!]?\s*(?:<[^>]*>\s*)*$|\b[A-Z]\. ?[A-Z][a-z\u00e0-\u00ff'’-]{2,}\b|\b[A-Z][a-z\u00e0-\u00ff'’-]+ [A-Z][a-z\u00e0-\u00ff'’-]+(?: \([^)\n]{1,24}\))? (?:has|is|was|had|attended|attends|will|did)\b|\b(?:[Dd]ad|[Mm]um|[Mm]om|[Nn]ana|[Nn]an|[Gg]ranny|[Gg]randma|[Gg]randpa|[Gg]randad|[Gg]randdad|[Pp]apa|[Mm]ama|[Aa]unty|[Aa]untie|[Uu]ncle|[Kk]oro|[Kk]uia)(?:'s)?\b/m;
/** Staff mail: shifts, rosters, roles, onboarding (LABELING.md P6). */
const EMPLOYMENT_RE =
  /\b(?:shifts?|roster|rota|role|position|job|employment|contract|onboarding|orientation|payroll|salary|colleagues?|new starter|first day|hired|vacancy|interview|welcome to the team|join(?:ing)? (?:our|the) team)\b/i;
/** A plural noun of people right after a clinical word: "pregnant people", "diabetic patients" (a population, LABELING.md P2, P5). Sticky: tried at the word's end. */
const POPULATION_AFTER_RE =
  /\s+(?:people|persons|women|men|patients|adults|children|kids|parents|mothers|mums|moms|families|clients|residents|sufferers|individuals|those|groups|populations|survivors|carers|caregivers)\b/iy;
/** Mail, letters and payments that "came back" (returned to sender), not results. */
const RETURNED_MAIL_RE =
  /\b(?:letter|letters|mail|post|envelope|parcel|package|payment|cheque|check|card|form|forms|email|e-mail|message|call|invoice|statement|fax)\b[^.!?\n]{0,24}$/i;
/** Specialties that name a clinic when capitalised at the end of a name ("Northside Orthopedics", "Lakeview Neuro"). */
const SPECIALTY_NAME_RE =
  /^(?:physiotherapy|physio|physical therapy|chiropractic|chiro|osteopathy|osteopaths?|podiatrists?|dental|dentistry|dentists?|optometry|optometrists?|opticians?|audiologists?|psychology|psychologists|counselling|counseling|pharmacy|chemist|pathology|diagnostics|radiologists|physicians|pediatricians|paediatrics|therapy|therapies|sports medicine|cardiology|neurology|neuro|orthopedics|orthopaedics|ortho|dermatology|urology|oncology|gastroenterology|gi|endocrinology|nephrology|rheumatology|pulmonology|hematology|ophthalmology|podiatry|pediatrics|paediatrics|ent|audiology|rehab|psychiatry|radiology|obstetrics|gynecology|womens|women's|associates|medicine|surgery|recovery|wellness)$/i;
const LOWER_INSTITUTION_RE =
  /^[\s-]{1,3}(?:[a-z'-]+[\s-]{1,3}){0,2}(?:clinic|clinics|center|centre|institute|department|dept|unit|ward|program|programme|class|classes|workshop|office|practice|service|services|lab|laboratory|floor|wing|line|lounge|room|bay|reception|entrance|desk|suite|team|rota|shop|store|café|cafe|appeal|fundraiser)\b/i;
/** Someone other than the recipient, identifiable from context (LABELING.md H1, edge case 10). */
const THIRD_PERSON_RE =
  /\b(?:(?:mr|mrs|ms|miss|mx)\.? [A-Z][a-z]|patient\s*:|pt\s*:|re:\s*[A-Z][a-z]+ [A-Z]|guarantor\s*:|name\s*:\s*[A-Z]|(?:your|ur|her|his|their|my|our) (?:son|daughter|child|kid|kids|children|baby|father|dad|mother|mum|mom|husband|wife|partner|brother|sister|grandmother|grandfather|grandson|granddaughter)|the little one|(?:room|rm|bed) \d+|\d{1,3}[ -]?(?:y\/o|yo|year[- ]old|month[- ]old|yr[- ]old)|dob\b|d\.o\.b\.|orders for|the patient\b)/i;
/** A title and a capitalised name, a patient or guarantor label, a room or bed, a DOB: a person is singled out (case-sensitive). */
const STRONG_THIRD_RE =
  /\b(?:(?:mr|mrs|ms|miss|mx)\.? [A-Z][a-z]|patient\s*:|pt\s*:|re:\s*[A-Z][a-z]+ [A-Z]|guarantor\s*:|(?:room|rm|bed) \d+|dob\b)/;
/** "your X", "you have X", "you were X": a disclosure even inside an announcement-like message. */
const POSSESSED_BEFORE_RE =
  /\b(?:your|ur|you(?:'re| are| were| have| had|'ve| tested)|his|her|him)\s+(?:[\w'-]+\s+){0,3}$|\b(?:you|him|her)\s+(?:[\w'-]+\s+){0,2}(?:for|about|with|to|on)\s+(?:the\s+|a\s+|an\s+)?(?:[\w'-]+\s+){0,2}$/i;
const ID_LABEL_SOURCE = `${ID_LABEL_RE_SOURCE}(?:[\\s:#.()?-]|\\b(?:number|num|nbr|no|id|is|was|as|of|on file|we have|under|card|ending in|ends in)\\b)*`;
const ID_LABEL_RE = new RegExp(ID_LABEL_SOURCE, 'gi');
/** The same on lower-cased text, without the `i` flag (faster; used when lower-casing keeps the length). */
const ID_LABEL_LOW_RE = new RegExp(ID_LABEL_SOURCE, 'g');
const NOT_ID_LABEL_RE = new RegExp(`${NOT_ID_LABEL_RE_SOURCE}[\\s:#.-]*$`, 'i');
const NOT_ID_LABEL_ANY_RE = new RegExp(NOT_ID_LABEL_RE_SOURCE, 'i');
const ID_LABEL_ANY_RE = new RegExp(ID_LABEL_RE_SOURCE, 'i');
/** Up to six short words (no sentence end, no line break) before a token that starts with a digit or a capital and digit. */
const LOOSE_GAP_RE = /^((?:[\s(,:'"]*[A-Za-z'’]{1,12}){1,6}[\s(,:'"#]+)(?=[A-Z]{0,4}[ -]?\d)/;
/** Insurance and cover words (and insurers' names): where a bare "ID" or "card number" is a member's (LABELING.md H2). */
const INSURANCE_CONTEXT_RE =
  /\b(?:plan|insurance|insurer|insured|member|medicare|medicaid|health|medical aid|medical scheme|scheme|fund|subscriber|claims?|rebate|cover(?:age)?|benefits|copay|dob|date of birth|blue cross|blue shield|bupa|aetna|cigna|humana|kaiser|anthem|unitedhealth\w*|medibank|vhi|laya|ohip|nhs|hcf|nib|tricare|chip)\b/i;
/** A value in any common format: plain, dashed, letter-prefixed (one or two groups: `MH/PN/0044/7731`), grouped or spaced, letters mixed in. */
const ID_VALUE_Y = /(?:[A-Z]{1,4}[ /-]?)?(?:[A-Z]{1,4}[/-])?[A-Z0-9]*\d[A-Z0-9]*(?:[ ./-][A-Z0-9]*\d[A-Z0-9]*){0,6}(?![\w/.]\d)/y;
const BOUNDARY_RE = /[.!?;]+(?=\s|$)|\n/g;
const SENSITIVE_SPAN_TYPES: ReadonlySet<FindingType> = new Set<FindingType>(['ssn', 'mrn', 'health_plan_id', 'account_number']);

/** A masked value ("xxxx-4471", "***-**-3307") or one that is a date, amount, time or phone number. */
const notAnIdentifier = (value: string, before: string) => {
  if (/[xX*•]{2,}/.test(value)) return true;
  if (/^\d{1,3}(?:\.\d{1,3}){3}$/.test(value)) return true;
  if (/\$\s*$/.test(before)) return true;
  if (/^\d{1,2}[/.-]\d{1,2}(?:[/.-]\d{2,4})?$/.test(value)) return true;
  if (/^(?:1[ -]?)?\(?\d{3}\)?[ -]\d{3}-\d{4}$/.test(value) || /^\d{3}-\d{4}$/.test(value)) return true;
  return value.replace(/\D/g, '').length < 5;
};

/** Whether text[from, to) holds a digit (as `/\d/.test(text.slice(from, to))`, without the slice). */
const hasDigit = (text: string, from: number, to: number) => {
  const stop = Math.min(to, text.length);
  for (let k = from; k < stop; k++) {
    const c = text.charCodeAt(k);
    if (c >= 48 && c <= 57) return true;
  }
  return false;
};

/** Sensitive identifiers after their labels, in any format; a P4 label (invoice, order...) nearer to the value wins. */
const labelledIdentifiers = (text: string, low?: string): IdentifierType[] => {
  const out = new Set<IdentifierType>();
  let insurance: boolean | undefined;
  const [labelRe, labelText] = low !== undefined && low.length === text.length ? [ID_LABEL_LOW_RE, low] : [ID_LABEL_RE, text];
  labelRe.lastIndex = 0;
  for (let m = labelRe.exec(labelText); m !== null; m = labelRe.exec(labelText)) {
    const end = m.index + m[0].length;
    ID_VALUE_Y.lastIndex = end;
    let v = ID_VALUE_Y.exec(text);
    let gap = m[0];
    // "label + token with digits": the value may sit a few words after its label ("OHIP number for you (we have
    // 9921 033 441 on file"), within the sentence and with no other label between; then it needs six digits.
    // A label closed in brackets at a sentence's end ("bring your ID (NRIC). Call 6555 0125") has no value further on.
    if (!v && /[)\]]\s*[.!?;]/.test(m[0])) continue;
    if (!v) {
      // Nothing further on without a digit in reach (most "insurance", "plan", "account" words): skip the slower passes.
      if (!hasDigit(text, end, end + 72)) continue;
      const ahead = LOOSE_GAP_RE.exec(text.slice(end, end + 48));
      if (ahead && !NOT_ID_LABEL_ANY_RE.test(ahead[1]!) && !ID_LABEL_ANY_RE.test(ahead[1]!)) {
        ID_VALUE_Y.lastIndex = end + ahead[1]!.length;
        v = ID_VALUE_Y.exec(text);
        if (v && v[0].replace(/\D/g, '').length < 6) v = null;
        if (v) gap = `${m[0]}${ahead[1]}`;
      }
      // Further on in the same clause (an example in brackets, a list of columns), only an identifier-shaped token
      // counts: eight digits or more, with letters or dashed groups ("2231-449-120-MR"), not a phone number.
      if (!v) {
        const window = text.slice(end, end + 72).replace(/\b(?:e\.g|i\.e|etc)\./gi, (x) => ' '.repeat(x.length));
        const stop = window.search(/[.!?;](?:\s|$)|\n|\)/);
        const clause = stop < 0 ? window : window.slice(0, stop);
        const shaped = /(?<![\w-])(?=[A-Z0-9-]*\d)[A-Z0-9]+(?:-[A-Z0-9]+){2,}(?![\w-])|(?<![\w-])[A-Z]{1,4}\d{8,}(?![\w-])/.exec(clause);
        if (!shaped || shaped[0].replace(/\D/g, '').length < 8) continue;
        const between = clause.slice(0, shaped.index);
        if (NOT_ID_LABEL_ANY_RE.test(between) || ID_LABEL_ANY_RE.test(between)) continue;
        ID_VALUE_Y.lastIndex = end + shaped.index;
        v = ID_VALUE_Y.exec(text);
        if (!v) continue;
        gap = `${m[0]}${between}`;
      }
    }
    const value = v[0].trim();
    const label0 = m[0].toLowerCase();
    // A bare "ID" or "card number" is a member's only in insurance mail ("Blue Cross ID: ...", "the Medicare rebate ... the
    // card number we have"); "Webinar ID", "App ID", a gift card are not.
    if (/^(?:id|card|cert)/.test(label0)) {
      insurance ??= INSURANCE_CONTEXT_RE.test(text);
      if (!insurance) continue;
    }
    if (
      NOT_ID_LABEL_RE.test(text.slice(Math.max(0, m.index - 24), m.index)) ||
      NOT_ID_LABEL_RE.test(gap) ||
      notAnIdentifier(value, text.slice(Math.max(0, end - 3), end))
    )
      continue;
    if (/ending|ends in/i.test(gap)) continue;
    // The entry whose capture group matched names the type (ID_LABELS is data: a label and its type).
    let entry = 0;
    while (entry < ID_LABELS.length && m[entry + 1] === undefined) entry++;
    out.add(ID_LABELS[entry]?.type ?? 'health_plan_id');
    labelRe.lastIndex = Math.max(labelRe.lastIndex, v.index + v[0].length);
  }
  return [...out];
};

/** Sentence boundaries (offsets after each terminator), sorted, for a binary search from a match to its sentence. */
const boundariesOf = (text: string): number[] => {
  const b = [0];
  BOUNDARY_RE.lastIndex = 0;
  // test() leaves lastIndex at the match's end, which is all we keep: no match array per boundary.
  while (BOUNDARY_RE.test(text)) b.push(BOUNDARY_RE.lastIndex);
  b.push(text.length);
  return b;
};
const sentenceIndex = (b: readonly number[], at: number) => {
  let lo = 0;
  let hi = b.length - 2;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (b[mid]! <= at) lo = mid;
    else hi = mid - 1;
  }
  return lo;
};

const isUpperAt = (text: string, i: number) => {
  const c = text.charCodeAt(i);
  return (c >= 65 && c <= 90) || (c >= 0xc0 && c <= 0xde);
};

/** A word that ends a clinic's or programme's name: an institution noun or a specialty ("Clinic", "Orthopedics"). */
const isNameNoun = (w: string) => {
  const l = w.toLowerCase().replace(/[’']s$/, '');
  return INSTITUTION.has(l) || SPECIALTY_NAME_RE.test(l);
};

/**
 * Whether [s, e) is part of a clinic, department, class or programme name
 * (LABELING.md P3): a run of capitalised words ending in an institution noun
 * or a specialty ("Halvorsen Cancer Institute", "Northside Orthopedics"), or
 * "the diabetes clinic" in lower case.
 */
const inInstitutionName = (text: string, s: number, e: number) => {
  if (LOWER_INSTITUTION_RE.test(text.slice(e, e + 40))) {
    const before = text.slice(Math.max(0, s - 12), s).toLowerCase();
    if (/\b(?:the|our|at|a|an|to|in|from|of)\s+$/.test(before) || isUpperAt(text, s)) return true;
  }
  if (!isUpperAt(text, s)) return false;
  // Walk right over capitalised words (and "&", "and", "of", "for", "the" between them) to the end of the name.
  const re =
    /(?:\s*(?:&|and|of|for|the)?\s*|\/)([A-Z][\w'’-]*|(?:team|program|programme|unit|clinic|center|centre|class|department|office|group|services)\b)/y;
  let end = e;
  const own = text.slice(s, e).split(/\s+/);
  let words = own.length;
  let hasNoun = isNameNoun(own[own.length - 1]!);
  for (let k = 0; k < 5 && !hasNoun; k++) {
    re.lastIndex = end;
    const m = re.exec(text);
    if (!m || /\n/.test(m[0])) break;
    end = re.lastIndex;
    words++;
    if (isNameNoun(m[1]!)) hasNoun = true;
  }
  // And left over capitalised words, so "Brookfield Sleep Medicine" counts its first word.
  let start = s;
  for (let k = 0; k < 4; k++) {
    const m = /([A-Z][\w'’-]*)[ \t]+$/.exec(text.slice(Math.max(0, start - 30), start));
    if (!m || /^(?:Your|The|Our|My|His|Her|Their|Dear|Hi|Hello|Re|Fw|Fwd|For|At|To|In|A|An|This|That|Yes|No|Mr|Mrs|Ms|Dr)$/.test(m[1]!))
      break;
    start -= m[0].length;
    words++;
  }
  return words >= 2 && hasNoun;
};

/** A letterhead list of services ("Primary Care · Behavioral Health · Addiction Medicine"): a signature, not the person's care. */
const inServiceList = (text: string, s: number, e: number) => {
  const line0 = text.lastIndexOf('\n', s) + 1;
  const line1 = text.indexOf('\n', e);
  const line = text.slice(line0, line1 < 0 ? text.length : line1);
  return /[·|•]/.test(line) || /\([^)]*[·|•,][^)]*\)/.test(line);
};

/** Masks the organisation's own names (LABELING.md P3) with spaces, keeping offsets. */
const maskOrgNames = (text: string, names: readonly string[] | undefined) => {
  if (!names || names.length === 0) return text;
  let out = text;
  for (const n of names) {
    if (n.trim().length < 3) continue;
    const re = new RegExp(
      n
        .trim()
        .replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
        .replace(/\s+/g, '\\s+'),
      'gi',
    );
    out = out.replace(re, (m) => ' '.repeat(m.length));
  }
  return out;
};

/** The text the judgement reads: subject, then the body (markup blanked), then text attachments. */
const assessedText = (msg: MessageToScan) => {
  const body = msg.text ?? (msg.html ? blankHtml(msg.html) : '');
  // Markup needs a '<' or a '&': without either, the pattern cannot match and is not run.
  const plain = (body.includes('<') || body.includes('&')) && /<[a-z/!][^>]*>|&[a-z]+;/i.test(body) ? blankHtml(body) : body;
  return { subject: msg.subject ?? '', body: plain };
};

/**
 * Reads a message as the judgement does (subject, body with markup blanked, text
 * attachments; the organisation's own names masked) and judges it by the rules.
 */
export const readForJudgement = (
  msg: MessageToScan,
  options: ContextOptions = {},
): { rules: Assessment; full: string; subjectEnd: number; low: string } => {
  // The findings alone: the judgement makes its own sensitivity (scanMessage's is not computed here).
  const findings = scanMessageFindings(msg, options);
  const { subject, body } = assessedText(msg);
  // The subject is its own sentence; attachments' text is judged with the body.
  const attachmentText =
    msg.attachments === undefined || msg.attachments.length === 0
      ? ''
      : msg.attachments
          .map((a) => (a.content && /^text\//i.test(a.content_type ?? '') ? Buffer.from(a.content).toString('utf8').slice(0, 200_000) : ''))
          .filter(Boolean)
          .join('\n');
  const full = maskOrgNames(`${subject}\n${body}${attachmentText ? `\n${attachmentText}` : ''}`, options.orgNames);
  const subjectEnd = subject.length;
  // Lower-cased once, for the rules' passes and the classifier's features alike.
  const low = full.toLowerCase();
  return { rules: judge(full, low, subjectEnd, findings), full, subjectEnd, low };
};

/** The rules' judgement alone (no trained classifier): the classifier's rule features, and its training input. */
export const assessRules = (msg: MessageToScan, options: ContextOptions = {}): Assessment => readForJudgement(msg, options).rules;

/**
 * Judges one message (see the module comment): the rules, then the trained
 * classifier (phi-classifier.ts) over the same text (the organisation's own
 * names masked) with the rules' judgement as features. Pure and synchronous:
 * no I/O, no logging; findings and reasons carry types and offsets, never text.
 */
export const assessMessage = (msg: MessageToScan, options: ContextOptions = {}): Assessment => {
  const { rules, full, subjectEnd, low } = readForJudgement(msg, options);
  return classifyMessage(rules, full, subjectEnd, undefined, low);
};

/** The same judgement over one text (no subject): for the evaluation and the inbound tags. */
export const assessText = (text: string, options: ContextOptions = {}): Assessment => assessMessage({ text }, options);

/** A place where the judgement found a disclosure: offsets into the subject or the text (for highlighting), never the text. */
export type Cue = { disclosure: Disclosure; field: 'subject' | 'text' | 'attachment'; start: number; end: number };

/**
 * A word and a strength after it: "descovy 200/25 mg", "eliquis 5 mg", "metformin er 500 mg", "emtricitabine/tenofovir df
 * 200/300 mg" (on the lower-cased text). The word is the drug (NOT_DRUG_BEFORE_DOSE: the words that are not).
 */
const DOSE_BEFORE_RE =
  /(?<![a-z0-9\u00c0-\u024f-])([a-z][a-z-]{3,})(?:\/[a-z][a-z-]{2,})?(?: (?:er|xr|sr|dr|xl|cr|la|hcl|df|sodium|oral))? ?\(?\d+(?:[.,]\d+)?(?:\/\d+(?:[.,]\d+)?)? ?$/;
/** The next "mg" or "mcg" after the one at `at` (the places where DOSE_BEFORE_RE looks back, at most 60 characters). */
const nextUnit = (low: string, at: number) => {
  const step = low.charCodeAt(at + 1) === 99 ? 3 : 2;
  const mg = low.indexOf('mg', at + step);
  const mcg = low.indexOf('mcg', at + step);
  return mg < 0 ? mcg : mcg < 0 ? mg : Math.min(mg, mcg);
};
const STRENGTH_AFTER_RE = /^\s*(?:\/\s*[a-z]+\s*)?\d+(?:[.,]\d+)?(?:\/\d+(?:[.,]\d+)?)?\s?(?:mg|mcg)\b/i;
/** Words before a number of milligrams that are no drug: amounts, schedules, nutrition labels, supplements. */
const NOT_DRUG_BEFORE_DOSE = new Set([
  'take',
  'takes',
  'taking',
  'took',
  'dose',
  'doses',
  'dosage',
  'daily',
  'tablet',
  'tablets',
  'capsule',
  'capsules',
  'total',
  'about',
  'over',
  'under',
  'than',
  'from',
  'with',
  'each',
  'every',
  'contains',
  'containing',
  'strength',
  'only',
  'upto',
  'least',
  'most',
  'maximum',
  'max',
  'minimum',
  'twice',
  'once',
  'then',
  'plus',
  'extra',
  'another',
  'sodium',
  'protein',
  'sugar',
  'sugars',
  'fiber',
  'fibre',
  'carbs',
  'carbohydrate',
  'cholesterol',
  'caffeine',
  'calcium',
  'iron',
  'zinc',
  'magnesium',
  'vitamin',
  'omega',
  'fish',
  'biotin',
  'melatonin',
  'turmeric',
  'collagen',
  'serving',
  'servings',
  'per',
  'weight',
  'weighs',
  'size',
  'pack',
  'bottle',
  'jar',
]);
const SALUTATION_RE =
  /(?:^|\n)\s*(?:[Dd]ear|[Hh]i|[Hh]iya|[Hh]ey|[Hh]ello|[Hh]owdy|[Gg]'day|[Kk]ia ora|[Tt]ēnā koe|[Tt]alofa|[Mm]alo|[Bb]onjour|[Bb]onjou|[Hh]ola|[Ss]alut|[Gg]reetings|(?:[Gg]ood )?(?:[Mm]orning|[Aa]fternoon|[Ee]vening)|[Cc]ongrat(?:ulation)?s|[Tt]hank you|[Tt]hanks|[Ee]stimad[oa]|[Qq]uerid[oa]|[Bb]uen(?:os|as) (?:d[ií]as|tardes|noches)|[Oo]l[áa]|[Pp]rezad[oa]|[Cc]h[èe]re?|[Xx]in ch[àa]o|[Kk][íi]nh g[ửu]i|[Cc]h[àa]o|[Kk]umusta|[Mm]agandang (?:umaga|hapon|araw|gabi)|[Aa]loha|[Ss]alaan|[Nn]yob zoo|[Hh]abari|[Mm]olo|[Ss]awubona|[Hh]allo|[Aa]ssalamu? ?alaikum|[Ss]alam),?\s+(?:(?:Mr|Mrs|Ms|Miss|Mx|Dr|Sr|Sra|Srta|Don|Doña|Dona|Mme|Madame|Monsieur|Madan|Mesye|Se[ñn]ora?|Senhora?|Bi|Bw|Sis|Txiv|Niam|anh|chị|cô|bà|ông|em|Gng|G)\.?\s+)?([A-Z\u00c0-\u00de\u0100-\u024f\u1e00-\u1eff][a-z\u00e0-\u00ff\u0100-\u024f\u1e00-\u1eff'’-]+)/;
const NOT_SALUTATION_NAMES = new Set([
  'patients',
  'patient',
  'valued',
  'all',
  'everyone',
  'team',
  'friends',
  'neighbors',
  'neighbours',
  'members',
  'families',
  'colleagues',
  'sir',
  'madam',
  'parents',
  'there',
  'folks',
  'staff',
  'community',
  'you',
  'for',
  'paciente',
  'pacientes',
  'familia',
  'familias',
  'todos',
  'todas',
  'vecinos',
  'miembros',
  'colegas',
  'equipo',
  'señor',
  'señora',
  'cliente',
  'clientes',
  'tous',
  'pasyan',
]);
/** A word that can make a clinical word someone's: checked before the slower possessive patterns. */
const POSSESSOR_HINT_RE = /\b(?:you|your|ur|you're|you've|his|her|him|i|i'm|i've|my|our)\b/i;
const STRONG_POSSESSED_RE =
  /\b(?:you(?:'re| are| were| have| had|'ve| tested)|our records show (?:that )?you|i(?:'m| am| was| have| had|'ve)|my)\s+(?:[\w'-]+\s+){0,3}$/i;
const CONDITIONAL_RE =
  /\b(?<!(?:grateful|appreciate|appreciated|appreciate it|thankful|happy|glad|pleased|obliged|delighted) )(?:if|when|whether) (?:you|your|u|ur|anyone|someone|a child)\b|\banyone\b|\b(?:people|patients|adults|those|women|men|children) (?:who|with|over|under|aged)\b/i;
const CONDITIONAL_G_RE = new RegExp(CONDITIONAL_RE.source, 'gi');
/**
 * Whether the end of `head` (a sentence up to a clinical word) lies inside a conditional or generic clause: "If you
 * have chest pain, call 911" ties nobody to chest pain, but in "If you can't make it, call so we can sort your
 * take-homes" the word is in the main clause, after the condition has ended (a comma or dash and a new clause).
 */
const CLAUSE_BREAK_RE =
  /(?:,|\s[-–—]|:)\s*(?:call|please|contact|come|go|seek|let|ring|phone|text|book|get|then|we|we'll|we've|i|i'll|i've|so|our|the|you(?:'ll| will| can| should| may|'re| are)|don't|do not|tell|speak|talk|make|just|but|and we|and i)\b/i;
const inConditionalClause = (head: string) => {
  let last = -1;
  CONDITIONAL_G_RE.lastIndex = 0;
  while (CONDITIONAL_G_RE.test(head)) last = CONDITIONAL_G_RE.lastIndex;
  return last >= 0 && !CLAUSE_BREAK_RE.test(head.slice(last));
};
/** Words of a patient's own care or cover: an account or member number beside them is a patient's (LABELING.md H2). */
const PATIENT_CONTEXT_RE =
  /\b(?:patients?|pt(?=\.? ?(?:acct|account|name|id|no|#|:))|copay|co-pay|coinsurance|eob|explanation of benefits|medicare|medicaid|guarantor|date of service|prior auth\w*|dob|date of birth|beneficiary|health (?:plan|insurance|fund|cover)|medical aid|medical scheme|abha|ahcccs|ramq|assurance maladie|(?:main|principal) member|dependant code|southern cross|bupa|medibank|nib|hcf|blue cross|blue shield|aetna|cigna|humana|kaiser|anthem|unitedhealth\w*|sun life|manulife|great-west|canada life|vhi|laya|tricare|medi-?cal|masshealth|tenncare|badgercare|soonercare|kancare|peachcare|(?:medical|dental|health) (?:claim|bill|visit))\b/i;
/** Words of health care: an account or member number in such mail is a patient's unless another trade is named (LABELING.md H2, P4). */
const HEALTH_CONTEXT_RE =
  /\b(?:clinic|medical|health|hospital|practice|doctor|dr|physician|pharmacy|lab|dental|hmo|ppo|rx|nurse|specialist|surgery|gp|cl[íi]nica|m[ée]dic[oa]|salud|sa[úu]de|farmacia)\b/i;
/** Bank and payee details (BSB, IBAN, sort code, remit to): a supplier's account, not a patient's (LABELING.md P4). */
const PAYEE_RE =
  /\b(?:bsb|iban|swift|bic|sort code|routing|remit(?:tance)?(?: to)?|bpay|biller code|bank(?:ing)? details|pay (?:to|via))\b/i;
/** Words of other trades (utilities, gyms, cars, banks): their account and member numbers are not a patient's (LABELING.md P4). */
const OTHER_TRADE_RE =
  /\b(?:utility|utilities|electric(?:ity)?|water|power|gas|internet|broadband|wireless|gym|fitness|membership|auto|car|vehicle|homeowners?|renters?|rental|lease|landlord|bank|banking|credit card|loan|mortgage|airline|frequent flyer|hotel|loyalty|rewards|library|streaming|tuition|student|tenant|travel|pet|life insurance|home insurance|contents|mobile|phone plan|council|rates)\b/i;
/** Vendor and supply mail (LABELING.md P4, P6): a device or drug named there is a product, not someone's care. */
const VENDOR_RE =
  /\b(?:rma|return authori[sz]ation|purchase order|po-?\d|order (?:#|no|number|ref|confirmation|[a-z]{0,4}-?\d)|your order|online (?:shop|store)|checkout|basket|cart|shipment|shipped|tracking|invoice|sku|warranty|depot|ship to|remittance|vendor|supplier|catalog(?:ue)?|quote|backorder(?:ed)?)\b/i;
/** Words that make an account or member number plausible in a clinic's mail when no trade is named. */
const LOOSE_HEALTH_RE = /\b(?:insurance|plan|claim|benefits|provider|visit|statement|billing|balance|payment plan|coverage|care)\b/i;

/** Lower-case twins (no `i` flag) of the whole-message patterns, run on the lower-cased text: faster, same offsets. */
const lowTwin = (re: RegExp) => new RegExp(re.source, re.flags.replace('i', ''));
const BROADCAST_RE_LOW = lowTwin(BROADCAST_RE);
const VENDOR_RE_LOW = lowTwin(VENDOR_RE);
const OTHER_TRADE_RE_LOW = lowTwin(OTHER_TRADE_RE);
const HEALTH_CONTEXT_RE_LOW = lowTwin(HEALTH_CONTEXT_RE);
const PATIENT_CONTEXT_RE_LOW = lowTwin(PATIENT_CONTEXT_RE);
const LOOSE_HEALTH_RE_LOW = lowTwin(LOOSE_HEALTH_RE);
const PAYEE_RE_LOW = lowTwin(PAYEE_RE);
const SECOND_PERSON_RE_LOW = lowTwin(SECOND_PERSON_RE);
const GENERAL_LOW_RE = lowTwin(GENERAL_RE);

/** A first word that calls one person by name, the sentence going on in lower case: "Sergei, good news" (not "Minutes, Board of ..."). */
const VOCATIVE_RE = /^\s*([A-Z][a-z\u00e0-\u00ff'’-]+),[ \t]+[a-z]/;
/** First words before a comma that greet or address no one person. */
const NOT_VOCATIVE = new Set([
  'hello',
  'hi',
  'hey',
  'dear',
  'team',
  'everyone',
  'friends',
  'folks',
  'colleagues',
  'reminder',
  'attention',
  'note',
  'update',
  'important',
  'please',
  'thanks',
  'today',
  'tomorrow',
  'yes',
  'no',
  'ok',
  'okay',
  'sorry',
  'again',
  'also',
  'however',
  'unfortunately',
  'good',
  'great',
  'welcome',
  'congratulations',
  'parents',
  'residents',
  'members',
  'neighbours',
  'neighbors',
  'families',
  'staff',
  'all',
  'ladies',
  'guys',
  'patients',
]);
/** Where a forwarded or original message begins under a note (lower-cased text). */
const FORWARD_MARKER_RE = /-{2,}\s*(?:forwarded|original message)|begin forwarded message/;
/** A prescription number: "rx 6620183", "rx#6640218", "rx no. 4471029" (lower-cased text). */
const RX_NUMBER_RE = /\brx\s*(?:#|no\.?|number)?\s*:?\s*\d{5,}/;
/** A specialty right after "in", "at" or "Location:": the department where a visit is ("with Dr. Kapoor in Nephrology"). */
const SPECIALTY_PLACE_BEFORE_RE = /\b(?:in|at|location:?)\s+(?:the\s+)?$/i;
/** "her"/"his" right before a clinical word (not "his or her", "his/her": anyone's). */
const THIRD_POSSESSOR_RE = /\b(?<!(?:his|her) or |\/)(?:his|her)\s+(?:[\w'-]+\s+){0,3}$/i;
/** A first and last name: two capitalised words, the first not a common word that opens a sentence or a title. */
const FULL_NAME_RE =
  /\b(?!(?:The|Our|All|Free|New|Our|Your|This|That|Please|Join|Dear|Hello|Hi|Happy|Holiday|Open|Patient|Staff|Health|Heart|Team|Winter|Summer|Spring|Fall|Autumn)\b)[A-Z][a-z\u00e0-\u00ff'’-]+ (?:[A-Z]\. )?[A-Z][a-z\u00e0-\u00ff'’-]{2,}\b/;
/** In a broadcast: a clinical word that is "her"/"his" of a person named in its sentence or the one before (LABELING.md H1). */
const namedPossessor = (full: string, b: readonly number[], si: number, before: string) =>
  THIRD_POSSESSOR_RE.test(before) && FULL_NAME_RE.test(full.slice(b[Math.max(0, si - 1)], b[si + 1]));
/** Treatment given in sessions at a unit ("the Dialysis Unit", "the Infusion Center"): attending it is the treatment. */
const SESSION_TREATMENT_RE = /\b(?:dialysis|infusions?|chemo\w*|radiation|radiotherapy|transfusions?|wound care|hyperbaric)\b/i;
/** The reader's own sessions or place in the unit ("your 6:00 AM treatments", "your standing chair"). */
const OWN_SESSIONS_RE = /\byour\s+(?:[\w':.-]+\s+){0,3}(?:treatments?|sessions?|chair|runs?|infusions?)\b/i;
/**
 * A treatment unit's name (LABELING.md P3) is still a clinic's name, unless the sentence says the reader attends it
 * for their own sessions ("a cab each morning to the Erie Dialysis Clinic for your 6:00 AM treatments"): then it says
 * what care they receive (H1).
 */
const ownTreatmentAt = (full: string, b: readonly number[], si: number, s: number, e: number) =>
  SESSION_TREATMENT_RE.test(full.slice(s, e)) && OWN_SESSIONS_RE.test(full.slice(b[si], b[si + 1]));

const fieldText = (field: Finding['field'], full: string, subjectEnd: number) =>
  field === 'subject' ? full.slice(0, subjectEnd) : full.slice(subjectEnd + 1);

/**
 * The whole-message tests of the judgement. They are pure; each runs at most once, and only when its answer is
 * needed (the cheap conditions of a conjunction first): most personal messages never ask whether they are broadcasts
 * or vendor mail. A class of the module, so that no closures are made per message.
 */
class MessageFacts {
  private thirdPersonMemo: boolean | undefined;
  private strongThirdMemo: boolean | undefined;
  private vendorMailMemo: boolean | undefined;
  private vendorMemo: boolean | undefined;
  private anonymousMemo: boolean | undefined;
  private healthMemo: boolean | undefined;
  private titles: [number, number][] | undefined;
  private sentenceKinds: Map<number, number> | undefined;

  constructor(
    private readonly full: string,
    private readonly lowFull: string,
    private readonly sameCase: boolean,
    private readonly b: readonly number[],
    private readonly findings: readonly Finding[],
    private readonly salutationName: boolean,
    private readonly namedBySpan: boolean,
    private readonly reply: boolean,
  ) {}

  thirdPerson(): boolean {
    this.thirdPersonMemo ??= THIRD_PERSON_RE.test(this.full);
    return this.thirdPersonMemo;
  }

  strongThird(): boolean {
    this.strongThirdMemo ??= STRONG_THIRD_RE.test(this.full);
    return this.strongThirdMemo;
  }

  vendorMail(): boolean {
    this.vendorMailMemo ??= this.sameCase ? VENDOR_RE_LOW.test(this.lowFull) : VENDOR_RE.test(this.full);
    return this.vendorMailMemo;
  }

  /** A relative ("my father", "your son") or a named person makes it about someone, whatever else the mail mentions. */
  vendor(): boolean {
    this.vendorMemo ??= !this.salutationName && !this.namedBySpan && this.vendorMail() && !this.strongThird() && !this.thirdPerson();
    return this.vendorMemo;
  }

  /** Nobody named, greeted, addressed or described. */
  anonymous(): boolean {
    const { full, lowFull, sameCase } = this;
    this.anonymousMemo ??=
      !this.salutationName &&
      !this.reply &&
      !this.findings.some((f) => f.type === 'name') &&
      !(sameCase ? SECOND_PERSON_RE_LOW.test(lowFull) : SECOND_PERSON_RE.test(full)) &&
      !this.thirdPerson() &&
      !PERSON_HINT_RE.test(full);
    return this.anonymousMemo;
  }

  /** Whether `at` lies inside a quoted title. */
  inTitle(at: number): boolean {
    let titles = this.titles;
    if (!titles) {
      titles = [];
      const full = this.full;
      QUOTED_TITLE_RE.lastIndex = 0;
      for (let m = QUOTED_TITLE_RE.exec(full); m !== null; m = QUOTED_TITLE_RE.exec(full))
        if (m[0].length <= 90 && !/\n/.test(m[0])) titles.push([m.index, m.index + m[0].length]);
      this.titles = titles;
    }
    return titles.some(([a, z]) => a <= at && at < z);
  }

  /** Bits: 1 general information, 4 rhetorical heading ("Pregnant?"). */
  sentenceKind(si: number): number {
    this.sentenceKinds ??= new Map<number, number>();
    let k = this.sentenceKinds.get(si);
    if (k === undefined) {
      const { full, lowFull, sameCase, b } = this;
      const from = b[si]!;
      const to = b[si + 1];
      // A rhetorical heading ends in a question mark: without one in the sentence, no need to slice and test it.
      const q = full.indexOf('?', from);
      k =
        ((sameCase ? GENERAL_LOW_RE.test(lowFull.slice(from, to)) : GENERAL_RE.test(full.slice(from, to))) ? 1 : 0) |
        (q >= 0 && (to === undefined || q < to) && /^\s*[\w'’ -]{1,30}\?\s*$/.test(full.slice(from, to)) ? 4 : 0);
      this.sentenceKinds.set(si, k);
    }
    return k;
  }

  /**
   * A utility, gym or car-insurance account is not a patient's: account, member and policy numbers count in health-care
   * mail. A patient's own care or cover decides; else a named trade (a utility billing the practice) or a supplier's
   * bank details say it is not a patient's.
   */
  inHealthMail(): boolean {
    const { full, lowFull, sameCase } = this;
    this.healthMemo ??=
      (sameCase ? PATIENT_CONTEXT_RE_LOW.test(lowFull) : PATIENT_CONTEXT_RE.test(full)) ||
      (!(sameCase ? OTHER_TRADE_RE_LOW.test(lowFull) : OTHER_TRADE_RE.test(full)) &&
        !(this.vendorMail() && (sameCase ? PAYEE_RE_LOW.test(lowFull) : PAYEE_RE.test(full))) &&
        ((sameCase ? HEALTH_CONTEXT_RE_LOW.test(lowFull) : HEALTH_CONTEXT_RE.test(full)) ||
          (sameCase ? LOOSE_HEALTH_RE_LOW.test(lowFull) : LOOSE_HEALTH_RE.test(full))));
    return this.healthMemo;
  }
}

const judge = (full: string, lowFull: string, subjectEnd: number, findings: Finding[]): Assessment => {
  // The term passes run on the lower-cased text without the `i` flag when lower-casing keeps every offset.
  const sameCase = lowFull.length === full.length;
  const b = boundariesOf(full);
  // Who: names the span detector found with confidence (salutations, titles, labels, contacts), and context cues.
  const sal = SALUTATION_RE.exec(full);
  // "Hi Nephrology team" greets a group, not a person.
  const groupGreeting =
    sal !== null &&
    /^[ \t]+(?:[A-Z][\w'’-]*[ \t]+)?(?:team|staff|department|dept|group|unit|colleagues|all|folks|nurses|providers|desk|office)\b/i.test(
      full.slice(sal.index + sal[0].length),
    );
  const salutationName = sal !== null && !groupGreeting && !NOT_SALUTATION_NAMES.has(sal[1]!.toLowerCase());
  const namedBySpan = findings.some(
    (f) => f.type === 'name' && f.confidence >= 0.75 && !(groupGreeting && f.detector === 'cue.salutation'),
  );
  // A reply (quoted lines, "Re:") is a conversation with one person, never an announcement. A quoted line needs a '>'.
  const reply = /^\s*(?:re|aw|sv)\s*:/i.test(full) || (full.includes('>') && /(?:^|\n)\s*>/.test(full));
  // A body that opens by calling one person by name ("Sergei, good news - your dosing window moves..."): mail to them.
  const voc = VOCATIVE_RE.exec(full.slice(subjectEnd + 1, subjectEnd + 41));
  const vocative = voc !== null && !NOT_SALUTATION_NAMES.has(voc[1]!.toLowerCase()) && !NOT_VOCATIVE.has(voc[1]!.toLowerCase());
  const facts = new MessageFacts(full, lowFull, sameCase, b, findings, salutationName, namedBySpan, reply);
  const broadcast =
    !salutationName &&
    !namedBySpan &&
    !reply &&
    !vocative &&
    (sameCase ? BROADCAST_RE_LOW.test(lowFull) : BROADCAST_RE.test(full)) &&
    !facts.strongThird();
  // A forwarded announcement under a note of the sender's own ("Dad - you already had the colonoscopy ... ---------- Forwarded
  // message"): the announcement is to everyone, the note is to one person (LABELING.md P2, H1, edge case 16). The note
  // ends where the forward begins; clinical words in it are judged as in a personal message. Looked for only in a
  // broadcast that has a forward marker.
  let noteEnd = -1;
  if (broadcast && (lowFull.includes('forwarded') || lowFull.includes('original message'))) {
    const fw = lowFull.search(FORWARD_MARKER_RE);
    const note = fw > subjectEnd ? full.slice(subjectEnd + 1, fw) : '';
    if (note.trim().length >= 15 && !BROADCAST_RE.test(note)) noteEnd = fw;
  }
  // A prescription number ("Rx 6620183", "Rx#6640218"): a drug dispensed to one person, not a product (vendor mail) and
  // not a word said to nobody, whoever the shipment or pick-up notice names (LABELING.md edge case 5).
  let rxMemo: boolean | undefined;
  const rxNumber = () => (rxMemo ??= lowFull.includes('rx') && RX_NUMBER_RE.test(lowFull));

  const found = new Set<Disclosure>();
  const cues: Cue[] = [];
  let part2 = false;
  let subjectPhi = false;
  let weakCount = 0;
  const clinicalSentences = new Set<number>();
  const candidates: { cat: Category; s: number; e: number; span: boolean }[] = [];
  {
    const low = lowFull;
    const text = low.length === full.length ? low : full;
    if (text === low) {
      for (let m = nextVocabularyMatch(low, 0); m !== null; m = nextVocabularyMatch(low, m[1])) {
        const s = m[0];
        const e = m[1];
        const w = low.slice(s, e);
        const known = CATEGORY_OF.get(w);
        if (known !== undefined) {
          if (known !== null) candidates.push({ cat: known, s, e, span: false });
          continue;
        }
        // The category: the capturing pattern of the match's first character, at the match (the same alternatives
        // in the same order give the same match); the whole capturing alternation if it ever did not.
        const start = START_RES[low.charCodeAt(s)]!;
        start.re.lastIndex = s;
        let g = start.re.exec(low);
        let cats = start.cats;
        if (g === null || g[0].length !== e - s) {
          MERGED_Y_RE.lastIndex = s;
          g = MERGED_Y_RE.exec(low);
          cats = GROUP_CATEGORY;
        }
        let cat: Category | null = null;
        if (g !== null) {
          let k = 1;
          while (k <= cats.length && g[k] === undefined) k++;
          if (k <= cats.length) cat = cats[k - 1]!;
        }
        if (cat !== null) candidates.push({ cat, s, e, span: false });
        if (categoryIsContextFree(w)) {
          if (CATEGORY_OF.size >= CATEGORY_MEMO_LIMIT) CATEGORY_OF.clear();
          CATEGORY_OF.set(w, cat);
        }
      }
    } else {
      MERGED_I_RE.lastIndex = 0;
      for (let m = MERGED_I_RE.exec(full); m !== null; m = MERGED_I_RE.exec(full)) {
        let k = 1;
        while (k <= GROUP_CATEGORY.length && m[k] === undefined) k++;
        if (k <= GROUP_CATEGORY.length) candidates.push({ cat: GROUP_CATEGORY[k - 1]!, s: m.index, e: m.index + m[0].length, span: false });
      }
    }
    if (text === low) {
      const listed = candidates.length;
      ENDINGS_RE.lastIndex = 0;
      for (let m = endingAt(low); m !== null; m = endingAt(low)) {
        const e = m.index + m[0].length;
        let s = m.index;
        while (s > 0 && isLowerAlpha(low.charCodeAt(s - 1))) s--;
        if (s > 0 && isWordChar(low.charCodeAt(s - 1))) continue;
        let covered = false;
        for (let k = 0; k < listed && !covered; k++) covered = candidates[k]!.s <= s && candidates[k]!.e >= e;
        if (!covered) candidates.push({ cat: m[1] !== undefined ? 'condition' : 'procedure', s, e, span: false });
      }
    }
    // A word followed by a strength ("Descovy 200/25 mg", "Telma 40 mg", "Valacyclovir 500 mg"): a drug, named or not in
    // the vocabulary. Looked for only where a unit of strength occurs at all.
    let unit = text === low ? low.indexOf('mg') : -1;
    if (unit < 0 && text === low) unit = low.indexOf('mcg');
    if (unit >= 0) {
      const listed = candidates.length;
      for (; unit >= 0; unit = nextUnit(low, unit)) {
        const before = low.charCodeAt(unit - 1);
        const after = low.charCodeAt(unit + (low.charCodeAt(unit + 1) === 99 ? 3 : 2));
        // A unit after a number or a space, not inside a word, not "mg/dl" (a lab value).
        if (!((before >= 48 && before <= 57) || before === 32) || (after >= 97 && after <= 122) || after === 47) continue;
        const from = Math.max(0, unit - 60);
        const m = DOSE_BEFORE_RE.exec(low.slice(from, unit));
        if (m === null) continue;
        const word = m[1]!;
        if (NOT_DRUG_BEFORE_DOSE.has(word)) continue;
        const s = from + m.index;
        const e = s + word.length;
        let covered = false;
        for (let k = 0; k < listed && !covered; k++) covered = candidates[k]!.s <= s && candidates[k]!.e >= e;
        if (!covered) candidates.push({ cat: 'medication', s, e, span: false });
      }
    }
    // Drug names, diagnoses, lab values and Part 2 terms the span detector knows (its lexicon and USAN stems).
    for (const f of findings) {
      const cat: Category | null =
        f.type === 'medication'
          ? 'medication'
          : f.type === 'lab_value'
            ? 'result'
            : f.type === 'icd10' || f.type === 'diagnosis'
              ? 'condition'
              : f.type === 'part2'
                ? 'substance_use'
                : null;
      if (!cat) continue;
      // A capitalised word with a drug-name ending is more often a person's name ("Olamide") than a drug, unless a
      // strength follows it ("Valacyclovir 500 mg").
      if (
        f.detector === 'lexicon.drug_stem' &&
        f.field !== 'attachment' &&
        /^[A-Z]/.test(fieldText(f.field, full, subjectEnd).slice(f.start, f.start + 1)) &&
        !STRENGTH_AFTER_RE.test(fieldText(f.field, full, subjectEnd).slice(f.end, f.end + 24))
      )
        continue;
      const base = f.field === 'subject' ? 0 : f.field === 'text' || f.field === 'html' ? subjectEnd + 1 : -1;
      if (base < 0) {
        found.add(cat as Disclosure);
        if (cat === 'substance_use') part2 = true;
        continue;
      }
      candidates.push({ cat, s: base + f.start, e: base + f.end, span: true });
    }
  }
  for (const { cat, s, e } of candidates) {
    // Inside the organisation's own name (masked to spaces): never a disclosure.
    if (full.slice(s, e).trim() === '') continue;
    const si = sentenceIndex(b, s);
    const before = full.slice(Math.max(0, s - 48), s);
    const kind = facts.sentenceKind(si);
    // The possessive patterns end at the term and backtrack; most words have no possessor near them, so look first.
    const mayPossess = POSSESSOR_HINT_RE.test(before);
    const strong = mayPossess && STRONG_POSSESSED_RE.test(before);
    const possessed = strong || (mayPossess && POSSESSED_BEFORE_RE.test(before));
    // About whom: in a message that names nobody (no greeting by name, no named or described person, not a reply), a
    // clinical word ties someone to it only when it is said to be theirs ("your", "you have", "my").
    if (!possessed && facts.anonymous() && !(cat === 'medication' && rxNumber())) continue;
    // An announcement ties nobody to anything unless it says so outright ("our records show you were implanted..."), the
    // word is in a note above a forwarded announcement, or it is "her"/"his" of a person the sentence (or the one before)
    // names ("welcoming Maria Estevez back after her breast cancer treatment": H1, a named person's condition).
    if (broadcast && !strong && !(s > subjectEnd && s < noteEnd) && !namedPossessor(full, b, si, before)) continue;
    if (!possessed && (cat === 'procedure' || cat === 'medication') && facts.vendor() && !(cat === 'medication' && rxNumber())) continue;
    // "our once-weekly insulin", "our new MRI": the sender's product or service, not anyone's care.
    if (!possessed && (cat === 'procedure' || cat === 'medication') && /\bour\s+(?:[\w'-]+\s+){0,2}$/i.test(before)) continue;
    ADMIN_NOUN_AFTER_RE.lastIndex = e;
    if (!possessed && ADMIN_NOUN_AFTER_RE.test(full)) continue;
    if (cat === 'medication' && SUPPLEMENT_BEFORE_RE.test(full.slice(Math.max(0, s - 30), s))) continue;
    if (facts.inTitle(s)) continue;
    // "pregnant people", "diabetic patients", "asthma sufferers": a population, not a person.
    POPULATION_AFTER_RE.lastIndex = e;
    if (!possessed && POPULATION_AFTER_RE.test(full)) continue;
    // A subject line is a topic ("Pregnancy and the heat") unless it says whose ("Your colonoscopy").
    if (s < subjectEnd && !possessed && !salutationName && !namedBySpan) continue;
    // "If you have chest pain, call 911": what follows a condition in its sentence ties nobody to it.
    if (kind & 4 || inConditionalClause(full.slice(b[si], s))) continue;
    // In general advice ("bring all your tablets") only an outright statement ("you have", "you were") ties the person.
    if (!strong && kind & 1) continue;
    const named = inInstitutionName(full, s, e);
    // A programme's name is Part 2 only for its client, not in its staff's mail (a job offer, a roster).
    if (
      named &&
      !(cat === 'substance_use' && !broadcast && !inServiceList(full, s, e) && !EMPLOYMENT_RE.test(full)) &&
      !(cat === 'procedure' && !broadcast && ownTreatmentAt(full, b, si, s, e))
    )
      continue;
    if (cat === 'weak_result') {
      // "a letter we posted came back marked 'moved'": returned mail, not a result.
      if (RETURNED_MAIL_RE.test(full.slice(Math.max(0, s - 40), s))) continue;
      // A vague result phrase counts when the sentence, the one before it or the subject is about a test.
      const from = b[Math.max(0, si - 1)]!;
      const ctx = `${full.slice(from, b[si + 1])}\n${full.slice(0, subjectEnd)}`;
      if (!TEST_CONTEXT_RE.test(ctx) && !clinicalSentences.has(si)) continue;
      found.add('result');
      weakCount++;
    } else if (cat === 'specialist') {
      // "you need to see a cardiologist": the need is the disclosure (edge case 4); a specialty in a clinic's name is not.
      const head = full.slice(Math.max(0, s - 40), s);
      if (!possessed && !/\b(?:see|need|needs|referr\w*|sending|send|consult|with)\b/i.test(head)) continue;
      // "your appointment with Dr. Kapoor in Nephrology", "Location: Cardiology": the department where the visit is, a
      // name under LABELING.md P3 (edge case 4), unless the sentence says the person needs it.
      if (SPECIALTY_PLACE_BEFORE_RE.test(head) && !/\b(?:see|need|needs|referr\w*|sending|send|consult)\b/i.test(head)) continue;
      found.add('referral_reason');
    } else {
      found.add(cat);
      if (cat === 'substance_use') part2 = true;
    }
    clinicalSentences.add(si);
    if (s < subjectEnd) subjectPhi = true;
    const disclosure: Disclosure = cat === 'weak_result' ? 'result' : cat === 'specialist' ? 'referral_reason' : cat;
    cues.push(
      s < subjectEnd
        ? { disclosure, field: 'subject', start: s, end: e }
        : { disclosure, field: 'text', start: s - subjectEnd - 1, end: e - subjectEnd - 1 },
    );
  }
  // Part 2 through logistics: the person's own programme logistics plus a treatment setting in one message (PART2_LOGISTICS_RE_SOURCE).
  // Whether the reader is addressed, looked for only when it matters; remembered for the Part 2 cue families below,
  // whose pattern has the same words and more (so it matches wherever this one does).
  const personal = salutationName || namedBySpan;
  const youWord = !part2 && !broadcast && !personal && /\b(?:you|your|ur|u)\b/i.test(full);
  if (!part2 && !broadcast && (personal || youWord)) {
    const [setRe, setText] = sameCase ? [PART2_SETTING_LOW_RE, lowFull] : [PART2_SETTING_RE, full];
    setRe.lastIndex = 0;
    for (let m = setRe.exec(setText); m !== null; m = setRe.exec(setText)) {
      const si = sentenceIndex(b, m.index);
      if (
        facts.sentenceKind(si) & 1 ||
        inConditionalClause(full.slice(b[si], m.index)) ||
        inServiceList(full, m.index, m.index + m[0].length)
      )
        continue;
      if (!PART2_LOGISTICS_RE.test(`${setText.slice(0, m.index)} ${setText.slice(m.index + m[0].length)}`)) continue;
      part2 = true;
      found.add('substance_use');
      const s = m.index;
      const e = s + m[0].length;
      cues.push(
        s < subjectEnd
          ? { disclosure: 'substance_use', field: 'subject', start: s, end: e }
          : { disclosure: 'substance_use', field: 'text', start: s - subjectEnd - 1, end: e - subjectEnd - 1 },
      );
      break;
    }
  }
  // Part 2 through opioid-treatment logistics: weak cues from two families (PART2_CUE_FAMILIES) in one personal message.
  // A dose of a drug the message names is that drug's ("your dose of amoxicillin"), not a programme's.
  if (!part2 && !broadcast && (personal || youWord || /\b(?:you|your|ur|u|pt|patient)\b/i.test(full))) {
    const otherDrug = candidates.some((c) => c.cat === 'medication');
    const families = new Set<string>();
    let first: [number, number] | null = null;
    const [famRe, famText] = sameCase ? [PART2_FAMILIES_LOW_RE, lowFull] : [PART2_FAMILIES_RE, full];
    famRe.lastIndex = 0;
    for (let m = famRe.exec(famText); m !== null && families.size < 2; m = famRe.exec(famText)) {
      let k = 0;
      while (k < PART2_CUE_FAMILIES.length && m[k + 1] === undefined) k++;
      const family = PART2_CUE_FAMILIES[k]?.family ?? '';
      if (families.has(family) || ((family === 'dose' || family === 'dispensed dose') && otherDrug)) continue;
      const si = sentenceIndex(b, m.index);
      if (facts.sentenceKind(si) & 1 || inConditionalClause(full.slice(b[si], m.index))) continue;
      families.add(family);
      if (family === 'dispensed dose') families.add('dose').add('dispensing');
      first ??= [m.index, m.index + m[0].length];
    }
    if (families.size >= 2 && first) {
      part2 = true;
      found.add('substance_use');
      const [s, e] = first;
      cues.push(
        s < subjectEnd
          ? { disclosure: 'substance_use', field: 'subject', start: s, end: e }
          : { disclosure: 'substance_use', field: 'text', start: s - subjectEnd - 1, end: e - subjectEnd - 1 },
      );
    }
  }
  // A referral sentence with a clinical word in it names the reason (edge case 4).
  for (const si of clinicalSentences) {
    if (REFERRAL_RE.test(full.slice(b[si], b[si + 1]))) {
      found.add('referral_reason');
      break;
    }
  }

  const identifiers = new Set<IdentifierType>();
  for (const t of labelledIdentifiers(full, lowFull)) if (t === 'ssn' || t === 'mrn' || facts.inHealthMail()) identifiers.add(t);
  for (const f of findings)
    if (SENSITIVE_SPAN_TYPES.has(f.type) && (f.type === 'ssn' || facts.inHealthMail())) identifiers.add(f.type as IdentifierType);
  // Unlabelled national and health numbers with valid check digits (phi-id-checksums.ts), in health-care mail only.
  // Only where no labelled identifier decided it already (the hold is the same; the scan is skipped).
  if (identifiers.size === 0 && /\d{4}/.test(full))
    for (const c of checksumIdentifiers(full)) if (facts.inHealthMail()) identifiers.add(c.type);
  if (identifiers.size > 0 && subjectEnd > 0 && labelledIdentifiers(full.slice(0, subjectEnd), lowFull.slice(0, subjectEnd)).length > 0)
    subjectPhi = true;
  if (findings.some((f) => f.field === 'subject' && SENSITIVE_SPAN_TYPES.has(f.type))) subjectPhi = true;

  // A vet's mail is about an animal: HIPAA's individually identifiable health information is a person's.
  const subjectLine = full.slice(0, subjectEnd);
  if (
    (found.size > 0 || identifiers.size > 0) &&
    (VET_RE.test(full.slice(subjectEnd)) || (VET_RE.test(subjectLine) && !subjectLine.includes('?'))) &&
    !facts.thirdPerson()
  ) {
    found.clear();
    identifiers.clear();
    part2 = false;
    cues.length = 0;
  }
  const disclosures = [...found].sort();
  const phi = disclosures.length > 0 || identifiers.size > 0;
  const about: About = !phi ? (broadcast ? 'nobody' : 'recipient') : !salutationName && facts.thirdPerson() ? 'named' : 'recipient';
  const weakOnly = disclosures.length === 1 && disclosures[0] === 'result' && weakCount > 0;
  let sensitivity: Sensitivity;
  if (part2) sensitivity = 'restricted';
  else if (disclosures.length > 0) sensitivity = 'high';
  else if (identifiers.size > 0) sensitivity = 'moderate';
  else {
    // A minimal reminder: a name, a date, a clinic address stay low (LABELING.md P1).
    sensitivity = findings.length === 0 ? 'none' : 'low';
  }
  return {
    findings,
    cues,
    about,
    broadcast,
    disclosures,
    identifiers: [...identifiers].sort(),
    part2,
    subjectPhi: subjectPhi && phi,
    phi,
    sensitivity,
    confidence: !phi ? 0.8 : weakOnly ? 0.6 : 0.9,
  };
};
