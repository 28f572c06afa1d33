import { DISCLOSURES } from './phi-context-lexicon.js';
import type { Assessment } from './phi-context.js';
import { FINDING_TYPES, IDENTIFIER_TYPES, SENSITIVITIES } from './phi-types.js';

/**
 * The inputs of the trained message classifier (phi-classifier.ts,
 * scripts/train-phi.ts): hashed text features plus the rules' judgement as
 * features. One walk over the lower-cased text, no strings allocated per word:
 * the "hashing trick" (Weinberger et al. 2009) written here because it is a
 * dozen lines on the send path, where a tokenizer library would allocate a
 * string per token.
 *
 * Text groups (each scaled by 1/sqrt(count) in the message, so a long mail does
 * not outweigh a short one):
 *  0 words: runs of letters and digits, every digit read as 0 ("A1C 7.9" gives
 *    "a0c", "0", "0"), so numbers count by shape, not value;
 *  1 bigrams of adjacent words (a line break or sentence end does not break them);
 *  2 character 4-grams inside words padded with a boundary mark ("^dia", "iab",
 *    ... "tes$"): endings and stems generalise to words not seen in training;
 *  3 subject words: the subject's words again, as their own features.
 * Each feature hashes (MurmurHash3's finaliser) to one of 2^bits slots with a sign
 * bit, so collisions cancel out on average.
 *
 * Rule features: the rules' assessment (phi-context.ts) as a dense vector:
 * disclosures, identifiers, Part 2, broadcast, about whom, sensitivity, span
 * types found. Their names (RULE_FEATURES) are what a hold's reasons cite.
 */

export const TEXT_GROUPS = ['words', 'bigrams', 'char4', 'subject'] as const;

const fmix = (h0: number) => {
  let h = h0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
};
const FNV = 0x811c9dc5;
const BOUND = 1; // the boundary mark of character n-grams

/** Receives every hashed feature: its raw 32-bit hash and its group (TEXT_GROUPS index). */
export type FeatureSink = { add: (hash: number, group: number) => void };

const isLetter = (c: number) => (c >= 97 && c <= 122) || (c >= 0xc0 && c !== 0xd7 && c !== 0xf7 && c < 0x2000);
const isDigit = (c: number) => c >= 48 && c <= 57;

/**
 * Walks `low` (lower-cased subject + "\n" + body); `subjectEnd` is where the
 * subject ends. Emits word, bigram, char-4-gram and subject-word hashes.
 */
export const hashTextFeatures = (low: string, subjectEnd: number, sink: FeatureSink) => {
  const n = low.length;
  let prev = 0; // hash of the previous word, 0 at the start
  let i = 0;
  while (i < n) {
    let c = low.charCodeAt(i);
    if (!(isLetter(c) || isDigit(c))) {
      i++;
      continue;
    }
    const start = i;
    let h = FNV;
    // char 4-grams: the last three codes (boundary mark at the start)
    let c1 = 0;
    let c2 = 0;
    let c3 = BOUND;
    let len = 0;
    while (i < n) {
      c = low.charCodeAt(i);
      if (isDigit(c)) c = 48;
      else if (!isLetter(c)) break;
      h = Math.imul(h ^ c, 0x01000193);
      len++;
      if (len >= 3)
        sink.add(fmix(Math.imul(c1, 0x9e3779b1) ^ Math.imul(c2, 0x85ebca77) ^ Math.imul(c3, 0xc2b2ae3d) ^ Math.imul(c, 0x27d4eb2f)), 2);
      c1 = c2;
      c2 = c3;
      c3 = c;
      i++;
    }
    // the closing 4-gram (with the end mark), for words of two letters or more
    if (len >= 2)
      sink.add(
        fmix(Math.imul(c1, 0x9e3779b1) ^ Math.imul(c2, 0x85ebca77) ^ Math.imul(c3, 0xc2b2ae3d) ^ Math.imul(BOUND + 1, 0x27d4eb2f)),
        2,
      );
    const w = fmix(h);
    sink.add(w, 0);
    if (prev !== 0) sink.add(fmix(Math.imul(prev, 0x2c1b3c6d) ^ h), 1);
    if (start < subjectEnd) sink.add(fmix(h ^ 0x5bd1e995), 3);
    prev = h;
  }
};

/**
 * The same walk as hashTextFeatures, scoring as it goes: each feature's signed
 * weight (weights[hash & mask], negated when the hash's sign bit is set) is added
 * to sums[group] and counts[group] counts it, in the same order as the sink would
 * receive them, so the sums are the same to the last bit. Written out a second
 * time because this runs on the send path for every message, where a call per
 * feature through a sink (and the module state it updates) costs measurably: with
 * the rule features by slot, the classifier went from 25.6 to 18.1 ms per MB
 * (bench, README). phi-features.test.ts checks the two walks agree on every corpus
 * message.
 */
