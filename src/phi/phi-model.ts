import fs from 'node:fs';
import { z } from 'zod';
import { AppError } from '../kernel/errors.js';
import type { Assessment } from './phi-context.js';
import { hashTextFeatures, RULE_FEATURES, ruleFeatures, TEXT_GROUPS } from './phi-features.js';

/**
 * An optional local text classifier in ONNX, run with onnxruntime-node on the
 * CPU, that the operator points to with MAILWARD_PHI_MODEL. Nothing is ever
 * downloaded: the model and its sidecar are files on this machine, loaded once
 * at start. A configured model that cannot be loaded stops the start (fail
 * closed): the operator asked for it, so running without it silently would
 * weaken the screen they chose.
 *
 * The model reads one of two inputs, as its sidecar (`<model>.json`, next to
 * `<model>.onnx`) says: `mailward-phi-features`, the default classifier's own
 * feature vector (hashed text features and rule features; how the committed model
 * is exported, `npm run export:phi-onnx`), or `bag-of-words-classifier`, whose
 * sidecar lists the vocabulary: word i of the vocabulary counts into
 * position i of a float tensor [1, V] (lower-cased words of letters and digits).
 * Its output is either one probability [1, 1] (a sigmoid) or one per label
 * [1, L] (a softmax), with `hold_label` naming the label that means "hold".
 * A linear or small MLP classifier exported from scikit-learn or PyTorch fits.
 *
 * Combining with the rules: the rules stay authoritative for identifiers and
 * Part 2; the model can only add. A probability at or above `threshold` on a
 * message the rules let pass (and that is not an announcement to everyone)
 * makes it `high` with the model's probability recorded; on a message the
 * rules hold, it raises the confidence. The model never releases a hold.
 */
export type PhiModelConfig = { phi: { modelPath: string | null } };

const common = {
  input: z.string().min(1).default('input'),
  output: z.string().min(1).default('output'),
  labels: z.array(z.string().min(1)).min(1).max(64).default(['hold']),
  hold_label: z.string().min(1).default('hold'),
  threshold: z.number().min(0).max(1).default(0.5),
};
const sidecarSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('bag-of-words-classifier'), vocabulary: z.array(z.string().min(1)).min(1).max(1_000_000), ...common }),
  /**
   * The default classifier's own features (phi-features.ts): 2^bits hashed text features (each group scaled by
   * 1/sqrt(max(count, norm_floor))), then the rule features in RULE_FEATURES order; input [1, 2^bits + rules].
   * `npm run export:phi-onnx` writes the committed model this way (README).
   */
  z.strictObject({
    kind: z.literal('mailward-phi-features'),
    bits: z.number().int().min(8).max(24),
    norm_floor: z.number().min(1).default(1),
    rule_features: z.array(z.string()),
    ...common,
  }),
]);
export type PhiModelSidecar = z.input<typeof sidecarSchema>;

export type PhiModel = {
  /** Probability (0..1) that the text ("subject\nbody") should be held; `rules` feeds the rule features of a mailward-phi-features model. */
  probability: (text: string, rules?: Assessment) => Promise<number>;
  /**
   * The assessment (rules and the default classifier), with what the model adds (see the module comment);
   * `rulesAlone` (assessRules) feeds a mailward-phi-features model's rule features.
   */
  combine: (rules: Assessment, text: string, rulesAlone?: Assessment) => Promise<Assessment>;
  threshold: number;
  release: () => Promise<void>;
};

const modelError = (detail: string) => new AppError('phi_model_unavailable', 500, `MAILWARD_PHI_MODEL: ${detail}`);

/** The sidecar of `model.onnx` is `model.json`. */
export const sidecarPathOf = (modelPath: string) => modelPath.replace(/\.onnx$/i, '') + '.json';

