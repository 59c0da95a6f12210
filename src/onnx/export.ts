/**
 * OPT → ONNX, in TypeScript: the prefill forward pass of an OPT checkpoint as a standard ONNX graph (opset 17),
 * built as an `onnx.ModelProto` with @bufbuild/protobuf and the message descriptors of the official onnx.proto
 * (the `onnx-buf` package). It is an independent oracle for Tandem's kernels: nothing here shares code with
 * the WebGPU forward pass except the checkpoint loader.
 *
 *   input_ids int64 [batch, sequence]  →  logits float32 [batch, sequence, vocab]
 *   (or, with lastTokenOnly, → last_logits float32 [batch, vocab]: each sequence's last position only)
 *
 * The graph follows Hugging Face's OPTForCausalLM with no KV cache (a fresh prompt, all positions attended):
 *   x = embed_tokens[ids] (→ project_in) + embed_positions[arange(T) + 2]
 *   per layer, pre-LN (125m):  x += out_proj(attn(LN1(x)));  x += fc2(relu(fc1(LN2(x))))
 *              post-LN (350m): x = LN1(x + out_proj(attn(x)));  x = LN2(x + fc2(relu(fc1(x))))
 *   (final_layer_norm) (→ project_out) → logits = x · embed_tokensᵀ  (or lm_head.weightᵀ when untied)
 * with attn = softmax(q kᵀ · headDim^-½ + causal mask) v over heads, exactly as HF's eager attention.
 *
 * Linear layers are `Gemm(x, W, b, transB=1)` on the [batch·sequence, features] activations, so the weights
 * stay in their HF [out, in] layout and the tied LM head reuses the embedding initializer (no transposed
 * copy). Every weight is an f32 initializer named as in the checkpoint; the few graph constants are
 * initializers named `const.*`.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import {
  type AttributeProto,
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  type TensorProto,
  TensorProto_DataType,
  TensorProtoSchema,
  type ValueInfoProto,
  ValueInfoProtoSchema,
} from 'onnx-buf';
import { expectedTensors, parseOptConfig, type OptConfig } from '../model/config.ts';
import { toFloat32 } from '../model/weights/dtype.ts';
import type { Checkpoint, HostTensor, TensorMap } from '../model/weights/types.ts';
import { WeightMismatchError } from '../errors.ts';

/** The ONNX opset the graph uses (LayerNormalization needs 17). */
export const ONNX_OPSET = 17;
/** The IR version that goes with opset 17. */
export const ONNX_IR_VERSION = 8;
/** Graph input and output names. */
export const ONNX_INPUT = 'input_ids';
export const ONNX_OUTPUT = 'logits';
/** The output name when only each sequence's last position gets logits ([batch, vocab]). */
export const ONNX_LAST_OUTPUT = 'last_logits';

export interface OnnxExportOptions {
  /** Layer-norm epsilon (HF OPT: 1e-5). */
  layerNormEps?: number;
  /** Graph name and doc string. */
  name?: string;
  /**
   * Compute logits only for each sequence's last position (output `last_logits` [batch, vocab]), as a serving
   * prefill does, instead of `logits` [batch, sequence, vocab] for every position. Default false.
   */
  lastTokenOnly?: boolean;
}

/** A small builder: nodes, initializers and fresh value names. */
class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private count = 0;

  /** Add a node with `numOutputs` fresh outputs (named after `label`); returns their names. */
  op(opType: string, inputs: string[], label: string, attrs: AttributeProto[] = [], numOutputs = 1): string[] {
    const outputs = Array.from({ length: numOutputs }, (_, i) => `${label}${numOutputs > 1 ? `.${i}` : ''}`);
    this.nodes.push(create(NodeProtoSchema, { name: `${label}#${this.count++}`, opType, input: inputs, output: outputs, attribute: attrs }));
    return outputs;
  }

  /** op() with one output. */
  op1(opType: string, inputs: string[], label: string, attrs: AttributeProto[] = []): string {
    return this.op(opType, inputs, label, attrs)[0];
  }

  /** An f32 initializer from raw little-endian bytes. */
  floatInit(name: string, dims: number[], bytes: Uint8Array): string {
    this.initializers.push(create(TensorProtoSchema, {
      name, dims: dims.map(BigInt), dataType: TensorProto_DataType.FLOAT, rawData: bytes as Uint8Array<ArrayBuffer>,
    }));
    return name;
  }

  /** An int64 initializer (shapes, indices). dims [] makes a scalar. */
  int64Init(name: string, dims: number[], values: number[]): string {
    this.initializers.push(create(TensorProtoSchema, {
      name, dims: dims.map(BigInt), dataType: TensorProto_DataType.INT64, int64Data: values.map(BigInt),
    }));
    return name;
  }

  /** An f32 scalar or vector initializer from numbers. */
  floatConst(name: string, dims: number[], values: number[]): string {
    this.initializers.push(create(TensorProtoSchema, {
      name, dims: dims.map(BigInt), dataType: TensorProto_DataType.FLOAT, floatData: values.map(Math.fround),
    }));
    return name;
  }
}

