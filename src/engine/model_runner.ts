/**
 * The model runner (vLLM v1's GPUModelRunner): turns one scheduler step into one forward over the flat batch
 * and one GPU sampling pass, and returns the sampled token of every request whose chunk reached its last token.
 *
 * Step inputs are packed on the CPU into persistent buffers (token ids, positions, token-to-sequence index, slot
 * mapping, block tables, query blocks, logit rows, sampling rows) and uploaded once per step; nothing is
 * allocated or compiled in the steady state. Only the sampled ids (and the logprobs records of requests that
 * asked for them, from the same buffer) are read back, in one read.
 *
 * Penalties and min-tokens need per-request token state on the GPU (prompt mask, output counts, stop flags):
 * a request that uses them holds a state slot while the runner knows it. The slot is rebuilt from the request's
 * history (prompt, outputs so far, stop ids) by a GPU kernel the first time the request reaches the runner, and
 * again after a preemption (recompute) or for each fork; from then on the sampler counts every token it samples,
 * lookahead steps included, so the state never needs the CPU. `dropRequests` frees slots of requests that
 * finished, were aborted or preempted.
 *
 * Asynchronous decoding. `submit` records a step and starts the readback of its tokens without waiting for it;
 * `submitContinuation` then records the next step over the same requests (or fewer: rows are compacted on the
 * GPU) straight from what the previous step's sampler left on the GPU (each row's last token), with positions,
 * slots, block tables and sampling rows written from the CPU, which knows them without the tokens. So the GPU
 * runs step N + 1 while the CPU waits for step N's tokens (the engine's "one round behind").
 *
 * Every kernel reduces in a fixed order per token (linear layers in 64-value segments whatever the row count;
 * attention per query in key order whatever the query block), so a request's tokens do not depend on what else
 * is in the batch, on chunking or on prefix-cache hits: batch invariance by construction.
 */
import { InvalidInputError } from '../errors.ts';
import { EngineProtocolError } from './errors.ts';
import type { Gpu, GpuBuffer, Recording } from '../gpu/gpu.ts';
import { ATTENTION_PARTITION, buildQueryBlocks, queryBlockSize } from '../kernels/paged_attention.ts';
import {
  computeLogprobs, initTokenState, LOGPROBS_RECORD_WORDS, MAX_TOP_LOGPROBS, packSamplingRows, packTokenStateInits, SAMPLING_ROW_WORDS,
  sampleAndAdvance, TOKEN_STATE_ENTRY_WORDS, unpackLogprobsRecord, type LogprobsRecord, type SamplingRow, type TokenStateInit,
} from '../kernels/sample.ts';
import type { OptConfig } from '../model/config.ts';
import { OptForward } from '../model/forward.ts';
import type { OptGpuWeights } from '../model/gpu_weights.ts';
import { allocateKvCache, type PagedKvCache } from '../model/kv_cache.ts';
import type { ElementType } from '../kernels/shader.ts';
import type { TensorParallel } from '../model/tensor_parallel.ts';

/** One request's part of a step, as the scheduler hands it over (ScheduledChunk's fields the runner reads). */
export interface RunnerChunk {
  requestId: string;
  tokenIds: readonly number[];
  startPosition: number;
  blockIds: readonly number[];
  samplesToken: boolean;
  /** Extra decode steps this request may take on the GPU in this call (slots reserved by the scheduler). */
  numLookaheadTokens?: number;
  /** Sampling values (temperature, top-k/p, min-p, seed, penalties, minTokens); slots and indexes are the runner's. */
  sampling: SamplingRow;
  /**
   * Present when the request needs token state (penalties or minTokens): its history, read when its state slot
   * is (re)built. The arrays are read, not kept.
   */
  tokenState?: { promptTokenIds: readonly number[]; outputTokenIds: readonly number[]; stopTokenIds: readonly number[] };
  /** Top logprobs wanted per step (0..20: the sampled token's logprob only at 0); undefined = no logprobs. */
  logprobs?: number;
}

/** What one execute() produced for the requests that sampled. */
export interface RunnerOutput {
  /** Tokens by request id (1 + the lookahead steps run). */
  tokens: Map<string, number[]>;
  /** For requests that asked: one record per token in `tokens`. */
  logprobs: Map<string, LogprobsRecord[]>;
}

