/**
 * A generation request as the scheduler and KV-cache manager see it (vLLM v1's `Request`): token ids, progress
 * (`numComputedTokens`), status. It holds a reference to its sampling parameters but reads only the few fields
 * that decide when it stops; the sampler reads the rest.
 */
import { InvalidInputError } from '../errors.ts';

/**
 * waiting:   queued, holds no KV blocks.
 * running:   admitted, holds blocks; scheduled every step until it finishes or is preempted.
 * preempted: evicted by the scheduler to free blocks; queued again (at the front), holds no blocks, and will
 *            recompute prompt + generated tokens when it resumes.
 * finished:  done; `finishReason` says why. Holds nothing.
 */
export type RequestStatus = 'waiting' | 'running' | 'preempted' | 'finished';

/** vLLM / OpenAI finish reasons: a stop condition, a length limit (maxTokens or maxModelLen), or an abort. */
export type FinishReason = 'stop' | 'length' | 'abort';

/**
 * The part of the sampling parameters the scheduler reads. The engine's full SamplingParams (temperature, top-p,
 * seed, ...) should extend this; `Request<P>` carries the full object through to the model runner untouched.
 */
export interface RequestSamplingParams {
  /** Most tokens to generate. Undefined: only `maxModelLen` limits the output. */
  maxTokens?: number;
  /** EOS and stop token ids do not end the request before this many tokens were generated (default 0). */
  minTokens?: number;
  /** Keep generating past EOS. */
  ignoreEos?: boolean;
  /** Token ids that end the request (the id itself is kept in the output and reported as `stopReason`). */
  stopTokenIds?: readonly number[];
}

export interface RequestInit<P extends RequestSamplingParams = RequestSamplingParams> {
  requestId: string;
  promptTokenIds: readonly number[];
  samplingParams: P;
  /** The model's end-of-sequence id; null if it has none. */
  eosTokenId?: number | null;
  /** Wall-clock arrival (ms), for metrics only; ordering uses the scheduler's arrival counter. */
  arrivalTime?: number;
  /**
   * For the 2nd..n-th sample of an `n > 1` request: the first sample (same prompt). The scheduler admits this
   * request once the leader's prompt blocks are computed and shares them (see KVCacheManager.getForkedBlocks).
   */
  forkOf?: Request<P> | null;
}

function checkCount(name: string, v: number | undefined, min: number): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= min)) {
    throw new InvalidInputError(`${name} must be an integer >= ${min}, got ${v}`);
  }
}

export class Request<P extends RequestSamplingParams = RequestSamplingParams> {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  readonly samplingParams: P;
  readonly eosTokenId: number | null;
  readonly arrivalTime: number;
  readonly forkOf: Request<P> | null;
  /** Set by the scheduler when the request is added: FCFS order, and "newest" for preemption. */
  arrivalOrder = -1;

  status: RequestStatus = 'waiting';
  finishReason: FinishReason | null = null;
  /** The stop token id, or a stop string set through the scheduler's stop hook / finishRequest. */
  stopReason: number | string | null = null;

  /**
   * Tokens whose keys/values are in (or are being written to, by a step already scheduled) this request's KV
   * blocks. Advanced when a step is scheduled, reset to 0 on preemption. Always < numTokens while running and
   * not yet scheduled: the last token is the one the next step feeds in.
   */
  numComputedTokens = 0;
  /** Prompt tokens served from the prefix cache (or a fork) at first admission: metrics only. */
  numCachedTokens = -1;
  numPreemptions = 0;

  private readonly _outputTokenIds: number[] = [];
  private readonly _allTokenIds: number[];

  constructor(init: RequestInit<P>) {
    if (typeof init.requestId !== 'string' || init.requestId.length === 0) throw new InvalidInputError('requestId must be a non-empty string');
    if (init.promptTokenIds.length === 0) throw new InvalidInputError(`request ${init.requestId}: the prompt is empty`);
    for (const t of init.promptTokenIds) {
      if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) throw new InvalidInputError(`request ${init.requestId}: bad token id ${t}`);
    }
    const sp = init.samplingParams;
    checkCount('maxTokens', sp.maxTokens, 1);
    checkCount('minTokens', sp.minTokens, 0);
    if (sp.maxTokens !== undefined && (sp.minTokens ?? 0) > sp.maxTokens) {
      throw new InvalidInputError(`minTokens (${sp.minTokens}) exceeds maxTokens (${sp.maxTokens})`);
    }
    this.requestId = init.requestId;
    this.promptTokenIds = Object.freeze([...init.promptTokenIds]);
    this.samplingParams = sp;
    this.eosTokenId = init.eosTokenId ?? null;
    this.arrivalTime = init.arrivalTime ?? 0;
    this.forkOf = init.forkOf ?? null;
    this._allTokenIds = [...init.promptTokenIds];
  }

  get outputTokenIds(): readonly number[] { return this._outputTokenIds; }
  /** Prompt then output: what the KV cache holds (or will) position by position. */
  get allTokenIds(): readonly number[] { return this._allTokenIds; }
  get numPromptTokens(): number { return this.promptTokenIds.length; }
  get numOutputTokens(): number { return this._outputTokenIds.length; }
  get numTokens(): number { return this._allTokenIds.length; }
  get isFinished(): boolean { return this.status === 'finished'; }

  /** Append a sampled token. Only the scheduler calls this. */
  appendOutputToken(tokenId: number): void {
    this._outputTokenIds.push(tokenId);
    this._allTokenIds.push(tokenId);
  }
}
