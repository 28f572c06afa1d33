/**
 * `npm run export:phi-onnx -- OUT.onnx`: writes the committed default classifier
 * (src/phi/phi-classifier-weights.json) as an ONNX model, y = sigmoid(x · W + b),
 * with its sidecar OUT.json (kind `mailward-phi-features`), for an operator who
 * wants to run it, or a model retrained from it, through MAILWARD_PHI_MODEL
 * (src/phi/phi-model.ts), or to inspect it with ONNX tools. The input x is the
 * classifier's own feature vector: 2^bits hashed text features, then the rule
 * features. The sidecar's threshold is the classifier's threshold where the
 * rules found nothing (the one case where a configured model adds a hold).
 *
 * The ONNX bytes come from the minimal protobuf encoder of test/support/onnx-tiny.ts
 * (no ONNX writer for Node is kept up; onnxruntime-node, which reads them, is independent).
 */
import fs from 'node:fs';
import { DEFAULT_CLASSIFIER } from '../src/phi/phi-classifier.js';
import { RULE_FEATURES } from '../src/phi/phi-features.js';
import { tinyLinearClassifier } from '../test/support/onnx-tiny.js';

const out = process.argv[2];
if (!out?.endsWith('.onnx')) {
  console.error('usage: export-phi-onnx.ts OUT.onnx');
  process.exit(2);
}
const m = DEFAULT_CLASSIFIER;
const weights = [...m.text, ...m.rules];
fs.writeFileSync(out, tinyLinearClassifier(weights, m.bias));
const sidecar = {
  kind: 'mailward-phi-features',
  bits: m.bits,
  norm_floor: m.normFloor,
  rule_features: RULE_FEATURES,
  threshold: m.thresholdAlone,
};
fs.writeFileSync(out.replace(/\.onnx$/, '.json'), `${JSON.stringify(sidecar, null, 2)}\n`);
console.log(`wrote ${out} (${weights.length} weights) and its sidecar`);
