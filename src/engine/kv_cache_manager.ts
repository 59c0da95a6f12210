/**
 * Per-request KV block tables on top of the block pool (vLLM v1's `KVCacheManager`): prefix-cache lookups,
 * slot allocation for the tokens a step will compute, forks for `n > 1`, and freeing.
 *
 * The scheduler asks it three questions, in vLLM's words:
 *   getComputedBlocks(req)                 which leading blocks of this new request are already in the cache?
 *   allocateSlots(req, n, lookahead, hit)  give it room for n more tokens (+ lookahead), or say null (preempt!)
 *   free(req)                              it finished, was aborted or preempted: drop its references
 *
 * When a block enters the prefix cache. Like vLLM, a block is cached as soon as a scheduled step will fill it
 * (in `allocateSlots`), so a request admitted later in the same step can hit blocks that step computes. That
 * relies on one contract with the model runner: within a step, each layer writes the keys/values of every
 * token in the flat batch to the cache before attention reads the cache (Tandem's runner does: kv_cache_write
 * is its own dispatch ahead of paged_attention). A runner that fuses the write into attention must not be paired
 * with same-step hits.
 */
import { InvalidInputError } from '../errors.ts';
import { BlockPool, hashBlockTokens, ROOT_BLOCK_HASH, type BlockHashFn, type BlockKey, type KVCacheBlock } from './block_pool.ts';
import { EngineConfigError, EngineProtocolError, KvCacheTooSmallError } from './errors.ts';
import type { Request } from './request.ts';

export interface KVCacheManagerConfig {
  numBlocks: number;
  /** Tokens per block (16 by default in the engine). */
  blockSize: number;
  /** Longest sequence (prompt + output) a request may reach; one such request must fit in the cache. */
  maxModelLen: number;
  /** Default true. */
  enablePrefixCaching?: boolean;
  /** Override the block hash (tests force collisions with `() => 0`). Default: FNV-1a over u32 words. */
  hashFn?: BlockHashFn;
}

/** Blocks a new request can start from, and how many tokens they cover (a multiple of blockSize). */
export interface ComputedBlocks {
  readonly blocks: readonly KVCacheBlock[];
  readonly numComputedTokens: number;
}

export interface PrefixCacheStats {
  /** Lookups (one per admission of a request, resumptions included). */
  requests: number;
  /** Tokens looked up (the whole sequence of each request at admission). */
  queries: number;
  /** Of those, tokens found in the cache. hits / queries is the hit rate. */
  hits: number;
}

const NO_BLOCKS: ComputedBlocks = Object.freeze({ blocks: Object.freeze([]) as readonly KVCacheBlock[], numComputedTokens: 0 });

/** A request's table while it holds blocks. */
interface RequestBlocks {
  blocks: KVCacheBlock[];
  /** Leading blocks already in the prefix cache (or shared with a fork leader that will cache them). */
  numCachedBlocks: number;
  /** Prefix-cache generation when the table was created: blocks computed across a reset are never cached. */
  epoch: number;
}

/** Cache slot of `position` in a sequence with block table `blockIds`: block * blockSize + offset. */
export function slotForPosition(blockIds: ArrayLike<number>, blockSize: number, position: number): number {
  const b = Math.floor(position / blockSize);
  if (b >= blockIds.length) throw new EngineProtocolError(`position ${position} is past the block table (${blockIds.length} blocks of ${blockSize})`);
  return blockIds[b] * blockSize + (position % blockSize);
}

/**
 * Slots of positions start .. start + count - 1, written into `out` from `outOffset` (one flat array for the whole
 * step's batch: the runner packs every request's slots into one upload).
 */
export function fillSlotMapping(
  blockIds: ArrayLike<number>, blockSize: number, start: number, count: number,
  out: Uint32Array = new Uint32Array(count), outOffset = 0,
): Uint32Array {
  for (let i = 0; i < count; i++) out[outOffset + i] = slotForPosition(blockIds, blockSize, start + i);
  return out;
}

export class KVCacheManager {
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly maxModelLen: number;
  readonly enablePrefixCaching: boolean;
  readonly pool: BlockPool;
  private readonly hashFn: BlockHashFn;
  private readonly tables = new Map<string, RequestBlocks>();
  /**
   * Hash of each full block of a request's tokens, extended as tokens arrive. Kept across preemption (tokens
   * do not change, so neither do hashes); dropped when the request finishes.
   */
  private readonly hashes = new Map<string, number[]>();
  private epoch = 0;
  private readonly _prefixStats: PrefixCacheStats = { requests: 0, queries: 0, hits: 0 };

