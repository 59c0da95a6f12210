/**
 * The engine core (vLLM v1's EngineCore): a Scheduler and KVCacheManager (CPU bookkeeping) driving a
 * ModelRunner (GPU). `step()` is one scheduling decision, one forward, one sampling pass; `generate()` runs
 * requests to completion. The user-facing `LLM` API (text in, streaming, metrics, sleep, weight updates) is
 * built on this.
 */
import { InvalidInputError, WeightMismatchError } from '../errors.ts';
import { validateSamplingValues } from '../model/generate.ts';
import { canonicalTensorName } from '../model/weights/names.ts';
import type { Gpu } from '../gpu/gpu.ts';
import type { ElementType } from '../kernels/shader.ts';
import { MAX_TOP_LOGPROBS, type LogprobsRecord, type SamplingRow } from '../kernels/sample.ts';
import { expectedTensors, parseOptConfig, type OptConfig } from '../model/config.ts';
import { uploadWeights, writeTensor, type OptGpuWeights } from '../model/gpu_weights.ts';
import { checkTensorParallel, unshardTensor } from '../model/tensor_parallel.ts';
import { TensorParallelGroup } from '../gpu/tensor_parallel_group.ts';
import { loadCheckpoint, type ModelSpec } from '../model/weights/sources.ts';
import type { Checkpoint, HostTensor, TensorMap } from '../model/weights/types.ts';
import { KVCacheManager } from './kv_cache_manager.ts';
import { MAX_LOOKAHEAD, ModelRunner, type ContinuationRow, type ModelRunnerConfig, type PendingStep, type RunnerChunk } from './model_runner.ts';
import { Request, type FinishReason, type RequestSamplingParams } from './request.ts';
import { Scheduler, type RequestStepOutput, type SchedulerOutput } from './scheduler.ts';
import { EngineProtocolError } from './errors.ts';

export interface SamplingParams extends RequestSamplingParams {
  /** 0 (default) = greedy. */
  temperature?: number;
  /** 0 = off. */
  topK?: number;
  /** 1 = off. */
  topP?: number;
  /** 0 = off: keep tokens with probability >= minP * the most likely one's. */
  minP?: number;
  /** Per-request seed: its draws depend on (seed, position) only, never on the batch. */
  seed?: number;
  /**
   * vLLM's penalties, applied on the GPU to the logits before sampling (greedy included). Repetition: over
   * prompt and output tokens, logit > 0 → logit / p, else logit * p (1 = off, > 0). Presence and frequency:
   * over output tokens, logit -= frequencyPenalty * count + presencePenalty * (count > 0) (0 = off, in [-2, 2]).
   */
  repetitionPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /**
   * Logprobs per generated token: the sampled token's, its rank, and the top `logprobs` (0..20) of the step.
   * Raw logprobs, vLLM v1's default (`logprobs_mode="raw_logprobs"`): log-softmax of the model's logits as they
   * come out, before penalties, temperature and top-k/top-p/min-p. Undefined = none.
   */
  logprobs?: number;
}

/** One generated token's logprobs (SamplingParams.logprobs). */
export interface TokenLogprobs {
  tokenId: number;
  /** Raw log-probability of tokenId at this step. */
  logprob: number;
  /** 1 + the number of tokens with a higher logit. */
  rank: number;
  /** The step's `logprobs` most likely tokens, most likely first (ties: lower id first). */
  top: Array<{ tokenId: number; logprob: number }>;
}

/** A step's output for one request: the scheduler's, plus logprobs for each new token when asked. */
export interface EngineStepOutput extends RequestStepOutput {
  logprobs?: TokenLogprobs[];
}

/** Validate the engine-only sampling fields (penalties, logprobs); throws InvalidInputError naming the field. */
export function validateEngineSampling(p: SamplingParams): void {
  const bad = (m: string) => { throw new InvalidInputError(m); };
  if (p.repetitionPenalty !== undefined && !(p.repetitionPenalty > 0 && Number.isFinite(p.repetitionPenalty))) {
    bad(`repetitionPenalty must be > 0, got ${p.repetitionPenalty}`);
  }
  for (const name of ['presencePenalty', 'frequencyPenalty'] as const) {
    const v = p[name];
    if (v !== undefined && !(v >= -2 && v <= 2)) bad(`${name} must be in [-2, 2], got ${v}`);
  }
  if (p.logprobs !== undefined && !(Number.isInteger(p.logprobs) && p.logprobs >= 0 && p.logprobs <= MAX_TOP_LOGPROBS)) {
    bad(`logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${p.logprobs}`);
  }
}

