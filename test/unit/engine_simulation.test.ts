// Randomized simulation of the scheduler + KV-cache manager against a fake model runner with a simulated KV
// store. Many requests with random lengths, shared prefixes, n > 1 forks, stop conditions, lookahead steps,
// random aborts and prefix-cache resets, tiny caches (preemption) and forced hash collisions.
//
// Checked every step:
//   - block accounting: free + used = total; each block's refCount = the number of tables holding it; the free
//     queue holds exactly the blocks with refCount 0; no table holds a block twice;
//   - sharing: a block held by several requests sits at the same index in each, is full and computed for each,
//     and they agree on its tokens; a cached block's key names exactly the tokens (and prefix) it holds;
//   - coverage: every running request's table covers its computed tokens (and no more than maxModelLen);
//     waiting requests hold nothing; limits (maxNumSeqs, token budget) hold;
//   - content: the runner writes, per slot, the exact prefix that produced it, and every step "attends" over
//     every earlier position of every scheduled request, checking each slot holds that request's own prefix
//     (a wrong prefix hit, a bad fork, lost lookahead accounting or a reused live block would show up here).
// At the end: every request finished or was aborted, the pool is empty, and each finished request's output is
// exactly what it generates alone (preemption, chunking, sharing and lookahead change nothing).
import { describe, expect, it } from 'vitest';
import type { BlockHashFn } from '../../src/engine/block_pool.ts';
import { KVCacheManager, slotForPosition } from '../../src/engine/kv_cache_manager.ts';
import { Request, type RequestSamplingParams } from '../../src/engine/request.ts';
import { Scheduler } from '../../src/engine/scheduler.ts';

const VOCAB = 40;

/** Plain assertion: the simulation checks millions of facts, too many for expect()'s bookkeeping. */
function check(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}
const EOS = 0;

