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
import { planWeightArenas } from '../model/gpu_weights.ts';
import { arenaPlanBytes } from '../model/weight_arena.ts';
import { OptTokenizer } from '../model/tokenizer/index.ts';
import type { IncrementalDetokenizer } from '../model/tokenizer/index.ts';
import { loadCheckpoint, type ModelSpec } from '../model/weights/sources.ts';
import type { HostTensor, ProgressCallback } from '../model/weights/types.ts';
import { KvCacheTooSmallError } from './errors.ts';
import { engineSizes, LLMEngine, type SamplingParams, type TokenLogprobs } from './llm_engine.ts';
import { ModelRunner } from './model_runner.ts';
import type { FinishReason } from './request.ts';
import type { EngineStepOutput } from './llm_engine.ts';
import { Completions } from './openai.ts';

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
  /** Record the next step while the last one's tokens are read back (LLMEngine's option; default true). */
  asyncScheduling?: boolean;
  /**
   * Tensor-parallel ranks (vLLM's tensor_parallel_size; default 1). Each rank is sized as its own virtual GPU:
   * gpuMemoryUtilization of gpuMemoryBytes holds its weight shards, activations and KV-cache shard.
   */
  tensorParallelSize?: number;
  /** One Gpu per rank (LLMEngine's option): e.g. a device host's tensor-parallel RemoteGpu connections. */
  tensorParallelGpus?: readonly Gpu[];
  /**
   * Exactly this many KV-cache blocks instead of what gpuMemoryUtilization leaves (vLLM's
   * num_gpu_blocks_override): for tests and demos that want a small, known cache.
   */
  numGpuBlocksOverride?: number;
  /** Download / read progress of the checkpoint's files (as OptModel.load's onProgress). */
  onProgress?: ProgressCallback;
  /** Use this Gpu instead of creating one. */
  gpu?: Gpu;
  /** The model's name in the OpenAI API (default: the model spec). */
  servedModelName?: string;
}

export interface GenerateSamplingParams extends SamplingParams {
  /** Strings that end the completion; the text stops before them. */
  stop?: string[];
  /**
   * Samples per prompt (default 1). They share the prompt's KV blocks; sample i's seed is
   * sampleSeed(seed, i) (sample 0 keeps the request's seed), so each is reproducible on its own.
   */
  n?: number;
}

export type Prompt = string | { prompt: string } | { tokens: readonly number[] };

/** One sample of a prompt (vLLM's CompletionOutput). */
export interface SampleOutput {
  /** Which of the prompt's n samples (0-based). */
  index: number;
  tokenIds: number[];
  text: string;
  finishReason: FinishReason | null;
  /** The stop string or token id that ended it, if any. */
  stopReason: string | number | null;
  /** Per token (tokenIds, stop-string tokens included), when `logprobs` was asked for. */
  logprobs?: TokenLogprobs[];
}

/** One prompt's result (vLLM's RequestOutput): its first sample's fields, and all n samples in `outputs`. */
export interface CompletionOutput extends SampleOutput {
  requestId: string;
  promptTokenIds: readonly number[];
  outputs: SampleOutput[];
}

export interface Distribution {
  mean: number | null;
  p50: number | null;
  p90: number | null;
}

export interface EngineMetrics {
  finishedRequests: number;
  abortedRequests: number;
  generatedTokens: number;
  runningRequests: number;
  waitingRequests: number;
  ttftMs: Distribution;
  timePerOutputTokenMs: Distribution;
  queueTimeMs: Distribution;
  /** Share of KV-cache blocks in use (0..1). */
  kvCacheUsage: number;
  /** Prompt tokens served from the prefix cache / prompt tokens looked up. */
  prefixCacheHitRate: number;
  preemptions: number;
}

