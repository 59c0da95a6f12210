import { ConfigError, WeightMismatchError } from '../errors.ts';
import type { BufferBinding, Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { packParams, rootOf } from '../gpu/gpu.ts';
import { grid1d, shaderSource } from '../kernels/shader.ts';
import type { OptConfig } from './config.ts';
import type { OptGpuWeights, TensorLocation } from './gpu_weights.ts';
import { convertTensor } from './weights/dtype.ts';
import type { HostTensor, StorageDType } from './weights/types.ts';

/**
 * Megatron-style tensor parallelism for OPT (what vLLM's `tensor_parallel_size` does): rank r of `size` ranks
 * holds heads [r*h/size, (r+1)*h/size) of every attention layer (q/k/v rows, out_proj columns) and the same
 * share of fc1's rows and fc2's columns; everything else (embeddings, LayerNorms, the tied head, the biases of
 * out_proj and fc2) is replicated. Per layer, two all-reduces sum the ranks' partial out_proj and fc2 outputs.
 */
export interface TensorParallel {
  rank: number;
  size: number;
}

export const NO_TENSOR_PARALLEL: TensorParallel = { rank: 0, size: 1 };

/** Throws ConfigError unless `tp` can split this model: heads and fc1 rows divide evenly, 0 <= rank < size. */
export function checkTensorParallel(config: OptConfig, tp: TensorParallel): void {
  if (!Number.isInteger(tp.size) || tp.size < 1) throw new ConfigError(`tensorParallelSize must be a positive integer, got ${tp.size}`);
  if (!Number.isInteger(tp.rank) || tp.rank < 0 || tp.rank >= tp.size) throw new ConfigError(`rank ${tp.rank} is outside [0, ${tp.size})`);
  if (config.numHeads % tp.size !== 0) {
    throw new ConfigError(`tensorParallelSize ${tp.size} does not divide the model's ${config.numHeads} attention heads`);
  }
  if (config.ffnDim % tp.size !== 0) throw new ConfigError(`tensorParallelSize ${tp.size} does not divide ffn_dim ${config.ffnDim}`);
  if (((config.hiddenSize / tp.size) % 4) !== 0 || ((config.ffnDim / tp.size) % 4) !== 0) {
    throw new ConfigError(`tensorParallelSize ${tp.size} leaves a shard width that is not a multiple of 4 (hidden ${config.hiddenSize}, ffn ${config.ffnDim})`);
  }
}

/** The dimensions one rank works with. */
export interface ShardDims {
  /** Attention heads on this rank. */
  heads: number;
  /** heads * headDim: this rank's width of q, k, v and the attention output. */
  attnWidth: number;
  /** fc1 rows (fc2 columns) on this rank. */
  ffnWidth: number;
}

export function shardDims(config: OptConfig, tp: TensorParallel): ShardDims {
  const heads = config.numHeads / tp.size;
  return { heads, attnWidth: heads * config.headDim, ffnWidth: config.ffnDim / tp.size };
}

/** How an HF tensor is split: along its rows (dim 0), its columns (dim 1), or not at all. */
export type ShardAxis = 'rows' | 'columns' | 'replicated';

/** Which axis a layer tensor is split on (by its HF name). */
export function shardAxis(name: string): ShardAxis {
  if (/\.self_attn\.(q_proj|k_proj|v_proj)\.(weight|bias)$/.test(name)) return 'rows';
  if (/\.fc1\.(weight|bias)$/.test(name)) return 'rows';
  if (/\.self_attn\.out_proj\.weight$/.test(name) || /\.fc2\.weight$/.test(name)) return 'columns';
  return 'replicated';
}

/** The shape of rank tp.rank's shard of a tensor of `shape` (what shardTensor gives). */
export function shardShape(name: string, shape: readonly number[], tp: TensorParallel): number[] {
  const axis = shardAxis(name);
  if (tp.size === 1 || axis === 'replicated') return [...shape];
  if (axis === 'rows') return [shape[0] / tp.size, ...shape.slice(1)];
  return [shape[0], shape[1] / tp.size];
}

/** Rank tp.rank's slice of a host tensor (converted to `dtype`), as its shard axis says. */
export function shardTensor(name: string, t: HostTensor, tp: TensorParallel, dtype: StorageDType): HostTensor {
  const full = convertTensor(t, dtype);
  const axis = shardAxis(name);
  if (tp.size === 1 || axis === 'replicated') return full;
  const e = full.bytes.byteLength / full.shape.reduce((a, b) => a * b, 1);
  if (axis === 'rows') {
    const rows = full.shape[0] / tp.size;
    const rowBytes = (full.bytes.byteLength / full.shape[0]);
    const start = tp.rank * rows * rowBytes;
    return { ...full, shape: [rows, ...full.shape.slice(1)], bytes: full.bytes.slice(start, start + rows * rowBytes) };
  }
  const [outRows, inCols] = full.shape;
  const cols = inCols / tp.size;
  const out = new Uint8Array(outRows * cols * e);
  for (let r = 0; r < outRows; r++) {
    const src = (r * inCols + tp.rank * cols) * e;
    out.set(full.bytes.subarray(src, src + cols * e), r * cols * e);
  }
  return { ...full, shape: [outRows, cols], bytes: out };
}

/**
 * The whole tensor from every rank's shard (rank order), as shardTensor split it: what a sleeping
 * tensor-parallel engine keeps on the host.
 */
export function unshardTensor(name: string, shards: readonly Uint8Array[], fullShape: number[], elementBytes: number): Uint8Array {
  const axis = shardAxis(name);
  if (shards.length === 1 || axis === 'replicated') return shards[0];
  const total = fullShape.reduce((a, b) => a * b, 1) * elementBytes;
  const out = new Uint8Array(total);
  if (axis === 'rows') {
    let off = 0;
    for (const s of shards) { out.set(s, off); off += s.byteLength; }
    return out;
  }
  const [outRows, inCols] = fullShape;
  const cols = inCols / shards.length;
  const rowBytes = cols * elementBytes;
  shards.forEach((s, r) => {
    for (let row = 0; row < outRows; row++) out.set(s.subarray(row * rowBytes, (row + 1) * rowBytes), (row * inCols + r * cols) * elementBytes);
  });
  return out;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** A device copy of `size` bytes. */
export interface PlainCopy {
  src: GpuBuffer;
  srcOffset: number;
  dst: GpuBuffer;
  dstOffset: number;
  size: number;
}

/**
 * Copy rank weights.tp.rank's shard of the full HF tensor `name`, which `src` holds (elements of `srcDtype`,
 * HF shape, e.g. an opened handle of a trainer's parameter), into the model's weights on the GPU, converting to
 * the weights' element type: the weight sync of a tensor-parallel engine, with no CPU copy. Returns the bytes
 * written. Throws WeightMismatchError for an unknown name or a source of the wrong size. With `plainCopies`,
 * a shard that is one contiguous range is not copied but appended there, for the caller to merge and issue.
 */
/** Where rank weights.tp.rank's shard of full tensor `name` (held by `src`) comes from and goes to. */
export interface ShardCopyGeometry {
  loc: TensorLocation;
  /** The shard is rows x cols elements: row r, column c is source element srcBase + r * srcStride + c (from src.offset). */
  rows: number;
  cols: number;
  srcBase: number;
  srcStride: number;
  srcElem: number;
  dstElem: number;
  srcBytes: number;
  /** One contiguous byte range in the same element type: a plain copy does it. */
  plain: boolean;
}

/** Validate a full-tensor source against the model's tensor `name` and work out the shard's geometry. */
export function shardCopyGeometry(src: BufferBinding, srcDtype: 'f32' | 'f16', weights: OptGpuWeights, name: string): ShardCopyGeometry {
  const loc = weights.locations.get(name);
  if (!loc) throw new WeightMismatchError(`the model has no tensor ${name}`);
  const numel = loc.shape.reduce((a, b) => a * b, 1);
  const srcElem = srcDtype === 'f16' ? 2 : 4;
  const srcBytes = numel * srcElem;
  if (src.size !== undefined && src.size !== srcBytes) {
    throw new WeightMismatchError(`${name}: the source holds ${src.size} bytes, the full tensor [${loc.shape}] has ${srcBytes}`);
  }
  const dstElem = weights.dtype === 'f16' ? 2 : 4;
  const tp = weights.tp;
  const axis = tp.size === 1 ? 'replicated' : shardAxis(name);
  const inner = loc.shape.length > 1 ? loc.shape[loc.shape.length - 1] : 1;
  let rows: number, cols: number, srcBase: number, srcStride: number;
  if (axis === 'columns') {
    cols = inner / tp.size;
    rows = numel / inner;
    srcBase = tp.rank * cols;
    srcStride = inner;
  } else {
    const localNumel = loc.localShape.reduce((a, b) => a * b, 1);
    cols = inner;
    rows = localNumel / inner;
    srcBase = axis === 'rows' ? tp.rank * localNumel : 0;
    srcStride = inner;
  }
  if (loc.byteOffset % dstElem !== 0) throw new Error(`${name}: byte offset ${loc.byteOffset} is not element-aligned`);
  return { loc, rows, cols, srcBase, srcStride, srcElem, dstElem, srcBytes, plain: srcDtype === weights.dtype && axis !== 'columns' };
}

export function copyFullIntoShard(
  gpu: Gpu, src: BufferBinding & { buffer: GpuBuffer }, srcDtype: 'f32' | 'f16', weights: OptGpuWeights, name: string,
  plainCopies?: PlainCopy[],
): number {
  const { loc, rows, cols, srcBase, srcStride, srcElem, dstElem, srcBytes, plain } = shardCopyGeometry(src, srcDtype, weights, name);
  if (plain) {
    // The shard is one contiguous byte range of the source: a plain copy (no binding-size limit applies), made
    // now or handed to the caller (which merges neighbouring copies).
    const copy: PlainCopy = { src: src.buffer, srcOffset: (src.offset ?? 0) + srcBase * srcElem, dst: loc.buffer, dstOffset: loc.byteOffset, size: loc.byteLength };
    if (plainCopies) plainCopies.push(copy);
    else gpu.copy(copy.src, copy.srcOffset, copy.dst, copy.dstOffset, copy.size);
    return loc.byteLength;
  }
  const k = gpu.kernel(shaderSource('copy_shard', { S: srcDtype, D: weights.dtype }));
  // Rows at a time so each source binding stays under the device's limit (OPT-125m's f32 embedding is 154 MB)
  // and starts 256-byte aligned; the destination is bound whole (a shard's offset inside a fused buffer need not
  // meet the binding alignment; the largest destination is the embedding, bound whole at f16 or f32 alike).
  const rowBytes = srcStride * srcElem;
  const align = 256 / gcd(rowBytes, 256);
  const maxRows = Math.max(align, Math.floor(gpu.caps.maxStorageBindingSize / rowBytes / align) * align - align);
  for (let r0 = 0; r0 < rows; r0 += maxRows) {
    const n = Math.min(maxRows, rows - r0);
    const first = srcBase + r0 * srcStride;                      // element index of this window's first element
    const winStart = Math.floor((first * srcElem) / 256) * 256;  // aligned byte offset at or before it
    const winBytes = Math.min(((first + (n - 1) * srcStride + cols) * srcElem) - winStart, srcBytes + (src.offset ?? 0) - winStart);
    gpu.dispatch(k, [{ buffer: src.buffer, offset: (src.offset ?? 0) + winStart, size: Math.ceil(winBytes / 4) * 4 }, loc.buffer],
      packParams([n, cols, first - winStart / srcElem, srcStride, loc.byteOffset / dstElem + r0 * cols]), grid1d(Math.ceil((n * cols) / 256)));
  }
  return loc.byteLength;
}

/** Segments one copy_segments dispatch takes (its params uniform holds a fixed table of them). */
export const MAX_COPY_SEGMENTS = 256;

/**
 * Every shard copy of a weight sync in one dispatch (shaders/copy_segments.wgsl): each tensor's shard is a
 * segment (rows x cols with a source stride, converted to the weights' element type), the source bound as its
 * whole root buffer (an opened packed bucket) and the destination as the weights' arena. What a tensor-parallel
 * rank needs instead of one copy or kernel per tensor (wgpu's per-command cost dominates a sync). Returns false,
 * having recorded nothing, where it does not apply: sources in several buffers or element types, a root over the
 * per-binding limit (the caller then copies tensor by tensor), too many segments.
 */
export function copyShardsInOneDispatch(
  gpu: Gpu,
  items: ReadonlyArray<{ src: BufferBinding & { buffer: GpuBuffer }; srcDtype: 'f32' | 'f16'; geometry: ShardCopyGeometry }>,
  weights: OptGpuWeights,
): boolean {
  if (items.length === 0 || items.length > MAX_COPY_SEGMENTS) return false;
  const srcDtype = items[0].srcDtype;
  const srcRoot = rootOf(items[0].src.buffer).root;
  const dstRoot = rootOf(items[0].geometry.loc.buffer).root;
  const limit = gpu.caps.maxStorageBindingSize;
  if (srcRoot.id === dstRoot.id || srcRoot.size > limit || dstRoot.size > limit) return false;
  const words = new Uint32Array(4 + 8 * MAX_COPY_SEGMENTS);
  let total = 0;
  for (const [i, it] of items.entries()) {
    const g = it.geometry;
    const s = rootOf(it.src.buffer), d = rootOf(g.loc.buffer);
    if (it.srcDtype !== srcDtype || s.root.id !== srcRoot.id || d.root.id !== dstRoot.id) return false;
    const srcStart = s.offset + (it.src.offset ?? 0), dstStart = d.offset + g.loc.byteOffset;
    if (srcStart % g.srcElem !== 0 || dstStart % g.dstElem !== 0) return false;
    words.set([total, g.cols, srcStart / g.srcElem + g.srcBase, g.srcStride, dstStart / g.dstElem], 4 + 8 * i);
    total += g.rows * g.cols;
  }
  if (total >= 2 ** 32) return false;
  words[0] = items.length;
  words[1] = total;
  const k = gpu.kernel(shaderSource('copy_segments', { S: srcDtype, D: weights.dtype, MAX_SEGMENTS: String(MAX_COPY_SEGMENTS) }));
  gpu.dispatch(k, [srcRoot, dstRoot], words, grid1d(Math.ceil(total / 256)));
  return true;
}