function mulberry32(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Per-sequence prefix identities: exact strings for the KV store, a rolling hash for the fake model. */
class Prefixes {
  readonly str: string[] = [];
  readonly num: number[] = [];
  extend(seq: readonly number[], upto: number): void {
    for (let p = this.str.length; p < upto; p++) {
      this.str.push(p === 0 ? `${seq[0]}` : `${this.str[p - 1]},${seq[p]}`);
      this.num.push((Math.imul((p === 0 ? 0x811c9dc5 : this.num[p - 1]) ^ seq[p], 0x01000193) + 0x9e3779b9) >>> 0);
    }
  }
}

/** The fake model: next token from the rolling hash of the whole prefix (deterministic, batch-independent). */
const model = (h: number) => (Math.imul(h ^ (h >>> 13), 0x5bd1e995) >>> 0) % VOCAB;

function reference(prompt: readonly number[], sp: RequestSamplingParams, maxModelLen: number): { out: number[]; reason: string } {
  const seq = [...prompt];
  const pre = new Prefixes();
  const out: number[] = [];
  for (;;) {
    pre.extend(seq, seq.length);
    const t = model(pre.num[seq.length - 1]);
    seq.push(t);
    out.push(t);
    if (out.length >= (sp.minTokens ?? 0)) {
      if (!sp.ignoreEos && t === EOS) return { out, reason: 'stop' };
      if (sp.stopTokenIds?.includes(t)) return { out, reason: 'stop' };
    }
    if (seq.length >= maxModelLen || (sp.maxTokens !== undefined && out.length >= sp.maxTokens)) return { out, reason: 'length' };
  }
}

interface SimConfig {
  seed: number;
  blockSize: number;
  numBlocks: number;
  maxModelLen: number;
  maxNumBatchedTokens: number;
  maxNumSeqs: number;
  numLookaheadTokens: number;
  enablePrefixCaching: boolean;
  hashFn?: BlockHashFn;
  numRequests: number;
}

interface SimTotals { steps: number; preemptions: number; prefixHitTokens: number; forksShared: number; aborts: number; lookaheadTokens: number; resets: number }

function simulate(cfg: SimConfig): SimTotals {
  const rand = mulberry32(cfg.seed);
  const randInt = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const bs = cfg.blockSize;
  const kv = new KVCacheManager({
    numBlocks: cfg.numBlocks, blockSize: bs, maxModelLen: cfg.maxModelLen,
    enablePrefixCaching: cfg.enablePrefixCaching, hashFn: cfg.hashFn,
  });
  const sched = new Scheduler({
    maxNumSeqs: cfg.maxNumSeqs, maxNumBatchedTokens: cfg.maxNumBatchedTokens, numLookaheadTokens: cfg.numLookaheadTokens,
  }, kv);
  const store = new Map<number, string>(); // slot → prefix identity written there
  const storeEpoch = new Map<number, number>(); // slot → weights version (resets so far) when written
  const prefixes = new Map<string, Prefixes>();
  const pre = (r: Request) => {
    let p = prefixes.get(r.requestId);
    if (!p) prefixes.set(r.requestId, (p = new Prefixes()));
    p.extend(r.allTokenIds, r.numTokens);
    return p;
  };
  const all: Request[] = [];
  const aborted = new Set<string>();
  const totals: SimTotals = { steps: 0, preemptions: 0, prefixHitTokens: 0, forksShared: 0, aborts: 0, lookaheadTokens: 0, resets: 0 };
  const sharedPrefixes = [0, 1, 2].map(() => Array.from({ length: randInt(1, 3 * bs + 2) }, () => randInt(1, VOCAB - 1)));
  let added = 0;

  const addRandomRequest = () => {
    const maxPrompt = Math.max(1, Math.min(cfg.maxModelLen, randInt(1, cfg.maxModelLen)));
    let prompt = rand() < 0.6 ? [...sharedPrefixes[randInt(0, 2)]] : [];
    const suffix = randInt(prompt.length === 0 ? 1 : 0, Math.max(1, maxPrompt - prompt.length));
    for (let i = 0; i < suffix; i++) prompt.push(randInt(0, VOCAB - 1));
    prompt = prompt.slice(0, cfg.maxModelLen);
    const sp: RequestSamplingParams = {};
    if (rand() < 0.7) sp.maxTokens = randInt(1, 40);
    if (rand() < 0.2) sp.minTokens = randInt(0, sp.maxTokens ?? 10);
    if (rand() < 0.2) sp.ignoreEos = true;
    if (rand() < 0.3) sp.stopTokenIds = [randInt(1, VOCAB - 1)];
    const n = rand() < 0.15 ? randInt(2, 3) : 1;
    let leader: Request | null = null;
    for (let k = 0; k < n; k++) {
      const r: Request = new Request({ requestId: `q${added}.${k}`, promptTokenIds: prompt, samplingParams: sp, eosTokenId: EOS, forkOf: leader });
      leader ??= r;
      sched.addRequest(r);
      all.push(r);
    }
    added++;
  };

  const checkInvariants = () => {
    const running = sched.runningRequests();
    const waiting = sched.waitingRequests();
    check(running.length <= cfg.maxNumSeqs, 'maxNumSeqs exceeded');
    check(kv.numRequests === running.length, 'tables != running requests');
    const holders = new Map<number, [Request, number][]>();
    for (const r of running) {
      check(r.status === 'running', `${r.requestId} in running list with status ${r.status}`);
      const blocks = kv.getBlocks(r.requestId);
      check(blocks.length * bs >= r.numComputedTokens, `${r.requestId}: table does not cover computed tokens`);
      check(blocks.length <= Math.ceil(cfg.maxModelLen / bs), `${r.requestId}: table past maxModelLen`);
      check(r.numComputedTokens <= r.numTokens, `${r.requestId}: computed > tokens`);
      check(new Set(blocks.map((b) => b.blockId)).size === blocks.length, `${r.requestId}: block twice in one table`);
      blocks.forEach((b, i) => {
        const h = holders.get(b.blockId);
        if (h) h.push([r, i]);
        else holders.set(b.blockId, [[r, i]]);
      });
    }
    for (const w of waiting) {
      check(w.status === 'waiting' || w.status === 'preempted', `${w.requestId} waiting with status ${w.status}`);
      check(kv.getBlocks(w.requestId).length === 0, `${w.requestId} waits holding blocks`);
      check(w.numComputedTokens === 0, `${w.requestId} waits with computed tokens`);
    }
    const free = new Set(kv.pool.freeBlockIds());
    check(kv.pool.numFreeBlocks + kv.pool.numUsedBlocks === kv.pool.numBlocks, 'free + used != total');
    for (const b of kv.pool.blocks) {
      const h = holders.get(b.blockId) ?? [];
      check(b.refCount === h.length, `block ${b.blockId}: refCount ${b.refCount} but ${h.length} holders`);
      check(free.has(b.blockId) === (b.refCount === 0), `block ${b.blockId}: free queue disagrees with refCount`);
      if (h.length > 1) {
        const [r0, i0] = h[0];
        const tokens0 = r0.allTokenIds.slice(i0 * bs, (i0 + 1) * bs).join();
        for (const [r, i] of h) {
          check(i === i0, `block ${b.blockId} shared at different indices`);
          check((i + 1) * bs <= r.numComputedTokens, `block ${b.blockId} shared but not full/computed for ${r.requestId}`);
          check(r.allTokenIds.slice(i * bs, (i + 1) * bs).join() === tokens0, `block ${b.blockId} shared by different contents`);
        }
      }
      if (b.key !== null && h.length > 0) {
        // A cached block's key is its exact content and the key chain its exact prefix, for every holder.
        for (const [r, i] of h) {
          check([...b.key.tokens].join() === r.allTokenIds.slice(i * bs, (i + 1) * bs).join(), `block ${b.blockId}: key tokens differ from content`);
          let k = b.key.parent;
          for (let j = i - 1; j >= 0; j--, k = k!.parent) {
            check(k !== null, `block ${b.blockId}: key chain too short`);
            check([...k!.tokens].join() === r.allTokenIds.slice(j * bs, (j + 1) * bs).join(), `block ${b.blockId}: key chain differs from prefix`);
          }
          check(k === null, `block ${b.blockId}: key chain too long`);
        }
      }
    }
  };

  for (let stepNo = 0; stepNo < 50_000; stepNo++) {
    if (added < cfg.numRequests && rand() < 0.5) {
      const k = randInt(1, 3);
      for (let i = 0; i < k && added < cfg.numRequests; i++) addRandomRequest();
    }
    if (added >= cfg.numRequests && !sched.hasUnfinishedRequests()) break;
    if (rand() < 0.03) {
      const live = all.filter((r) => !r.isFinished);
      if (live.length > 0) {
        const victim = live[randInt(0, live.length - 1)];
        check(sched.abort(victim.requestId), 'abort of a live request failed');
        aborted.add(victim.requestId);
        totals.aborts++;
      }
    }
    if (rand() < 0.01) { kv.resetPrefixCache(); totals.resets++; }

    const out = sched.schedule();
    totals.steps++;
    checkInvariants();
    check(out.totalNumScheduledTokens <= cfg.maxNumBatchedTokens, 'token budget exceeded');
    check([...out.numScheduledTokens.values()].reduce((a, b) => a + b, 0) === out.totalNumScheduledTokens, 'total != sum');
    for (const n of out.scheduledNewReqs) {
      const r = sched.getRequest(n.requestId)!;
      if (!n.resumedFromPreemption && r.forkOf && n.numComputedTokens > 0) totals.forksShared++;
      else totals.prefixHitTokens += n.numComputedTokens;
    }

    // The forward: every layer first writes the whole batch's keys/values, then attention reads the cache.
    const written = new Set<number>();
    const write = (blockIds: number[], p: number, id: string) => {
      const slot = slotForPosition(blockIds, bs, p);
      check(!written.has(slot), `slot ${slot} written twice in one step`);
      written.add(slot);
      store.set(slot, id);
      storeEpoch.set(slot, totals.resets);
    };
    const attend = (blockIds: number[], upto: number, ids: string[]) => {
      for (let p = 0; p < upto; p++) {
        const got = store.get(slotForPosition(blockIds, bs, p));
        check(got === ids[p], `slot for position ${p} holds ${got}, expected ${ids[p]}`);
      }
    };
    for (const c of out.chunks) {
      const r = sched.getRequest(c.requestId)!;
      check(c.tokenIds.join() === r.allTokenIds.slice(c.startPosition, c.startPosition + c.tokenIds.length).join(), `${c.requestId}: chunk tokens`);
      const p = pre(r);
      for (let q = c.startPosition; q < c.startPosition + c.tokenIds.length; q++) write(c.blockIds, q, p.str[q]);
    }
    // A prefix-cache hit (not a fork of a running leader) never serves keys/values from older weights.
    for (const n of out.scheduledNewReqs) {
      const r = sched.getRequest(n.requestId)!;
      if (r.forkOf && !n.resumedFromPreemption) continue;
      for (let q = 0; q < n.numComputedTokens; q++) {
        const e = storeEpoch.get(slotForPosition(n.blockIds, bs, q));
        check(e === totals.resets, `${n.requestId} hit a block written before a prefix-cache reset`);
      }
    }
    const sampled = new Map<string, number[]>();
    for (const c of out.chunks) {
      const r = sched.getRequest(c.requestId)!;
      const p = pre(r);
      const end = c.startPosition + c.tokenIds.length;
      attend(c.blockIds, end, p.str);
      if (!c.samplesToken) continue;
      // The sampled token, then up to numLookaheadTokens extra decode steps run "on the GPU".
      const seq = [...r.allTokenIds];
      const ext = new Prefixes();
      ext.extend(seq, seq.length);
      const toks = [model(ext.num[seq.length - 1])];
      seq.push(toks[0]);
      const extra = randInt(0, c.numLookaheadTokens);
      for (let j = 0; j < extra; j++) {
        const q = seq.length - 1;
        ext.extend(seq, seq.length);
        write(c.blockIds, q, ext.str[q]);
        attend(c.blockIds, q + 1, ext.str);
        const t = model(ext.num[q]);
        toks.push(t);
        seq.push(t);
      }
      totals.lookaheadTokens += extra;
      sampled.set(c.requestId, toks);
    }
    sched.updateFromOutput(out, sampled);
    checkInvariants();
  }

  expect(sched.hasUnfinishedRequests()).toBe(false);
  expect(kv.pool.numUsedBlocks).toBe(0);
  expect(kv.usage).toBe(0);
  expect(kv.numRequests).toBe(0);
  for (const r of all) {
    expect(r.isFinished).toBe(true);
    const ref = reference(r.promptTokenIds, r.samplingParams, cfg.maxModelLen);
    if (aborted.has(r.requestId)) {
      expect(r.finishReason).toBe('abort');
      expect(r.outputTokenIds).toEqual(ref.out.slice(0, r.numOutputTokens));
    } else {
      expect(r.outputTokenIds).toEqual(ref.out);
      expect(r.finishReason).toBe(ref.reason);
    }
  }
  totals.preemptions = sched.numPreemptions;
  return totals;
}

function randomConfig(seed: number, hashFn?: BlockHashFn): SimConfig {
  const rand = mulberry32(seed * 7919 + 1);
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  const blockSize = pick([1, 2, 4, 8, 16]);
  const maxModelLen = pick([16, 24, 40, 64, 96]);
  const minBlocks = Math.ceil(maxModelLen / blockSize);
  return {
    seed,
    blockSize,
    maxModelLen,
    numBlocks: minBlocks + Math.floor(rand() * minBlocks * 3), // often tight: preemption
    maxNumBatchedTokens: pick([1, 3, 8, 16, 64, 256]),
    maxNumSeqs: pick([1, 2, 4, 8, 32]),
    numLookaheadTokens: pick([0, 0, 1, 4]),
    enablePrefixCaching: rand() < 0.8,
    hashFn,
    numRequests: 30 + Math.floor(rand() * 40),
  };
}

describe('randomized engine simulation', () => {
  const grand: SimTotals = { steps: 0, preemptions: 0, prefixHitTokens: 0, forksShared: 0, aborts: 0, lookaheadTokens: 0, resets: 0 };
  const add = (t: SimTotals) => { for (const k of Object.keys(grand) as (keyof SimTotals)[]) grand[k] += t[k]; };

  it('keeps every invariant over 60 random workloads', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const cfg = randomConfig(seed);
      try { add(simulate(cfg)); } catch (e) { throw new Error(`seed ${seed} ${JSON.stringify(cfg)}: ${(e as Error).message}`, { cause: e }); }
    }
  });

  it('stays exact when every block hash collides (or nearly)', () => {
    const allZero: BlockHashFn = () => 0;
    const weak: BlockHashFn = (_parent, tokens, start) => tokens[start] % 2;
    for (let seed = 100; seed < 120; seed++) {
      const cfg = { ...randomConfig(seed, seed % 2 ? allZero : weak), enablePrefixCaching: true };
      try { add(simulate(cfg)); } catch (e) { throw new Error(`seed ${seed}: ${(e as Error).message}`, { cause: e }); }
    }
  });

  it('exercised what it claims to (preemption, prefix hits, forks, aborts, lookahead, resets)', () => {
    expect(grand.preemptions).toBeGreaterThan(20);
    expect(grand.prefixHitTokens).toBeGreaterThan(100);
    expect(grand.forksShared).toBeGreaterThan(10);
    expect(grand.aborts).toBeGreaterThan(10);
    expect(grand.lookaheadTokens).toBeGreaterThan(100);
    expect(grand.resets).toBeGreaterThan(3);
  });
});
