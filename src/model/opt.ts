import { InvalidInputError, WebGPUUnavailableError } from '../errors.ts';
import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import type { ElementType } from '../kernels/shader.ts';
import { buildQueryBlocks, queryBlockSize } from '../kernels/paged_attention.ts';
import { parseOptConfig, type OptConfig } from './config.ts';
import { OptForward, type StepInputs } from './forward.ts';
import { uploadWeights, type OptGpuWeights } from './gpu_weights.ts';
import { allocateKvCache, type PagedKvCache } from './kv_cache.ts';
import type { TensorParallel } from './tensor_parallel.ts';
import { loadCheckpoint, type ModelSpec } from './weights/sources.ts';
import type { Checkpoint, ProgressCallback } from './weights/types.ts';

export interface OptModelOptions {
  /** Weights, activations and KV cache in f32 (default) or f16 (needs shader-f16). */
  dtype?: ElementType;
  /** KV-cache block size: 8, 16 (default) or 32. */
  blockSize?: number;
  /** Most tokens one forward step processes (longer prompts are prefilled in chunks). Default 512. */
  maxStepTokens?: number;
  /** Most rows of logits one step computes. Default 64. */
  maxLogitRows?: number;
  onProgress?: ProgressCallback;
  /** This copy's rank under tensor parallelism (its Gpu must then be that rank of a TensorParallelGroup). */
  tensorParallel?: TensorParallel;
}

/** Host-written step buffers for up to maxTokens tokens of one sequence. */
export interface StepBuffers extends StepInputs {
  logitIndices: GpuBuffer;
}

/**
 * A loaded OPT model on one Gpu, with a paged KV cache for one sequence of up to maxPositions tokens. This is
 * the single-sequence path (the CLI's logits and generate); the serving engine schedules many sequences over
 * the same OptForward.
 */
export class OptModel {
  readonly gpu: Gpu;
  readonly config: OptConfig;
  readonly weights: OptGpuWeights;
  readonly runner: OptForward;
  readonly cache: PagedKvCache;
  readonly dtype: ElementType;
  readonly blockSize: number;
  readonly maxBlocksPerSeq: number;
  /** Step inputs for prefill chunks (host-written). */
  readonly prefill: StepBuffers;
  /** [maxLogitRows, vocab] f32. */
  readonly logitsBuffer: GpuBuffer;

  private constructor(
    gpu: Gpu, config: OptConfig, weights: OptGpuWeights, runner: OptForward, cache: PagedKvCache, prefill: StepBuffers,
    logits: GpuBuffer, blockSize: number,
  ) {
    this.gpu = gpu;
    this.config = config;
    this.weights = weights;
    this.runner = runner;
    this.cache = cache;
    this.dtype = weights.dtype;
    this.blockSize = blockSize;
    this.maxBlocksPerSeq = Math.ceil(config.maxPositions / blockSize);
    this.prefill = prefill;
    this.logitsBuffer = logits;
  }

  /** Load a checkpoint (directory, URL, File list, `synthetic:CONFIG:SEED`, or an already-loaded Checkpoint). */
  static async load(gpu: Gpu, source: ModelSpec | Checkpoint, opts: OptModelOptions = {}): Promise<OptModel> {
    const dtype = opts.dtype ?? 'f32';
    if (dtype === 'f16' && !gpu.caps.shaderF16) {
      throw new WebGPUUnavailableError(`dtype f16 needs the shader-f16 feature, which this adapter (${gpu.caps.adapterDescription}) lacks; use dtype f32`);
    }
    const ckpt = isCheckpoint(source) ? source : await loadCheckpoint(source, { onProgress: opts.onProgress });
    const config = parseOptConfig(ckpt.configJson);
    const weights = await uploadWeights(gpu, config, ckpt.tensors, dtype, opts.tensorParallel);
    const blockSize = opts.blockSize ?? 16;
    const maxStepTokens = Math.min(opts.maxStepTokens ?? 512, config.maxPositions);
    const maxLogitRows = opts.maxLogitRows ?? 64;
    const runner = await OptForward.create(gpu, config, weights, { maxTokens: maxStepTokens, maxLogitRows, maxContext: config.maxPositions });
    const maxBlocks = Math.ceil(config.maxPositions / blockSize);
    const cache = await allocateKvCache(gpu, config, { blockSize, numBlocks: maxBlocks, dtype, tp: opts.tensorParallel });
    const u32 = (n: number, label: string) => gpu.createBuffer(4 * n, label);
    const prefill: StepBuffers = {
      numTokens: 0,
      tokenIds: await u32(maxStepTokens, 'step.tokenIds'),
      positions: await u32(maxStepTokens, 'step.positions'),
      tokenSeq: await u32(maxStepTokens, 'step.tokenSeq'),
      slotMapping: await u32(maxStepTokens, 'step.slotMapping'),
      blockTables: await u32(maxBlocks, 'step.blockTables'),
      logitIndices: await u32(Math.max(maxLogitRows, maxStepTokens), 'step.logitIndices'),
      maxBlocksPerSeq: maxBlocks,
      maxContext: 0,
      queryBlocks: await u32(2 * Math.ceil(maxStepTokens / queryBlockSize(config.headDim)), 'step.queryBlocks'),
      numQueryBlocks: 0,
    };
    // One sequence owns every block, in order: block i holds positions [i*bs, (i+1)*bs).
    gpu.write(prefill.blockTables, Uint32Array.from({ length: maxBlocks }, (_, i) => i));
    const logits = await gpu.createBuffer(maxLogitRows * config.vocabSize * 4, 'logits');
    return new OptModel(gpu, config, weights, runner, cache, prefill, logits, blockSize);
  }