const WORD_RE = /[\p{L}\p{N}]+(?:['’][\p{L}]+)?/gu;

/**
 * Loads the model at start; null when none is configured. Throws AppError
 * `phi_model_unavailable` (naming MAILWARD_PHI_MODEL) when the file or its
 * sidecar is missing or invalid, or onnxruntime-node cannot load it.
 */
export const loadPhiModel = async (config: PhiModelConfig): Promise<PhiModel | null> => {
  const modelPath = config.phi.modelPath;
  if (!modelPath) return null;
  if (!fs.existsSync(modelPath)) throw modelError(`no model file at ${modelPath}`);
  const sidecarPath = sidecarPathOf(modelPath);
  if (!fs.existsSync(sidecarPath)) throw modelError(`no sidecar ${sidecarPath} (vocabulary and labels) next to the model`);
  let sidecar: z.output<typeof sidecarSchema>;
  try {
    sidecar = sidecarSchema.parse(JSON.parse(fs.readFileSync(sidecarPath, 'utf8')));
  } catch (e) {
    throw modelError(
      `sidecar ${sidecarPath} is invalid (${e instanceof z.ZodError ? e.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : 'not JSON'})`,
    );
  }
  const holdIndex = sidecar.labels.indexOf(sidecar.hold_label);
  if (holdIndex < 0) throw modelError(`hold_label "${sidecar.hold_label}" is not one of the sidecar's labels`);
  let ort: typeof import('onnxruntime-node');
  try {
    // Loaded only when a model is configured: the native binding ships in the npm package (CPU only).
    ort = await import('onnxruntime-node');
  } catch (e) {
    throw modelError(`onnxruntime-node could not be loaded (${(e as Error).message})`);
  }
  let session: import('onnxruntime-node').InferenceSession;
  try {
    session = await ort.InferenceSession.create(fs.readFileSync(modelPath), { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  } catch (e) {
    throw modelError(`onnxruntime could not load ${modelPath} (${(e as Error).message.split('\n')[0]})`);
  }
  if (!session.inputNames.includes(sidecar.input) || !session.outputNames.includes(sidecar.output))
    throw modelError(
      `the model's input/output names are ${session.inputNames.join(',')} / ${session.outputNames.join(',')}, not ${sidecar.input} / ${sidecar.output}`,
    );
  let vectorOf: (text: string, rules: Assessment | null) => Float32Array;
  if (sidecar.kind === 'bag-of-words-classifier') {
    const index = new Map(sidecar.vocabulary.map((w, i) => [w.toLowerCase(), i]));
    const size = sidecar.vocabulary.length;
    vectorOf = (text) => {
      const x = new Float32Array(size);
      for (const m of text.toLowerCase().matchAll(WORD_RE)) {
        const i = index.get(m[0]);
        if (i !== undefined) x[i]! += 1;
      }
      return x;
    };
  } else {
    if (sidecar.rule_features.join('\n') !== RULE_FEATURES.join('\n'))
      throw modelError("the sidecar's rule_features are not this version's (re-export the model with npm run export:phi-onnx)");
    const size = 1 << sidecar.bits;
    const { norm_floor: floor } = sidecar;
    vectorOf = (text, rules) => {
      const x = new Float32Array(size + RULE_FEATURES.length);
      const idx: number[] = [];
      const grp: number[] = [];
      const counts = new Array<number>(TEXT_GROUPS.length).fill(0);
      const nl = text.indexOf('\n');
      hashTextFeatures(text.toLowerCase(), Math.max(0, nl), {
        add: (h, g) => {
          idx.push(h);
          grp.push(g);
          counts[g]!++;
        },
      });
      for (let k = 0; k < idx.length; k++) {
        const h = idx[k]!;
        x[h & (size - 1)]! += (h < 0 ? -1 : 1) / Math.sqrt(Math.max(floor, counts[grp[k]!]!));
      }
      if (rules) x.set(ruleFeatures(rules), size);
      return x;
    };
  }

  const score = async (text: string, rules: Assessment | null): Promise<number> => {
    const x = vectorOf(text, rules);
    const out = await session.run({ [sidecar.input]: new ort.Tensor('float32', x, [1, x.length]) });
    const y = out[sidecar.output]!.data as Float32Array;
    const p = y.length === 1 ? y[0]! : y[holdIndex]!;
    return Number.isFinite(p) ? Math.min(1, Math.max(0, p)) : 0;
  };

  const probability = (text: string, rules?: Assessment) => score(text, rules ?? null);
  const combine = async (rules: Assessment, text: string, rulesAlone: Assessment = rules): Promise<Assessment> => {
    const p = await score(text, rulesAlone);
    if (rules.phi) return { ...rules, confidence: Math.max(rules.confidence, p), modelProbability: p };
    if (p >= sidecar.threshold && !rules.broadcast)
      return { ...rules, phi: true, sensitivity: 'high', about: 'recipient', confidence: p, modelProbability: p };
    return { ...rules, modelProbability: p };
  };

  return { probability, combine, threshold: sidecar.threshold, release: () => session.release() };
};
