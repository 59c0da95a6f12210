import { WeightMismatchError } from '../errors.ts';
import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import type { RowTable } from '../kernels/embedding.ts';
import type { ElementType } from '../kernels/shader.ts';
import { expectedTensors, type OptConfig } from './config.ts';
import { checkTensorParallel, NO_TENSOR_PARALLEL, shardShape, shardTensor, type TensorParallel } from './tensor_parallel.ts';
import { allocateArenas, arenaPlanBytes, type ArenaPlan, planArenas, weightGroups } from './weight_arena.ts';
import type { HostTensor, TensorMap } from './weights/types.ts';

export interface LayerWeights {
  attnLnGamma: GpuBuffer;
  attnLnBeta: GpuBuffer;
  /** q, k, v projections fused into one [3H, H] weight and [3H] bias: one GEMM per layer instead of three. */
  qkvWeight: GpuBuffer;
  qkvBias: GpuBuffer;
  outWeight: GpuBuffer;
  outBias: GpuBuffer;
  ffnLnGamma: GpuBuffer;
  ffnLnBeta: GpuBuffer;
  fc1Weight: GpuBuffer;
  fc1Bias: GpuBuffer;
  fc2Weight: GpuBuffer;
  fc2Bias: GpuBuffer;
}

/** Where an HF-named tensor lives on the GPU (a fused buffer holds several). */
export interface TensorLocation {
  buffer: GpuBuffer;
  byteOffset: number;
  /** The tensor's full HF shape. */
  shape: number[];
  /** The shape held here: `shape`, or this rank's shard of it under tensor parallelism. */
  localShape: number[];
  byteLength: number;
}

/** An OPT model's weights on the GPU, one copy: the tied LM head is the embedding table itself. */
export interface OptGpuWeights {
  dtype: ElementType;
  embedTokens: RowTable;
  embedPositions: RowTable;
  projectIn: GpuBuffer | null;
  projectOut: GpuBuffer | null;
  finalLnGamma: GpuBuffer | null;
  finalLnBeta: GpuBuffer | null;
  /** The embedding when tied (the same buffer), else lm_head.weight. */
  lmHead: RowTable;
  layers: LayerWeights[];
  /** HF name -> location, for weight updates by name. */
  locations: Map<string, TensorLocation>;
  /** The buffers that hold every weight (weight_arena.ts); the tensors above are sub-buffers of them. */
  arenas: GpuBuffer[];
  /** Bytes of the arenas (alignment padding included). */
  totalBytes: number;
  /** This copy's tensor-parallel rank (size 1: the whole model). */
  tp: TensorParallel;
}

function elementBytes(t: ElementType): number {
  return t === 'f16' ? 2 : 4;
}

/** Rows per binding window: as many as fit under the per-binding limit, a multiple of 64 (keeps offsets 256-aligned). */
function rowsPerWindow(gpu: Gpu, dim: number, dtype: ElementType, rows: number): number {
  const fit = Math.floor(gpu.caps.maxStorageBindingSize / (dim * elementBytes(dtype)));
  if (fit >= rows) return rows;
  return Math.max(64, Math.floor(fit / 64) * 64);
}

/**
 * Upload every tensor of a validated checkpoint in `dtype` (f32, or f16 where the device has shader-f16); with
 * `tp`, only rank tp.rank's shard of the split layer tensors (src/model/tensor_parallel.ts).
 */
