import { DISCLOSURES } from './phi-context-lexicon.js';
import type { Assessment } from './phi-context.js';
import { FINDING_TYPES, SENSITIVITIES } from './phi-types.js';

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

/** The rule features of an assessment (0/1, span types as log(1 + count)). */
export const ruleFeatures = (a: Assessment): Float32Array => {
  const x = new Float32Array(RULE_FEATURES.length);
  const set = (name: string, v = 1) => {
    const i = RULE_INDEX.get(name);
    if (i !== undefined) x[i] = v;
  };
  set('bias.rules');
  if (a.phi) set('rules.phi');
  for (const d of a.disclosures) set(`disclosure.${d}`);
  if (a.identifiers.length > 0) set('identifier.any');
  for (const t of a.identifiers) set(`identifier.${t}`);
  if (a.part2) set('part2');
  if (a.broadcast) set('broadcast');
  set(`about.${a.about}`);
  if (a.subjectPhi) set('subject_phi');
  set(`sensitivity.${a.sensitivity}`);
  if (a.phi && a.confidence < 0.7) set('confidence.weak');
  if (a.disclosures.length >= 2) set('disclosures.two_or_more');
  if (a.cues.some((c) => c.field === 'subject')) set('cues.subject');
  for (const f of a.findings) {
    const i = SPAN_INDEX.get(f.type);
    if (i !== undefined) x[i]! += 1;
  }
  for (const i of SPAN_INDEX.values()) if (x[i]! > 0) x[i] = Math.log1p(x[i]!);
  return x;
};