export class LLM {
  readonly engine: LLMEngine;
  readonly tokenizer: OptTokenizer;
  readonly gpu: Gpu;
  /** Bytes: weights, KV cache, and the KV cache per block. */
  readonly memory: { weights: number; kvCache: number; kvPerBlock: number; numBlocks: number };
  /** The model's name in the OpenAI API (the spec it was loaded from, unless set). */
  modelName = 'tandem';
  /** Unfinished requests of this LLM (generate and stream), by request id. */
  private readonly tracked = new Map<string, Tracked>();
  /** n > 1 requests: the request id the user sees → its samples' engine request ids. */
  private readonly groups = new Map<string, string[]>();
  private loop: Promise<void> | null = null;
  private _completions: Completions | undefined;

  private constructor(gpu: Gpu, engine: LLMEngine, tokenizer: OptTokenizer, memory: LLM['memory']) {
    this.gpu = gpu;
    this.engine = engine;
    this.tokenizer = tokenizer;
    this.memory = memory;
  }

  static async create(opts: LLMOptions): Promise<LLM> {
    const util = opts.gpuMemoryUtilization ?? 0.9;
    if (!(util > 0 && util <= 1)) throw new InvalidInputError(`gpuMemoryUtilization must be in (0, 1], got ${util}`);
    const given = opts.gpu ?? opts.tensorParallelGpus?.[0];
    const gpu = given ?? await LocalGpu.create();
    const ckpt = await loadCheckpoint(opts.model, { onProgress: opts.onProgress });
    const config = parseOptConfig(ckpt.configJson);
    const { dtype, blockSize, maxModelLen, maxNumSeqs, maxNumBatchedTokens } = engineSizes(config, opts);
    const e = dtype === 'f16' ? 2 : 4;
    // Weights are known from the checkpoint; activations from the runner's sizes (its peak is these buffers).
    // Per rank under tensor parallelism: split tensors count their share (src/model/tensor_parallel.ts).
    const tp = opts.tensorParallelGpus?.length ?? opts.tensorParallelSize ?? 1;
    // The weight arenas exactly as uploadWeights will allocate them (alignment padding included).
    const weightBytes = arenaPlanBytes(planWeightArenas(config, dtype, { rank: 0, size: tp }, gpu.caps.maxBufferSize, (n) => ckpt.tensors.get(n)?.shape ?? []));
    // Everything else the runner holds, computed from the same sizes it allocates with (vLLM profiles a forward
    // for this; here the buffers are static, so their sum is exact).
    const activationBytes = ModelRunner.bytesWithoutKvCache(config, dtype, { rank: 0, size: tp }, { maxNumSeqs, maxNumBatchedTokens, maxModelLen, blockSize });
    const budget = util * (opts.gpuMemoryBytes ?? 4 * 1024 ** 3) - weightBytes - activationBytes;
    const perBlock = kvCacheBytesPerBlock(config, blockSize, dtype, { rank: 0, size: tp });
    const fit = Math.floor(budget / perBlock);
    const override = opts.numGpuBlocksOverride;
    if (override !== undefined && !(Number.isInteger(override) && override > 0)) {
      throw new InvalidInputError(`numGpuBlocksOverride must be a positive integer, got ${override}`);
    }
    const numBlocks = override ?? fit;
    const needed = Math.ceil(maxModelLen / blockSize);
    if (numBlocks < needed) {
      throw new KvCacheTooSmallError({ neededBlocks: needed, availableBlocks: Math.max(0, numBlocks), maxModelLen, blockSize });
    }
    const engine = await LLMEngine.create(gpu, ckpt, {
      dtype, blockSize, numBlocks, maxNumSeqs, maxNumBatchedTokens, maxModelLen, enablePrefixCaching: opts.enablePrefixCaching,
      numLookaheadTokens: opts.numLookaheadTokens, asyncScheduling: opts.asyncScheduling, tensorParallelSize: tp, tensorParallelGpus: opts.tensorParallelGpus,
    });
    const tokenizer = await OptTokenizer.load();
    // Per rank (each rank's virtual GPU holds the same amounts).
    const llm = new LLM(gpu, engine, tokenizer, { weights: engine.weights.totalBytes, kvCache: engine.runner.cache.bytes, kvPerBlock: perBlock, numBlocks });
    llm.modelName = opts.servedModelName ?? (typeof opts.model === 'string' ? opts.model : 'tandem');
    llm.ownsGpu = given === undefined;
    return llm;
  }

