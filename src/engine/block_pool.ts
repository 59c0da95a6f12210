/**
 * The pool of KV-cache blocks (vLLM v1's `BlockPool`): which physical blocks are free, who holds how many
 * references to each, and which full blocks are in the prefix cache.
 *
 * One job only. It knows nothing of requests or block tables (that is the KV-cache manager) and nothing of GPU
 * memory (a block id is just an index into the paged cache the model runner owns).
 *
 * Lifecycle of a block:
 *   free & uncached ──allocate──► in use (ref ≥ 1) ──cacheBlock──► in use & cached ──free (ref→0)──► free & cached
 *        ▲                                                                                         │
 *        └──────────────────────── allocate (evicts the cache entry) ◄──────────────────────────────┘
 * A free cached block still holds valid keys/values: a prefix-cache hit `touch`es it back into use without
 * recomputing anything. Only allocation reuses (evicts) it.
 */
import { EngineConfigError, EngineProtocolError } from './errors.ts';

// ───────────────────────────── block hashes ─────────────────────────────

/** Hash of a full block's content given its parent's hash (the chain makes it a hash of the whole prefix). */
export type BlockHashFn = (parentHash: number, tokens: ArrayLike<number>, start: number, end: number) => number;

/** The "parent hash" of a sequence's first block. FNV-1a's offset basis: any fixed value would do. */
export const ROOT_BLOCK_HASH = 0x811c9dc5;

const FNV_PRIME = 0x01000193;

function fnvWord(h: number, word: number): number {
  // Bytes of the word, little-endian, one FNV-1a round each: a byte-exact, platform-independent definition
  // (the same numbers in Python: `h ^= b; h = (h * 0x01000193) & 0xffffffff`).
  h = Math.imul(h ^ (word & 0xff), FNV_PRIME);
  h = Math.imul(h ^ ((word >>> 8) & 0xff), FNV_PRIME);
  h = Math.imul(h ^ ((word >>> 16) & 0xff), FNV_PRIME);
  return Math.imul(h ^ (word >>> 24), FNV_PRIME);
}

/**
 * 32-bit FNV-1a over the u32 words (parentHash, tokens[start], ..., tokens[end - 1]).
 *
 * 32 bits collide (a birthday pair is likely past ~77k cached blocks). That is fine because the hash only picks a
 * bucket: every hit is confirmed against the stored tokens and parent identity (`BlockKey`), so a collision costs
 * one extra comparison and never returns another prefix's blocks. A stronger hash would buy speed, not safety.
 */
export function hashBlockTokens(parentHash: number, tokens: ArrayLike<number>, start: number, end: number): number {
  let h = fnvWord(ROOT_BLOCK_HASH, parentHash >>> 0);
  for (let i = start; i < end; i++) h = fnvWord(h, tokens[i] >>> 0);
  return h >>> 0;
}

/**
 * The exact identity of a cached full block: its tokens and its parent's identity, i.e. the whole prefix up to
 * and including this block. `hash` is a summary for bucketing; equality never relies on it alone.
 * Keys are immutable and outlive their blocks: a child's key keeps its parent's key alive after the parent block
 * was evicted, so the child can still be matched after the parent's content is recomputed elsewhere.
 */
export interface BlockKey {
  readonly hash: number;
  readonly parent: BlockKey | null;
  readonly tokens: Uint32Array;
}

function tokensEqual(a: Uint32Array, b: ArrayLike<number>, bStart: number): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[bStart + i] >>> 0) return false;
  return true;
}

/**
 * Same prefix identity? Reference equality ends the walk early; in the common case (a chain matched through the
 * pool) the parents are the same objects and this is O(1). Only keys built by different requests for the same
 * content need the structural walk, which is still exact.
 */
export function sameBlockKey(a: BlockKey | null, b: BlockKey | null): boolean {
  while (a !== b) {
    if (a === null || b === null || a.hash !== b.hash || a.tokens.length !== b.tokens.length) return false;
    if (!tokensEqual(a.tokens, b.tokens, 0)) return false;
    a = a.parent;
    b = b.parent;
  }
  return true;
}

