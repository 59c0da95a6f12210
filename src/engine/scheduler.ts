/**
 * Continuous batching (vLLM v1's `Scheduler`): each step it decides which requests run and how many tokens of
 * each, within a token budget (`maxNumBatchedTokens`) and a sequence cap (`maxNumSeqs`). There is no separate
 * prefill and decode phase: a request just has `numTokens - numComputedTokens` tokens to catch up on (the whole
 * prompt at first, one token while decoding, prompt + outputs after a preemption), and the scheduler hands out
 * budget to close that gap. Chunked prefill is therefore always on: a prompt larger than the budget left gets a
 * chunk, and the rest in later steps.
 *
 * A step:
 *   1. running requests: decodes get their 1 token first, then ongoing prefill chunks share what is left, so a
 *      long prompt never delays the inter-token latency of requests already generating;
 *   2. blocks for them are allocated oldest first; when the pool is dry the newest running request is preempted
 *      (by recompute: blocks freed, back to the front of the queue) until the allocation fits;
 *   3. if nobody was preempted, waiting requests are admitted FCFS (prefix-cache hit first) while budget, blocks
 *      and `maxNumSeqs` allow. A request that does not fit stops admission: later ones do not overtake it.
 * The output says, per request, how many tokens to compute (`numScheduledTokens`, vLLM's shape) plus what the
 * model runner needs to pack one flat batch (`chunks`). After the forward, `updateFromOutput` appends the
 * sampled tokens, applies stop conditions and frees what finished.
 *
 * The scheduler advances `numComputedTokens` when it schedules (not when results arrive), as vLLM does, so the
 * next step can be planned while the GPU still runs this one.
 *
 * Asynchronous scheduling ("one round behind", vLLM v1's async scheduling). While a group's sampled tokens are
 * still on their way back, `scheduleContinuation` plans the next group: every running request continues from
 * the token the GPU sampled last for it, which the CPU has not seen (a placeholder). The scheduler keeps, per
 * request, how many such tokens are in flight (`pending`) and how many positions the scheduled groups feed
 * (`fed`), reserves KV slots for the continuation, and never schedules past maxTokens / maxModelLen. When a
 * group's tokens arrive (`updateFromOutput`, in scheduling order), a stop found among them finishes the request
 * and whatever later groups produced for it is discarded (its output is ignored: the request is gone). A full
 * `schedule()` (admission, prefill, preemption) only runs once nothing is in flight.
 */
import { InvalidInputError } from '../errors.ts';
import { EngineConfigError, EngineProtocolError } from './errors.ts';
import type { ComputedBlocks, KVCacheManager, PrefixCacheStats } from './kv_cache_manager.ts';
import type { FinishReason, Request, RequestSamplingParams } from './request.ts';

/**
 * Stop hook, consulted after each appended token once `minTokens` is reached (after the built-in EOS / stop-id
 * checks). Return a stop reason to finish the request with 'stop'. Stop strings belong here or, when the
 * detokenizer runs later, to `Scheduler.finishRequest`.
 */
export type StopChecker = (request: Request, tokenId: number) => string | number | null | undefined;

export interface SchedulerConfig {
  /** Most requests running at once. */
  maxNumSeqs: number;
  /** Most tokens computed in one step, over all requests. */
  maxNumBatchedTokens: number;
  /**
   * Extra decode slots reserved per request each step (default 0), so the model runner can run that many more
   * decode steps on the GPU, feeding each sampled token straight into the next step, before it needs the CPU
   * again. A reservation that does not fit is dropped before anyone is preempted for it.
   */
  numLookaheadTokens?: number;
  stopChecker?: StopChecker;
}

/** A request scheduled for the first time, or again after a preemption (the runner has no state for it). */
export interface NewRequestData<P extends RequestSamplingParams = RequestSamplingParams> {
  requestId: string;
  promptTokenIds: readonly number[];
  /** Tokens generated before a preemption (they are recomputed like prompt tokens); empty for a new request. */
  outputTokenIds: readonly number[];
  samplingParams: P;
  blockIds: number[];
  /** Tokens served by the prefix cache or a fork: the chunk starts here. */
  numComputedTokens: number;
  resumedFromPreemption: boolean;
}

