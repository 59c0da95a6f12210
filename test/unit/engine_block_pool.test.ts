// BlockPool: ref counts, the LRU free queue, the prefix-cache map and its collision safety.
import { describe, expect, it } from 'vitest';
import { BlockPool, hashBlockTokens, ROOT_BLOCK_HASH, sameBlockKey, type BlockKey, type KVCacheBlock } from '../../src/engine/block_pool.ts';
import { EngineConfigError, EngineProtocolError } from '../../src/engine/errors.ts';

/** FNV-1a 32 over bytes, written independently of the implementation (BigInt, byte array). */
function fnv1aBytes(bytes: number[]): number {
  let h = 0x811c9dc5n;
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x01000193n) & 0xffffffffn;
  return Number(h);
}
const le32 = (w: number) => [w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, w >>> 24];

function key(tokens: number[], parent: BlockKey | null = null, hash = hashBlockTokens(parent?.hash ?? ROOT_BLOCK_HASH, tokens, 0, tokens.length)): BlockKey {
  return { hash, parent, tokens: Uint32Array.from(tokens) };
}

function checkAccounting(pool: BlockPool): void {
  const free = new Set(pool.freeBlockIds());
  expect(pool.numFreeBlocks + pool.numUsedBlocks).toBe(pool.numBlocks);
  expect(free.size).toBe(pool.numFreeBlocks);
  for (const b of pool.blocks) expect(free.has(b.blockId)).toBe(b.refCount === 0);
}

describe('hashBlockTokens', () => {
  it('is FNV-1a over the little-endian bytes of (parent hash, tokens)', () => {
    const tokens = [0, 1, 50264, 0xdeadbeef, 7];
    const want = fnv1aBytes([ROOT_BLOCK_HASH, ...tokens].flatMap(le32));
    expect(hashBlockTokens(ROOT_BLOCK_HASH, tokens, 0, tokens.length)).toBe(want);
    // A sub-range hashes the same as the sliced array.
    expect(hashBlockTokens(123, [9, 9, ...tokens, 9], 2, 2 + tokens.length)).toBe(hashBlockTokens(123, tokens, 0, tokens.length));
  });

  it('depends on the parent and on token order', () => {
    const h = hashBlockTokens(1, [1, 2, 3], 0, 3);
    expect(hashBlockTokens(2, [1, 2, 3], 0, 3)).not.toBe(h);
    expect(hashBlockTokens(1, [3, 2, 1], 0, 3)).not.toBe(h);
    expect(h).toBeGreaterThanOrEqual(0);
    expect(h).toBeLessThan(2 ** 32);
  });
});

