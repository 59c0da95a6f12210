/**
 * The KV cache's state for the block map, computed from what the engine exposes today: the block pool
 * (each block's ref count and prefix-cache key), the scheduler's requests and the KV-cache manager's block
 * tables. This is the adapter for a method the engine could offer itself:
 *
 *   llm.kvCacheSnapshot(): {
 *     numBlocks: number; blockSize: number;
 *     blocks: { refCount: Uint8Array | Uint16Array; cached: Uint8Array };       // per block id
 *     tables: { requestId: string; status: RequestStatus; numTokens: number; numPreemptions: number; blockIds: number[] }[];
 *     preemptions: number; prefixCache: PrefixCacheStats;
 *   }
 *
 * It only reads (no engine state changes), and costs O(blocks + table entries): cheap at demo sizes.
 */
import type { LLM } from '../../src/engine/llm.ts';
import type { KvSnapshot } from '../protocol.ts';

let version = 0;

export function kvSnapshot(llm: LLM): KvSnapshot {
  const { kv, scheduler } = llm.engine;
  const blocks = kv.pool.blocks;
  const n = blocks.length;
  const owner = new Int16Array(n).fill(-1);
  const refCount = new Uint8Array(n);
  const cached = new Uint8Array(n);
  let numFree = 0, numCachedFree = 0, numShared = 0;
  for (let i = 0; i < n; i++) {
    const b = blocks[i];
    refCount[i] = Math.min(b.refCount, 255);
    cached[i] = b.key !== null ? 1 : 0;
    if (b.refCount === 0) {
      numFree++;
      if (b.key !== null) numCachedFree++;
    } else if (b.refCount > 1) numShared++;
  }
  const requests: KvSnapshot['requests'] = [];
  for (const r of [...scheduler.runningRequests(), ...scheduler.waitingRequests()]) {
    const ids = kv.getBlockIds(r.requestId);
    const index = requests.length;
    requests.push({
      requestId: r.requestId,
      status: r.status === 'finished' ? 'running' : r.status,
      numTokens: r.numTokens,
      numBlocks: ids.length,
      numPreemptions: r.numPreemptions,
    });
    // The first (oldest) holder colours a shared block; the map marks it shared from refCount.
    for (const id of ids) if (owner[id] === -1) owner[id] = Math.min(index, 32767);
  }
  const pc = kv.prefixCacheStats;
  return {
    numBlocks: n,
    blockSize: kv.blockSize,
    owner, refCount, cached, requests,
    numFree, numCachedFree, numShared,
    preemptions: scheduler.numPreemptions,
    prefixCacheHitRate: pc.queries > 0 ? pc.hits / pc.queries : 0,
    version: ++version,
  };
}
