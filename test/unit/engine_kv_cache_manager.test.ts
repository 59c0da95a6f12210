// KVCacheManager: prefix hits (and misses, and collision safety), allocation, forks, slot mapping, startup check.
import { describe, expect, it } from 'vitest';
import { InvalidInputError, TandemError } from '../../src/errors.ts';
import { EngineProtocolError, KvCacheTooSmallError } from '../../src/engine/errors.ts';
import { fillSlotMapping, KVCacheManager, slotForPosition, type KVCacheManagerConfig } from '../../src/engine/kv_cache_manager.ts';
import { Request } from '../../src/engine/request.ts';

const BS = 4;
let nextId = 0;
const req = (prompt: number[], extra: Partial<ConstructorParameters<typeof Request>[0]> = {}) =>
  new Request({ requestId: `r${nextId++}`, promptTokenIds: prompt, samplingParams: {}, ...extra });
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);
const mgr = (c: Partial<KVCacheManagerConfig> = {}) => new KVCacheManager({ numBlocks: 16, blockSize: BS, maxModelLen: 32, ...c });

/** Admit a request the way the scheduler does: lookup, allocate the rest of the prompt, advance. */
function admit(kv: KVCacheManager, r: Request, lookahead = 0) {
  const hit = kv.getComputedBlocks(r);
  const fresh = kv.allocateSlots(r, r.numTokens - hit.numComputedTokens, lookahead, hit);
  if (fresh) r.numComputedTokens = r.numTokens;
  return { hit, fresh };
}

