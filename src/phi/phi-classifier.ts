import weightsFile from './phi-classifier-weights.json' with { type: 'json' };
import type { Assessment } from './phi-context.js';
import { RULE_FEATURES, ruleFeaturesInto, scoreTextFeatures, TEXT_GROUPS } from './phi-features.js';

/**
 * The trained message-level classifier, the default hold decision: logistic
 * regression over hashed words, bigrams, character 4-grams and subject words
 * plus the rules' judgement as features (phi-features.ts), trained by
 * scripts/train-phi.ts (fixed seed) on the labelled corpus eval/phi-messages;
 * its weights are data (phi-classifier-weights.json), loaded with the module.
 *
 * Combining with the rules: the rules stay authoritative where they are exact.
 * Part 2 content and a sensitive identifier the rules found (SSN, MRN, member,
 * plan or patient-account number in a valid format after its label) hold
 * whatever the classifier says. Otherwise the classifier decides: at or above
 * its threshold (one where the rules found health information tied to a
 * person, another where they found none, where the text's own part of the
 * score must also point to a hold) the message holds as health information tied to a person
 * (`high`); below it, whatever clinical words the rules saw, it passes as `low`
 * (a name, a date) or `none`. The span findings and cues stay for the reviewer's
 * highlights. The reasons cite the features that weighed most, by name (rule
 * features, or a text group such as "text.words"), never the words themselves.
 */

export type ClassifierModel = {
  bits: number;
  /** Each text group is scaled by 1/sqrt(max(count, normFloor)). */
  normFloor: number;
  bias: number;
  /** The hold threshold where the rules found health information tied to a person. */
  threshold: number;
  /** The hold threshold where the rules found none (chosen apart by cross-validation). */
  thresholdAlone: number;
  /** Where the rules found none, a hold also needs the text features' part of the logit above this (null: no such bar). */
  textEvidence: number | null;
  /** 2^bits weights of the hashed text features. */
  text: Float32Array;
  /** One weight per RULE_FEATURES entry. */
  rules: Float32Array;
};

export type ClassifierWeightsFile = {
  format: 'mailward-phi-linear/1';
  bits: number;
  norm_floor?: number;
  bias: number;
  threshold: number;
  threshold_alone?: number;
  text_evidence?: number | null;
  /** Text weights quantised to int16: weight = value * text_scale. */
  text_scale: number;
  /** Little-endian int16 array, base64. */
  text_weights: string;
  rule_weights: Record<string, number>;
  [meta: string]: unknown;
};

/** Decodes a weights file (phi-classifier-weights.json); throws on a malformed one. */
export const decodeWeights = (f: ClassifierWeightsFile): ClassifierModel => {
  if (f.format !== 'mailward-phi-linear/1') throw new Error(`phi classifier weights: unknown format ${String(f.format)}`);
  const buf = Buffer.from(f.text_weights, 'base64');
  const size = 1 << f.bits;
  if (buf.length !== size * 2) throw new Error(`phi classifier weights: ${buf.length} bytes of text weights, expected ${size * 2}`);
  const text = new Float32Array(size);
  for (let i = 0; i < size; i++) text[i] = buf.readInt16LE(i * 2) * f.text_scale;
  const rules = new Float32Array(RULE_FEATURES.length);
  RULE_FEATURES.forEach((name, i) => {
    rules[i] = f.rule_weights[name] ?? 0;
  });
  return {
    bits: f.bits,
    normFloor: f.norm_floor ?? 1,
    bias: f.bias,
    threshold: f.threshold,
    thresholdAlone: f.threshold_alone ?? f.threshold,
    textEvidence: f.text_evidence ?? null,
    text,
    rules,
  };
};

/** Quantises a model's text weights for the weights file. */
export const encodeTextWeights = (text: Float32Array): { text_scale: number; text_weights: string } => {
  let max = 0;
  for (const w of text) max = Math.max(max, Math.abs(w));
  const scale = max > 0 ? max / 32767 : 1;
  const buf = Buffer.alloc(text.length * 2);
  for (let i = 0; i < text.length; i++) buf.writeInt16LE(Math.round(text[i]! / scale), i * 2);
  return { text_scale: scale, text_weights: buf.toString('base64') };
};

export const DEFAULT_CLASSIFIER: ClassifierModel = decodeWeights(weightsFile as ClassifierWeightsFile);

export type ClassifierScore = {
  probability: number;
  /** The text features' part of the logit: the text's own evidence, apart from the rules and the bias. */
  textLogit: number;
  /** The features that weighed most towards a hold, by name, largest first (at most three). */
  top: string[];
};

const TEXT_NAMES = TEXT_GROUPS.map((g) => `text.${g}`);
const RULE_NAMES = RULE_FEATURES.map((r) => `rule.${r}`);
// Buffers for every call (scoring is synchronous): no arrays allocated per message.
const sums = new Float64Array(TEXT_GROUPS.length);
const counts = new Float64Array(TEXT_GROUPS.length);
const ruleX = new Float32Array(RULE_FEATURES.length);