/** A step recorded and submitted; its tokens are on their way back. */
export interface PendingStep {
  /** Request ids of the sampler rows, in row order: row s's last sampled token stays in the GPU's next-id row s. */
  readonly rows: readonly string[];
  /** Extra decode steps run after the first (every row ran 1 + this many). */
  readonly numLookaheadTokens: number;
  /** The step's tokens (and logprobs). */
  readonly output: Promise<RunnerOutput>;
}

/** One request of a continuation step (ModelRunner.submitContinuation). */
export interface ContinuationRow {
  requestId: string;
  /** Its sampler row in the previous step: the token it feeds is that row's last sampled one, on the GPU. */
  prevRow: number;
  /** Position of that token (the first position this step feeds). */
  position: number;
  /** The whole block table, covering every position this step feeds. */
  blockIds: readonly number[];
  sampling: SamplingRow;
  /** Tokens the request generated before this step (the CPU's and those still in flight), for minTokens. */
  outputBase: number;
  /** The request uses token state (penalties, minTokens): it holds a slot from an earlier step. */
  usesTokenState: boolean;
  /** Top logprobs wanted per step (0..20); undefined = none. */
  logprobs?: number;
}

export interface ModelRunnerConfig {
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  maxModelLen: number;
  blockSize: number;
  numBlocks: number;
  kvDtype: ElementType;
}

interface StepBuffers {
  tokenIds: GpuBuffer;
  positions: GpuBuffer;
  tokenSeq: GpuBuffer;
  slotMapping: GpuBuffer;
  blockTables: GpuBuffer;
  queryBlocks: GpuBuffer;
  logitIndices: GpuBuffer;
  logits: GpuBuffer;
  sampling: GpuBuffer;
  seqState: GpuBuffer;
  nextIds: GpuBuffer;
  nextPositions: GpuBuffer;
  nextSlots: GpuBuffer;
  /** Sampled tokens [S, cap], then logprobs records [L, cap] of the L rows that asked (one readback). */
  sampled: GpuBuffer;
  /** [maxNumSeqs, vocab] u32 token state (sample.wgsl). */
  tokenState: GpuBuffer;
  stateEntries: GpuBuffer;
  /** 0, 1, ..., maxNumSeqs - 1: each decode row is its own sequence and its own query block. */
  iota: GpuBuffer;
  iotaBlocks: GpuBuffer;
  /** The previous step's next ids, copied aside when a continuation compacts its rows. */
  prevIds: GpuBuffer;
}

/** Most decode steps one execute() runs on the GPU between readbacks. */
export const MAX_LOOKAHEAD = 15;
/** Captured decode steps kept (least recently used ones are released beyond this). */
export const MAX_DECODE_PLANS = 512;

/** Token-state scratch a runner starts with (rebuildTokenState grows it when a rebuild needs more). */
const INITIAL_STATE_TOKEN_BYTES = (maxNumSeqs: number) => 4 * maxNumSeqs * 64;

/** Benchmark knob: decode steps per queue submit after a group's first (tokens do not depend on it). */
export const runnerTuning = { stepsPerSubmit: 1 };

export class ModelRunner {
  readonly config: OptConfig;
  readonly runnerConfig: ModelRunnerConfig;
  readonly cache: PagedKvCache;
  readonly maxBlocksPerSeq: number;
  private readonly gpu: Gpu;
  private readonly forward: OptForward;
  private readonly buf: StepBuffers;
  private readonly plans = new Map<string, Recording>();
  /** Token-state slot of each request that has one; free slots. */
  private readonly stateSlots = new Map<string, number>();
  private readonly freeSlots: number[];
  /** Flat token lists for state (re)builds; grown when a step's histories need more. */
  private stateTokens: GpuBuffer;

  private constructor(gpu: Gpu, config: OptConfig, rc: ModelRunnerConfig, forward: OptForward, cache: PagedKvCache, buf: StepBuffers, stateTokens: GpuBuffer) {
    this.gpu = gpu;
    this.stateTokens = stateTokens;
    this.freeSlots = Array.from({ length: rc.maxNumSeqs }, (_, i) => rc.maxNumSeqs - 1 - i);
    this.config = config;
    this.runnerConfig = rc;
    this.forward = forward;
    this.cache = cache;
    this.buf = buf;
    this.maxBlocksPerSeq = Math.ceil(rc.maxModelLen / rc.blockSize);
  }