export const scoreTextFeatures = (
  low: string,
  subjectEnd: number,
  weights: Float32Array,
  mask: number,
  sums: Float64Array,
  counts: Float64Array,
) => {
  const n = low.length;
  let prev = 0;
  let i = 0;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let n0 = 0;
  let n1 = 0;
  let n2 = 0;
  let n3 = 0;
  while (i < n) {
    let c = low.charCodeAt(i);
    if (!(isLetter(c) || isDigit(c))) {
      i++;
      continue;
    }
    const start = i;
    let h = FNV;
    let c1 = 0;
    let c2 = 0;
    let c3 = BOUND;
    let len = 0;
    while (i < n) {
      c = low.charCodeAt(i);
      if (isDigit(c)) c = 48;
      else if (!isLetter(c)) break;
      h = Math.imul(h ^ c, 0x01000193);
      len++;
      if (len >= 3) {
        const g = fmix(Math.imul(c1, 0x9e3779b1) ^ Math.imul(c2, 0x85ebca77) ^ Math.imul(c3, 0xc2b2ae3d) ^ Math.imul(c, 0x27d4eb2f));
        s2 += g < 0 ? -weights[g & mask]! : weights[g & mask]!;
        n2++;
      }
      c1 = c2;
      c2 = c3;
      c3 = c;
      i++;
    }
    if (len >= 2) {
      const g = fmix(Math.imul(c1, 0x9e3779b1) ^ Math.imul(c2, 0x85ebca77) ^ Math.imul(c3, 0xc2b2ae3d) ^ Math.imul(BOUND + 1, 0x27d4eb2f));
      s2 += g < 0 ? -weights[g & mask]! : weights[g & mask]!;
      n2++;
    }
    const w = fmix(h);
    s0 += w < 0 ? -weights[w & mask]! : weights[w & mask]!;
    n0++;
    if (prev !== 0) {
      const b = fmix(Math.imul(prev, 0x2c1b3c6d) ^ h);
      s1 += b < 0 ? -weights[b & mask]! : weights[b & mask]!;
      n1++;
    }
    if (start < subjectEnd) {
      const t = fmix(h ^ 0x5bd1e995);
      s3 += t < 0 ? -weights[t & mask]! : weights[t & mask]!;
      n3++;
    }
    prev = h;
  }
  sums[0] = s0;
  sums[1] = s1;
  sums[2] = s2;
  sums[3] = s3;
  counts[0] = n0;
  counts[1] = n1;
  counts[2] = n2;
  counts[3] = n3;
};

/** The names of the rule features, in vector order. */
export const RULE_FEATURES: readonly string[] = [
  'bias.rules',
  'rules.phi',
  ...DISCLOSURES.map((d) => `disclosure.${d}`),
  'identifier.any',
  'identifier.ssn',
  'identifier.mrn',
  'identifier.health_plan_id',
  'identifier.account_number',
  'part2',
  'broadcast',
  'about.recipient',
  'about.named',
  'about.nobody',
  'subject_phi',
  ...SENSITIVITIES.map((s) => `sensitivity.${s}`),
  'confidence.weak',
  'disclosures.two_or_more',
  'cues.subject',
  ...FINDING_TYPES.map((t) => `span.${t}`),
];
const RULE_INDEX = new Map(RULE_FEATURES.map((n, i) => [n, i]));
const SPAN_INDEX = new Map(FINDING_TYPES.map((t) => [t as string, RULE_INDEX.get(`span.${t}`)!]));
const SPAN_SLOTS = [...SPAN_INDEX.values()];
/** The slot of `${prefix}.${value}` for every value, looked up once here instead of a name built per message. */
const slotsOf = (prefix: string, values: readonly string[]) => {
  const m = new Map<string, number>();
  for (const v of values) {
    const i = RULE_INDEX.get(`${prefix}.${v}`);
    if (i !== undefined) m.set(v, i);
  }
  return m;
};
const DISCLOSURE_SLOT = slotsOf('disclosure', DISCLOSURES);
const IDENTIFIER_SLOT = slotsOf('identifier', IDENTIFIER_TYPES);
const ABOUT_SLOT = slotsOf('about', ['recipient', 'named', 'nobody']);
const SENSITIVITY_SLOT = slotsOf('sensitivity', SENSITIVITIES);
const slot = (name: string) => RULE_INDEX.get(name)!;
const BIAS = slot('bias.rules');
const PHI = slot('rules.phi');
const ID_ANY = slot('identifier.any');
const PART2 = slot('part2');
const BROADCAST = slot('broadcast');
const SUBJECT_PHI = slot('subject_phi');
const WEAK = slot('confidence.weak');
const TWO_OR_MORE = slot('disclosures.two_or_more');
const CUES_SUBJECT = slot('cues.subject');

/** Sets slot `i` of `x` when there is one (a module function: no closure per message). */
const setSlot = (x: Float32Array, i: number | undefined) => {
  if (i !== undefined) x[i] = 1;
};

/** Fills `x` (RULE_FEATURES.length long) with the rule features of an assessment (see ruleFeatures). */
export const ruleFeaturesInto = (a: Assessment, x: Float32Array): Float32Array => {
  x.fill(0);
  x[BIAS] = 1;
  if (a.phi) x[PHI] = 1;
  for (const d of a.disclosures) setSlot(x, DISCLOSURE_SLOT.get(d));
  if (a.identifiers.length > 0) x[ID_ANY] = 1;
  for (const t of a.identifiers) setSlot(x, IDENTIFIER_SLOT.get(t));
  if (a.part2) x[PART2] = 1;
  if (a.broadcast) x[BROADCAST] = 1;
  setSlot(x, ABOUT_SLOT.get(a.about));
  if (a.subjectPhi) x[SUBJECT_PHI] = 1;
  setSlot(x, SENSITIVITY_SLOT.get(a.sensitivity));
  if (a.phi && a.confidence < 0.7) x[WEAK] = 1;
  if (a.disclosures.length >= 2) x[TWO_OR_MORE] = 1;
  for (const c of a.cues)
    if (c.field === 'subject') {
      x[CUES_SUBJECT] = 1;
      break;
    }
  for (const f of a.findings) {
    const i = SPAN_INDEX.get(f.type);
    if (i !== undefined) x[i]! += 1;
  }
  for (const i of SPAN_SLOTS) if (x[i]! > 0) x[i] = Math.log1p(x[i]!);
  return x;
};

/** The rule features of an assessment (0/1, span types as log(1 + count)). */
export const ruleFeatures = (a: Assessment): Float32Array => ruleFeaturesInto(a, new Float32Array(RULE_FEATURES.length));