/**
 * The three largest positive contributions, largest first (a tie keeps the earlier one first), kept by insertion in
 * buffers of the module (scoring is synchronous): no arrays grown and spliced per message, no closure per message.
 */
const topValues = new Float64Array(3);
const topNames: string[] = ['', '', ''];
let topCount = 0;
/** Keeps `name` among the three largest positive contributions (see topValues). */
const consider = (name: string, c: number) => {
  if (c <= 0) return;
  let k = topCount;
  while (k > 0 && topValues[k - 1]! < c) k--;
  if (k >= 3) return;
  for (let j = Math.min(topCount, 2); j > k; j--) {
    topValues[j] = topValues[j - 1]!;
    topNames[j] = topNames[j - 1]!;
  }
  topValues[k] = c;
  topNames[k] = name;
  if (topCount < 3) topCount++;
};

/**
 * The classifier's probability that the message should be held, and the features that weighed most.
 * `low` is `full` lower-cased (the judgement has it already; computed here when not given).
 */
export const scoreMessage = (
  model: ClassifierModel,
  rules: Assessment,
  full: string,
  subjectEnd: number,
  low: string = full.toLowerCase(),
): ClassifierScore => {
  scoreTextFeatures(low, subjectEnd, model.text, (1 << model.bits) - 1, sums, counts);
  let z = model.bias;
  let textLogit = 0;
  // The three largest positive contributions, kept by insertion (no array of all of them, no sort).
  topCount = 0;
  for (let g = 0; g < TEXT_GROUPS.length; g++) {
    if (counts[g]! === 0) continue;
    const c = sums[g]! / Math.sqrt(Math.max(model.normFloor, counts[g]!));
    z += c;
    textLogit += c;
    consider(TEXT_NAMES[g]!, c);
  }
  const x = ruleFeaturesInto(rules, ruleX);
  for (let i = 0; i < x.length; i++) {
    if (x[i] === 0) continue;
    const c = x[i]! * model.rules[i]!;
    z += c;
    consider(RULE_NAMES[i]!, c);
  }
  const top = topNames.slice(0, topCount);
  return { probability: 1 / (1 + Math.exp(-z)), textLogit, top };
};

/** Rule findings that hold whatever the classifier says: Part 2, and sensitive identifiers in a valid format. */
export const exactRuleHold = (rules: Assessment) => rules.part2 || rules.identifiers.length > 0;

const OWNER_BEFORE_RE = /\b(?:your|my)\s+$/i;
/**
 * A condition or medication said to be a named reader's own ("Hello Kalani Delgado, ... no changes in your heart
 * failure"): health information tied to an identified person outright (45 CFR 160.103), which the classifier may not
 * release (fail closed). Needs a name found with confidence and "your"/"my" right before the term; `full` is the
 * subject + "\n" + body the cues' offsets point into.
 */
export const ownedDisclosure = (rules: Assessment, full: string, subjectEnd: number) => {
  if (!rules.phi) return false;
  let owned = false;
  for (const c of rules.cues) {
    if (c.disclosure !== 'condition' && c.disclosure !== 'medication') continue;
    const at = c.field === 'subject' ? c.start : c.field === 'text' ? subjectEnd + 1 + c.start : -1;
    if (at > 0 && OWNER_BEFORE_RE.test(full.slice(Math.max(0, at - 8), at))) {
      owned = true;
      break;
    }
  }
  return owned && rules.findings.some((f) => f.type === 'name' && f.confidence >= 0.75);
};

/** The rules' assessment with the classifier's decision (see the module comment). */
export const classifyMessage = (
  rules: Assessment,
  full: string,
  subjectEnd: number,
  model: ClassifierModel = DEFAULT_CLASSIFIER,
  low: string = full.toLowerCase(),
): Assessment => {
  const { probability, textLogit, top } = scoreMessage(model, rules, full, subjectEnd, low);
  const threshold = rules.phi ? model.threshold : model.thresholdAlone;
  const classifier = { probability, threshold, top };
  if (exactRuleHold(rules) || ownedDisclosure(rules, full, subjectEnd)) return { ...rules, classifier };
  // Where the rules found nothing, the text itself must point to a hold (not just the base rate of a short message).
  const evidence = rules.phi || model.textEvidence === null || textLogit > model.textEvidence;
  if (probability >= threshold && evidence) {
    return {
      ...rules,
      phi: true,
      sensitivity: 'high',
      about: rules.about === 'nobody' ? 'recipient' : rules.about,
      confidence: probability,
      classifier,
    };
  }
  const hasSpans = rules.findings.length > 0;
  return {
    ...rules,
    phi: false,
    disclosures: [],
    subjectPhi: false,
    sensitivity: hasSpans ? 'low' : 'none',
    confidence: 1 - probability,
    classifier,
  };
};