  static async create(gpu: Gpu, config: OptConfig, weights: OptGpuWeights, rc: ModelRunnerConfig): Promise<ModelRunner> {
    if (rc.maxModelLen > config.maxPositions) {
      throw new InvalidInputError(`maxModelLen ${rc.maxModelLen} exceeds the model's ${config.maxPositions} positions`);
    }
    const T = rc.maxNumBatchedTokens, S = rc.maxNumSeqs;
    const forward = await OptForward.create(gpu, config, weights, { maxTokens: T, maxLogitRows: S, maxContext: rc.maxModelLen });
    const cache = await allocateKvCache(gpu, config, { blockSize: rc.blockSize, numBlocks: rc.numBlocks, dtype: rc.kvDtype, tp: weights.tp });
    const buf = {} as Record<keyof StepBuffers, GpuBuffer>;
    for (const [name, bytes] of Object.entries(ModelRunner.stepBufferSizes(config, rc)) as Array<[keyof StepBuffers, number]>) {
      buf[name] = await gpu.createBuffer(bytes, `runner.${name}`);
    }
    gpu.write(buf.iota, Uint32Array.from({ length: S }, (_, i) => i));
    gpu.write(buf.iotaBlocks, Uint32Array.from({ length: 2 * S }, (_, i) => (i % 2 === 0 ? i / 2 : 1)));
    const stateTokens = await gpu.createBuffer(INITIAL_STATE_TOKEN_BYTES(S), 'runner.stateTokens');
    return new ModelRunner(gpu, config, rc, forward, cache, buf, stateTokens);
  }

  /** Bytes of step buffers beyond the forward's activations (the token state dominates: maxNumSeqs * vocab * 4). */
  /** Bytes of each step buffer create() allocates (host-written inputs, logits, sampler state). */
  static stepBufferSizes(config: OptConfig, rc: Omit<ModelRunnerConfig, 'numBlocks' | 'kvDtype'>): Record<keyof StepBuffers, number> {
    const T = rc.maxNumBatchedTokens, S = rc.maxNumSeqs;
    const maxBlocks = Math.ceil(rc.maxModelLen / rc.blockSize);
    const qb = queryBlockSize(config.headDim);
    const u32 = (n: number) => 4 * Math.max(1, n);
    return {
      tokenIds: u32(T), positions: u32(T), tokenSeq: u32(T), slotMapping: u32(T), blockTables: u32(S * maxBlocks),
      // Each sequence's run is cut into blocks of qb tokens: at most T / qb + S blocks.
      queryBlocks: u32(2 * (Math.ceil(T / qb) + S)), logitIndices: u32(S), logits: S * config.vocabSize * 4,
      sampling: u32(SAMPLING_ROW_WORDS * S), seqState: u32(2 * S), nextIds: u32(S), nextPositions: u32(S), nextSlots: u32(S),
      sampled: u32(S * (1 + MAX_LOOKAHEAD) * (1 + LOGPROBS_RECORD_WORDS)), tokenState: u32(S * config.vocabSize),
      stateEntries: u32(S * TOKEN_STATE_ENTRY_WORDS), iota: u32(S), iotaBlocks: u32(2 * S), prevIds: u32(S),
    };
  }

  /**
   * GPU bytes a runner of these sizes holds besides its KV cache: the forward's activations, the step buffers and
   * the initial token-state scratch (which grows only when penalties need more prompt tokens at once). LLM.create
   * sizes the KV cache from what this leaves of the budget.
   */
  static bytesWithoutKvCache(config: OptConfig, weightsDtype: ElementType, tp: TensorParallel, rc: Omit<ModelRunnerConfig, 'numBlocks' | 'kvDtype'>): number {
    const act = OptForward.bufferSizes(config, weightsDtype, tp, { maxTokens: rc.maxNumBatchedTokens, maxLogitRows: rc.maxNumSeqs, maxContext: rc.maxModelLen });
    const sum = (r: Record<string, number | null>) => Object.values(r).reduce<number>((a, b) => a + (b ?? 0), 0);
    return sum(act) + sum(ModelRunner.stepBufferSizes(config, rc)) + INITIAL_STATE_TOKEN_BYTES(rc.maxNumSeqs);
  }

