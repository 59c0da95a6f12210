/**
 * The 8 x 512-style prefill step both prefill benchmarks time: B sequences of L tokens in one flat batch over a
 * fresh paged KV cache (block i of the pool is block i of the table), driven through OptForward directly, with
 * index buffers for each sequence's last-token logits and for all of a sequence's logits.
 */
import type { Gpu, GpuBuffer } from '../src/gpu/gpu.ts';
import { buildQueryBlocks, queryBlockSize } from '../src/kernels/paged_attention.ts';
import type { OptConfig } from '../src/model/config.ts';
import { OptForward, type StepInputs } from '../src/model/forward.ts';
import type { OptGpuWeights } from '../src/model/gpu_weights.ts';
import { allocateKvCache, type PagedKvCache } from '../src/model/kv_cache.ts';

export interface PrefillBatch {
  runner: OptForward;
  cache: PagedKvCache;
  inputs: StepInputs;
  /** [B]: row of each sequence's last token. */
  lastRows: GpuBuffer;
  /** Per sequence, [L]: its rows, for all-position logits one sequence at a time. */
  allRows: GpuBuffer[];
  /** [L, vocab] f32. */
  logits: GpuBuffer;
}

/** `ids` is B * L token ids, sequence after sequence. */
export async function preparePrefillBatch(
  gpu: Gpu, cfg: OptConfig, weights: OptGpuWeights, a: { B: number; L: number; ids: Uint32Array; blockSize?: number },
): Promise<PrefillBatch> {
  const { B, L } = a, T = B * L, blockSize = a.blockSize ?? 16;
  if (a.ids.length !== T) throw new RangeError(`${a.ids.length} ids for ${B} x ${L}`);
  const runner = await OptForward.create(gpu, cfg, weights, { maxTokens: T, maxLogitRows: L, maxContext: L });
  const blocksPerSeq = Math.ceil(L / blockSize);
  const cache = await allocateKvCache(gpu, cfg, { blockSize, numBlocks: B * blocksPerSeq, dtype: weights.dtype });
  const u32 = async (data: Uint32Array, label: string) => {
    const b = await gpu.createBuffer(data.byteLength, label);
    gpu.write(b, data);
    return b;
  };
  const qb = queryBlockSize(cfg.headDim);
  const inputs: StepInputs = {
    numTokens: T,
    tokenIds: await u32(a.ids, 'ids'),
    positions: await u32(Uint32Array.from({ length: T }, (_, i) => i % L), 'pos'),
    tokenSeq: await u32(Uint32Array.from({ length: T }, (_, i) => Math.floor(i / L)), 'seq'),
    slotMapping: await u32(Uint32Array.from({ length: T }, (_, i) => Math.floor(i / L) * blocksPerSeq * blockSize + (i % L)), 'slots'),
    blockTables: await u32(Uint32Array.from({ length: B * blocksPerSeq }, (_, i) => i), 'tables'),
    maxBlocksPerSeq: blocksPerSeq,
    maxContext: L,
    queryBlocks: await u32(buildQueryBlocks(Array.from({ length: B }, (_, s) => [s * L, L] as const), qb), 'qblocks'),
    numQueryBlocks: B * Math.ceil(L / qb),
  };
  return {
    runner, cache, inputs,
    lastRows: await u32(Uint32Array.from({ length: B }, (_, s) => s * L + L - 1), 'last'),
    allRows: await Promise.all(Array.from({ length: B }, (_, s) => u32(Uint32Array.from({ length: L }, (_, i) => s * L + i), `rows${s}`))),
    logits: await gpu.createBuffer(L * cfg.vocabSize * 4, 'logits'),
  };
}