// ───────────────────────────── blocks and the free queue ─────────────────────────────

/** One physical KV-cache block. Mutated only by its BlockPool. */
export class KVCacheBlock {
  readonly blockId: number;
  /** Block tables (requests) holding this block. 0 = free (it then sits in the free queue). */
  refCount = 0;
  /** Set while the block is in the prefix cache (full, content known); null otherwise. */
  key: BlockKey | null = null;
  /** Free-queue links (intrusive, so `touch` can unlink a cached free block from the middle in O(1)). */
  prevFree: KVCacheBlock | null = null;
  nextFree: KVCacheBlock | null = null;
  constructor(blockId: number) { this.blockId = blockId; }
}

/**
 * Free blocks in eviction order: allocation takes from the front. A block freed with a cache entry goes to the
 * back (least recently freed is evicted first: LRU); one with nothing cached goes to the front, since reusing it
 * loses nothing (vLLM appends both; putting uncached blocks first keeps cached prefixes alive longer for free).
 */
class FreeBlockQueue {
  private readonly head = new KVCacheBlock(-1);
  private readonly tail = new KVCacheBlock(-1);
  length = 0;

  constructor() {
    this.head.nextFree = this.tail;
    this.tail.prevFree = this.head;
  }

  private insertAfter(at: KVCacheBlock, b: KVCacheBlock): void {
    b.prevFree = at;
    b.nextFree = at.nextFree;
    at.nextFree!.prevFree = b;
    at.nextFree = b;
    this.length++;
  }

  pushBack(b: KVCacheBlock): void { this.insertAfter(this.tail.prevFree!, b); }
  pushFront(b: KVCacheBlock): void { this.insertAfter(this.head, b); }

  remove(b: KVCacheBlock): void {
    if (b.prevFree === null || b.nextFree === null) throw new EngineProtocolError(`block ${b.blockId} is not in the free queue`);
    b.prevFree.nextFree = b.nextFree;
    b.nextFree.prevFree = b.prevFree;
    b.prevFree = b.nextFree = null;
    this.length--;
  }

  popFront(): KVCacheBlock {
    const b = this.head.nextFree!;
    if (b === this.tail) throw new EngineProtocolError('free block queue is empty');
    this.remove(b);
    return b;
  }

  *[Symbol.iterator](): IterableIterator<KVCacheBlock> {
    for (let b = this.head.nextFree!; b !== this.tail; b = b.nextFree!) yield b;
  }
}

// ───────────────────────────── the pool ─────────────────────────────

export interface BlockPoolStats {
  numBlocks: number;
  numFreeBlocks: number;
  /** Blocks with refCount > 0. numFreeBlocks + numUsedBlocks === numBlocks, always. */
  numUsedBlocks: number;
  /** Blocks with a prefix-cache entry, in use or free. */
  numCachedBlocks: number;
  /** Fraction of blocks in use (vLLM's `kv_cache_usage`), 0..1. */
  usage: number;
  /** Cached blocks reused for other content so far. */
  numEvictions: number;
}

export class BlockPool {
  readonly numBlocks: number;
  /** Every block, indexed by id. Read-only outside the pool (exposed for invariant checks and debugging). */
  readonly blocks: readonly KVCacheBlock[];
  private readonly freeQueue = new FreeBlockQueue();
  /** Prefix cache: hash → blocks whose key has that hash (more than one only on collisions or duplicates). */
  private readonly cached = new Map<number, KVCacheBlock[]>();
  private numCached = 0;
  private numEvictions = 0;