  /** Forget requests that finished, were aborted or preempted: their token-state slots are free again. */
  dropRequests(requestIds: Iterable<string>): void {
    for (const id of requestIds) {
      const slot = this.stateSlots.get(id);
      if (slot === undefined) continue;
      this.stateSlots.delete(id);
      this.freeSlots.push(slot);
    }
  }

  /** Captured decode steps held (at most MAX_DECODE_PLANS). */
  get numDecodePlans(): number {
    return this.plans.size;
  }

  /** Requests holding a token-state slot (tests check slots are given back). */
  get numStateSlotsInUse(): number {
    return this.stateSlots.size;
  }

  /** Free every GPU buffer the runner holds (activations, KV cache, step buffers) and its captured steps. */
  release(): void {
    for (const plan of this.plans.values()) this.gpu.releaseRecording(plan);
    this.plans.clear();
    const all = new Set<GpuBuffer>([
      ...this.forward.buffers(), ...this.cache.layers.flatMap((l) => [l.key, l.value]), ...Object.values(this.buf), this.stateTokens,
    ]);
    for (const b of all) this.gpu.destroyBuffer(b);
  }

  /**
   * Run one step: forward over every chunk, then sample one token for each chunk with `samplesToken`.
   * When every chunk samples and has lookahead slots, then min(numLookaheadTokens) more decode steps run back
   * to back on the GPU (the sampler writes each step's token, position and slot for the next; DESIGN.md, "Keep
   * the loop on the GPU"), and all tokens come back in one readback.
   * Resolves with the tokens (and requested logprobs) by request id.
   */
  async execute(chunks: readonly RunnerChunk[]): Promise<RunnerOutput> {
    return (await this.submit(chunks)).output;
  }

