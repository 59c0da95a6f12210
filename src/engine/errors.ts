/**
 * Errors of the serving engine's bookkeeping (block pool, KV-cache manager, scheduler). They extend TandemError
 * like every user-facing failure; catch by class, or switch on the stable `code`.
 */
import { TandemError } from '../errors.ts';

/**
 * The KV cache cannot hold even one request of `maxModelLen` tokens. Raised at startup rather than at the first
 * long request: a cache that small would make the scheduler preempt forever (a lone request that cannot fit has
 * nobody left to preempt), so the only honest answer is to refuse the configuration.
 */
export class KvCacheTooSmallError extends TandemError {
  readonly neededBlocks: number;
  readonly availableBlocks: number;
  readonly maxModelLen: number;
  readonly blockSize: number;
  /** `detail`: where the blocks went (memory budget, weights, activations), prepended to the message. */
  constructor(a: { neededBlocks: number; availableBlocks: number; maxModelLen: number; blockSize: number; detail?: string }) {
    super(
      'kv_cache_too_small',
      (a.detail ? `${a.detail}: ` : '') +
        `the KV cache has ${a.availableBlocks} blocks of ${a.blockSize} tokens, but one request of maxModelLen=` +
        `${a.maxModelLen} tokens needs ${a.neededBlocks} blocks: raise gpuMemoryUtilization (or the GPU's ` +
        `memory share) or lower maxModelLen to at most ${a.availableBlocks * a.blockSize}`,
    );
    this.neededBlocks = a.neededBlocks;
    this.availableBlocks = a.availableBlocks;
    this.maxModelLen = a.maxModelLen;
    this.blockSize = a.blockSize;
  }
}

/** An engine setting out of range (non-positive block count, token budget, `maxNumSeqs`, ...). */
export class EngineConfigError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('engine_config', message, options); }
}

/**
 * The model runner broke its contract with the scheduler (a sampled token missing for a request that had to
 * sample, more tokens than the reserved lookahead allows, a block freed twice). Always a Tandem bug, never the
 * user's: it is raised before any state is changed, so the engine can be inspected.
 */
export class EngineProtocolError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('engine_protocol', message, options); }
}