/**
 * The seed of sample `index` of an `n > 1` request whose seed is `seed`: sample 0 keeps it, the others get a
 * distinct value derived from (seed, index), so every sample is reproducible from the request's seed alone.
 */
export function sampleSeed(seed: number, index: number): number {
  if (index === 0) return seed >>> 0;
  const mix = (x: number) => {
    x ^= x >>> 16; x = Math.imul(x, 0x85ebca6b); x ^= x >>> 13; x = Math.imul(x, 0xc2b2ae35); x ^= x >>> 16;
    return x >>> 0;
  };
  return mix((seed ^ mix(Math.imul(index, 0x9e3779b9) + 0x632be5ab)) >>> 0);
}

/** Token state is needed for penalties, or to mask stop tokens before minTokens. */
function stopTokensToMask(p: SamplingParams, eos: number | null): number[] {
  if ((p.minTokens ?? 0) === 0) return [];
  return [...(eos !== null && !p.ignoreEos ? [eos] : []), ...(p.stopTokenIds ?? [])];
}
function usesPenalties(p: SamplingParams): boolean {
  return (p.repetitionPenalty ?? 1) !== 1 || (p.presencePenalty ?? 0) !== 0 || (p.frequencyPenalty ?? 0) !== 0;
}

export interface EngineOptions {
  dtype?: ElementType;
  blockSize?: number;
  /** KV-cache blocks (a later version sizes this from gpuMemoryUtilization). */
  numBlocks: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  maxModelLen?: number;
  enablePrefixCaching?: boolean;
  /**
   * Decode steps run on the GPU per readback, beyond the first (default 7; 0 = one step per readback). The
   * scheduler reserves their KV slots; stops found among them discard the rest (a few wasted steps).
   */
  numLookaheadTokens?: number;
  /**
   * Asynchronous scheduling (default true): while a step's tokens are read back, the next step over the same
   * running requests is already on the GPU (LLMEngine.step). False: every step waits for its tokens before the
   * next is scheduled (to compare; outputs are the same either way).
   */
  asyncScheduling?: boolean;
  /**
   * Megatron-style tensor parallelism over this many ranks of one device (vLLM's tensor_parallel_size): each
   * rank holds its share of the heads and fc1/fc2 and of the KV cache (numBlocks blocks of its heads), and every
   * step runs on all ranks with two all-reduces per layer. Default 1.
   */
  tensorParallelSize?: number;
  /**
   * One Gpu per tensor-parallel rank, each able to all-reduce with the others (e.g. RemoteGpu connections of a
   * device host's tensor-parallel group, one per virtual GPU): rank r runs on tensorParallelGpus[r]. Without it,
   * tensorParallelSize ranks share the engine's Gpu through a TensorParallelGroup.
   */
  tensorParallelGpus?: readonly Gpu[];
}

/** A step submitted on every rank whose tokens the engine has not processed yet. */
interface InflightStep {
  out: SchedulerOutput<SamplingParams>;
  /** One per rank, in rank order. */
  pending: PendingStep[];
}

/** One tensor-parallel rank: its view of the device, its weight shards, its runner (KV-cache shard). */
interface Rank {
  gpu: Gpu;
  weights: OptGpuWeights;
  runner: ModelRunner;
}

/** The engine's sizes with vLLM-like defaults filled in (shared by LLM.create, which sizes the KV cache from them). */
export function engineSizes(config: OptConfig, opts: Partial<EngineOptions>): {
  dtype: ElementType; blockSize: number; maxModelLen: number; maxNumSeqs: number; maxNumBatchedTokens: number;
} {
  return {
    dtype: opts.dtype ?? 'f32',
    blockSize: opts.blockSize ?? 16,
    maxModelLen: opts.maxModelLen ?? config.maxPositions,
    maxNumSeqs: opts.maxNumSeqs ?? 64,
    maxNumBatchedTokens: opts.maxNumBatchedTokens ?? 512,
  };
}

export interface RequestOutput {
  requestId: string;
  promptTokenIds: readonly number[];
  tokenIds: number[];
  finishReason: FinishReason | null;
  /** One entry per token when SamplingParams.logprobs was given. */
  logprobs?: TokenLogprobs[];
}