  /**
   * execute() without the wait: records and submits the step and starts its readback. Resolves once the step
   * is on the GPU (it awaits only a buffer allocation when token-state histories outgrow their buffer); the
   * tokens come with `output`. Tensor-parallel ranks: submit on every rank before awaiting any output.
   */
  async submit(chunks: readonly RunnerChunk[]): Promise<PendingStep> {
    const rc = this.runnerConfig, g = this.gpu, b = this.buf;
    const out: RunnerOutput = { tokens: new Map(), logprobs: new Map() };
    if (chunks.length === 0) return { rows: [], numLookaheadTokens: 0, output: Promise.resolve(out) };
    if (chunks.length > rc.maxNumSeqs) throw new RangeError(`${chunks.length} requests in one step exceed maxNumSeqs ${rc.maxNumSeqs}`);
    const T = chunks.reduce((s, c) => s + c.tokenIds.length, 0);
    if (T > rc.maxNumBatchedTokens) throw new RangeError(`${T} tokens in one step exceed maxNumBatchedTokens ${rc.maxNumBatchedTokens}`);
    const ids = new Uint32Array(T), pos = new Uint32Array(T), seq = new Uint32Array(T), slots = new Uint32Array(T);
    const tables = new Uint32Array(chunks.length * this.maxBlocksPerSeq);
    const runs: Array<[number, number]> = [];
    const logitRows: number[] = [];
    const samplingRows: SamplingRow[] = [];
    const seqState: number[] = [];
    const samplers: string[] = [];
    const logprobRows: Array<[string, number]> = [];
    let t = 0, maxContext = 0;
    const stateInits = this.assignStateSlots(chunks);
    const bs = rc.blockSize;
    chunks.forEach((c, s) => {
      if (c.blockIds.length > this.maxBlocksPerSeq) throw new RangeError(`request ${c.requestId}: ${c.blockIds.length} blocks exceed maxModelLen`);
      tables.set(c.blockIds, s * this.maxBlocksPerSeq);
      runs.push([t, c.tokenIds.length]);
      for (let i = 0; i < c.tokenIds.length; i++, t++) {
        const p = c.startPosition + i;
        ids[t] = c.tokenIds[i];
        pos[t] = p;
        seq[t] = s;
        slots[t] = c.blockIds[Math.floor(p / bs)] * bs + (p % bs);
      }
      maxContext = Math.max(maxContext, c.startPosition + c.tokenIds.length);
      if (c.samplesToken) {
        logitRows.push(t - 1);
        const row: SamplingRow = { ...c.sampling, stateSlot: undefined, logprobsIndex: undefined };
        if (c.tokenState) {
          row.stateSlot = this.stateSlots.get(c.requestId)!;
          row.outputBase = c.tokenState.outputTokenIds.length;
        }
        if (c.logprobs !== undefined) {
          if (!(Number.isInteger(c.logprobs) && c.logprobs >= 0 && c.logprobs <= MAX_TOP_LOGPROBS)) {
            throw new InvalidInputError(`request ${c.requestId}: logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${c.logprobs}`);
          }
          row.logprobsIndex = logprobRows.length;
          row.numTopLogprobs = c.logprobs;
          logprobRows.push([c.requestId, c.logprobs]);
        }
        samplingRows.push(row);
        seqState.push(c.startPosition + c.tokenIds.length - 1, 0);
        samplers.push(c.requestId);
      }
    });
    const blocks = buildQueryBlocks(runs, queryBlockSize(this.config.headDim));
    g.write(b.tokenIds, ids);
    g.write(b.positions, pos);
    g.write(b.tokenSeq, seq);
    g.write(b.slotMapping, slots);
    g.write(b.blockTables, tables);
    g.write(b.queryBlocks, blocks);
    if (stateInits.length > 0) await this.rebuildTokenState(stateInits);
    if (samplers.length) {
      g.write(b.logitIndices, Uint32Array.from(logitRows));
      g.write(b.sampling, packSamplingRows(samplingRows));
      g.write(b.seqState, Uint32Array.from(seqState));
    }
    this.forward.forward({
      numTokens: T, tokenIds: b.tokenIds, positions: b.positions, tokenSeq: b.tokenSeq, slotMapping: b.slotMapping,
      blockTables: b.blockTables, maxBlocksPerSeq: this.maxBlocksPerSeq, maxContext, queryBlocks: b.queryBlocks,
      numQueryBlocks: blocks.length / 2,
    }, this.cache, b.logitIndices, samplers.length, b.logits);
    if (samplers.length === 0) return { rows: [], numLookaheadTokens: 0, output: quiet(g.sync().then(() => out)) };
    // Lookahead only when every chunk samples, so that sampler row s is chunk s (its block-table row).
    const allSample = chunks.every((c) => c.samplesToken);
    const extra = allSample ? Math.min(MAX_LOOKAHEAD, ...chunks.map((c) => c.numLookaheadTokens ?? 0)) : 0;
    const cap = 1 + extra;
    const S = samplers.length;
    // The sampler writes row s's j-th token at sampled[s * cap + j].
    this.recordSampling(S, cap, logprobRows.length);
    // Submit the first step at once, so the GPU runs it while the CPU records the rest; then every
    // runnerTuning.stepsPerSubmit steps (each submit costs the GPU a gap between command buffers).
    g.flush();
    for (let j = 1; j <= extra; j++) {
      g.replay(this.decodePlan(S, cap, maxContext + j, logprobRows.length > 0));
      if (j % runnerTuning.stepsPerSubmit === 0 || j === extra) g.flush();
    }
    return { rows: samplers, numLookaheadTokens: extra, output: quiet(this.readTokens(samplers, cap, logprobRows)) };
  }