export async function uploadWeights(
  gpu: Gpu, config: OptConfig, tensors: TensorMap, dtype: ElementType, tp: TensorParallel = NO_TENSOR_PARALLEL,
): Promise<OptGpuWeights> {
  checkTensorParallel(config, tp);
  const storage = dtype === 'f16' ? 'F16' : 'F32';
  const get = (name: string): HostTensor => {
    const t = tensors.get(name);
    if (!t) throw new WeightMismatchError(`checkpoint has no tensor ${name}`);
    return t;
  };
  // Every group in one arena (weight_arena.ts), in canonical order; then each group's tensors written back to back.
  const groups = weightGroups(config);
  const plan = planWeightArenas(config, dtype, tp, gpu.caps.maxBufferSize, (n) => get(n).shape);
  const labels = groups.map((names) => names.length > 1 ? names[0].replace(/q_proj\.(weight|bias)$/, 'qkv.$1') : names[0]);
  const { arenas, groups: buffers } = await allocateArenas(gpu, plan, labels, tp.size > 1 ? `weights.tp${tp.rank}` : 'weights');
  const locations = new Map<string, TensorLocation>();
  const byName = new Map<string, GpuBuffer>();
  for (const [g, names] of groups.entries()) {
    let offset = 0;
    for (const name of names) {
      const part = shardTensor(name, get(name), tp, storage);
      gpu.write(buffers[g], part.bytes, offset);
      locations.set(name, { buffer: buffers[g], byteOffset: offset, shape: get(name).shape, localShape: part.shape, byteLength: part.bytes.byteLength });
      offset += part.bytes.byteLength;
    }
    byName.set(names[0], buffers[g]);
  }
  const d = 'model.decoder.';
  const buffer = (name: string): GpuBuffer => byName.get(name)!;
  const table = (name: string, rows: number, dim: number): RowTable => ({
    buffer: buffer(name), rows, dim, dtype, rowsPerWindow: rowsPerWindow(gpu, dim, dtype, rows),
  });
  const embedTokens = table(d + 'embed_tokens.weight', config.vocabSize, config.wordEmbedProjDim);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `${d}layers.${l}.`;
    const a = `${p}self_attn.`;
    layers.push({
      attnLnGamma: buffer(`${p}self_attn_layer_norm.weight`),
      attnLnBeta: buffer(`${p}self_attn_layer_norm.bias`),
      qkvWeight: buffer(`${a}q_proj.weight`),
      qkvBias: buffer(`${a}q_proj.bias`),
      outWeight: buffer(`${a}out_proj.weight`),
      outBias: buffer(`${a}out_proj.bias`),
      ffnLnGamma: buffer(`${p}final_layer_norm.weight`),
      ffnLnBeta: buffer(`${p}final_layer_norm.bias`),
      fc1Weight: buffer(`${p}fc1.weight`),
      fc1Bias: buffer(`${p}fc1.bias`),
      fc2Weight: buffer(`${p}fc2.weight`),
      fc2Bias: buffer(`${p}fc2.bias`),
    });
  }
  const hasProj = config.wordEmbedProjDim !== config.hiddenSize;
  return {
    dtype,
    embedTokens,
    embedPositions: table(d + 'embed_positions.weight', config.maxPositions + config.positionOffset, config.hiddenSize),
    projectIn: hasProj ? buffer(d + 'project_in.weight') : null,
    projectOut: hasProj ? buffer(d + 'project_out.weight') : null,
    finalLnGamma: config.hasFinalLayerNorm ? buffer(d + 'final_layer_norm.weight') : null,
    finalLnBeta: config.hasFinalLayerNorm ? buffer(d + 'final_layer_norm.bias') : null,
    lmHead: config.tieWordEmbeddings ? embedTokens : table('lm_head.weight', config.vocabSize, config.wordEmbedProjDim),
    layers,
    locations,
    arenas,
    totalBytes: arenaPlanBytes(plan),
    tp,
  };
}

/**
 * The arena plan of an OPT model's weights in `dtype` on rank tp.rank (shapes from the config, or `shapeOf`):
 * what uploadWeights allocates, and what memory sizing (LLM.create) must count.
 */
export function planWeightArenas(
  config: OptConfig, dtype: ElementType, tp: TensorParallel, maxBufferSize: number,
  shapeOf: (name: string) => readonly number[] = (name) => expectedTensors(config).get(name)!,
): ArenaPlan {
  const e = elementBytes(dtype);
  const bytes = weightGroups(config).map((names) =>
    names.reduce((s, n) => s + shardShape(n, shapeOf(n), tp).reduce((a, b) => a * b, 1) * e, 0));
  return planArenas(bytes, maxBufferSize);
}

/**
 * Overwrite one HF-named tensor in place (this rank's shard of it under tensor parallelism). Throws
 * WeightMismatchError for an unknown name or a wrong shape.
 */
export function writeTensor(gpu: Gpu, weights: OptGpuWeights, name: string, t: HostTensor): void {
  const loc = weights.locations.get(name);
  if (!loc) throw new WeightMismatchError(`the model has no tensor ${name}`);
  if (loc.shape.length !== t.shape.length || loc.shape.some((d, i) => d !== t.shape[i])) {
    throw new WeightMismatchError(`${name} has shape [${t.shape}], the model's is [${loc.shape}]`);
  }
  gpu.write(loc.buffer, shardTensor(name, t, weights.tp, weights.dtype === 'f16' ? 'F16' : 'F32').bytes, loc.byteOffset);
}