  private promptIds(p: Prompt): number[] {
    if (typeof p === 'string') return this.tokenizer.encode(p);
    if ('tokens' in p) return [...p.tokens];
    if ('prompt' in p && typeof p.prompt === 'string') return this.tokenizer.encode(p.prompt);
    throw new InvalidInputError('a prompt is a string, {prompt: string} or {tokens: number[]}');
  }

  /**
   * Validate and queue one prompt's n samples; their deltas go to `sink` from the shared step loop. Throws (and
   * queues nothing) on a bad prompt or parameters. Returns the group's id and its samples.
   */
  private track(p: Prompt, sp: StreamSamplingParams, sink: (d: StreamDelta) => void, fail: (e: unknown) => void): { id: string; samples: Tracked[] } {
    const ids = this.promptIds(p);
    const stop = (sp.stop ?? []).filter((s) => s.length > 0);
    const { stop: _s, requestId, n, ...engineParams } = sp;
    const count = n ?? 1;
    if (!(Number.isInteger(count) && count >= 1)) throw new InvalidInputError(`n must be a positive integer, got ${n}`);
    if (requestId !== undefined && (this.tracked.has(requestId) || this.groups.has(requestId))) {
      throw new InvalidInputError(`request id ${requestId} is already in use`);
    }
    const id = requestId ?? this.engine.newRequestId();
    const reqs = this.engine.addRequestGroup(ids, engineParams, count, id);
    const samples = reqs.map((r, index) =>
      new Tracked(r.requestId, id, index, ids, stop, this.tokenizer.detokenizer({ promptIds: ids }), sink, fail, engineParams.logprobs !== undefined));
    for (const t of samples) this.tracked.set(t.requestId, t);
    if (count > 1) this.groups.set(id, samples.map((t) => t.requestId));
    this.ensureLoop();
    return { id, samples };
  }

  /**
   * The one step loop: while any request of this LLM is unfinished, step the engine (never two steps at once)
   * and route each output to its request's sink. Started on demand, ends when nothing is left.
   */
  private ensureLoop(): void {
    if (this.loop) return;
    this.loop = (async () => {
      try {
        // Let the caller queue the rest of its prompts first (generate() tracks them all in one go), so the
        // first step schedules them together instead of the first alone.
        await Promise.resolve();
        while (this.tracked.size > 0) {
          const outs = await this.engine.step();
          const now = performance.now();
          for (const t of this.tracked.values()) {
            if (t.scheduledMs === null && this.engine.scheduler.getRequest(t.requestId)?.status === 'running') t.scheduledMs = now;
          }
          for (const o of outs) {
            const t = this.tracked.get(o.requestId);
            if (t) this.deliver(t, o);
          }
          // A step that produced nothing (a partial prefill, say) may not have yielded to the event loop.
          if (outs.length === 0) await new Promise((r) => setTimeout(r, 0));
        }
      } catch (e) {
        const failed = [...this.tracked.values()];
        this.tracked.clear();
        for (const t of failed) {
          this.engine.abort(t.requestId);
          t.fail(e);
        }
      } finally {
        this.loop = null;
      }
    })();
  }

  /** Apply one step's output: detokenize, find stop strings, emit the decided text. */
  private deliver(t: Tracked, o: EngineStepOutput): void {
    if (t.firstTokenMs === null && o.newTokenIds.length > 0) t.firstTokenMs = performance.now();
    t.tokenIds.push(...o.newTokenIds);
    if (o.logprobs) t.logprobs?.push(...o.logprobs);
    t.text += t.detok.push(o.newTokenIds);
    let finish: [FinishReason, string | number | null] | null = o.finished ? [o.finishReason ?? 'stop', o.stopReason] : null;
    if (o.finished) t.text += t.detok.flush();
    const hit = t.findStop();
    if (hit) {
      t.text = t.text.slice(0, hit[1]);
      finish = ['stop', hit[0]];
      if (!o.finished) this.engine.finishRequest(t.requestId, 'stop', hit[0]);
    }
    this.emit(t, o.newTokenIds, finish, o.logprobs);
  }