/** A request the runner already knows: only what changed. */
export interface RunningRequestData {
  requestId: string;
  /** Blocks appended to its table this step. */
  newBlockIds: number[];
  /** Computed before this step: the chunk starts here. */
  numComputedTokens: number;
}

/** One request's part of the flat batch: everything the runner needs to pack token ids, positions and slots. */
export interface ScheduledChunk {
  requestId: string;
  /** The token ids to feed this step. */
  tokenIds: number[];
  /** Position of tokenIds[0]; the chunk covers startPosition .. startPosition + tokenIds.length - 1. */
  startPosition: number;
  /** The whole block table after this step's allocation. */
  blockIds: number[];
  /** True when the chunk reaches the request's last known token: the runner samples a token from its logits. */
  samplesToken: boolean;
  /**
   * Extra decode steps the runner may run for this request on the GPU (slots are reserved for them). It then
   * returns up to 1 + numLookaheadTokens tokens. 0 for a partial prefill chunk. The same for every chunk of a
   * step (the runner's extra steps run over the whole batch): the smallest reservation when every chunk samples,
   * else 0.
   */
  numLookaheadTokens: number;
  /** Scheduler bookkeeping: a result for an older incarnation of a preempted request is ignored. */
  numPreemptions: number;
  /** Continuation chunks only: tokens the request has generated before this step, in flight ones included. */
  outputBase?: number;
}

export interface SchedulerOutput<P extends RequestSamplingParams = RequestSamplingParams> {
  step: number;
  scheduledNewReqs: NewRequestData<P>[];
  scheduledRunningReqs: RunningRequestData[];
  numScheduledTokens: Map<string, number>;
  totalNumScheduledTokens: number;
  /** Preempted in this step: the runner drops their state. */
  preempted: string[];
  /** Finished or aborted since the previous step: the runner drops their state. */
  finished: string[];
  /** Every scheduled request, in batch order (running first, then new). */
  chunks: ScheduledChunk[];
  /**
   * Set by scheduleContinuation: every chunk continues a row of the step `continues` (chunk i of this output is
   * the chunk of that step with the same requestId). Their `tokenIds` are empty: the token each feeds, at
   * `startPosition`, is the last one the GPU sampled for it in that step, not known to the CPU yet.
   */
  continues?: number;
}

/** What one step produced for one request. */
export interface RequestStepOutput {
  requestId: string;
  /** Tokens appended this step (several with lookahead; cut after a stop). */
  newTokenIds: number[];
  finished: boolean;
  finishReason: FinishReason | null;
  stopReason: number | string | null;
}

export interface SchedulerStats {
  numRunning: number;
  numWaiting: number;
  numPreemptions: number;
  kvCacheUsage: number;
  prefixCache: Readonly<PrefixCacheStats>;
}

interface Inflight {
  fed: number;
  pending: number;
  steps: number[];
}

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new EngineConfigError(`${name} must be a positive integer, got ${v}`);
}

export class Scheduler<P extends RequestSamplingParams = RequestSamplingParams> {
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly numLookaheadTokens: number;
  readonly maxModelLen: number;
  readonly kv: KVCacheManager;
  private readonly stopChecker: StopChecker | undefined;
  /** FCFS queue; preempted requests go back to its front. */
  private readonly waiting: Request<P>[] = [];
  /** Admitted requests, kept sorted by arrival: the tail is the newest (the preemption victim). */
  private readonly running: Request<P>[] = [];
  private readonly requests = new Map<string, Request<P>>();
  private finishedSinceLastStep: string[] = [];
  /**
   * Requests with sampled tokens in flight (scheduled, output not processed yet): `pending` tokens will come
   * back, from the steps `steps` (in scheduling order: their outputs must be processed in that order); the
   * scheduled steps feed positions up to `fed` - 1 (numComputedTokens counts only what is known to be fed: it
   * catches up as outputs arrive).
   */
  private readonly inflight = new Map<Request<P>, Inflight>();
  private nextArrival = 0;
  private stepCount = 0;
  private _numPreemptions = 0;