  /** Throws InvalidInputError unless every id is a valid token and the sequence fits the position table. */
  checkTokens(tokens: readonly number[], extra = 0): void {
    if (tokens.length === 0) throw new InvalidInputError('the prompt is empty: give at least one token');
    tokens.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= this.config.vocabSize) {
        throw new InvalidInputError(`token ${i} is ${t}, outside the vocabulary [0, ${this.config.vocabSize})`);
      }
    });
    if (tokens.length + extra > this.config.maxPositions) {
      throw new InvalidInputError(
        `${tokens.length} prompt tokens${extra ? ` + ${extra} to generate` : ''} exceed the model's ${this.config.maxPositions} positions`,
      );
    }
  }

  /**
   * Record the prefill of `tokens[start, end)` at positions start.. (the cache already holds 0..start), with
   * logits for the chunk-relative rows `logitRows` into logitsBuffer.
   */
  recordPrefillChunk(tokens: readonly number[], start: number, end: number, logitRows: number[]): void {
    const n = end - start;
    const pos = Uint32Array.from({ length: n }, (_, i) => start + i);
    const g = this.gpu, p = this.prefill;
    g.write(p.tokenIds, Uint32Array.from(tokens.slice(start, end)));
    g.write(p.positions, pos);
    g.write(p.tokenSeq, new Uint32Array(n));
    g.write(p.slotMapping, pos); // block i is block i, so the slot is the position
    const blocks = buildQueryBlocks([[0, n]], queryBlockSize(this.config.headDim));
    g.write(p.queryBlocks, blocks);
    const allRows = logitRows.length === n && logitRows.every((r, i) => r === i);
    if (logitRows.length && !allRows) g.write(p.logitIndices, Uint32Array.from(logitRows));
    this.runner.forward({ ...p, numTokens: n, maxContext: end, numQueryBlocks: blocks.length / 2 }, this.cache, allRows ? 'all' : p.logitIndices, logitRows.length, this.logitsBuffer);
  }

  /** Full logits [tokens.length, vocab] of a prompt (a fresh sequence), computed in chunks. */
  async logits(tokens: readonly number[]): Promise<Float32Array> {
    this.checkTokens(tokens);
    const V = this.config.vocabSize;
    const out = new Float32Array(tokens.length * V);
    const step = Math.min(this.runner.maxTokens, this.runner.maxLogitRows);
    for (let start = 0; start < tokens.length; start += step) {
      const end = Math.min(tokens.length, start + step);
      this.recordPrefillChunk(tokens, start, end, Array.from({ length: end - start }, (_, i) => i));
      const bytes = await this.gpu.read(this.logitsBuffer, 0, (end - start) * V * 4);
      out.set(new Float32Array(bytes), start * V);
    }
    return out;
  }

  /** Buffers created for this model outside its weights, runner and cache (e.g. decode state); freed by release(). */
  readonly extraBuffers: GpuBuffer[] = [];

  /** Free every GPU buffer this model holds (the Gpu itself stays usable). */
  release(): void {
    const all = new Set<GpuBuffer>([
      ...this.weights.arenas,
      ...this.runner.buffers(),
      ...this.cache.layers.flatMap((l) => [l.key, l.value]),
      this.prefill.tokenIds, this.prefill.positions, this.prefill.tokenSeq, this.prefill.slotMapping,
      this.prefill.blockTables, this.prefill.logitIndices, this.logitsBuffer, ...this.extraBuffers,
    ]);
    for (const b of all) this.gpu.destroyBuffer(b);
  }
}

function isCheckpoint(x: unknown): x is Checkpoint {
  return typeof x === 'object' && x !== null && 'configJson' in x && 'tensors' in x;
}
