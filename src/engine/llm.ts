/**
 * The user-facing API, vLLM's `LLM` in TypeScript: text or token prompts in, completions out.
 *
 *   const llm = await LLM.create({ model: 'synthetic:opt-125m:1', gpuMemoryUtilization: 0.5 });
 *   const [out] = await llm.generate(['Hello, my name is'], { maxTokens: 32, temperature: 0.8, seed: 1 });
 *
 * The KV cache gets what `gpuMemoryUtilization` leaves of the (virtual) GPU's memory after the weights and the
 * runner's activations, in whole blocks. WebGPU does not report a device's memory size, so it is an option
 * (`gpuMemoryBytes`, default 4 GiB: the cluster layer passes each virtual GPU's size). Stop strings are found on
 * the detokenized text and never emitted.
 */
import { InvalidInputError } from '../errors.ts';
import { LocalGpu } from '../gpu/local.ts';
import type { Gpu } from '../gpu/gpu.ts';
import type { ElementType } from '../kernels/shader.ts';
import { parseOptConfig } from '../model/config.ts';
import { kvCacheBytesPerBlock } from '../model/kv_cache.ts';
import { OptTokenizer } from '../model/tokenizer/index.ts';
import type { IncrementalDetokenizer } from '../model/tokenizer/index.ts';
import { loadCheckpoint, type ModelSpec } from '../model/weights/sources.ts';
import { KvCacheTooSmallError } from './errors.ts';
import { LLMEngine, type SamplingParams } from './llm_engine.ts';
import type { FinishReason } from './request.ts';

export interface LLMOptions {
  model: ModelSpec;
  dtype?: ElementType;
  blockSize?: number;
  /** Share of the GPU's memory this engine may use (weights + activations + KV cache). Default 0.9. */
  gpuMemoryUtilization?: number;
  /** The (virtual) GPU's memory in bytes. Default 4 GiB. */
  gpuMemoryBytes?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  maxModelLen?: number;
  enablePrefixCaching?: boolean;
  /** Decode steps per readback beyond the first (LLMEngine's option; default 7). */
  numLookaheadTokens?: number;
  /** Use this Gpu instead of creating one. */
  gpu?: Gpu;
}

export interface GenerateSamplingParams extends SamplingParams {
  /** Strings that end the completion; the text stops before them. */
  stop?: string[];
}

export type Prompt = string | { prompt: string } | { tokens: readonly number[] };

export interface CompletionOutput {
  requestId: string;
  promptTokenIds: readonly number[];
  tokenIds: number[];
  text: string;
  finishReason: FinishReason | null;
  /** The stop string or token id that ended it, if any. */
  stopReason: string | number | null;
}

export class LLM {
  readonly engine: LLMEngine;
  readonly tokenizer: OptTokenizer;
  readonly gpu: Gpu;
  /** Bytes: weights, KV cache, and the KV cache per block. */
  readonly memory: { weights: number; kvCache: number; kvPerBlock: number; numBlocks: number };

  private constructor(gpu: Gpu, engine: LLMEngine, tokenizer: OptTokenizer, memory: LLM['memory']) {
    this.gpu = gpu;
    this.engine = engine;
    this.tokenizer = tokenizer;
    this.memory = memory;
  }