  constructor(config: SchedulerConfig, kv: KVCacheManager) {
    positiveInt('maxNumSeqs', config.maxNumSeqs);
    positiveInt('maxNumBatchedTokens', config.maxNumBatchedTokens);
    const look = config.numLookaheadTokens ?? 0;
    if (!Number.isInteger(look) || look < 0) throw new EngineConfigError(`numLookaheadTokens must be a non-negative integer, got ${look}`);
    this.maxNumSeqs = config.maxNumSeqs;
    this.maxNumBatchedTokens = config.maxNumBatchedTokens;
    this.numLookaheadTokens = look;
    this.stopChecker = config.stopChecker;
    this.kv = kv;
    this.maxModelLen = kv.maxModelLen;
  }

  get numWaiting(): number { return this.waiting.length; }
  get numRunning(): number { return this.running.length; }
  get numPreemptions(): number { return this._numPreemptions; }
  hasUnfinishedRequests(): boolean { return this.requests.size > 0; }
  /** Ids of every request not yet finished (waiting, running or preempted). */
  unfinishedRequestIds(): string[] { return [...this.requests.keys()]; }
  getRequest(requestId: string): Request<P> | undefined { return this.requests.get(requestId); }
  /** Running requests, oldest first (a copy). */
  runningRequests(): Request<P>[] { return [...this.running]; }
  /** Waiting (and preempted) requests in queue order (a copy). */
  waitingRequests(): Request<P>[] { return [...this.waiting]; }

  addRequest(request: Request<P>): void {
    if (this.requests.has(request.requestId)) throw new InvalidInputError(`request id ${request.requestId} is already in use`);
    if (request.status !== 'waiting' || request.numOutputTokens > 0) throw new InvalidInputError(`request ${request.requestId} was already scheduled`);
    if (request.numTokens > this.maxModelLen) {
      throw new InvalidInputError(`request ${request.requestId}: prompt of ${request.numTokens} tokens exceeds maxModelLen ${this.maxModelLen}`);
    }
    const leader = request.forkOf;
    if (leader) {
      const a = leader.promptTokenIds, b = request.promptTokenIds;
      if (a.length !== b.length || a.some((t, i) => t !== b[i])) {
        throw new InvalidInputError(`request ${request.requestId} is a fork of ${leader.requestId} but their prompts differ`);
      }
    }
    request.arrivalOrder = this.nextArrival++;
    this.requests.set(request.requestId, request);
    this.waiting.push(request);
  }

  /** Abort a request in any state; everything it holds is freed now. False if it is unknown or already done. */
  abort(requestId: string): boolean {
    return this.finishRequest(requestId, 'abort');
  }

  /**
   * End a request from outside the step loop: an abort, or a stop string found by the detokenizer (the hook
   * for stop strings; pass the string as `stopReason`). Tokens already appended stay appended.
   */
  finishRequest(requestId: string, reason: FinishReason, stopReason: number | string | null = null): boolean {
    const req = this.requests.get(requestId);
    if (!req) return false;
    if (req.status === 'running') this.running.splice(this.running.indexOf(req), 1);
    else this.waiting.splice(this.waiting.indexOf(req), 1);
    this.finish(req, reason, stopReason);
    return true;
  }