  /**
   * Record and submit the step after `prev` (a step this runner submitted, whose tokens may still be in
   * flight): every row feeds its last sampled token, then `numLookaheadTokens` more decode steps run, all of them
   * captured steps replayed. Rows keep the previous step's order; requests may be left out (finished, aborted),
   * in which case the remaining rows' tokens are moved up on the GPU. Nothing is awaited.
   */
  submitContinuation(prev: PendingStep, rows: readonly ContinuationRow[], numLookaheadTokens: number): PendingStep {
    const rc = this.runnerConfig, g = this.gpu, b = this.buf, bs = rc.blockSize;
    const S = rows.length;
    if (S === 0 || S > rc.maxNumSeqs) throw new RangeError(`a continuation of ${S} requests (1..maxNumSeqs ${rc.maxNumSeqs})`);
    if (!(Number.isInteger(numLookaheadTokens) && numLookaheadTokens >= 0 && numLookaheadTokens <= MAX_LOOKAHEAD)) {
      throw new RangeError(`numLookaheadTokens must be an integer in [0, ${MAX_LOOKAHEAD}], got ${numLookaheadTokens}`);
    }
    const cap = 1 + numLookaheadTokens;
    // Rows move up only (prevRow strictly increasing, >= row): copy the previous ids aside, then gather in runs.
    let compact = false;
    rows.forEach((r, i) => {
      if (prev.rows[r.prevRow] !== r.requestId || (i > 0 && r.prevRow <= rows[i - 1].prevRow)) {
        throw new EngineProtocolError(`continuation row ${i} (${r.requestId}) is not row ${r.prevRow} of the previous step, in order`);
      }
      if (r.prevRow !== i) compact = true;
    });
    if (compact) {
      g.copy(b.nextIds, 0, b.prevIds, 0, 4 * prev.rows.length);
      for (let i = 0; i < S;) {
        let n = 1;
        while (i + n < S && rows[i + n].prevRow === rows[i].prevRow + n) n++;
        g.copy(b.prevIds, 4 * rows[i].prevRow, b.nextIds, 4 * i, 4 * n);
        i += n;
      }
    }
    const tables = new Uint32Array(S * this.maxBlocksPerSeq);
    const pos = new Uint32Array(S), slots = new Uint32Array(S), seqState = new Uint32Array(2 * S);
    const samplingRows: SamplingRow[] = [];
    const logprobRows: Array<[string, number]> = [];
    let maxContext = 0;
    rows.forEach((r, i) => {
      const lastPosition = r.position + numLookaheadTokens;
      if (Math.floor(lastPosition / bs) >= r.blockIds.length || r.blockIds.length > this.maxBlocksPerSeq) {
        throw new EngineProtocolError(`continuation of ${r.requestId}: ${r.blockIds.length} blocks do not cover position ${lastPosition}`);
      }
      tables.set(r.blockIds, i * this.maxBlocksPerSeq);
      pos[i] = r.position;
      slots[i] = r.blockIds[Math.floor(r.position / bs)] * bs + (r.position % bs);
      seqState[2 * i] = r.position;
      maxContext = Math.max(maxContext, r.position + 1);
      const row: SamplingRow = { ...r.sampling, stateSlot: undefined, outputBase: r.outputBase, logprobsIndex: undefined };
      if (r.usesTokenState) {
        row.stateSlot = this.stateSlots.get(r.requestId);
        if (row.stateSlot === undefined) throw new EngineProtocolError(`continuation of ${r.requestId}: it holds no token-state slot`);
      }
      if (r.logprobs !== undefined) {
        row.logprobsIndex = logprobRows.length;
        row.numTopLogprobs = r.logprobs;
        logprobRows.push([r.requestId, r.logprobs]);
      }
      samplingRows.push(row);
    });
    // Ordered after the previous step's work (and the copy of its tokens for the readback) on the queue.
    g.write(b.blockTables, tables);
    g.write(b.nextPositions, pos);
    g.write(b.nextSlots, slots);
    g.write(b.seqState, seqState);
    g.write(b.sampling, packSamplingRows(samplingRows));
    for (let j = 0; j <= numLookaheadTokens; j++) {
      g.replay(this.decodePlan(S, cap, maxContext + j, logprobRows.length > 0));
      if (j === 0 || j % runnerTuning.stepsPerSubmit === 0 || j === numLookaheadTokens) g.flush();
    }
    const ids = rows.map((r) => r.requestId);
    return { rows: ids, numLookaheadTokens, output: quiet(this.readTokens(ids, cap, logprobRows)) };
  }

  /** Sample (and compute the asked logprobs of) the S logit rows, writing token j of row s at sampled[s * cap + j]. */
  private recordSampling(S: number, cap: number, L: number): void {
    const g = this.gpu, b = this.buf;
    sampleAndAdvance(g, {
      logits: b.logits, sampling: b.sampling, blockTables: b.blockTables, seqState: b.seqState, nextIds: b.nextIds,
      nextPositions: b.nextPositions, nextSlots: b.nextSlots, outTokens: b.sampled, tokenState: b.tokenState,
    }, { numSeqs: S, vocab: this.config.vocabSize, blockSize: this.runnerConfig.blockSize, maxBlocksPerSeq: this.maxBlocksPerSeq, outCapacity: cap });
    if (L > 0) {
      computeLogprobs(g, { logits: b.logits, sampling: b.sampling, seqState: b.seqState, nextIds: b.nextIds, records: b.sampled }, {
        numSeqs: S, vocab: this.config.vocabSize, outCapacity: cap, recordBase: S * cap,
      });
    }
  }

