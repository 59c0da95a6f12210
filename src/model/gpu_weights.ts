import { WeightMismatchError } from '../errors.ts';
import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import type { RowTable } from '../kernels/embedding.ts';
import type { ElementType } from '../kernels/shader.ts';
import type { OptConfig } from './config.ts';
import { checkTensorParallel, NO_TENSOR_PARALLEL, shardTensor, type TensorParallel } from './tensor_parallel.ts';
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
  const locations = new Map<string, TensorLocation>();
  let totalBytes = 0;
  const get = (name: string): HostTensor => {
    const t = tensors.get(name);
    if (!t) throw new WeightMismatchError(`checkpoint has no tensor ${name}`);
    return t;
  };
  /** Upload one or more tensors back to back into one buffer. */
  const upload = async (label: string, names: string[]): Promise<GpuBuffer> => {
    const parts = names.map((n) => shardTensor(n, get(n), tp, storage));
    const size = parts.reduce((s, p) => s + p.bytes.byteLength, 0);
    const buffer = await gpu.createBuffer(size, label);
    let offset = 0;
    for (let i = 0; i < parts.length; i++) {
      gpu.write(buffer, parts[i].bytes, offset);
      const shape = get(names[i]).shape;
      locations.set(names[i], { buffer, byteOffset: offset, shape, localShape: parts[i].shape, byteLength: parts[i].bytes.byteLength });
      offset += parts[i].bytes.byteLength;
    }
    totalBytes += size;
    return buffer;
  };
  const d = 'model.decoder.';
  const table = async (name: string, rows: number, dim: number): Promise<RowTable> => ({
    buffer: await upload(name, [name]), rows, dim, dtype, rowsPerWindow: rowsPerWindow(gpu, dim, dtype, rows),
  });
  const embedTokens = await table(d + 'embed_tokens.weight', config.vocabSize, config.wordEmbedProjDim);
  const embedPositions = await table(d + 'embed_positions.weight', config.maxPositions + config.positionOffset, config.hiddenSize);
  const hasProj = config.wordEmbedProjDim !== config.hiddenSize;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `${d}layers.${l}.`;
    const a = `${p}self_attn.`;
    layers.push({
      attnLnGamma: await upload(`${p}self_attn_layer_norm.weight`, [`${p}self_attn_layer_norm.weight`]),
      attnLnBeta: await upload(`${p}self_attn_layer_norm.bias`, [`${p}self_attn_layer_norm.bias`]),
      qkvWeight: await upload(`${a}qkv.weight`, [`${a}q_proj.weight`, `${a}k_proj.weight`, `${a}v_proj.weight`]),
      qkvBias: await upload(`${a}qkv.bias`, [`${a}q_proj.bias`, `${a}k_proj.bias`, `${a}v_proj.bias`]),
      outWeight: await upload(`${a}out_proj.weight`, [`${a}out_proj.weight`]),
      outBias: await upload(`${a}out_proj.bias`, [`${a}out_proj.bias`]),
      ffnLnGamma: await upload(`${p}final_layer_norm.weight`, [`${p}final_layer_norm.weight`]),
      ffnLnBeta: await upload(`${p}final_layer_norm.bias`, [`${p}final_layer_norm.bias`]),
      fc1Weight: await upload(`${p}fc1.weight`, [`${p}fc1.weight`]),
      fc1Bias: await upload(`${p}fc1.bias`, [`${p}fc1.bias`]),
      fc2Weight: await upload(`${p}fc2.weight`, [`${p}fc2.weight`]),
      fc2Bias: await upload(`${p}fc2.bias`, [`${p}fc2.bias`]),
    });
  }
  const lmHead = config.tieWordEmbeddings
    ? embedTokens
    : await table('lm_head.weight', config.vocabSize, config.wordEmbedProjDim);
  return {
    dtype,
    embedTokens,
    embedPositions,
    projectIn: hasProj ? await upload(d + 'project_in.weight', [d + 'project_in.weight']) : null,
    projectOut: hasProj ? await upload(d + 'project_out.weight', [d + 'project_out.weight']) : null,
    finalLnGamma: config.hasFinalLayerNorm ? await upload(d + 'final_layer_norm.weight', [d + 'final_layer_norm.weight']) : null,
    finalLnBeta: config.hasFinalLayerNorm ? await upload(d + 'final_layer_norm.bias', [d + 'final_layer_norm.bias']) : null,
    lmHead,
    layers,
    locations,
    totalBytes,
    tp,
  };
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