  schedule(): SchedulerOutput<P> {
    if (this.inflight.size > 0) {
      throw new EngineProtocolError(`schedule() with ${this.inflight.size} requests' tokens in flight: process every scheduled step's output first`);
    }
    const bs = this.kv.blockSize;
    const numScheduled = new Map<string, number>();
    const scheduledRunning: Request<P>[] = [];
    const scheduledNew: Request<P>[] = [];
    const newBlockIds = new Map<string, number[]>();
    const lookahead = new Map<string, number>();
    const computedBefore = new Map<string, number>();
    const resumed = new Set<string>();
    const preempted: Request<P>[] = [];
    let budget = this.maxNumBatchedTokens;

    // 1. Plan the running requests' tokens: decodes first, then ongoing prefill chunks, oldest first in each.
    //    Under pure FCFS admission a prefill spanning steps is always the newest running request, so this is
    //    the same plan as vLLM's single oldest-first pass; stating it keeps the decode-latency guarantee when
    //    admission is not in arrival order (skipped n > 1 samples now, priorities later).
    const planned = new Map<Request<P>, number>();
    for (const req of this.running) {
      if (budget > 0 && req.numTokens - req.numComputedTokens === 1) { planned.set(req, 1); budget--; }
    }
    for (const req of this.running) {
      const remaining = req.numTokens - req.numComputedTokens;
      if (budget > 0 && remaining > 1) {
        const n = Math.min(remaining, budget);
        planned.set(req, n);
        budget -= n;
      }
    }

    // 2. Allocate oldest first; preempt from the newest end. Everything past index i is unscheduled so far, so a
    //    victim never has tokens in this step (or, if it is req itself, it simply is not scheduled).
    for (let i = 0; i < this.running.length; i++) {
      const req = this.running[i];
      const n = planned.get(req);
      if (n === undefined) continue;
      let look = this.lookaheadFor(req, n);
      let blocks = this.kv.allocateSlots(req, n, look);
      if (blocks === null && look > 0) { look = 0; blocks = this.kv.allocateSlots(req, n, 0); }
      while (blocks === null) {
        const victim = this.running.pop()!;
        this.preempt(victim);
        preempted.push(victim);
        if (victim === req) break;
        blocks = this.kv.allocateSlots(req, n, 0);
      }
      if (blocks === null) break; // req preempted itself: it was the newest, nothing runs after it
      computedBefore.set(req.requestId, req.numComputedTokens);
      req.numComputedTokens += n;
      numScheduled.set(req.requestId, n);
      newBlockIds.set(req.requestId, blocks.map((b) => b.blockId));
      lookahead.set(req.requestId, look);
      scheduledRunning.push(req);
    }

    // 3. Admit waiting requests, FCFS, unless this step had to preempt (then blocks are short: admitting would
    //    only thrash). A fork waits (is skipped, not blocking the queue) until its leader's prompt is scheduled.
    if (preempted.length === 0) {
      for (let w = 0; w < this.waiting.length && budget > 0 && this.running.length < this.maxNumSeqs;) {
        const req = this.waiting[w];
        let computed: ComputedBlocks;
        const leader = req.forkOf;
        const shareable = Math.floor((req.numPromptTokens - 1) / bs) * bs;
        if (leader && req.numOutputTokens === 0 && shareable > 0 && (leader.status === 'waiting' || leader.status === 'running')) {
          if (leader.status === 'waiting' || leader.numComputedTokens < shareable) { w++; continue; }
          computed = this.kv.getForkedBlocks(leader, req);
        } else {
          computed = this.kv.getComputedBlocks(req);
        }
        const n = Math.min(req.numTokens - computed.numComputedTokens, budget);
        let look = this.lookaheadFor(req, n, computed.numComputedTokens);
        let blocks = this.kv.allocateSlots(req, n, look, computed);
        if (blocks === null && look > 0) { look = 0; blocks = this.kv.allocateSlots(req, n, 0, computed); }
        if (blocks === null) break;
        this.waiting.splice(w, 1);
        if (req.status === 'preempted') resumed.add(req.requestId);
        req.status = 'running';
        if (req.numCachedTokens < 0) req.numCachedTokens = computed.numComputedTokens;
        computedBefore.set(req.requestId, computed.numComputedTokens);
        req.numComputedTokens = computed.numComputedTokens + n;
        this.insertRunning(req);
        numScheduled.set(req.requestId, n);
        lookahead.set(req.requestId, look);
        scheduledNew.push(req);
        budget -= n;
      }
    }

    // 4. Output: vLLM's per-request token counts, plus the flat batch. Extra GPU steps run over the whole batch,
    //    so they need every chunk to sample; then all get the smallest reservation (the rest stays reserved).
    const scheduled = [...scheduledRunning, ...scheduledNew];
    const samples = (req: Request<P>) => computedBefore.get(req.requestId)! + numScheduled.get(req.requestId)! === req.numTokens;
    const extra = scheduled.length > 0 && scheduled.every(samples) ? Math.min(...scheduled.map((r) => lookahead.get(r.requestId)!)) : 0;
    const chunks: ScheduledChunk[] = [];
    let total = 0;
    for (const req of scheduled) {
      const n = numScheduled.get(req.requestId)!;
      const start = computedBefore.get(req.requestId)!;
      total += n;
      const samplesToken = samples(req);
      if (samplesToken) this.inflight.set(req, { fed: start + n + extra, pending: 1 + extra, steps: [this.stepCount] });
      chunks.push({
        requestId: req.requestId,
        tokenIds: req.allTokenIds.slice(start, start + n),
        startPosition: start,
        blockIds: this.kv.getBlockIds(req.requestId),
        samplesToken,
        numLookaheadTokens: samplesToken ? extra : 0,
        numPreemptions: req.numPreemptions,
      });
    }
    const finished = this.finishedSinceLastStep;
    this.finishedSinceLastStep = [];
    return {
      step: this.stepCount++,
      scheduledNewReqs: scheduledNew.map((req) => ({
        requestId: req.requestId,
        promptTokenIds: req.promptTokenIds,
        outputTokenIds: [...req.outputTokenIds],
        samplingParams: req.samplingParams,
        blockIds: this.kv.getBlockIds(req.requestId),
        numComputedTokens: computedBefore.get(req.requestId)!,
        resumedFromPreemption: resumed.has(req.requestId),
      })),
      scheduledRunningReqs: scheduledRunning.map((req) => ({
        requestId: req.requestId,
        newBlockIds: newBlockIds.get(req.requestId)!,
        numComputedTokens: computedBefore.get(req.requestId)!,
      })),
      numScheduledTokens: numScheduled,
      totalNumScheduledTokens: total,
      preempted: preempted.map((r) => r.requestId),
      finished,
      chunks,
    };
  }