  constructor(config: KVCacheManagerConfig) {
    const { numBlocks, blockSize, maxModelLen } = config;
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new EngineConfigError(`blockSize must be a positive integer, got ${blockSize}`);
    if (!Number.isInteger(maxModelLen) || maxModelLen < 1) throw new EngineConfigError(`maxModelLen must be a positive integer, got ${maxModelLen}`);
    if (!Number.isInteger(numBlocks) || numBlocks < 0) throw new EngineConfigError(`numBlocks must be a non-negative integer, got ${numBlocks}`);
    // One request of maxModelLen tokens must fit on its own, or the scheduler could end up with a lone request it
    // can neither run nor make room for. (Lookahead reservations are capped at maxModelLen, so they add nothing.)
    const needed = Math.ceil(maxModelLen / blockSize);
    if (needed > numBlocks) throw new KvCacheTooSmallError({ neededBlocks: needed, availableBlocks: numBlocks, maxModelLen, blockSize });
    this.blockSize = blockSize;
    this.numBlocks = numBlocks;
    this.maxModelLen = maxModelLen;
    this.enablePrefixCaching = config.enablePrefixCaching ?? true;
    this.hashFn = config.hashFn ?? hashBlockTokens;
    this.pool = new BlockPool(numBlocks);
  }

  /** Fraction of blocks in use, 0..1. */
  get usage(): number { return this.pool.usage; }
  get prefixCacheStats(): Readonly<PrefixCacheStats> { return this._prefixStats; }
  /** Requests that hold a block table. */
  get numRequests(): number { return this.tables.size; }

  /**
   * The longest run of leading full blocks of `request` found in the prefix cache. Never the whole sequence: at
   * least the last token must be computed, or there would be no logits to sample from (vLLM's rule), so the hit
   * is capped at floor((numTokens - 1) / blockSize) blocks. Changes nothing; `allocateSlots` takes the blocks.
   */
  getComputedBlocks(request: Request): ComputedBlocks {
    if (!this.enablePrefixCaching) return NO_BLOCKS;
    const bs = this.blockSize;
    const maxBlocks = Math.floor((request.numTokens - 1) / bs);
    const hashes = this.blockHashes(request, maxBlocks);
    const tokens = request.allTokenIds;
    const blocks: KVCacheBlock[] = [];
    // Match block i against (tokens of block i, identity of the block matched at i - 1): the chain of keys the
    // pool returns is itself the proof of the prefix, so a hash collision anywhere cannot splice prefixes.
    let parent: BlockKey | null = null;
    for (let i = 0; i < maxBlocks; i++) {
      const b = this.pool.lookup(hashes[i], parent, tokens, i * bs);
      if (b === null) break;
      blocks.push(b);
      parent = b.key;
    }
    this._prefixStats.requests++;
    this._prefixStats.queries += request.numTokens;
    this._prefixStats.hits += blocks.length * bs;
    return blocks.length === 0 ? NO_BLOCKS : { blocks, numComputedTokens: blocks.length * bs };
  }

  /**
   * `n > 1`: the blocks `child` (a later sample of the same prompt) can share with `leader`, the sample that
   * prefilled it: the leader's full prompt blocks that are computed (or scheduled this step), never including
   * the block holding the last prompt token.
   *
   * Why no copy-on-write. Shared blocks are full and immutable: nobody ever writes into a full block again, so
   * sharing needs only ref counts. The partial last block is where every sample appends its own tokens, so it
   * cannot be shared; instead of copying it on the GPU (a copy kernel in the step, plus a copy-on-write table),
   * each sample recomputes those < blockSize tail tokens into a block of its own. That costs at most blockSize
   * tokens of prefill per sample, reuses the ordinary prefill path, produces each sample's own logits for its
   * first token (with batch invariance, bit-identical to the leader's), and leaves no copy to get wrong.
   */
  getForkedBlocks(leader: Request, child: Request): ComputedBlocks {
    const bs = this.blockSize;
    const table = this.tables.get(leader.requestId);
    if (!table) return NO_BLOCKS;
    const n = Math.min(
      Math.floor((child.numTokens - 1) / bs),
      Math.floor((leader.numPromptTokens - 1) / bs), // only prompt blocks: the leader's outputs are its own
      Math.floor(leader.numComputedTokens / bs),
      table.blocks.length,
    );
    for (let i = 0; i < n * bs; i++) {
      if (child.allTokenIds[i] !== leader.allTokenIds[i]) {
        throw new InvalidInputError(`request ${child.requestId} is a fork of ${leader.requestId} but their prompts differ at token ${i}`);
      }
    }
    return n <= 0 ? NO_BLOCKS : { blocks: table.blocks.slice(0, n), numComputedTokens: n * bs };
  }