describe('KVCacheManager construction', () => {
  it('fails with a typed error naming needed vs available blocks when maxModelLen cannot fit', () => {
    let err: unknown;
    try { mgr({ numBlocks: 7, maxModelLen: 30 }); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(KvCacheTooSmallError);
    expect(err).toBeInstanceOf(TandemError);
    const e = err as KvCacheTooSmallError;
    expect(e.code).toBe('kv_cache_too_small');
    expect([e.neededBlocks, e.availableBlocks]).toEqual([8, 7]);
    expect(e.message).toMatch(/7 blocks of 4 tokens/);
    expect(e.message).toMatch(/needs 8 blocks/);
    expect(() => mgr({ numBlocks: 8, maxModelLen: 32 })).not.toThrow(); // exactly one max-length request
    expect(() => mgr({ numBlocks: 0, maxModelLen: 1 })).toThrow(KvCacheTooSmallError);
    const withDetail = new KvCacheTooSmallError({ neededBlocks: 8, availableBlocks: 3, maxModelLen: 32, blockSize: 4, detail: '1000 bytes after weights' });
    expect(withDetail.message).toMatch(/^1000 bytes after weights: the KV cache has 3 blocks/);
  });
});

describe('prefix caching', () => {
  it('hits the blocks of an earlier request sharing a prefix, in full blocks only', () => {
    const kv = mgr();
    const a = req(range(10)); // blocks [0..3] [4..7] partial [8,9]
    admit(kv, a);
    const aBlocks = kv.getBlockIds(a.requestId);
    expect(aBlocks).toHaveLength(3);
    expect(kv.pool.numCachedBlocks).toBe(2); // the two full blocks, not the partial one

    const b = req([...range(9), 100, 101, 102]); // shares 9 tokens = 2 full blocks
    const { hit } = admit(kv, b);
    expect(hit.numComputedTokens).toBe(8);
    expect(kv.getBlockIds(b.requestId).slice(0, 2)).toEqual(aBlocks.slice(0, 2));
    expect(kv.getBlocks(b.requestId)[2].blockId).not.toBe(aBlocks[2]);
    expect(kv.getBlocks(a.requestId).map((x) => x.refCount)).toEqual([2, 2, 1]);
    expect(kv.prefixCacheStats).toEqual({ requests: 2, queries: 22, hits: 8 });
  });

  it('finds nothing across different prefixes, even with identical later blocks', () => {
    const kv = mgr();
    admit(kv, req([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    const b = req([9, 2, 3, 4, 5, 6, 7, 8, 9]); // first block differs, second identical
    expect(kv.getComputedBlocks(b).numComputedTokens).toBe(0);
  });

  it('never returns the whole sequence: the last token is always computed', () => {
    const kv = mgr();
    admit(kv, req(range(8))); // exactly two full blocks
    const b = req(range(8));
    expect(kv.getComputedBlocks(b).numComputedTokens).toBe(4);
    const c = req(range(9));
    expect(kv.getComputedBlocks(c).numComputedTokens).toBe(8);
  });

  it('hits blocks of a finished request while they sit in the free queue, and re-references them', () => {
    const kv = mgr();
    const a = req(range(9));
    admit(kv, a);
    const ids = kv.getBlockIds(a.requestId);
    a.status = 'finished';
    kv.free(a);
    expect(kv.pool.numUsedBlocks).toBe(0);
    const b = req(range(12));
    const { hit } = admit(kv, b);
    expect(hit.blocks.map((x) => x.blockId)).toEqual(ids.slice(0, 2));
    expect(kv.pool.numUsedBlocks).toBe(3);
    expect(hit.blocks.every((x) => x.refCount === 1)).toBe(true);
  });

  it('a forced hash collision never returns another prefix\'s blocks', () => {
    const kv = mgr({ hashFn: () => 0 }); // every block hashes to 0
    const a = req([1, 1, 1, 1, 7, 7, 7, 7, 0]);
    admit(kv, a);
    // Different first block, identical second block: both blocks collide in hash; none may match.
    expect(kv.getComputedBlocks(req([2, 2, 2, 2, 7, 7, 7, 7, 0])).numComputedTokens).toBe(0);
    // Same first block, different second: exactly one block.
    expect(kv.getComputedBlocks(req([1, 1, 1, 1, 8, 7, 7, 7, 0])).numComputedTokens).toBe(4);
    // A real match still works through the collisions.
    const b = req([1, 1, 1, 1, 7, 7, 7, 7, 5, 5]);
    const { hit } = admit(kv, b);
    expect(hit.blocks.map((x) => x.blockId)).toEqual(kv.getBlockIds(a.requestId).slice(0, 2));
    // Now cache a second chain in the same bucket and check each prefix finds its own.
    const c = req([2, 2, 2, 2, 7, 7, 7, 7, 0]);
    admit(kv, c);
    const hc = kv.getComputedBlocks(req([2, 2, 2, 2, 7, 7, 7, 7, 1]));
    expect(hc.blocks.map((x) => x.blockId)).toEqual(kv.getBlockIds(c.requestId).slice(0, 2));
    const ha = kv.getComputedBlocks(req([1, 1, 1, 1, 7, 7, 7, 7, 1]));
    expect(ha.blocks.map((x) => x.blockId)).toEqual(kv.getBlockIds(a.requestId).slice(0, 2));
  });

  it('does nothing when disabled', () => {
    const kv = mgr({ enablePrefixCaching: false });
    admit(kv, req(range(12)));
    expect(kv.pool.numCachedBlocks).toBe(0);
    expect(kv.getComputedBlocks(req(range(12))).numComputedTokens).toBe(0);
  });

  it('frees a request tail first, so its tail is evicted before its head', () => {
    const kv = mgr({ numBlocks: 8 });
    const a = req(range(17)); // 4 full blocks + 1 partial
    admit(kv, a);
    const ids = kv.getBlockIds(a.requestId);
    a.status = 'finished';
    kv.free(a);
    const free = kv.pool.freeBlockIds();
    // The partial (uncached) block is reused first, then the cached ones from the tail of the prompt.
    expect(free.slice(0, 1)).toEqual([ids[4]]);
    expect(free.slice(-4)).toEqual([ids[3], ids[2], ids[1], ids[0]]);
  });

  it('resetPrefixCache forgets everything and never caches blocks computed across the reset', () => {
    const kv = mgr();
    const a = req(range(6));
    admit(kv, a);
    expect(kv.pool.numCachedBlocks).toBe(1);
    expect(kv.resetPrefixCache()).toBe(1);
    expect(kv.getComputedBlocks(req(range(9))).numComputedTokens).toBe(0);
    // a keeps decoding; its second block fills up under the new weights but its first block's keys are old.
    for (const t of [6, 7, 8]) {
      a.appendOutputToken(t);
      expect(kv.allocateSlots(a, 1)).not.toBeNull();
      a.numComputedTokens++;
    }
    expect(kv.pool.numCachedBlocks).toBe(0);
    // A request admitted after the reset caches normally.
    admit(kv, req(range(9, 50)));
    expect(kv.pool.numCachedBlocks).toBe(2);
  });

  it('never caches a first block that was only partly computed before a reset', () => {
    const kv = mgr();
    const a = req(range(3)); // block 0 partial: nothing cached yet
    admit(kv, a);
    kv.resetPrefixCache();
    a.appendOutputToken(3); // block 0 becomes full, but positions 0..2 were computed with the old weights
    expect(kv.allocateSlots(a, 1)).not.toBeNull();
    a.numComputedTokens++;
    expect(kv.pool.numCachedBlocks).toBe(0);
    expect(kv.getComputedBlocks(req(range(5))).numComputedTokens).toBe(0);
  });
});

describe('allocateSlots', () => {
  it('grows a table block by block while decoding', () => {
    const kv = mgr();
    const a = req(range(3));
    admit(kv, a);
    expect(kv.getBlockIds(a.requestId)).toHaveLength(1);
    a.appendOutputToken(3);
    expect(kv.allocateSlots(a, 1)).toHaveLength(0); // position 3 still fits block 0
    a.numComputedTokens++;
    a.appendOutputToken(4);
    expect(kv.allocateSlots(a, 1)).toHaveLength(1); // position 4 opens block 1
    a.numComputedTokens++;
    expect(kv.pool.numCachedBlocks).toBe(1); // block 0 became full
  });

  it('returns null without side effects when the pool is short, counting hits on free blocks', () => {
    const kv = mgr({ numBlocks: 8 });
    const a = req(range(12)); // 3 blocks
    admit(kv, a);
    a.status = 'finished';
    kv.free(a); // 3 cached free blocks
    const hog = req(range(20, 16)); // 5 fresh blocks: the 5 uncached free ones go first, a's cache survives
    expect(admit(kv, hog).fresh).toHaveLength(5);
    expect(kv.pool.numFreeBlocks).toBe(3);
    expect(kv.pool.numCachedBlocks).toBe(3 + 5);
    // b hits a's first block (still cached), needs 3 more blocks: only 2 are free besides the hit.
    const b = req([...range(4), ...range(12, 100)]); // 16 tokens
    const hit = kv.getComputedBlocks(b);
    expect(hit.numComputedTokens).toBe(4);
    const before = kv.pool.freeBlockIds();
    expect(kv.allocateSlots(b, 12, 0, hit)).toBeNull();
    expect(kv.pool.freeBlockIds()).toEqual(before);
    expect(kv.getBlocks(b.requestId)).toHaveLength(0);
    expect(kv.allocateSlots(b, 8, 0, hit)).toHaveLength(2); // a smaller chunk fits
  });

  it('reserves lookahead slots, capped at maxModelLen', () => {
    const kv = mgr({ maxModelLen: 32 });
    const a = req(range(5));
    expect(kv.allocateSlots(a, 5, 6)).toHaveLength(3); // 11 slots
    a.numComputedTokens = 5;
    const b = req(range(30));
    expect(kv.allocateSlots(b, 30, 100)).toHaveLength(8); // capped at 32 slots
  });

  it('rejects misuse', () => {
    const kv = mgr();
    const a = req(range(5));
    expect(() => kv.allocateSlots(a, 0)).toThrow(EngineProtocolError);
    expect(() => kv.allocateSlots(a, 6)).toThrow(EngineProtocolError); // more tokens than the request has
  });
});

describe('forks (n > 1)', () => {
  it('share the leader\'s full prompt blocks by ref count; each sample gets its own partial block', () => {
    const kv = mgr();
    const prompt = range(10); // 2 full blocks + partial
    const leader = req(prompt);
    admit(kv, leader);
    const kids = [req(prompt, { forkOf: leader }), req(prompt, { forkOf: leader })];
    for (const k of kids) {
      const shared = kv.getForkedBlocks(leader, k);
      expect(shared.numComputedTokens).toBe(8);
      expect(kv.allocateSlots(k, 2, 0, shared)).toHaveLength(1);
      k.numComputedTokens = 10;
    }
    const lb = kv.getBlocks(leader.requestId);
    expect(lb.map((b) => b.refCount)).toEqual([3, 3, 1]);
    const partials = [leader, ...kids].map((r) => kv.getBlockIds(r.requestId)[2]);
    expect(new Set(partials).size).toBe(3);
    // Freeing the leader keeps the shared blocks alive for the samples.
    leader.status = 'finished';
    kv.free(leader);
    expect(lb.map((b) => b.refCount)).toEqual([2, 2, 0]);
    for (const k of kids) { k.status = 'finished'; kv.free(k); }
    expect(kv.pool.numUsedBlocks).toBe(0);
  });

  it('share only what the leader has computed, never the block of the last prompt token', () => {
    const kv = mgr({ enablePrefixCaching: false });
    const prompt = range(12); // exactly 3 blocks
    const leader = req(prompt);
    kv.allocateSlots(leader, 4); // first chunk only
    leader.numComputedTokens = 4;
    expect(kv.getForkedBlocks(leader, req(prompt)).numComputedTokens).toBe(4);
    kv.allocateSlots(leader, 8);
    leader.numComputedTokens = 12;
    expect(kv.getForkedBlocks(leader, req(prompt)).numComputedTokens).toBe(8);
    expect(() => kv.getForkedBlocks(leader, req([99, ...prompt.slice(1)]))).toThrow(InvalidInputError);
  });
});

describe('slot mapping', () => {
  it('maps position p to block[p / bs] * bs + p % bs', () => {
    const table = [5, 2, 9];
    expect(slotForPosition(table, 4, 0)).toBe(20);
    expect(slotForPosition(table, 4, 5)).toBe(9);
    expect(slotForPosition(table, 4, 11)).toBe(39);
    expect(() => slotForPosition(table, 4, 12)).toThrow(EngineProtocolError);
    const out = new Uint32Array(6).fill(7);
    fillSlotMapping(table, 4, 3, 3, out, 2);
    expect([...out]).toEqual([7, 7, 23, 8, 9, 7]);
    const kv = mgr();
    const a = req(range(6));
    admit(kv, a);
    const ids = kv.getBlockIds(a.requestId);
    expect([...kv.slotMapping(a.requestId, 2, 4)]).toEqual([ids[0] * 4 + 2, ids[0] * 4 + 3, ids[1] * 4, ids[1] * 4 + 1]);
  });
});
