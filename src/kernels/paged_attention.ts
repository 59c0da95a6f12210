import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { packParams } from '../gpu/gpu.ts';
import { grid1d, shaderSource, type ElementType } from './shader.ts';

/** Keys per split-K partition. A context longer than this is spread over several workgroups. */
export const ATTENTION_PARTITION = 256;

/** Kernel-choice knob for tests and benchmarks (both kernels give the same bits): the single-query decode kernel. */
export const attentionKernelChoice = { decodeKernel: true, decodeKernelMinTokens: 16 };

/** The step's flat batch, as the model runner packs it (vLLM's attention metadata). */
export interface AttentionBatch {
  numTokens: number;
  /** [T] u32: absolute position of each query token (0-based, before OPT's offset). */
  positions: GpuBuffer;
  /** [T] u32: which sequence (row of blockTables) each token belongs to. */
  tokenSeq: GpuBuffer;
  /** [T] u32: cache slot of each token = block * blockSize + offset. */
  slotMapping: GpuBuffer;
  /** [S, maxBlocksPerSeq] u32 block ids. */
  blockTables: GpuBuffer;
  maxBlocksPerSeq: number;
  /** Largest context (position + 1) any token in the batch has: sizes the split-K grid. */
  maxContext: number;
  /** [numQueryBlocks] (first token, count) pairs: runs of at most queryBlockSize() tokens of one sequence. */
  queryBlocks: GpuBuffer;
  numQueryBlocks: number;
}

/** Query tokens per attention workgroup: they share each key/value tile read from the cache. */
export function queryBlockSize(headDim: number): number {
  return headDim <= 64 ? 16 : 8;
}

/**
 * Cut each sequence's run of consecutive query tokens in the flat batch into blocks of at most `qb` tokens.
 * `runs` are (first token index, token count) per sequence, in batch order.
 */
export function buildQueryBlocks(runs: ReadonlyArray<readonly [number, number]>, qb: number): Uint32Array {
  const out: number[] = [];
  for (const [first, count] of runs) {
    for (let i = 0; i < count; i += qb) out.push(first + i, Math.min(qb, count - i));
  }
  return Uint32Array.from(out);
}

export interface KvCacheLayer {
  key: GpuBuffer;
  value: GpuBuffer;
}

/** Scatter the keys and values of a fused qkv [T, 3H] into one layer's paged cache. */
export function writeKvCache(
  gpu: Gpu,
  a: { qkv: GpuBuffer; batch: AttentionBatch; cache: KvCacheLayer; hidden: number; act: ElementType; kv: ElementType },
): void {
  const k = gpu.kernel(shaderSource('kv_cache_write', { A: a.act, KV: a.kv }));
  gpu.dispatch(k, [a.qkv, a.batch.slotMapping, a.cache.key, a.cache.value], packParams([a.batch.numTokens, a.hidden]), grid1d(a.batch.numTokens));
}

/** Scratch for split-K partials, sized for the largest batch and context the runner will use. */
export function attentionScratchBytes(maxTokens: number, numHeads: number, headDim: number, maxContext: number): { stats: number; acc: number } {
  const parts = Math.ceil(maxContext / ATTENTION_PARTITION);
  return { stats: maxTokens * numHeads * parts * 2 * 4, acc: maxTokens * numHeads * parts * headDim * 4 };
}

/** out[t, h*D:(h+1)*D] = softmax(q k^T * scale) v over the token's sequence's cached keys 0..position. */
export function pagedAttention(
  gpu: Gpu,
  a: {
    qkv: GpuBuffer; out: GpuBuffer; batch: AttentionBatch; cache: KvCacheLayer; numHeads: number; headDim: number;
    blockSize: number; act: ElementType; kv: ElementType; scratch: { stats: GpuBuffer; acc: GpuBuffer };
  },
): void {
  const T = a.batch.numTokens;
  if (T > 65535) throw new RangeError(`pagedAttention: ${T} query tokens in one step exceeds 65535`);
  const parts = Math.ceil(a.batch.maxContext / ATTENTION_PARTITION);
  const direct = parts <= 1;
  const qb = queryBlockSize(a.headDim);
  if (a.headDim % 4 !== 0 || a.headDim > 96) throw new RangeError(`pagedAttention: head size ${a.headDim} must be a multiple of 4, at most 96`);
  const sharedBytes = 4 * (qb * a.headDim + 2 * 32 * a.headDim + qb * 32 + 3 * qb + ATTENTION_PARTITION + 64) + 16;
  if (sharedBytes > gpu.caps.maxWorkgroupStorageSize) {
    throw new RangeError(`pagedAttention: head size ${a.headDim} needs ${sharedBytes} bytes of workgroup memory, this device allows ${gpu.caps.maxWorkgroupStorageSize}`);
  }
  // A pure decode step (every query block one token) of enough tokens runs the single-query kernel (same
  // arithmetic per query); below decodeKernelMinTokens the 64-thread kernel's shorter tile loop wins.
  const decode = a.batch.numQueryBlocks === T && T >= attentionKernelChoice.decodeKernelMinTokens && attentionKernelChoice.decodeKernel;
  const k = gpu.kernel(decode
    ? shaderSource('paged_attention_decode', { A: a.act, KV: a.kv, PART: ATTENTION_PARTITION, HEAD_DIM: a.headDim, DIRECT: direct })
    : shaderSource('paged_attention', { A: a.act, KV: a.kv, PART: ATTENTION_PARTITION, HEAD_DIM: a.headDim, DIRECT: direct, QB: qb }));
  const params = packParams([T, a.numHeads, a.headDim, a.blockSize, a.batch.maxBlocksPerSeq, parts, { f: 1 / Math.sqrt(a.headDim) }]);
  gpu.dispatch(k, [
    a.qkv, a.batch.positions, a.batch.tokenSeq, a.batch.blockTables, a.cache.key, a.cache.value, a.out,
    a.scratch.stats, a.scratch.acc, a.batch.queryBlocks,
  ], params, [a.batch.numQueryBlocks, a.numHeads, parts]);
  if (!direct) {
    const r = gpu.kernel(shaderSource('paged_attention_reduce', { A: a.act }));
    gpu.dispatch(r, [a.scratch.stats, a.scratch.acc, a.out], packParams([T, a.numHeads, a.headDim, parts]), [T, a.numHeads]);
  }
}

/**
 * CPU reference: causal attention of each query token over its sequence's keys 0..position, with keys and
 * values given per sequence as contiguous [len, H] arrays (no paging: the reference checks the paging too).
 */
export function attentionReference(
  q: Float32Array, keys: Float32Array[], values: Float32Array[], positions: number[], tokenSeq: number[],
  numHeads: number, headDim: number,
): Float32Array {
  const H = numHeads * headDim;
  const out = new Float32Array(positions.length * H);
  const scale = 1 / Math.sqrt(headDim);
  for (let t = 0; t < positions.length; t++) {
    const K = keys[tokenSeq[t]], V = values[tokenSeq[t]];
    for (let h = 0; h < numHeads; h++) {
      const scores: number[] = [];
      for (let j = 0; j <= positions[t]; j++) {
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[t * H + h * headDim + d] * K[j * H + h * headDim + d];
        scores.push(s * scale);
      }
      const mx = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - mx));
      const z = e.reduce((x, y) => x + y, 0);
      for (let d = 0; d < headDim; d++) {
        let o = 0;
        for (let j = 0; j < e.length; j++) o += e[j] * V[j * H + h * headDim + d];
        out[t * H + h * headDim + d] = o / z;
      }
    }
  }
  return out;
}