  private emit(t: Tracked, tokenIds: number[], finish: [FinishReason, string | number | null] | null, logprobs?: TokenLogprobs[]): void {
    // Hold back a suffix that may still become a stop string; at the end, everything left is decided.
    const end = finish ? t.text.length : t.text.length - t.heldBack();
    const text = end > t.emitted ? t.text.slice(t.emitted, end) : '';
    t.emitted = Math.max(t.emitted, end);
    if (finish) {
      t.finishReason = finish[0];
      t.stopReason = finish[1];
      this.tracked.delete(t.requestId);
      this.recordFinished(t);
      const group = this.groups.get(t.groupId);
      if (group && group.every((id) => !this.tracked.has(id))) this.groups.delete(t.groupId);
    }
    const delta: StreamDelta = { requestId: t.requestId, index: t.index, text, tokenIds, finishReason: t.finishReason, stopReason: t.stopReason };
    if (t.logprobs) delta.logprobs = logprobs ?? [];
    t.sink(delta);
  }

  private readonly finishedStats = { requests: 0, aborted: 0, tokens: 0, ttft: [] as number[], tpot: [] as number[], queue: [] as number[] };

  private recordFinished(t: Tracked): void {
    const f = this.finishedStats, now = performance.now();
    f.requests++;
    if (t.finishReason === 'abort') f.aborted++;
    f.tokens += t.tokenIds.length;
    if (t.scheduledMs !== null) f.queue.push(t.scheduledMs - t.arrivalMs);
    if (t.firstTokenMs !== null) {
      f.ttft.push(t.firstTokenMs - t.arrivalMs);
      if (t.tokenIds.length > 1) f.tpot.push((now - t.firstTokenMs) / (t.tokenIds.length - 1));
    }
    // Keep the latest 10,000 samples: enough for percentiles, bounded for a long-running server.
    for (const xs of [f.ttft, f.tpot, f.queue]) if (xs.length > 10000) xs.splice(0, xs.length - 10000);
  }

  /**
   * Serving metrics since creation (vLLM's): time to first token, time per output token and queue time (ms,
   * mean / p50 / p90 over finished requests), KV-cache usage, prefix-cache hit rate, preemptions, counts.
   */
  metrics(): EngineMetrics {
    const f = this.finishedStats;
    const dist = (xs: number[]) => {
      if (xs.length === 0) return { mean: null, p50: null, p90: null };
      const s = [...xs].sort((a, b) => a - b);
      return { mean: s.reduce((a, b) => a + b, 0) / s.length, p50: s[Math.floor(0.5 * (s.length - 1))], p90: s[Math.floor(0.9 * (s.length - 1))] };
    };
    const st = this.engine.scheduler.stats();
    const pc = st.prefixCache;
    return {
      finishedRequests: f.requests, abortedRequests: f.aborted, generatedTokens: f.tokens,
      runningRequests: st.numRunning, waitingRequests: st.numWaiting,
      ttftMs: dist(f.ttft), timePerOutputTokenMs: dist(f.tpot), queueTimeMs: dist(f.queue),
      kvCacheUsage: st.kvCacheUsage, prefixCacheHitRate: pc.queries > 0 ? pc.hits / pc.queries : 0,
      preemptions: st.numPreemptions,
    };
  }