  /**
   * Make room for `numNewTokens` more tokens of `request` (the chunk the scheduler is about to schedule) plus
   * `numLookaheadTokens` slots for decode steps the GPU may run ahead without the CPU. `newComputed` (only at
   * admission) are the prefix-cache hit or fork blocks the request starts from; they are referenced here.
   *
   * Returns the newly allocated blocks (possibly none), or null without changing anything when the pool cannot
   * supply them: the scheduler then preempts someone and retries.
   */
  allocateSlots(request: Request, numNewTokens: number, numLookaheadTokens = 0, newComputed: ComputedBlocks = NO_BLOCKS): KVCacheBlock[] | null {
    if (!(numNewTokens > 0)) throw new EngineProtocolError(`allocateSlots(${request.requestId}): numNewTokens must be > 0, got ${numNewTokens}`);
    const bs = this.blockSize;
    const table = this.tables.get(request.requestId);
    const hit = newComputed.blocks;
    if (hit.length > 0 && (table !== undefined || request.numComputedTokens !== 0)) {
      throw new EngineProtocolError(`allocateSlots(${request.requestId}): computed blocks can only be given at admission`);
    }
    const numComputed = request.numComputedTokens + newComputed.numComputedTokens;
    const numKnown = numComputed + numNewTokens;
    if (numKnown > request.numTokens || numKnown > this.maxModelLen) {
      throw new EngineProtocolError(`allocateSlots(${request.requestId}): ${numKnown} tokens exceed the request (${request.numTokens}) or maxModelLen (${this.maxModelLen})`);
    }
    const numRequired = Math.min(numKnown + Math.max(0, numLookaheadTokens), this.maxModelLen);
    const have = (table?.blocks.length ?? 0) + hit.length;
    const toAllocate = Math.max(0, Math.ceil(numRequired / bs) - have);
    // A hit on a free cached block takes it out of the free queue, so it cannot also serve as a new block.
    let hitsFromFreeQueue = 0;
    for (const b of hit) if (b.refCount === 0) hitsFromFreeQueue++;
    if (toAllocate > this.pool.numFreeBlocks - hitsFromFreeQueue) return null;

    const t = table ?? { blocks: [], numCachedBlocks: 0, epoch: this.epoch };
    if (!table) this.tables.set(request.requestId, t);
    if (hit.length > 0) {
      this.pool.touch(hit); // before allocate, so the allocation cannot evict the very blocks we hit
      t.blocks.push(...hit);
      t.numCachedBlocks = hit.length;
    }
    const fresh = this.pool.allocate(toAllocate)!;
    t.blocks.push(...fresh);
    if (this.enablePrefixCaching) this.cacheFullBlocks(request, t, numKnown);
    return fresh;
  }

  /**
   * Blocks `reserveSlots(request, numSlots)` would allocate: those its table lacks to cover `numSlots` positions
   * (capped at maxModelLen).
   */
  numNewBlocksNeeded(request: Request, numSlots: number): number {
    const have = this.tables.get(request.requestId)?.blocks.length ?? 0;
    return Math.max(0, Math.ceil(Math.min(numSlots, this.maxModelLen) / this.blockSize) - have);
  }