  /**
   * Plan the step after `prev` while prev's tokens are still in flight, or say null when a full `schedule()` is
   * needed (after prev's output, and any before it, are processed). Each request of prev still running continues
   * from the last token the GPU sampled for it: it feeds that token at position `fed` and runs the same number
   * of extra decode steps as the others (at most numLookaheadTokens, never past what it may still generate or
   * hold), with KV slots reserved for all of them. Requests finished or aborted since are left out, and so are
   * those whose in-flight tokens already reach maxTokens or maxModelLen (they finish with prev). Null when:
   *   - a waiting request could be admitted (running < maxNumSeqs): admission needs a full schedule, which
   *     needs the tokens (drain the pipeline: one readback of latency for the newcomers, nothing wrong);
   *   - prev has a chunk that does not sample (a partial prefill: its next chunk's tokens are on the CPU), or
   *     a running request has no chunk in prev (it was not scheduled: a tight token budget);
   *   - the pool cannot supply the slots (preemption is a full schedule's decision);
   *   - nobody is left to continue.
   */
  scheduleContinuation(prev: SchedulerOutput<P>): SchedulerOutput<P> | null {
    if (this.waiting.length > 0 && this.running.length < this.maxNumSeqs) return null;
    if (prev.chunks.length === 0 || prev.chunks.some((c) => !c.samplesToken)) return null;
    const inPrev = new Set(prev.chunks.map((c) => c.requestId));
    if (this.running.some((r) => !inPrev.has(r.requestId))) return null;
    const rows: Array<{ req: Request<P>; flight: Inflight; room: number }> = [];
    for (const c of prev.chunks) {
      const req = this.requests.get(c.requestId);
      const flight = req && this.inflight.get(req);
      if (!req || !flight || req.status !== 'running' || req.numPreemptions !== c.numPreemptions) continue;
      const room = this.roomAfterInflight(req, flight.pending);
      if (room > 0) rows.push({ req, flight, room });
    }
    if (rows.length === 0) return null;
    // Extra steps: the same for every row (they run over the whole batch); slots for positions fed .. fed + k.
    let k = Math.min(this.numLookaheadTokens, ...rows.map((r) => r.room - 1));
    const blocksFor = (k: number) => rows.reduce((s, { req, flight }) => s + this.kv.numNewBlocksNeeded(req, flight.fed + 1 + k), 0);
    if (blocksFor(k) > this.kv.pool.numFreeBlocks) k = 0;
    if (blocksFor(k) > this.kv.pool.numFreeBlocks) return null;
    const chunks: ScheduledChunk[] = [];
    const numScheduled = new Map<string, number>();
    const running: RunningRequestData[] = [];
    const step = this.stepCount++;
    for (const { req, flight } of rows) {
      const fresh = this.kv.reserveSlots(req, flight.fed + 1 + k)!;
      const start = flight.fed;
      const outputBase = req.numOutputTokens + flight.pending;
      flight.fed += 1 + k;
      flight.pending += 1 + k;
      flight.steps.push(step);
      numScheduled.set(req.requestId, 1);
      running.push({ requestId: req.requestId, newBlockIds: fresh.map((b) => b.blockId), numComputedTokens: start });
      chunks.push({
        requestId: req.requestId, tokenIds: [], startPosition: start, blockIds: this.kv.getBlockIds(req.requestId),
        samplesToken: true, numLookaheadTokens: k, numPreemptions: req.numPreemptions, outputBase,
      });
    }
    return {
      step, scheduledNewReqs: [], scheduledRunningReqs: running, numScheduledTokens: numScheduled,
      totalNumScheduledTokens: chunks.length, preempted: [], finished: [], chunks, continues: prev.step,
    };
  }