  /**
   * Serve every prompt (continuous batching, on the shared step loop) and return completions in input order;
   * with `n > 1`, each prompt's samples are in its `outputs`.
   */
  async generate(prompts: readonly Prompt[], params: StreamSamplingParams | StreamSamplingParams[] = {}): Promise<CompletionOutput[]> {
    const started: Array<{ id: string; samples: Tracked[] }> = [];
    const done: Promise<void>[] = [];
    try {
      prompts.forEach((p, i) => {
        const sp = Array.isArray(params) ? params[i] ?? {} : params;
        let resolve!: () => void, reject!: (e: unknown) => void;
        done.push(new Promise<void>((res, rej) => { resolve = res; reject = rej; }));
        let remaining = sp.n ?? 1;
        started.push(this.track(p, sp, (d) => { if (d.finishReason !== null && --remaining === 0) resolve(); }, reject));
      });
    } catch (e) {
      for (const g of started) this.abort(g.id);
      throw e;
    }
    await Promise.all(done);
    return started.map(({ id, samples }) => {
      const outputs: SampleOutput[] = samples.map((t) => ({
        index: t.index, tokenIds: t.tokenIds, text: t.text, finishReason: t.finishReason, stopReason: t.stopReason,
        ...(t.logprobs ? { logprobs: t.logprobs } : {}),
      }));
      return { requestId: id, promptTokenIds: samples[0].promptTokenIds, ...outputs[0], outputs };
    });
  }

  /**
   * Stream one request: an async iterable of deltas (new text and token ids per engine step; the last one has
   * `finishReason`). Concatenated, the deltas' text is `generate`'s text for the same request. Runs on the same
   * step loop as `generate`, so any number of streams and generate calls proceed together. Bad prompts or
   * parameters throw here, before anything is queued. Leaving the iteration early aborts the request.
   */
  stream(prompt: Prompt, params: StreamSamplingParams = {}): RequestStream {
    const q = new AsyncQueue<StreamDelta>();
    let remaining = params.n ?? 1;
    const g = this.track(prompt, params, (d) => {
      q.push(d);
      if (d.finishReason !== null && --remaining === 0) q.end();
    }, (e) => q.fail(e));
    return new RequestStream(g.id, q, () => { if (g.samples.some((t) => t.finishReason === null)) this.abort(g.id); });
  }

  /**
   * Abort a request in any state: its blocks are freed now, and its stream (if any) ends with a delta of
   * finishReason 'abort' (carrying any text held back for a possible stop string). False if unknown or done.
   */
  /** vLLM's sleep mode (LLMEngine.sleep): level 1 frees the KV cache and moves weights to the host, 2 drops them. */
  sleep(level: 1 | 2 = 1): Promise<number> {
    if (this.tracked.size > 0) throw new InvalidInputError('sleep needs an idle engine: finish or abort every request first');
    return this.engine.sleep(level);
  }

  /** Wake from sleep: 'weights', then 'kv_cache' (both by default). */
  wakeUp(tags?: ReadonlyArray<'weights' | 'kv_cache'>): Promise<void> {
    return this.engine.wakeUp(tags);
  }

  /** Overwrite weights on the GPU by HF name and reset the prefix cache (LLMEngine.updateWeights). */
  updateWeights(tensors: Iterable<[string, HostTensor]>): number {
    return this.engine.updateWeights(tensors);
  }

  abort(requestId: string): boolean {
    const group = this.groups.get(requestId);
    if (group) return group.map((id) => this.abort(id)).some((x) => x);
    const aborted = this.engine.abort(requestId);
    const t = this.tracked.get(requestId);
    if (t) this.emit(t, [], ['abort', null]);
    return aborted || t !== undefined;
  }

  /** OpenAI's completions API (`llm.completions.create({...})`) over this LLM. */
  get completions(): Completions {
    this._completions ??= new Completions(this);
    return this._completions;
  }

  /**
   * Abort every unfinished request of this LLM (their streams end with 'abort'; generate calls resolve), then free
   * every GPU buffer of the engine, and the Gpu itself when LLM.create made it.
   */
  async dispose(): Promise<void> {
    for (const id of [...this.tracked.keys()]) this.abort(id);
    await this.loop?.catch(() => {});
    await this.engine.release();
    if (this.ownsGpu) this.gpu.destroy();
  }

  /** Whether LLM.create made the Gpu (and dispose() destroys it) rather than being given one. */
  private ownsGpu = false;
}