  /**
   * The captured decode step (forward of S single-token rows fed from the sampler's next ids/positions/slots,
   * then sampling) for a context of up to `context` tokens. Steps differ only in their batch size, output ring
   * and attention partition count: each is captured once and replayed (no re-encoding on the CPU).
   */
  private decodePlan(S: number, cap: number, context: number, withLogprobs: boolean): Recording {
    const rc = this.runnerConfig, b = this.buf;
    const parts = Math.ceil(context / ATTENTION_PARTITION);
    const key = `${S}:${cap}:${parts}:${withLogprobs}`;
    let plan = this.plans.get(key);
    if (plan) {
      this.plans.delete(key); // most recently used last
    } else {
      // Batch sizes change as requests come and go: keep the most recently used plans only.
      if (this.plans.size >= MAX_DECODE_PLANS) {
        const [oldest, stale] = this.plans.entries().next().value!;
        this.plans.delete(oldest);
        this.gpu.releaseRecording(stale);
      }
      plan = this.gpu.capture(() => {
        this.forward.forward({
          numTokens: S, tokenIds: b.nextIds, positions: b.nextPositions, tokenSeq: b.iota, slotMapping: b.nextSlots,
          blockTables: b.blockTables, maxBlocksPerSeq: this.maxBlocksPerSeq,
          maxContext: Math.min(parts * ATTENTION_PARTITION, rc.maxModelLen), queryBlocks: b.iotaBlocks, numQueryBlocks: S,
        }, this.cache, 'all', S, b.logits);
        this.recordSampling(S, cap, withLogprobs ? 1 : 0);
      });
    }
    this.plans.set(key, plan);
    return plan;
  }

  /** Read the step's tokens ([rows, cap]) and logprobs records back in one read, by request id. */
  private async readTokens(rows: readonly string[], cap: number, logprobRows: ReadonlyArray<[string, number]>): Promise<RunnerOutput> {
    const S = rows.length, L = logprobRows.length, R = LOGPROBS_RECORD_WORDS;
    const got = new Uint32Array(await this.gpu.read(this.buf.sampled, 0, (S * cap + L * cap * R) * 4));
    const out: RunnerOutput = { tokens: new Map(), logprobs: new Map() };
    rows.forEach((id, i) => out.tokens.set(id, Array.from(got.subarray(i * cap, (i + 1) * cap))));
    logprobRows.forEach(([id, numTop], l) => {
      const recs: LogprobsRecord[] = [];
      for (let j = 0; j < cap; j++) recs.push(unpackLogprobsRecord(got, S * cap + (l * cap + j) * R, numTop));
      out.logprobs.set(id, recs);
    });
    return out;
  }

  /** Give a slot to each chunk that needs token state and has none yet; returns the rebuilds to run. */
  private assignStateSlots(chunks: readonly RunnerChunk[]): TokenStateInit[] {
    const inits: TokenStateInit[] = [];
    for (const c of chunks) {
      if (!c.tokenState || this.stateSlots.has(c.requestId)) continue;
      const slot = this.freeSlots.pop();
      if (slot === undefined) throw new RangeError(`no free token-state slot for ${c.requestId}: more than maxNumSeqs requests hold one`);
      this.stateSlots.set(c.requestId, slot);
      inits.push({ slot, ...c.tokenState });
    }
    return inits;
  }

  private async rebuildTokenState(inits: TokenStateInit[]): Promise<void> {
    const g = this.gpu, b = this.buf;
    const { entries, tokens } = packTokenStateInits(inits);
    if (tokens.byteLength > this.stateTokens.size) {
      g.destroyBuffer(this.stateTokens);
      this.stateTokens = await g.createBuffer(Math.max(tokens.byteLength, 2 * this.stateTokens.size), 'runner.stateTokens');
    }
    g.write(b.stateEntries, entries);
    g.write(this.stateTokens, tokens);
    initTokenState(g, { entries: b.stateEntries, tokens: this.stateTokens, tokenState: b.tokenState }, { numEntries: inits.length, vocab: this.config.vocabSize });
  }
}

/**
 * Mark a promise handled now (it may sit in flight for a while before the engine awaits it), without hiding
 * its failure from whoever awaits it.
 */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}
