/**
 * The ONNX export (src/onnx/export.ts) as a protobuf document: it round-trips through @bufbuild/protobuf
 * (encode → decode → equal), has the graph interface onnxruntime and any ONNX tool expect, one f32 initializer
 * per checkpoint tensor under its HF name with the checkpoint's bytes, and a well-formed graph (every node
 * input defined before use, only standard opset-17 ops). The numbers themselves are checked in Deno against
 * onnxruntime-web and the HF references (test/gpu/onnx.test.ts).
 */
import { equals, fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, type TensorProto, TensorProto_DataType, type ValueInfoProto } from 'onnx-buf';
import { describe, expect, it } from 'vitest';
import { WeightMismatchError } from '../../src/errors.ts';
import { expectedTensors, parseOptConfig } from '../../src/model/config.ts';
import { fromFloat32, toFloat32 } from '../../src/model/weights/dtype.ts';
import { syntheticTensors } from '../../src/model/weights/synthetic.ts';
import type { TensorMap } from '../../src/model/weights/types.ts';
import { buildOptOnnxModel, encodeOnnxModel, exportOptOnnx, ONNX_INPUT, ONNX_LAST_OUTPUT, ONNX_OPSET, ONNX_OUTPUT } from '../../src/onnx/export.ts';
import { readFixtureJson } from './helpers/node.ts';

const STANDARD_OPS = new Set([
  'Add', 'Concat', 'Gather', 'Gemm', 'Greater', 'LayerNormalization', 'MatMul', 'Mul', 'Range', 'Relu', 'Reshape', 'Shape',
  'Slice', 'Softmax', 'Sub', 'Transpose', 'Unsqueeze', 'Where',
]);

async function fixture(set: string) {
  const configJson = await readFixtureJson<Record<string, unknown>>(`${set}/config.json`);
  const config = parseOptConfig(configJson);
  return { configJson, config, tensors: syntheticTensors(config, 1) };
}