export interface StreamSamplingParams extends GenerateSamplingParams {
  /** The engine's request id (default: assigned). Must be unique among unfinished requests. */
  requestId?: string;
}

/** One step's worth of a streamed request. */
export interface StreamDelta {
  requestId: string;
  /** New text (may be '' while a character or a possible stop string is undecided). */
  text: string;
  /** Token ids generated this step (including those of a stop string, which is not in the text). */
  tokenIds: number[];
  /** Which sample of the request (0 unless n > 1). */
  index: number;
  /** Set on the last delta of its sample (with n > 1 the stream ends after every sample's last delta). */
  finishReason: FinishReason | null;
  stopReason: string | number | null;
  /** Logprobs of `tokenIds`, when the request asked for them. */
  logprobs?: TokenLogprobs[];
}

/** A request's state on the LLM side: its detokenizer, its text so far, where its deltas go. */
class Tracked {
  tokenIds: number[] = [];
  /** All text detokenized so far (cut before a stop string once one is found). */
  text = '';
  /** Characters of `text` already emitted. */
  emitted = 0;
  finishReason: FinishReason | null = null;
  stopReason: string | number | null = null;
  /** performance.now() at arrival, first scheduling, first token, finish (for metrics). */
  readonly arrivalMs = performance.now();
  scheduledMs: number | null = null;
  firstTokenMs: number | null = null;
  /** Per token, when the request asked for logprobs. */
  readonly logprobs: TokenLogprobs[] | null;
  constructor(
    readonly requestId: string,
    /** The id the user sees: requestId itself when n = 1, the n samples' shared id otherwise. */
    readonly groupId: string,
    readonly index: number,
    readonly promptTokenIds: readonly number[],
    readonly stop: readonly string[],
    readonly detok: IncrementalDetokenizer,
    readonly sink: (d: StreamDelta) => void,
    readonly fail: (e: unknown) => void,
    wantsLogprobs: boolean,
  ) {
    this.logprobs = wantsLogprobs ? [] : null;
  }

  /** The earliest stop string in the text (none can start before `emitted`: such a prefix is held back). */
  findStop(): [string, number] | null {
    let best: [string, number] | null = null;
    for (const s of this.stop) {
      const i = this.text.indexOf(s, this.emitted);
      if (i >= 0 && (best === null || i < best[1])) best = [s, i];
    }
    return best;
  }

  /** Length of the longest suffix of the text that is a proper prefix of a stop string (still undecided). */
  heldBack(): number {
    let n = 0;
    for (const s of this.stop) {
      for (let k = Math.min(s.length - 1, this.text.length - this.emitted); k > n; k--) {
        if (this.text.endsWith(s.slice(0, k))) { n = k; break; }
      }
    }
    return n;
  }
}

/** An unbounded single-consumer queue that ends or fails once. */
export class AsyncQueue<T> {
  private items: T[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;
  private error: { e: unknown } | null = null;
  push(x: T): void { this.items.push(x); this.wake(); }
  end(): void { this.ended = true; this.wake(); }
  fail(e: unknown): void { this.error = { e }; this.wake(); }
  private wake(): void { const w = this.waiter; this.waiter = null; w?.(); }
  async next(): Promise<IteratorResult<T>> {
    for (;;) {
      if (this.items.length) return { value: this.items.shift()!, done: false };
      if (this.error) throw this.error.e;
      if (this.ended) return { value: undefined, done: true };
      await new Promise<void>((r) => { this.waiter = r; });
    }
  }
}

/** `llm.stream()`'s result: iterate it once (for await); `requestId` is for `llm.abort()`. */
export class RequestStream implements AsyncIterable<StreamDelta> {
  constructor(readonly requestId: string, private readonly q: AsyncQueue<StreamDelta>, private readonly onReturn: () => void) {}
  [Symbol.asyncIterator](): AsyncIterator<StreamDelta> {
    return {
      next: () => this.q.next(),
      return: (): Promise<IteratorResult<StreamDelta>> => {
        this.onReturn();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
