/**
 * How much (virtual) GPU memory to give LLM.create so that its KV cache gets about `kvBlocks` blocks.
 *
 * LLM.create sizes the cache from a memory budget (gpuMemoryBytes × gpuMemoryUtilization, minus the weights
 * and the runner's activations), which is how a server is configured. A demo wants to pick the number of
 * blocks instead, small enough to see every one in the block map and to make preemption happen on demand.
 * This inverts LLM.create's accounting (src/engine/llm.ts); should that accounting change, the block count is
 * merely off, and the page always shows the count the engine actually made (llm.memory.numBlocks).
 * (What would make this file unnecessary: vLLM's `num_gpu_blocks_override` as an LLMOptions field.)
 */
import { expectedTensors, type OptConfig } from '../../src/model/config.ts';
import { ModelRunner } from '../../src/engine/model_runner.ts';
import { kvCacheBytesPerBlock } from '../../src/model/kv_cache.ts';

/** The runner's per-step buffers, where this version of the engine counts them (newer engines do). */
function stepBufferBytes(config: OptConfig, maxNumSeqs: number): number {
  const f = (ModelRunner as unknown as { stepBufferBytes?: (c: OptConfig, rc: { maxNumSeqs: number }) => number }).stepBufferBytes;
  return typeof f === 'function' ? f(config, { maxNumSeqs }) : 0;
}

export interface DemoEngineSizes {
  kvBlocks: number;
  blockSize: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  dtype: 'f32' | 'f16';
}

export function gpuMemoryForBlocks(config: OptConfig, s: DemoEngineSizes): number {
  const e = s.dtype === 'f16' ? 2 : 4;
  let weightBytes = 0;
  for (const shape of expectedTensors(config).values()) weightBytes += shape.reduce((a, b) => a * b, 1) * e;
  const T = s.maxNumBatchedTokens, H = config.hiddenSize;
  const activationBytes = e * T * (8 * H + config.ffnDim + 2 * config.wordEmbedProjDim) + 4 * s.maxNumSeqs * config.vocabSize +
    stepBufferBytes(config, s.maxNumSeqs);
  const perBlock = kvCacheBytesPerBlock(config, s.blockSize, s.dtype);
  // Half a block of slack so floor() in LLM.create lands on kvBlocks, not one below.
  return weightBytes + activationBytes + (s.kvBlocks + 0.5) * perBlock;
}

/** The longest sequence the demo allows: the model's position table, capped so a small cache still holds one. */
export function demoMaxModelLen(config: OptConfig, kvBlocks: number, blockSize: number): number {
  return Math.min(config.maxPositions, 512, kvBlocks * blockSize);
}