describe('BlockPool', () => {
  it('rejects a non-positive size', () => {
    expect(() => new BlockPool(0)).toThrow(EngineConfigError);
  });

  it('allocates with refCount 1 and frees back, keeping free + used = total', () => {
    const pool = new BlockPool(8);
    const a = pool.allocate(3)!;
    expect(a.map((b) => b.refCount)).toEqual([1, 1, 1]);
    expect(pool.stats()).toMatchObject({ numFreeBlocks: 5, numUsedBlocks: 3, usage: 3 / 8 });
    checkAccounting(pool);
    pool.touch([a[0]]);
    expect(a[0].refCount).toBe(2);
    pool.free(a);
    expect(pool.numUsedBlocks).toBe(1); // a[0] still referenced once
    pool.free([a[0]]);
    expect(pool.numUsedBlocks).toBe(0);
    checkAccounting(pool);
  });

  it('returns null and changes nothing when too few blocks are free', () => {
    const pool = new BlockPool(4);
    pool.allocate(3);
    const before = pool.freeBlockIds();
    expect(pool.allocate(2)).toBeNull();
    expect(pool.freeBlockIds()).toEqual(before);
    expect(pool.allocate(1)).toHaveLength(1);
  });

  it('throws on a double free', () => {
    const pool = new BlockPool(2);
    const [b] = pool.allocate(1)!;
    pool.free([b]);
    expect(() => pool.free([b])).toThrow(EngineProtocolError);
  });

  it('evicts cached free blocks least recently freed first, after uncached ones', () => {
    const pool = new BlockPool(6);
    const blocks = pool.allocate(6)!;
    const [b0, b1, b2, b3, b4, b5] = blocks;
    pool.cacheBlock(b0, key([0]));
    pool.cacheBlock(b1, key([1]));
    pool.cacheBlock(b2, key([2]));
    // Free cached blocks in the order b1, b0, b2 and uncached ones b3, b4 in between.
    pool.free([b1]);
    pool.free([b3]);
    pool.free([b0]);
    pool.free([b4, b2]);
    // Uncached blocks (most recently freed first: they all cost nothing), then cached ones in LRU order.
    expect(pool.freeBlockIds()).toEqual([b4.blockId, b3.blockId, b1.blockId, b0.blockId, b2.blockId]);
    const got = pool.allocate(3)!;
    expect(got.map((b) => b.blockId)).toEqual([b4.blockId, b3.blockId, b1.blockId]);
    expect(b1.key).toBeNull(); // evicted
    expect(pool.stats().numEvictions).toBe(1);
    expect(pool.lookup(hashBlockTokens(ROOT_BLOCK_HASH, [1], 0, 1), null, [1], 0)).toBeNull();
    expect(pool.lookup(hashBlockTokens(ROOT_BLOCK_HASH, [0], 0, 1), null, [0], 0)).toBe(b0);
    void b5;
    checkAccounting(pool);
  });

  it('a hit (touch) takes a free cached block out of the queue; freeing it again makes it most recent', () => {
    const pool = new BlockPool(3);
    const [a, b, c] = pool.allocate(3)!;
    pool.cacheBlock(a, key([10]));
    pool.cacheBlock(b, key([11]));
    pool.cacheBlock(c, key([12]));
    pool.free([a, b, c]);
    expect(pool.freeBlockIds()).toEqual([a.blockId, b.blockId, c.blockId]);
    pool.touch([a]);
    expect(a.refCount).toBe(1);
    expect(pool.freeBlockIds()).toEqual([b.blockId, c.blockId]);
    pool.free([a]);
    expect(pool.freeBlockIds()).toEqual([b.blockId, c.blockId, a.blockId]);
    expect(a.key).not.toBeNull(); // still cached: touching and freeing keeps content
    checkAccounting(pool);
  });

  it('only caches blocks in use, once', () => {
    const pool = new BlockPool(2);
    const [a] = pool.allocate(1)!;
    pool.cacheBlock(a, key([1]));
    expect(() => pool.cacheBlock(a, key([1]))).toThrow(EngineProtocolError);
    expect(() => pool.cacheBlock(pool.blocks[1], key([2]))).toThrow(EngineProtocolError);
  });

  it('never confuses blocks whose hashes collide: tokens and parent identity decide', () => {
    const pool = new BlockPool(8);
    const [p1, p2, x, y, z] = pool.allocate(5)!;
    const k1 = key([1, 2], null, 7);
    const k2 = key([3, 4], null, 7); // same hash, different tokens
    pool.cacheBlock(p1, k1);
    pool.cacheBlock(p2, k2);
    expect(pool.lookup(7, null, [1, 2], 0)).toBe(p1);
    expect(pool.lookup(7, null, [3, 4], 0)).toBe(p2);
    expect(pool.lookup(7, null, [5, 6], 0)).toBeNull();
    // Same tokens and same hash under different parents: the parent decides.
    pool.cacheBlock(x, key([9, 9], k1, 7));
    pool.cacheBlock(y, key([9, 9], k2, 7));
    expect(pool.lookup(7, k1, [9, 9], 0)).toBe(x);
    expect(pool.lookup(7, k2, [9, 9], 0)).toBe(y);
    expect(pool.lookup(7, null, [9, 9], 0)).toBeNull();
    // A structurally equal parent built by someone else still matches (identity is content, not object).
    expect(pool.lookup(7, key([1, 2], null, 7), [9, 9], 0)).toBe(x);
    void z;
  });

  it('sameBlockKey compares whole prefixes', () => {
    const a = key([1], null);
    const b = key([2], a);
    const a2 = key([1], null);
    const b2 = key([2], a2);
    expect(sameBlockKey(b, b2)).toBe(true);
    expect(sameBlockKey(b, key([2], key([3], null)))).toBe(false);
    expect(sameBlockKey(b, null)).toBe(false);
    expect(sameBlockKey(null, null)).toBe(true);
  });

  it('resetPrefixCache drops every entry and leaves ownership alone', () => {
    const pool = new BlockPool(4);
    const blocks: KVCacheBlock[] = pool.allocate(3)!;
    blocks.forEach((b, i) => pool.cacheBlock(b, key([i])));
    pool.free([blocks[0]]);
    expect(pool.resetPrefixCache()).toBe(3);
    expect(pool.numCachedBlocks).toBe(0);
    expect(blocks.every((b) => b.key === null)).toBe(true);
    expect(pool.numUsedBlocks).toBe(2);
    expect(pool.lookup(hashBlockTokens(ROOT_BLOCK_HASH, [1], 0, 1), null, [1], 0)).toBeNull();
    checkAccounting(pool);
  });
});