export class LLMEngine {
  readonly config: OptConfig;
  readonly scheduler: Scheduler<SamplingParams>;
  readonly kv: KVCacheManager;
  /** Rank 0's runner and weights (the only ones without tensor parallelism). Replaced by wakeUp() after a sleep. */
  get runner(): ModelRunner {
    return this.ranks[0].runner;
  }
  get weights(): OptGpuWeights {
    return this.ranks[0].weights;
  }
  /** Every tensor-parallel rank (one without tensor parallelism). */
  ranks: Rank[];
  /** The ranks' group when tensorParallelSize > 1. */
  readonly tpGroup: TensorParallelGroup | null;
  /** 0 awake; 1 weights kept on the host, KV cache freed; 2 weights and KV cache dropped (vLLM's sleep levels). */
  private asleep: { level: 1 | 2; weights: TensorMap | null; weightsAwake: boolean; kvAwake: boolean } | null = null;
  private readonly runnerOptions: ModelRunnerConfig;
  private nextId = 0;
  private nextSeed = 0x5eed;
  /** EngineOptions.asyncScheduling; may be switched between steps. */
  asyncScheduling = true;
  /**
   * Steps submitted: by a full schedule, or as continuations while the previous step's tokens were in flight;
   * rows a continuation left out of the previous step's (requests that finished, were aborted or reach their
   * length limit with the tokens in flight).
   */
  readonly pipelineStats = { scheduledSteps: 0, continuationSteps: 0, rowsDropped: 0 };
  /** Steps on the GPU whose tokens are not processed yet, oldest first (at most one between step() calls). */
  private inflight: InflightStep[] = [];

  private readonly gpu: Gpu;

  private constructor(
    gpu: Gpu, config: OptConfig, ranks: Rank[], tpGroup: TensorParallelGroup | null, kv: KVCacheManager,
    scheduler: Scheduler<SamplingParams>, runnerOptions: ModelRunnerConfig,
  ) {
    this.gpu = gpu;
    this.runnerOptions = runnerOptions;
    this.config = config;
    this.ranks = ranks;
    this.tpGroup = tpGroup;
    this.kv = kv;
    this.scheduler = scheduler;
  }

  static async create(gpu: Gpu, source: ModelSpec | Checkpoint, opts: EngineOptions): Promise<LLMEngine> {
    const ckpt = typeof source === 'object' && source !== null && 'configJson' in source ? source as Checkpoint : await loadCheckpoint(source as ModelSpec);
    const config = parseOptConfig(ckpt.configJson);
    const { dtype, blockSize, maxModelLen, maxNumSeqs, maxNumBatchedTokens } = engineSizes(config, opts);
    const kv = new KVCacheManager({ numBlocks: opts.numBlocks, blockSize, maxModelLen, enablePrefixCaching: opts.enablePrefixCaching ?? true });
    const numLookaheadTokens = Math.min(opts.numLookaheadTokens ?? 7, MAX_LOOKAHEAD);
    const scheduler = new Scheduler<SamplingParams>({ maxNumSeqs, maxNumBatchedTokens, numLookaheadTokens }, kv);
    const runnerOptions: ModelRunnerConfig = { maxNumSeqs, maxNumBatchedTokens, maxModelLen, blockSize, numBlocks: opts.numBlocks, kvDtype: dtype };
    const given = opts.tensorParallelGpus;
    const size = given?.length ?? opts.tensorParallelSize ?? 1;
    if (given && opts.tensorParallelSize !== undefined && opts.tensorParallelSize !== size) {
      throw new InvalidInputError(`tensorParallelSize ${opts.tensorParallelSize} disagrees with the ${size} tensorParallelGpus given`);
    }
    if (given && size > 1 && given.some((g) => !g.allReduce)) {
      throw new InvalidInputError('tensorParallelGpus must support allReduce (ranks of one tensor-parallel group)');
    }
    checkTensorParallel(config, { rank: 0, size });
    const group = !given && size > 1 ? new TensorParallelGroup(gpu, size) : null;
    const ranks: Rank[] = [];
    for (let r = 0; r < size; r++) {
      const rankGpu = given ? given[r] : group ? group.ranks[r] : gpu;
      const weights = await uploadWeights(rankGpu, config, ckpt.tensors, dtype, { rank: r, size });
      ranks.push({ gpu: rankGpu, weights, runner: await ModelRunner.create(rankGpu, config, weights, runnerOptions) });
    }
    const engine = new LLMEngine(gpu, config, ranks, group, kv, scheduler, runnerOptions);
    engine.asyncScheduling = opts.asyncScheduling ?? true;
    return engine;
  }