  static async create(opts: LLMOptions): Promise<LLM> {
    const util = opts.gpuMemoryUtilization ?? 0.9;
    if (!(util > 0 && util <= 1)) throw new InvalidInputError(`gpuMemoryUtilization must be in (0, 1], got ${util}`);
    const gpu = opts.gpu ?? await LocalGpu.create();
    const ckpt = await loadCheckpoint(opts.model);
    const config = parseOptConfig(ckpt.configJson);
    const dtype = opts.dtype ?? 'f32';
    const blockSize = opts.blockSize ?? 16;
    const maxModelLen = opts.maxModelLen ?? config.maxPositions;
    const maxNumSeqs = opts.maxNumSeqs ?? 64;
    const maxNumBatchedTokens = opts.maxNumBatchedTokens ?? 512;
    const e = dtype === 'f16' ? 2 : 4;
    // Weights are known from the checkpoint; activations from the runner's sizes (its peak is these buffers).
    let weightBytes = 0;
    for (const t of ckpt.tensors.values()) weightBytes += (t.bytes.byteLength / (t.dtype === 'F32' ? 4 : 2)) * e;
    const T = maxNumBatchedTokens, H = config.hiddenSize;
    const activationBytes = e * T * (5 * H + 3 * H + config.ffnDim + 2 * config.wordEmbedProjDim) + 4 * maxNumSeqs * config.vocabSize;
    const budget = util * (opts.gpuMemoryBytes ?? 4 * 1024 ** 3) - weightBytes - activationBytes;
    const perBlock = kvCacheBytesPerBlock(config, blockSize, dtype);
    const numBlocks = Math.floor(budget / perBlock);
    const needed = Math.ceil(maxModelLen / blockSize);
    if (numBlocks < needed) {
      throw new KvCacheTooSmallError({ neededBlocks: needed, availableBlocks: Math.max(0, numBlocks), maxModelLen, blockSize });
    }
    const engine = await LLMEngine.create(gpu, ckpt, {
      dtype, blockSize, numBlocks, maxNumSeqs, maxNumBatchedTokens, maxModelLen, enablePrefixCaching: opts.enablePrefixCaching,
      numLookaheadTokens: opts.numLookaheadTokens,
    });
    const tokenizer = await OptTokenizer.load();
    return new LLM(gpu, engine, tokenizer, { weights: engine.weights.totalBytes, kvCache: engine.runner.cache.bytes, kvPerBlock: perBlock, numBlocks });
  }

  private promptIds(p: Prompt): number[] {
    if (typeof p === 'string') return this.tokenizer.encode(p);
    if ('tokens' in p) return [...p.tokens];
    if ('prompt' in p && typeof p.prompt === 'string') return this.tokenizer.encode(p.prompt);
    throw new InvalidInputError('a prompt is a string, {prompt: string} or {tokens: number[]}');
  }

  /** Serve every prompt (continuous batching) and return completions in input order. */
  async generate(prompts: readonly Prompt[], params: GenerateSamplingParams | GenerateSamplingParams[] = {}): Promise<CompletionOutput[]> {
    const eng = this.engine;
    const live = prompts.map((p, i) => {
      const sp = Array.isArray(params) ? params[i] ?? {} : params;
      const ids = this.promptIds(p);
      const req = eng.addRequest(ids, sp);
      return {
        req, stop: sp.stop ?? [], detok: this.tokenizer.detokenizer({ promptIds: ids }) as IncrementalDetokenizer,
        out: { requestId: req.requestId, promptTokenIds: ids, tokenIds: [] as number[], text: '', finishReason: null as FinishReason | null, stopReason: null as string | number | null },
      };
    });
    const byId = new Map(live.map((l) => [l.req.requestId, l]));
    while (live.some((l) => l.out.finishReason === null)) {
      for (const o of await eng.step()) {
        const l = byId.get(o.requestId);
        if (!l || l.out.finishReason !== null) continue;
        l.out.tokenIds.push(...o.newTokenIds);
        l.out.text += l.detok.push(o.newTokenIds);
        if (o.finished) {
          l.out.text += l.detok.flush();
          l.out.finishReason = o.finishReason;
          l.out.stopReason = o.stopReason;
        }
        // Stop strings: cut the text before the first one and end the request (the engine frees its blocks).
        const hit = l.stop.map((s) => [s, l.out.text.indexOf(s)] as const).filter(([, i]) => i >= 0).sort((a, b) => a[1] - b[1])[0];
        if (hit) {
          l.out.text = l.out.text.slice(0, hit[1]);
          l.out.finishReason = 'stop';
          l.out.stopReason = hit[0];
          if (!o.finished) eng.scheduler.finishRequest(o.requestId, 'stop', hit[0]);
        }
      }
    }
    return live.map((l) => l.out);
  }

  abort(requestId: string): boolean {
    return this.engine.abort(requestId);
  }
}