  /** Tokens in flight (sampled or to be sampled by scheduled steps, not processed yet) for a request. */
  numInflightTokens(requestId: string): number {
    const req = this.requests.get(requestId);
    return (req && this.inflight.get(req)?.pending) ?? 0;
  }

  /** True while some scheduled step's output has not been processed. */
  hasInflightTokens(): boolean {
    return this.inflight.size > 0;
  }

  /**
   * Take the tokens the runner sampled for `output`'s step: `sampledTokens` maps a request id to the tokens it
   * generated (1 + the extra decode steps it ran, at most 1 + chunk.numLookaheadTokens). Requests whose chunk
   * did not sample (partial prefill), and requests aborted or preempted since, are ignored. Appends, checks
   * stops (tokens after a stop are dropped: a stop found late wastes steps, never changes output) and frees
   * what finished. Validates everything before changing anything.
   */
  updateFromOutput(output: SchedulerOutput<P>, sampledTokens: ReadonlyMap<string, readonly number[]>): RequestStepOutput[] {
    const live: [Request<P>, ScheduledChunk, readonly number[]][] = [];
    for (const chunk of output.chunks) {
      const req = this.requests.get(chunk.requestId);
      if (!req || req.status !== 'running' || req.numPreemptions !== chunk.numPreemptions || !chunk.samplesToken) continue;
      const tokens = sampledTokens.get(chunk.requestId);
      if (!tokens || tokens.length === 0) throw new EngineProtocolError(`step ${output.step}: no sampled token for ${chunk.requestId}`);
      if (tokens.length > 1 + chunk.numLookaheadTokens) {
        throw new EngineProtocolError(`step ${output.step}: ${tokens.length} tokens for ${chunk.requestId}, but only ${chunk.numLookaheadTokens} lookahead slots were reserved`);
      }
      const flight = this.inflight.get(req);
      if (!flight || flight.steps[0] !== output.step || flight.pending < 1 + chunk.numLookaheadTokens) {
        throw new EngineProtocolError(`step ${output.step}: output for ${req.requestId} out of order (steps must be processed in the order they were scheduled)`);
      }
      if (tokens.length < 1 + chunk.numLookaheadTokens && flight.pending > 1 + chunk.numLookaheadTokens) {
        throw new EngineProtocolError(`step ${output.step}: ${tokens.length} of ${1 + chunk.numLookaheadTokens} tokens for ${req.requestId}, but a later step continues from the last`);
      }
      live.push([req, chunk, tokens]);
    }
    const results: RequestStepOutput[] = [];
    const done = new Set<Request<P>>();
    for (const [req, chunk, tokens] of live) {
      const expected = 1 + chunk.numLookaheadTokens;
      const flight = this.inflight.get(req)!;
      flight.pending -= expected;
      flight.steps.shift();
      // The runner may stop early (fewer extra steps than reserved) when no later step continues from them.
      flight.fed -= expected - tokens.length;
      const appended: number[] = [];
      let stop: [FinishReason, number | string | null] | null = null;
      for (let j = 0; j < tokens.length && !stop; j++) {
        req.appendOutputToken(tokens[j]);
        appended.push(tokens[j]);
        stop = this.checkStop(req, tokens[j]);
      }
      if (stop) {
        // Every token before the last was fed (so computed); tokens sampled after a stop are discarded.
        this.kv.cacheBlocks(req, req.numTokens - 1);
        this.finish(req, stop[0], stop[1]);
        done.add(req);
      } else {
        // Positions fed by the steps processed so far (and by later ones, already scheduled, up to what is known).
        req.numComputedTokens = Math.min(flight.fed, req.numTokens);
        if (flight.pending === 0) this.inflight.delete(req);
      }
      results.push({ requestId: req.requestId, newTokenIds: appended, finished: stop !== null, finishReason: req.finishReason, stopReason: req.stopReason });
    }
    if (done.size > 0) {
      const keep = this.running.filter((r) => !done.has(r));
      this.running.length = 0;
      this.running.push(...keep);
    }
    return results;
  }