  /**
   * Queue a request. `forkOf`: for sample 2..n of an `n > 1` request, the first sample (same prompt), whose
   * computed prompt blocks it shares.
   */
  addRequest(
    promptTokenIds: readonly number[], params: SamplingParams = {}, requestId = `req-${this.nextId++}`, forkOf: Request<SamplingParams> | null = null,
  ): Request<SamplingParams> {
    validateSamplingValues(params);
    validateEngineSampling(params);
    promptTokenIds.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= this.config.vocabSize) {
        throw new InvalidInputError(`request ${requestId}: token ${i} is ${t}, outside the vocabulary [0, ${this.config.vocabSize})`);
      }
    });
    const req = new Request<SamplingParams>({ requestId, promptTokenIds, samplingParams: this.withSeed(params), eosTokenId: this.config.eosTokenId, forkOf });
    this.scheduler.addRequest(req);
    return req;
  }

  /**
   * A sampled request without a seed gets one now, so its draws are still a function of (seed, position) (and
   * the samples of an `n > 1` request can derive theirs from it).
   */
  /** A fresh request id (`req-N`). */
  newRequestId(): string {
    return `req-${this.nextId++}`;
  }

  withSeed(params: SamplingParams): SamplingParams {
    return (params.temperature ?? 0) > 0 && params.seed === undefined ? { ...params, seed: this.nextSeed++ } : params;
  }

  /**
   * Queue `n` samples of one prompt: sample 0 first, the others
   * forks sharing its prompt blocks, each with its own seed derived from the request's (sampleSeed). Ids:
   * `requestId` itself when n = 1, else `${requestId}#${i}`.
   */
  addRequestGroup(promptTokenIds: readonly number[], params: SamplingParams, n: number, requestId = `req-${this.nextId++}`): Request<SamplingParams>[] {
    if (!(Number.isInteger(n) && n >= 1)) throw new InvalidInputError(`n must be a positive integer, got ${n}`);
    if (n === 1) return [this.addRequest(promptTokenIds, params, requestId)];
    validateSamplingValues(params);
    validateEngineSampling(params);
    const base = this.withSeed(params);
    const out: Request<SamplingParams>[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const sp = base.seed === undefined ? base : { ...base, seed: sampleSeed(base.seed, i) };
        out.push(this.addRequest(promptTokenIds, sp, `${requestId}#${i}`, i === 0 ? null : out[0]));
      }
    } catch (e) {
      for (const r of out) this.abort(r.requestId);
      throw e;
    }
    return out;
  }

  /**
   * Overwrite weights in place on the GPU (the same buffers, so captured steps stay valid) and reset the prefix
   * cache, whose blocks hold keys and values computed with the old weights. `tensors` are HF-named (with or
   * without `model.`); each must exist with the checkpoint's shape. Requests in flight continue on the new
   * weights from their next step (as in vLLM, pause generation around an update if that matters).
   */
  updateWeights(tensors: Iterable<[string, HostTensor]>): number {
    if (this.asleep && !this.asleep.weightsAwake) throw new InvalidInputError("the weights are asleep: wakeUp(['weights']) first");
    let n = 0;
    for (const [rawName, t] of tensors) {
      const name = canonicalTensorName(rawName);
      if (name === 'lm_head.weight' && this.config.tieWordEmbeddings) {
        throw new WeightMismatchError('lm_head.weight is tied to model.decoder.embed_tokens.weight: update the embedding instead');
      }
      const loc = this.weights.locations.get(name);
      if (!loc) throw new WeightMismatchError(`updateWeights: the model has no tensor ${rawName}`);
      if (loc.shape.length !== t.shape.length || loc.shape.some((d, i) => d !== t.shape[i])) {
        throw new WeightMismatchError(`updateWeights: ${name} has shape [${t.shape}], the model's is [${loc.shape}]`);
      }
      for (const rank of this.ranks) writeTensor(rank.gpu, rank.weights, name, t);
      n++;
    }
    this.kv.resetPrefixCache();
    return n;
  }

  abort(requestId: string): boolean {
    return this.finishRequest(requestId, 'abort');
  }

  /** End a request from outside the step loop (an abort, a stop string found by the detokenizer). */
  finishRequest(requestId: string, reason: FinishReason, stopReason: number | string | null = null): boolean {
    const done = this.scheduler.finishRequest(requestId, reason, stopReason);
    if (done) for (const r of this.ranks) r.runner.dropRequests([requestId]);
    return done;
  }

  hasUnfinishedRequests(): boolean {
    return this.scheduler.hasUnfinishedRequests();
  }

  /**
   * vLLM's sleep mode, for an idle engine: level 1 copies the weights to the host and frees them and the KV
   * cache on the GPU; level 2 drops the weights too (wake up, then load new ones with updateWeights). The prefix
   * cache is reset (its blocks are gone). Returns the GPU bytes freed.
   */
  async sleep(level: 1 | 2 = 1): Promise<number> {
    if (level !== 1 && level !== 2) throw new InvalidInputError(`sleep level must be 1 or 2, got ${level}`);
    if (this.asleep) throw new InvalidInputError(`the engine is already asleep (level ${this.asleep.level})`);
    if (this.scheduler.hasUnfinishedRequests()) throw new InvalidInputError('sleep needs an idle engine: finish or abort every request first');
    await this.drain(); // a step computed past the last stop may still be on the GPU
    const before = this.gpu.stats().bytesAllocated;
    let host: TensorMap | null = null;
    if (level === 1) {
      host = new Map();
      const storage = this.weights.dtype === 'f16' ? 'F16' : 'F32';
      for (const [name, loc] of this.weights.locations) {
        // Each rank's shard, put back together (one piece without tensor parallelism).
        const shards: Uint8Array[] = [];
        for (const rank of this.ranks) {
          const l = rank.weights.locations.get(name)!;
          shards.push(new Uint8Array(await rank.gpu.read(l.buffer, l.byteOffset, l.byteLength)));
        }
        host.set(name, { dtype: storage, shape: loc.shape, bytes: unshardTensor(name, shards, loc.shape, storage === 'F16' ? 2 : 4) });
      }
    }
    await this.freeGpuState({ runners: true, weights: true });
    this.kv.resetPrefixCache();
    this.asleep = { level, weights: host, weightsAwake: false, kvAwake: false };
    return before - this.gpu.stats().bytesAllocated;
  }

  /**
   * Free every GPU buffer the engine holds (weights, KV cache, activations, step buffers) once the work in flight
   * is done; unfinished requests are aborted. The Gpu itself stays (its owner destroys it). Idempotent.
   */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    for (const id of this.scheduler.unfinishedRequestIds()) this.finishRequest(id, 'abort');
    await this.drain();
    await this.freeGpuState({ runners: !this.asleep || this.asleep.kvAwake, weights: !this.asleep || this.asleep.weightsAwake });
  }

  /** Release every rank's runner (KV cache, activations) and/or weight buffers, and wait until the GPU has. */
  private async freeGpuState(what: { runners: boolean; weights: boolean }): Promise<void> {
    for (const rank of this.ranks) {
      if (what.runners) rank.runner.release();
      if (what.weights) for (const b of rank.weights.arenas) rank.gpu.destroyBuffer(b);
    }
    await Promise.all(this.ranks.map((r) => r.gpu.sync()));
  }

  private released = false;

  /**
   * Wake from sleep: 'weights' (re-uploaded from the host copy after level 1; zeros after level 2, to be
   * overwritten with updateWeights) and then 'kv_cache' (KV cache and activations). Both by default.
   */
  async wakeUp(tags: ReadonlyArray<'weights' | 'kv_cache'> = ['weights', 'kv_cache']): Promise<void> {
    const s = this.asleep;
    if (!s) return;
    if (tags.includes('weights') && !s.weightsAwake) {
      const tensors: TensorMap = s.weights ?? new Map([...expectedTensors(this.config)].map(([name, shape]) => [name, {
        dtype: 'F32' as const, shape, bytes: new Uint8Array(shape.reduce((a, b) => a * b, 1) * 4),
      }]));
      const dtype = this.weights.dtype, size = this.ranks.length;
      for (const [r, rank] of this.ranks.entries()) rank.weights = await uploadWeights(rank.gpu, this.config, tensors, dtype, { rank: r, size });
      s.weightsAwake = true;
    }
    if (tags.includes('kv_cache') && !s.kvAwake) {
      if (!s.weightsAwake) throw new InvalidInputError("wake up 'weights' before 'kv_cache'");
      for (const rank of this.ranks) rank.runner = await ModelRunner.create(rank.gpu, this.config, rank.weights, this.runnerOptions);
      s.kvAwake = true;
    }
    if (s.weightsAwake && s.kvAwake) this.asleep = null;
  }

  get sleepLevel(): 0 | 1 | 2 {
    return this.asleep?.level ?? 0;
  }

  /**
   * One engine step: the tokens of one step (sampled, checked for stops, appended), as outputs per request.
   *
   * Asynchronous scheduling, "one round behind" (vLLM v1's async scheduling; src/model/generate.ts's loop for
   * one sequence). A step whose tokens are on their way back (a ~10 ms readback in Deno) is not waited for
   * alone: first the next step is recorded and submitted (Scheduler.scheduleContinuation), continuing every
   * running request from the last token the GPU sampled for it, so the GPU runs it while the CPU waits. Then
   * the older step's tokens are processed; a request that turns out to have stopped is finished at once (its
   * blocks and state slot freed) and whatever the newer step computed for it is discarded when that step's
   * tokens arrive (the scheduler ignores finished requests), so nothing past a stop ever reaches an output.
   * Blocks freed while a step still writes them are safe: every later use of them is recorded after it on
   * the GPU's queue, and new requests are only admitted by a full schedule, which runs once nothing is in flight.
   *
   * When does the pipeline drain? When a continuation is impossible or would need the CPU's decision: a waiting
   * request can be admitted (prefill mixes CPU-known tokens into the batch; draining costs the newcomers one
   * readback of latency and keeps the batch's packing, prefix-cache hits and forks on the one path that already
   * proves batch invariance), a prefill is still partial, or blocks run short (preemption). Then this step
   * returns the older step's tokens and the next call schedules afresh.
   */
  async step(): Promise<EngineStepOutput[]> {
    if (this.asleep) throw new InvalidInputError(`the engine is asleep (level ${this.asleep.level}): call wakeUp() first`);
    let head = this.inflight.shift();
    try {
      if (!head) {
        const out = this.scheduler.schedule();
        // Requests gone (finished, aborted) or preempted since the last step lose their token state; a preempted
        // one gets it rebuilt from its history when it is scheduled again.
        for (const r of this.ranks) r.runner.dropRequests([...out.finished, ...out.preempted]);
        if (out.chunks.length === 0) return this.scheduler.updateFromOutput(out, new Map());
        head = await this.submitScheduled(out);
      }
      if (this.asyncScheduling) {
        const next = this.submitContinuation(head);
        if (next) this.inflight.push(next);
      }
      return await this.processOutput(head);
    } catch (e) {
      this.inflight = [];
      throw e;
    }
  }

  /**
   * Process every step still in flight. Called on an idle engine (sleep), where what is left is a step computed
   * past the last requests' stops: its outputs are discarded, and nothing uses the GPU's buffers afterwards.
   */
  private async drain(): Promise<void> {
    while (this.inflight.length > 0) await this.processOutput(this.inflight.shift()!);
  }

  /** The sampler's values of a request, and whether it needs token state (penalties, min-tokens masking). */
  private samplingOf(requestId: string): { sampling: SamplingRow; usesTokenState: boolean; stops: number[]; logprobs?: number } {
    const req = this.scheduler.getRequest(requestId)!;
    const p = req.samplingParams;
    const sampling: SamplingRow = {
      temperature: p.temperature ?? 0, topK: p.topK ?? 0, topP: p.topP ?? 1, seed: p.seed ?? 0, minP: p.minP ?? 0,
      repetitionPenalty: p.repetitionPenalty ?? 1, presencePenalty: p.presencePenalty ?? 0, frequencyPenalty: p.frequencyPenalty ?? 0,
      minTokens: p.minTokens ?? 0,
    };
    const stops = stopTokensToMask(p, req.eosTokenId);
    return { sampling, usesTokenState: usesPenalties(p) || stops.length > 0, stops, logprobs: p.logprobs };
  }

  /** Record and submit a scheduled step on every rank (all record before anyone reads: their all-reduces meet). */
  private async submitScheduled(out: SchedulerOutput<SamplingParams>): Promise<InflightStep> {
    const chunks: RunnerChunk[] = out.chunks.map((c) => {
      const req = this.scheduler.getRequest(c.requestId)!;
      const { sampling, usesTokenState, stops, logprobs } = this.samplingOf(c.requestId);
      const tokenState = usesTokenState ? { promptTokenIds: req.promptTokenIds, outputTokenIds: req.outputTokenIds, stopTokenIds: stops } : undefined;
      return { ...c, sampling, tokenState, logprobs };
    });
    const pending = await Promise.all(this.ranks.map((r) => r.runner.submit(chunks)));
    this.pipelineStats.scheduledSteps++;
    return { out, pending };
  }

  /** Plan, record and submit the step after `head` on every rank while head's tokens are in flight; null if none. */
  private submitContinuation(head: InflightStep): InflightStep | null {
    const prev = head.pending[0];
    const scheduledExtra = head.out.chunks[0]?.numLookaheadTokens ?? 0;
    if (prev.rows.length > 0 && prev.numLookaheadTokens !== scheduledExtra) {
      throw new EngineProtocolError(`step ${head.out.step}: the runner ran ${prev.numLookaheadTokens} extra steps, the scheduler planned ${scheduledExtra}`);
    }
    const out = this.scheduler.scheduleContinuation(head.out);
    if (!out) return null;
    const prevRow = new Map(prev.rows.map((id, i) => [id, i]));
    const rows: ContinuationRow[] = out.chunks.map((c) => {
      const { sampling, usesTokenState, logprobs } = this.samplingOf(c.requestId);
      const row = prevRow.get(c.requestId);
      if (row === undefined) throw new EngineProtocolError(`step ${out.step}: ${c.requestId} had no row in step ${head.out.step}`);
      return { requestId: c.requestId, prevRow: row, position: c.startPosition, blockIds: c.blockIds, sampling, outputBase: c.outputBase!, usesTokenState, logprobs };
    });
    const k = out.chunks[0].numLookaheadTokens;
    this.pipelineStats.continuationSteps++;
    this.pipelineStats.rowsDropped += prev.rows.length - rows.length;
    return { out, pending: this.ranks.map((r, i) => r.runner.submitContinuation(head.pending[i], rows, k)) };
  }

  /** Wait for a step's tokens and hand them to the scheduler (stops, lengths, frees); attach logprobs. */
  private async processOutput(s: InflightStep): Promise<EngineStepOutput[]> {
    // Every rank samples the same tokens from the same logits, so rank 0's answer is everyone's.
    const [sampled] = await Promise.all(s.pending.map((p) => p.output));
    const results: EngineStepOutput[] = this.scheduler.updateFromOutput(s.out, sampled.tokens);
    const finished = results.filter((r) => r.finished).map((r) => r.requestId);
    for (const r of this.ranks) r.runner.dropRequests(finished);
    for (const r of results) {
      const recs = sampled.logprobs.get(r.requestId);
      if (recs) r.logprobs = r.newTokenIds.map((tokenId, j) => ({ tokenId, ...recs[j] }));
    }
    return results;
  }

  /** Serve every prompt to completion (continuous batching) and return outputs in input order. */
  async generate(prompts: ReadonlyArray<readonly number[]>, params: SamplingParams | SamplingParams[] = {}): Promise<RequestOutput[]> {
    const reqs = prompts.map((p, i) => this.addRequest(p, Array.isArray(params) ? params[i] : params));
    const outputs = new Map<string, RequestOutput>();
    for (const r of reqs) {
      outputs.set(r.requestId, {
        requestId: r.requestId, promptTokenIds: r.promptTokenIds, tokenIds: [], finishReason: null,
        ...(r.samplingParams.logprobs !== undefined ? { logprobs: [] } : {}),
      });
    }
    while (reqs.some((r) => !r.isFinished)) {
      for (const o of await this.step()) {
        const res = outputs.get(o.requestId);
        if (!res) continue;
        if (o.logprobs) res.logprobs!.push(...o.logprobs);
        if (o.finished) res.finishReason = o.finishReason;
      }
    }
    for (const r of reqs) outputs.get(r.requestId)!.tokenIds = [...r.outputTokenIds];
    return reqs.map((r) => outputs.get(r.requestId)!);
  }
}