  constructor(numBlocks: number) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new EngineConfigError(`numBlocks must be a positive integer, got ${numBlocks}`);
    this.numBlocks = numBlocks;
    const blocks: KVCacheBlock[] = [];
    for (let i = 0; i < numBlocks; i++) {
      const b = new KVCacheBlock(i);
      blocks.push(b);
      this.freeQueue.pushBack(b);
    }
    this.blocks = blocks;
  }

  get numFreeBlocks(): number { return this.freeQueue.length; }
  get numUsedBlocks(): number { return this.numBlocks - this.freeQueue.length; }
  get numCachedBlocks(): number { return this.numCached; }
  get usage(): number { return this.numUsedBlocks / this.numBlocks; }

  /**
   * Take `n` blocks from the front of the free queue (evicting their cache entries), each with refCount 1.
   * Returns null, changing nothing, if fewer than `n` are free: the caller decides whether to preempt.
   */
  allocate(n: number): KVCacheBlock[] | null {
    if (n > this.freeQueue.length) return null;
    const out: KVCacheBlock[] = [];
    for (let i = 0; i < n; i++) {
      const b = this.freeQueue.popFront();
      if (b.key !== null) {
        this.uncache(b);
        this.numEvictions++;
      }
      b.refCount = 1;
      out.push(b);
    }
    return out;
  }

  /** Add a reference to each block (a prefix-cache hit or a fork); a free one leaves the free queue. */
  touch(blocks: readonly KVCacheBlock[]): void {
    for (const b of blocks) {
      if (b.refCount === 0) this.freeQueue.remove(b);
      b.refCount++;
    }
  }

  /**
   * Drop one reference from each block, in the given order; a block reaching 0 becomes free. Pass a request's
   * blocks tail first (the KV-cache manager does): a prefix's tail is the part least likely to be shared, so it
   * should be evicted before the head, and blocks freed together are queued in that order.
   */
  free(blocks: readonly KVCacheBlock[]): void {
    for (const b of blocks) {
      if (b.refCount <= 0) throw new EngineProtocolError(`block ${b.blockId} freed more often than it was referenced`);
      if (--b.refCount === 0) {
        if (b.key !== null) this.freeQueue.pushBack(b);
        else this.freeQueue.pushFront(b);
      }
    }
  }

  /** Enter a full, in-use block into the prefix cache under `key`. */
  cacheBlock(block: KVCacheBlock, key: BlockKey): void {
    if (block.key !== null) throw new EngineProtocolError(`block ${block.blockId} is already cached`);
    if (block.refCount === 0) throw new EngineProtocolError(`block ${block.blockId} is free: only blocks in use can be cached`);
    block.key = key;
    const bucket = this.cached.get(key.hash);
    if (bucket) bucket.push(block);
    else this.cached.set(key.hash, [block]);
    this.numCached++;
  }

  /**
   * The cached block holding exactly `tokens[start .. start + blockSize)` after the prefix `parent` (null for a
   * sequence's first block), or null. `hash` only selects the bucket; tokens and parent identity are compared.
   */
  lookup(hash: number, parent: BlockKey | null, tokens: ArrayLike<number>, start: number): KVCacheBlock | null {
    const bucket = this.cached.get(hash);
    if (!bucket) return null;
    for (const b of bucket) {
      const k = b.key!;
      if (k.hash === hash && tokensEqual(k.tokens, tokens, start) && sameBlockKey(k.parent, parent)) return b;
    }
    return null;
  }

  /**
   * Forget every prefix-cache entry (after a weight update the cached keys/values are stale). Blocks in use stay
   * with their owners; free blocks stay free. Returns how many entries were dropped.
   */
  resetPrefixCache(): number {
    const n = this.numCached;
    for (const bucket of this.cached.values()) for (const b of bucket) b.key = null;
    this.cached.clear();
    this.numCached = 0;
    return n;
  }

  /** Free block ids in the order allocation would take them (front first). For tests and debugging. */
  freeBlockIds(): number[] {
    return [...this.freeQueue].map((b) => b.blockId);
  }

  stats(): BlockPoolStats {
    return {
      numBlocks: this.numBlocks,
      numFreeBlocks: this.numFreeBlocks,
      numUsedBlocks: this.numUsedBlocks,
      numCachedBlocks: this.numCached,
      usage: this.usage,
      numEvictions: this.numEvictions,
    };
  }

  private uncache(b: KVCacheBlock): void {
    const bucket = this.cached.get(b.key!.hash)!;
    const i = bucket.indexOf(b);
    bucket.splice(i, 1);
    if (bucket.length === 0) this.cached.delete(b.key!.hash);
    b.key = null;
    this.numCached--;
  }
}