  stats(): SchedulerStats {
    return {
      numRunning: this.running.length,
      numWaiting: this.waiting.length,
      numPreemptions: this._numPreemptions,
      kvCacheUsage: this.kv.usage,
      prefixCache: this.kv.prefixCacheStats,
    };
  }

  /**
   * Stop conditions after appending `tokenId`: EOS (unless ignoreEos) and stop token ids count only once
   * `minTokens` tokens exist (the sampler is expected to mask them before that; if one slips through it is kept
   * as ordinary output); then the length limits, which apply regardless of minTokens.
   */
  private checkStop(req: Request<P>, tokenId: number): [FinishReason, number | string | null] | null {
    const sp = req.samplingParams;
    if (req.numOutputTokens >= (sp.minTokens ?? 0)) {
      if (!sp.ignoreEos && req.eosTokenId !== null && tokenId === req.eosTokenId) return ['stop', null];
      if (sp.stopTokenIds?.includes(tokenId)) return ['stop', tokenId];
      const custom = this.stopChecker?.(req, tokenId);
      if (custom !== null && custom !== undefined) return ['stop', custom];
    }
    if (req.numTokens >= this.maxModelLen) return ['length', null];
    if (sp.maxTokens !== undefined && req.numOutputTokens >= sp.maxTokens) return ['length', null];
    return null;
  }

  /**
   * Lookahead slots for a chunk of `n` tokens starting at `computed`: only when the chunk samples (reaches the
   * last known token), and never past what the request may still generate (maxTokens) or hold (maxModelLen).
   * Extra step j (1-based) computes the token at position numTokens + j - 1 and samples one more, so k steps
   * need k slots and produce k tokens beyond the step's own.
   */
  private lookaheadFor(req: Request<P>, n: number, computed = req.numComputedTokens): number {
    if (this.numLookaheadTokens === 0 || computed + n !== req.numTokens) return 0;
    let k = this.numLookaheadTokens;
    const maxTokens = req.samplingParams.maxTokens;
    if (maxTokens !== undefined) k = Math.min(k, maxTokens - (req.numOutputTokens + 1));
    k = Math.min(k, this.maxModelLen - (req.numTokens + 1));
    return Math.max(0, k);
  }

  /**
   * Tokens a request may still generate once `pending` in-flight ones are appended: what maxTokens and
   * maxModelLen leave (<= 0: it finishes by length with the steps already scheduled).
   */
  private roomAfterInflight(req: Request<P>, pending: number): number {
    let room = this.maxModelLen - (req.numTokens + pending);
    const maxTokens = req.samplingParams.maxTokens;
    if (maxTokens !== undefined) room = Math.min(room, maxTokens - (req.numOutputTokens + pending));
    return room;
  }

  private preempt(req: Request<P>): void {
    this.inflight.delete(req);
    req.status = 'preempted'; // before free(): a preempted request keeps its block hashes for resuming
    this.kv.free(req);
    req.numComputedTokens = 0;
    req.numPreemptions++;
    this._numPreemptions++;
    this.waiting.unshift(req);
  }

  private finish(req: Request<P>, reason: FinishReason, stopReason: number | string | null): void {
    this.inflight.delete(req);
    req.status = 'finished';
    req.finishReason = reason;
    req.stopReason = stopReason;
    this.kv.free(req);
    this.requests.delete(req.requestId);
    this.finishedSinceLastStep.push(req.requestId);
  }

  private insertRunning(req: Request<P>): void {
    let lo = 0, hi = this.running.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.running[mid].arrivalOrder < req.arrivalOrder) lo = mid + 1;
      else hi = mid;
    }
    this.running.splice(lo, 0, req);
  }
}