function dims(v: ValueInfoProto): Array<string | number> {
  if (v.type?.value.case !== 'tensorType') throw new Error(`${v.name} is not a tensor`);
  return v.type.value.value.shape!.dim.map((d) => (d.value.case === 'dimParam' ? d.value.value : Number(d.value.value)));
}
/** Byte equality without vitest's element-by-element diffing (slow on large arrays). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
function elemType(v: ValueInfoProto): number {
  if (v.type?.value.case !== 'tensorType') throw new Error(`${v.name} is not a tensor`);
  return v.type.value.value.elemType;
}

describe('ONNX export of OPT', () => {
  for (const set of ['opt-tiny', 'opt-tiny-postln']) {
    it(`${set}: round-trips through protobuf with the expected interface and initializers`, async () => {
      const { configJson, config, tensors } = await fixture(set);
      const model = buildOptOnnxModel(config, tensors);
      const bytes = encodeOnnxModel(model);
      expect(sameBytes(bytes, exportOptOnnx({ configJson, tensors }))).toBe(true);
      const back = fromBinary(ModelProtoSchema, bytes);
      expect(equals(ModelProtoSchema, back, model)).toBe(true);
      expect(sameBytes(encodeOnnxModel(back), bytes)).toBe(true);

      expect(back.irVersion).toBe(8n);
      expect(back.opsetImport.map((o) => [o.domain, o.version])).toEqual([['', BigInt(ONNX_OPSET)]]);
      const g = back.graph!;
      expect(g.input.map((v) => v.name)).toEqual([ONNX_INPUT]);
      expect(elemType(g.input[0])).toBe(TensorProto_DataType.INT64);
      expect(dims(g.input[0])).toEqual(['batch', 'sequence']);
      expect(g.output.map((v) => v.name)).toEqual([ONNX_OUTPUT]);
      expect(elemType(g.output[0])).toBe(TensorProto_DataType.FLOAT);
      expect(dims(g.output[0])).toEqual(['batch', 'sequence', config.vocabSize]);

      // One f32 initializer per checkpoint tensor (HF names, HF shapes, the same bytes), plus graph constants.
      const inits = new Map<string, TensorProto>(g.initializer.map((t) => [t.name, t]));
      expect(inits.size).toBe(g.initializer.length);
      const weights = [...inits.keys()].filter((n) => !n.startsWith('const.')).sort();
      expect(weights).toEqual([...expectedTensors(config).keys()].sort());
      for (const [name, shape] of expectedTensors(config)) {
        const t = inits.get(name)!;
        expect(t.dataType, name).toBe(TensorProto_DataType.FLOAT);
        expect(t.dims.map(Number), name).toEqual(shape);
        expect(sameBytes(t.rawData, tensors.get(name)!.bytes), name).toBe(true);
      }
      if (set === 'opt-tiny-postln') {
        expect(inits.has('model.decoder.project_in.weight')).toBe(true);
        expect(inits.has('model.decoder.final_layer_norm.weight')).toBe(false);
      }

      // A well-formed graph: standard ops only, every input defined before it is used, outputs unique,
      // and the graph output produced.
      const defined = new Set<string>([ONNX_INPUT, ...inits.keys()]);
      for (const node of g.node) {
        expect(node.domain).toBe('');
        expect(STANDARD_OPS.has(node.opType), node.opType).toBe(true);
        for (const i of node.input) expect(defined.has(i), `${node.name} reads undefined "${i}"`).toBe(true);
        for (const o of node.output) {
          expect(defined.has(o), `${o} defined twice`).toBe(false);
          defined.add(o);
        }
      }
      expect(defined.has(ONNX_OUTPUT)).toBe(true);
      // Nothing dead: every initializer and every node output is read by a node or is the graph output.
      const used = new Set<string>([ONNX_OUTPUT, ...g.node.flatMap((n) => n.input)]);
      for (const name of inits.keys()) expect(used.has(name), `initializer ${name} is unused`).toBe(true);
      for (const o of g.node.flatMap((n) => n.output)) expect(used.has(o), `${o} is never read`).toBe(true);
      const ops = g.node.map((n) => n.opType);
      expect(ops.filter((o) => o === 'LayerNormalization').length).toBe(2 * config.numLayers + (config.hasFinalLayerNorm ? 1 : 0));
      expect(ops.filter((o) => o === 'Softmax').length).toBe(config.numLayers);
    });
  }

  it('lastTokenOnly: output last_logits [batch, vocab], the same initializers', async () => {
    const { config, tensors } = await fixture('opt-tiny');
    const full = buildOptOnnxModel(config, tensors).graph!;
    const last = fromBinary(ModelProtoSchema, encodeOnnxModel(buildOptOnnxModel(config, tensors, { lastTokenOnly: true }))).graph!;
    expect(last.output.map((v) => v.name)).toEqual([ONNX_LAST_OUTPUT]);
    expect(dims(last.output[0])).toEqual(['batch', config.vocabSize]);
    const names = (g: typeof full) => g.initializer.map((t) => t.name).filter((n) => !n.startsWith('const.')).sort();
    expect(names(last)).toEqual(names(full));
    expect(last.node.some((n) => n.output.includes(ONNX_LAST_OUTPUT))).toBe(true);
    const used = new Set<string>([ONNX_LAST_OUTPUT, ...last.node.flatMap((n) => n.input)]);
    for (const t of last.initializer) expect(used.has(t.name), `initializer ${t.name} is unused`).toBe(true);
  });

  it('converts f16 weights to f32 and uses an untied lm_head.weight', async () => {
    const { config, tensors } = await fixture('opt-tiny');
    const half: TensorMap = new Map([...tensors].map(([n, t]) => [n, fromFloat32(toFloat32(t), t.shape, 'F16')]));
    const emb = half.get('model.decoder.embed_tokens.weight')!;
    half.set('lm_head.weight', emb);
    const g = buildOptOnnxModel(config, half).graph!;
    const init = new Map(g.initializer.map((t) => [t.name, t]));
    const fc1 = init.get('model.decoder.layers.0.fc1.weight')!;
    expect(fc1.dataType).toBe(TensorProto_DataType.FLOAT);
    const values = new Float32Array(fc1.rawData.slice().buffer);
    expect(values).toEqual(toFloat32(half.get('model.decoder.layers.0.fc1.weight')!));
    expect(init.has('lm_head.weight')).toBe(true);
    expect(g.node.find((n) => n.opType === 'Gemm' && n.input[1] === 'lm_head.weight')).toBeDefined();
    expect(g.node.some((n) => n.opType === 'Gemm' && n.input[1] === 'model.decoder.embed_tokens.weight')).toBe(false);
  });

  it('names a missing or misshapen tensor', async () => {
    const { config, tensors } = await fixture('opt-tiny');
    const missing = new Map(tensors);
    missing.delete('model.decoder.layers.1.fc2.bias');
    expect(() => buildOptOnnxModel(config, missing)).toThrow(WeightMismatchError);
    expect(() => buildOptOnnxModel(config, missing)).toThrow(/layers\.1\.fc2\.bias/);
    const bad = new Map(tensors);
    const t = bad.get('model.decoder.layers.0.fc1.weight')!;
    bad.set('model.decoder.layers.0.fc1.weight', { ...t, shape: [t.shape[1], t.shape[0]] });
    expect(() => buildOptOnnxModel(config, bad)).toThrow(/fc1\.weight" has shape/);
  });
});
