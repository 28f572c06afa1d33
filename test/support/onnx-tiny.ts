/**
 * Writes a tiny ONNX model for the tests: a linear text classifier over a
 * bag-of-words vector, y = sigmoid(x · W + b), as ModelProto bytes. There is
 * no ONNX writer for Node that is kept up (the `onnx` Python package is not on
 * these machines, and onnx-proto pins protobuf.js 6), so this is a minimal
 * protobuf encoder of the few fields the model needs, written from the field
 * numbers in onnx/onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto,
 * ValueInfoProto, TypeProto, TensorShapeProto, OperatorSetIdProto). The test
 * then loads it with onnxruntime-node, an independent implementation: a wrong
 * encoding fails there, not here.
 */

const varint = (n: number): number[] => {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
};
/** Protobuf wire types: 0 varint, 2 length-delimited. */
const key = (field: number, wire: 0 | 2) => varint((field << 3) | wire);
const int = (field: number, n: number) => [...key(field, 0), ...varint(n)];
const bytes = (field: number, b: Uint8Array | number[]) => [...key(field, 2), ...varint(b.length), ...b];
const str = (field: number, s: string) => bytes(field, [...Buffer.from(s, 'utf8')]);
const msg = (field: number, parts: number[][]) => bytes(field, parts.flat());

const FLOAT = 1;

/** TypeProto.Tensor of floats with the given dims. */
const tensorType = (dims: number[]) =>
  msg(2, [
    msg(1, [
      int(1, FLOAT),
      msg(
        2,
        dims.map((d) => msg(1, [int(1, d)])),
      ),
    ]),
  ]);
const valueInfo = (field: number, name: string, dims: number[]) => msg(field, [str(1, name), tensorType(dims)]);
const initializer = (name: string, dims: number[], values: number[]) => {
  const raw = Buffer.alloc(values.length * 4);
  for (const [i, v] of values.entries()) raw.writeFloatLE(v, i * 4);
  // TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9 (little-endian).
  return msg(5, [...dims.map((d) => int(1, d)), int(2, FLOAT), str(8, name), bytes(9, raw)]);
};
const node = (op: string, inputs: string[], outputs: string[], name: string) =>
  msg(1, [...inputs.map((i) => str(1, i)), ...outputs.map((o) => str(2, o)), str(3, name), str(4, op)]);

/** A linear classifier: `weights[i]` for vocabulary word i, `bias`; input `input` [1, V], output `output` [1, 1]. */
export const tinyLinearClassifier = (weights: number[], bias: number, names = { input: 'input', output: 'output' }): Uint8Array => {
  const v = weights.length;
  const graph = [
    node('MatMul', [names.input, 'W'], ['z'], 'matmul'),
    node('Add', ['z', 'B'], ['logit'], 'add'),
    node('Sigmoid', ['logit'], [names.output], 'sigmoid'),
    str(2, 'tiny_phi_classifier'),
    initializer('W', [v, 1], weights),
    initializer('B', [1], [bias]),
    valueInfo(11, names.input, [1, v]),
    valueInfo(12, names.output, [1, 1]),
  ];
  // ModelProto: ir_version = 1, producer_name = 2, graph = 7, opset_import = 8 (domain "" = ai.onnx, version 13).
  return Uint8Array.from([...int(1, 8), ...str(2, 'mailward-test'), ...msg(7, graph), ...msg(8, [str(1, ''), int(2, 13)])]);
};