function attrInt(name: string, value: number): AttributeProto {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(value) });
}
function attrFloat(name: string, value: number): AttributeProto {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: Math.fround(value) });
}
function attrInts(name: string, values: number[]): AttributeProto {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: values.map(BigInt) });
}

/** A tensor ValueInfo with symbolic (string) or fixed (number) dimensions. */
function tensorInfo(name: string, elemType: TensorProto_DataType, dims: Array<string | number>): ValueInfoProto {
  return create(ValueInfoProtoSchema, {
    name,
    type: {
      value: {
        case: 'tensorType',
        value: {
          elemType,
          shape: {
            dim: dims.map((d) => (typeof d === 'string'
              ? { value: { case: 'dimParam' as const, value: d } }
              : { value: { case: 'dimValue' as const, value: BigInt(d) } })),
          },
        },
      },
    },
  });
}

/** The tensor's values as little-endian f32 bytes (a view when it is stored as f32 already). */
function f32Bytes(t: HostTensor): Uint8Array {
  if (t.dtype === 'F32') return t.bytes;
  const f = toFloat32(t);
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
}

/**
 * Build the ONNX model of OPT's prefill forward from a parsed config and the checkpoint's tensors (HF names,
 * any stored dtype; converted to f32). Throws WeightMismatchError when a tensor is missing or misshapen.
 */