  /**
   * Grow a running request's table to cover positions 0 .. numSlots - 1, for decode steps scheduled while the
   * tokens they feed are still on the GPU (asynchronous scheduling: the CPU does not know them yet, so nothing is
   * cached here; allocateSlots or cacheBlocks publish the blocks once their tokens are known). Returns the new
   * blocks, or null without changing anything when the pool cannot supply them.
   */
  reserveSlots(request: Request, numSlots: number): KVCacheBlock[] | null {
    const t = this.tables.get(request.requestId);
    if (!t) throw new EngineProtocolError(`reserveSlots(${request.requestId}): the request holds no blocks`);
    if (numSlots > this.maxModelLen) throw new EngineProtocolError(`reserveSlots(${request.requestId}): ${numSlots} slots exceed maxModelLen ${this.maxModelLen}`);
    const n = this.numNewBlocksNeeded(request, numSlots);
    if (n > this.pool.numFreeBlocks) return null;
    const fresh = this.pool.allocate(n)!;
    t.blocks.push(...fresh);
    return fresh;
  }

  /**
   * Publish `request`'s full blocks among its first `numTokens` tokens to the prefix cache (those whose
   * contents are known and computed or scheduled). allocateSlots does this for every scheduled chunk; call it
   * directly for tokens the GPU computed ahead of the scheduler (lookahead decode steps) before freeing.
   */
  cacheBlocks(request: Request, numTokens: number): void {
    const t = this.tables.get(request.requestId);
    if (t && this.enablePrefixCaching) this.cacheFullBlocks(request, t, Math.min(numTokens, request.numTokens));
  }

  /**
   * Drop the request's references, tail block first (so its tail is evicted before its head, which other
   * requests are likelier to share). Idempotent. A finished request's hashes are dropped too; a preempted one
   * keeps them for when it resumes.
   */
  free(request: Request): void {
    const t = this.tables.get(request.requestId);
    if (t) {
      this.pool.free(t.blocks.slice().reverse());
      this.tables.delete(request.requestId);
    }
    if (request.isFinished) this.hashes.delete(request.requestId);
  }

  /** The request's block table, in position order (empty if it holds none). */
  getBlocks(requestId: string): readonly KVCacheBlock[] {
    return this.tables.get(requestId)?.blocks ?? [];
  }

  getBlockIds(requestId: string): number[] {
    return this.getBlocks(requestId).map((b) => b.blockId);
  }

  /** Slots of positions start .. start + count - 1 of a request that holds blocks. */
  slotMapping(requestId: string, start: number, count: number, out?: Uint32Array, outOffset = 0): Uint32Array {
    return fillSlotMapping(this.getBlockIds(requestId), this.blockSize, start, count, out, outOffset);
  }

  /**
   * Forget the prefix cache (after a weight update, every cached key/value is stale). Requests holding blocks
   * keep them, but blocks they compute from now on are never cached: their keys/values attend over a prefix
   * computed with the old weights, so they would poison the cache. Returns how many entries were dropped.
   */
  resetPrefixCache(): number {
    this.epoch++;
    return this.pool.resetPrefixCache();
  }

  private blockHashes(request: Request, numBlocks: number): number[] {
    let h = this.hashes.get(request.requestId);
    if (!h) this.hashes.set(request.requestId, (h = []));
    const bs = this.blockSize;
    const tokens = request.allTokenIds;
    for (let i = h.length; i < numBlocks; i++) {
      h.push(this.hashFn(i === 0 ? ROOT_BLOCK_HASH : h[i - 1], tokens, i * bs, (i + 1) * bs) >>> 0);
    }
    return h;
  }

  private cacheFullBlocks(request: Request, t: RequestBlocks, numTokens: number): void {
    if (t.epoch !== this.epoch) return;
    const bs = this.blockSize;
    const numFull = Math.min(Math.floor(numTokens / bs), t.blocks.length);
    if (numFull <= t.numCachedBlocks) return;
    const hashes = this.blockHashes(request, numFull);
    const tokens = request.allTokenIds;
    for (let i = t.numCachedBlocks; i < numFull; i++) {
      const block = t.blocks[i];
      if (block.key === null) {
        // Chain to the key of the block actually at i - 1 in this table, so keys matched through the pool share
        // parent objects (fast equality). A parent that is not cached yet (a fork leader still to publish it)
        // means this block cannot be named yet: stop and retry on the next call.
        const parent = i === 0 ? null : t.blocks[i - 1].key;
        if (i > 0 && parent === null) return;
        this.pool.cacheBlock(block, { hash: hashes[i], parent, tokens: Uint32Array.from(tokens.slice(i * bs, (i + 1) * bs)) });
      }
      t.numCachedBlocks = i + 1;
    }
  }
}