export function buildOptOnnxModel(config: OptConfig, tensors: TensorMap, options: OnnxExportOptions = {}): ModelProto {
  const c = config;
  const eps = options.layerNormEps ?? 1e-5;
  const H = c.hiddenSize, E = c.wordEmbedProjDim, V = c.vocabSize, nH = c.numHeads, d = c.headDim;
  const g = new GraphBuilder();
  const shapes = expectedTensors(c);
  const tiedHead = !tensors.has('lm_head.weight');
  if (!tiedHead) shapes.set('lm_head.weight', [V, E]);
  /** The initializer for an HF tensor, added on first use, shape-checked. */
  const added = new Set<string>();
  const w = (name: string): string => {
    const t = tensors.get(name);
    const shape = shapes.get(name);
    if (!t) throw new WeightMismatchError(`ONNX export: the checkpoint has no tensor "${name}"`);
    if (!shape || shape.length !== t.shape.length || shape.some((s, i) => s !== t.shape[i])) {
      throw new WeightMismatchError(`ONNX export: "${name}" has shape [${t.shape}], expected [${shape}]`);
    }
    if (!added.has(name)) {
      g.floatInit(name, t.shape, f32Bytes(t));
      added.add(name);
    }
    return name;
  };
  const linear = (x: string, prefix: string, label: string, bias = true): string =>
    g.op1('Gemm', bias ? [x, w(`${prefix}.weight`), w(`${prefix}.bias`)] : [x, w(`${prefix}.weight`)], label, [attrInt('transB', 1)]);
  const layerNorm = (x: string, prefix: string, label: string): string =>
    g.op1('LayerNormalization', [x, w(`${prefix}.weight`), w(`${prefix}.bias`)], label, [attrInt('axis', -1), attrFloat('epsilon', eps)]);

  // ---- constants
  const cZero = g.int64Init('const.i64.0', [], [0]);
  const cOne = g.int64Init('const.i64.1', [], [1]);
  const cOffset = g.int64Init('const.position_offset', [], [c.positionOffset]);
  const cFlatH = g.int64Init('const.shape.flat_hidden', [2], [-1, H]);
  const cFlatE = g.int64Init('const.shape.flat_embed', [2], [-1, E]);
  const cHeads = g.int64Init('const.shape.heads', [3], [-1, nH, d]);
  const cHidden1 = g.int64Init('const.shape.hidden', [1], [H]);
  const cAxes0 = g.int64Init('const.axes.0', [1], [0]);
  const cAxes1 = g.int64Init('const.axes.1', [1], [1]);
  const cScale = g.floatConst('const.attn_scale', [], [Math.fround(d ** -0.5)]);
  const cMaskValue = g.floatConst('const.mask_min', [], [-3.4028234663852886e38]); // float32 lowest, as HF
  const cMaskZero = g.floatConst('const.mask_zero', [], [0]);

  // ---- shapes: [B, T] from the input
  const ids = ONNX_INPUT;
  const idsShape = g.op1('Shape', [ids], 'input_shape');
  const T = g.op1('Gather', [idsShape, cOne], 'seq_len', [attrInt('axis', 0)]); // scalar
  const batch1 = g.op1('Slice', [idsShape, cAxes0, cAxes1, cAxes0], 'batch_1d'); // [B]
  const shapeBTH = g.op1('Concat', [idsShape, cHidden1], 'shape.bth', [attrInt('axis', 0)]);
  const shapeHeads = g.op1('Concat', [batch1, cHeads], 'shape.b_t_heads_d', [attrInt('axis', 0)]); // [B, -1, nH, d]

  // ---- embeddings: tokens (+ project_in) + positions arange(T) + 2
  const dec = 'model.decoder.';
  const tok3 = g.op1('Gather', [w(dec + 'embed_tokens.weight'), ids], 'embed.tokens', [attrInt('axis', 0)]); // [B,T,E]
  let tok = g.op1('Reshape', [tok3, cFlatE], 'embed.tokens.flat'); // [N,E]
  if (E !== H) tok = linear(tok, dec + 'project_in', 'embed.project_in', false); // [N,H]
  const posEnd = g.op1('Add', [T, cOffset], 'positions.end');
  const positions = g.op1('Range', [cOffset, posEnd, cOne], 'positions'); // [T]
  const pos = g.op1('Gather', [w(dec + 'embed_positions.weight'), positions], 'embed.positions', [attrInt('axis', 0)]); // [T,H]
  const tokBTH = g.op1('Reshape', [tok, shapeBTH], 'embed.tokens.bth');
  const emb = g.op1('Add', [tokBTH, pos], 'embed.sum'); // [B,T,H]
  let x = g.op1('Reshape', [emb, cFlatH], 'hidden.0'); // [N,H]

  // ---- causal mask [T, T]: 0 where key <= query, float32 lowest above the diagonal
  const ar = g.op1('Range', [cZero, T, cOne], 'mask.arange'); // [T]
  const rows = g.op1('Unsqueeze', [ar, cAxes1], 'mask.rows'); // [T,1]
  const cols = g.op1('Unsqueeze', [ar, cAxes0], 'mask.cols'); // [1,T]
  const future = g.op1('Greater', [cols, rows], 'mask.future'); // [T,T] bool
  const mask = g.op1('Where', [future, cMaskValue, cMaskZero], 'mask'); // [T,T]

  // ---- decoder layers
  for (let l = 0; l < c.numLayers; l++) {
    const p = `${dec}layers.${l}.`;
    const L = `layer${l}.`;
    // self-attention block
    let residual = x;
    let h = c.layerNormBefore ? layerNorm(x, p + 'self_attn_layer_norm', L + 'attn_ln') : x;
    const heads = (proj: string, perm: number[]): string => {
      const y = linear(h, `${p}self_attn.${proj}`, L + proj); // [N,H]
      const y4 = g.op1('Reshape', [y, shapeHeads], L + proj + '.heads'); // [B,T,nH,d]
      return g.op1('Transpose', [y4], L + proj + '.t', [attrInts('perm', perm)]);
    };
    const q = heads('q_proj', [0, 2, 1, 3]); // [B,nH,T,d]
    const kT = heads('k_proj', [0, 2, 3, 1]); // [B,nH,d,T]
    const v = heads('v_proj', [0, 2, 1, 3]); // [B,nH,T,d]
    const scores = g.op1('MatMul', [q, kT], L + 'scores'); // [B,nH,T,T]
    const scaled = g.op1('Mul', [scores, cScale], L + 'scores.scaled');
    const masked = g.op1('Add', [scaled, mask], L + 'scores.masked');
    const probs = g.op1('Softmax', [masked], L + 'probs', [attrInt('axis', -1)]);
    const ctx = g.op1('MatMul', [probs, v], L + 'context'); // [B,nH,T,d]
    const ctxT = g.op1('Transpose', [ctx], L + 'context.t', [attrInts('perm', [0, 2, 1, 3])]); // [B,T,nH,d]
    const ctxFlat = g.op1('Reshape', [ctxT, cFlatH], L + 'context.flat'); // [N,H]
    h = linear(ctxFlat, p + 'self_attn.out_proj', L + 'out_proj');
    x = g.op1('Add', [residual, h], L + 'attn_residual');
    if (!c.layerNormBefore) x = layerNorm(x, p + 'self_attn_layer_norm', L + 'attn_ln');
    // feed-forward block
    residual = x;
    h = c.layerNormBefore ? layerNorm(x, p + 'final_layer_norm', L + 'ffn_ln') : x;
    h = g.op1('Relu', [linear(h, p + 'fc1', L + 'fc1')], L + 'relu');
    h = linear(h, p + 'fc2', L + 'fc2');
    x = g.op1('Add', [residual, h], L + 'ffn_residual');
    if (!c.layerNormBefore) x = layerNorm(x, p + 'final_layer_norm', L + 'ffn_ln');
  }

  // ---- head
  if (c.hasFinalLayerNorm) x = layerNorm(x, dec + 'final_layer_norm', 'final_ln');
  if (E !== H) x = linear(x, dec + 'project_out', 'project_out', false); // [N,E]
  const headWeight = tiedHead ? w(dec + 'embed_tokens.weight') : w('lm_head.weight');
  if (options.lastTokenOnly) {
    const shapeBTE = g.op1('Concat', [idsShape, g.int64Init('const.shape.embed', [1], [E])], 'shape.bte', [attrInt('axis', 0)]);
    const lastIndex = g.op1('Sub', [T, cOne], 'last_index'); // scalar
    const xLast = g.op1('Gather', [g.op1('Reshape', [x, shapeBTE], 'final.bte'), lastIndex], 'final.last', [attrInt('axis', 1)]); // [B,E]
    g.op1('Gemm', [xLast, headWeight], ONNX_LAST_OUTPUT, [attrInt('transB', 1)]); // [B,V]
  } else {
    const logitsFlat = g.op1('Gemm', [x, headWeight], 'lm_head', [attrInt('transB', 1)]); // [N,V]
    const shapeBTV = g.op1('Concat', [idsShape, g.int64Init('const.shape.vocab', [1], [V])], 'shape.btv', [attrInt('axis', 0)]);
    g.op1('Reshape', [logitsFlat, shapeBTV], ONNX_OUTPUT); // a single output is named after its label: "logits"
  }

  return create(ModelProtoSchema, {
    irVersion: BigInt(ONNX_IR_VERSION),
    opsetImport: [{ domain: '', version: BigInt(ONNX_OPSET) }],
    producerName: 'tandem',
    producerVersion: '0.1.0',
    docString: options.name ?? 'OPT prefill forward (Hugging Face OPTForCausalLM semantics), exported by Tandem',
    graph: {
      name: options.name ?? 'opt_prefill',
      node: g.nodes,
      initializer: g.initializers,
      input: [tensorInfo(ONNX_INPUT, TensorProto_DataType.INT64, ['batch', 'sequence'])],
      output: [options.lastTokenOnly
        ? tensorInfo(ONNX_LAST_OUTPUT, TensorProto_DataType.FLOAT, ['batch', V])
        : tensorInfo(ONNX_OUTPUT, TensorProto_DataType.FLOAT, ['batch', 'sequence', V])],
    },
  });
}

/** Serialize a ModelProto to the ONNX file format (protobuf binary). */
export function encodeOnnxModel(model: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, model);
}

/** Export a loaded checkpoint (config.json + HF-named tensors) as ONNX model bytes. */
export function exportOptOnnx(ckpt: Checkpoint, options: OnnxExportOptions = {}): Uint8Array {
  return encodeOnnxModel(buildOptOnnxModel(parseOptConfig(ckpt.configJson), ckpt.tensors, options));
}
