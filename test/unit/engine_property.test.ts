// Property-based test (fast-check) of the scheduler + KV-cache manager under random workloads: random engine
// sizes (tiny block pools that force preemption, tiny token budgets, few sequences, lookahead), random arrivals
// over time (shared prefixes for prefix-cache hits, n > 1 forks), random lengths, stop conditions and aborts.
// A fake model runner samples tokens as a function of the whole prefix, so output does not depend on batching.
//
// Invariants, every step:
//   - the step's scheduled tokens never exceed maxNumBatchedTokens, its requests never exceed maxNumSeqs;
//   - every block's refCount is >= 0 and equals the number of block tables holding it; free + used = total.
// Asynchronous scheduling (one step in flight while the next is planned, scheduleContinuation): a fake GPU keeps
// each request's tokens including the ones the CPU has not seen; every continuation must feed exactly the GPU's
// last token at its position, have KV slots for every position it feeds, and never run past maxTokens or
// maxModelLen; outputs are processed one step behind, with aborts landing while steps are in flight.
// At the end (fast-check shrinks any failing workload to a minimal one):
//   - every request finished or was aborted (nothing left waiting or running), within a step bound (liveness);
//   - no block leaks: every block is free again, no request holds a table;
//   - each request that was not aborted produced exactly what it produces alone.
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { KVCacheManager } from '../../src/engine/kv_cache_manager.ts';
import { Request, type RequestSamplingParams } from '../../src/engine/request.ts';
import { Scheduler } from '../../src/engine/scheduler.ts';

const VOCAB = 32;
const EOS = 0;

/** The fake model: the next token is a hash of the whole prefix (deterministic, batch-independent). */
function nextToken(prefix: readonly number[]): number {
  let h = 0x811c9dc5;
  for (const t of prefix) h = Math.imul(h ^ t, 0x01000193) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d) >>> 0;
  return (h ^ (h >>> 12)) % VOCAB;
}

/** What a request generates alone (the scheduler's stop rules: EOS / stop ids after minTokens, then lengths). */
function alone(prompt: readonly number[], sp: RequestSamplingParams, maxModelLen: number): number[] {
  const seq = [...prompt], out: number[] = [];
  for (;;) {
    const t = nextToken(seq);
    seq.push(t);
    out.push(t);
    if (out.length >= (sp.minTokens ?? 0) && ((!sp.ignoreEos && t === EOS) || sp.stopTokenIds?.includes(t))) return out;
    if (seq.length >= maxModelLen || (sp.maxTokens !== undefined && out.length >= sp.maxTokens)) return out;
  }
}

interface Arrival {
  step: number;
  prefix: number; // index of a shared prefix, or -1 for none
  suffix: number[];
  maxTokens: number;
  minTokens: number;
  ignoreEos: boolean;
  stopToken: number | null;
  n: number;
}

const configArb = fc.record({
  blockSize: fc.constantFrom(1, 2, 4, 8),
  maxModelLen: fc.integer({ min: 8, max: 48 }),
  extraBlocks: fc.integer({ min: 0, max: 12 }),
  maxNumBatchedTokens: fc.integer({ min: 1, max: 40 }),
  maxNumSeqs: fc.integer({ min: 1, max: 8 }),
  numLookaheadTokens: fc.integer({ min: 0, max: 4 }),
  enablePrefixCaching: fc.boolean(),
});

const arrivalArb = fc.record({
  step: fc.integer({ min: 0, max: 30 }),
  prefix: fc.integer({ min: -1, max: 2 }),
  suffix: fc.array(fc.integer({ min: 0, max: VOCAB - 1 }), { minLength: 0, maxLength: 20 }),
  maxTokens: fc.integer({ min: 1, max: 24 }),
  minTokens: fc.integer({ min: 0, max: 4 }),
  ignoreEos: fc.boolean(),
  stopToken: fc.option(fc.integer({ min: 1, max: VOCAB - 1 })),
  n: fc.constantFrom(1, 1, 1, 2, 3),
});

const workloadArb = fc.record({
  config: configArb,
  prefixes: fc.array(fc.array(fc.integer({ min: 1, max: VOCAB - 1 }), { minLength: 1, maxLength: 24 }), { minLength: 3, maxLength: 3 }),
  arrivals: fc.array(arrivalArb, { minLength: 1, maxLength: 40 }),
  // (step, index into the requests added so far) pairs.
  aborts: fc.array(fc.tuple(fc.integer({ min: 0, max: 60 }), fc.nat()), { maxLength: 8 }),
});

type Workload = typeof workloadArb extends fc.Arbitrary<infer T> ? T : never;

function check(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

/** Totals over all runs, to show the workloads reach the interesting paths. */
const seen = { runs: 0, steps: 0, requests: 0, preemptions: 0, prefixHitTokens: 0, forks: 0, aborts: 0, continuations: 0 };

type KvFactory = (cfg: ConstructorParameters<typeof KVCacheManager>[0]) => KVCacheManager;

function run(w: Workload, makeKv: KvFactory = (cfg) => new KVCacheManager(cfg), asyncScheduling = false): void {
  const c = w.config;
  const bs = c.blockSize;
  // The smallest legal pool (one maxModelLen request) plus a few blocks: preemption is the common case.
  const numBlocks = Math.ceil(c.maxModelLen / bs) + c.extraBlocks;
  const kv = makeKv({ numBlocks, blockSize: bs, maxModelLen: c.maxModelLen, enablePrefixCaching: c.enablePrefixCaching });
  const sched = new Scheduler({ maxNumSeqs: c.maxNumSeqs, maxNumBatchedTokens: c.maxNumBatchedTokens, numLookaheadTokens: c.numLookaheadTokens }, kv);
  const all: Request[] = [];
  const aborted = new Set<string>();
  const arrivals = [...w.arrivals].sort((a, b) => a.step - b.step);
  let next = 0;

  const admit = (a: Arrival, k: number) => {
    const prompt = [...(a.prefix >= 0 ? w.prefixes[a.prefix] : []), ...a.suffix].slice(0, c.maxModelLen);
    if (prompt.length === 0) prompt.push(1);
    const sp: RequestSamplingParams = {
      maxTokens: a.maxTokens, minTokens: Math.min(a.minTokens, a.maxTokens), ignoreEos: a.ignoreEos,
      ...(a.stopToken !== null ? { stopTokenIds: [a.stopToken] } : {}),
    };
    let leader: Request | null = null;
    for (let i = 0; i < a.n; i++) {
      const r: Request = new Request({ requestId: `r${k}.${i}`, promptTokenIds: prompt, samplingParams: sp, eosTokenId: EOS, forkOf: leader });
      leader ??= r;
      sched.addRequest(r);
      all.push(r);
    }
  };

  const checkBlocks = (where: string) => {
    const holders = new Map<number, number>();
    for (const r of all) for (const b of kv.getBlocks(r.requestId)) holders.set(b.blockId, (holders.get(b.blockId) ?? 0) + 1);
    check(kv.pool.numFreeBlocks + kv.pool.numUsedBlocks === numBlocks, `${where}: free + used != total`);
    for (const b of kv.pool.blocks) {
      check(b.refCount >= 0, `${where}: block ${b.blockId} has refCount ${b.refCount}`);
      check(b.refCount === (holders.get(b.blockId) ?? 0), `${where}: block ${b.blockId} refCount ${b.refCount}, held ${holders.get(b.blockId) ?? 0} times`);
    }
  };

  // The fake GPU: each request's tokens as the device has them (known ones plus those sampled in flight).
  const device = new Map<string, number[]>();
  const sample = (seq: number[], count: number) => {
    const toks: number[] = [];
    for (let j = 0; j < count; j++) {
      const t = nextToken(seq);
      seq.push(t);
      toks.push(t);
    }
    return toks;
  };
  const inflight: Array<{ out: ReturnType<typeof sched.schedule>; sampled: Map<string, number[]> }> = [];
  let continuations = 0;

  const maxSteps = 20_000;
  let step = 0;
  for (; step < maxSteps; step++) {
    while (next < arrivals.length && arrivals[next].step <= step) admit(arrivals[next], next++);
    for (const [when, which] of w.aborts) {
      if (when === step && all.length > 0) {
        const r = all[which % all.length];
        if (sched.abort(r.requestId)) aborted.add(r.requestId);
      }
    }
    if (asyncScheduling) {
      if (next >= arrivals.length && !sched.hasUnfinishedRequests() && inflight.length === 0) break;
      let head = inflight.shift();
      if (!head) {
        const out = sched.schedule();
        checkBlocks(`step ${step} after schedule`);
        const sampled = new Map<string, number[]>();
        for (const ch of out.chunks) {
          if (!ch.samplesToken) continue;
          const r = sched.getRequest(ch.requestId)!;
          check(ch.blockIds.length * bs >= ch.startPosition + ch.tokenIds.length + ch.numLookaheadTokens, `step ${step}: ${ch.requestId} lacks slots for its extra steps`);
          const seq = [...r.allTokenIds];
          sampled.set(ch.requestId, sample(seq, 1 + ch.numLookaheadTokens));
          device.set(ch.requestId, seq);
        }
        head = { out, sampled };
      }
      // Plan and "submit" the next step before this one's tokens are seen.
      const cont = sched.scheduleContinuation(head.out);
      if (cont) {
        continuations++;
        check(cont.chunks.length <= c.maxNumSeqs, `step ${step}: continuation of ${cont.chunks.length} requests`);
        const sampled = new Map<string, number[]>();
        for (const ch of cont.chunks) {
          const r = sched.getRequest(ch.requestId)!;
          const seq = device.get(ch.requestId)!;
          check(seq !== undefined && ch.startPosition === seq.length - 1, `step ${step}: ${ch.requestId} continues at ${ch.startPosition}, the device's last token is at ${seq && seq.length - 1}`);
          check(ch.outputBase === seq.length - r.numPromptTokens, `step ${step}: ${ch.requestId} outputBase ${ch.outputBase}, device has ${seq.length - r.numPromptTokens} outputs`);
          const k = ch.numLookaheadTokens;
          check(ch.blockIds.length * bs >= ch.startPosition + 1 + k, `step ${step}: ${ch.requestId} lacks slots for positions up to ${ch.startPosition + k}`);
          check(seq.length + 1 + k <= c.maxModelLen, `step ${step}: ${ch.requestId} continues past maxModelLen`);
          const maxTokens = r.samplingParams.maxTokens;
          check(maxTokens === undefined || seq.length - r.numPromptTokens + 1 + k <= maxTokens, `step ${step}: ${ch.requestId} continues past maxTokens`);
          sampled.set(ch.requestId, sample(seq, 1 + k));
        }
        inflight.push({ out: cont, sampled });
        checkBlocks(`step ${step} after continuation`);
      }
      sched.updateFromOutput(head.out, head.sampled);
      checkBlocks(`step ${step} after update`);
      continue;
    }
    if (next >= arrivals.length && !sched.hasUnfinishedRequests()) break;
    const out = sched.schedule();
    check(out.totalNumScheduledTokens <= c.maxNumBatchedTokens, `step ${step}: ${out.totalNumScheduledTokens} tokens > budget ${c.maxNumBatchedTokens}`);
    check(out.chunks.length <= c.maxNumSeqs, `step ${step}: ${out.chunks.length} requests > maxNumSeqs ${c.maxNumSeqs}`);
    check(out.chunks.reduce((s, ch) => s + ch.tokenIds.length, 0) === out.totalNumScheduledTokens, `step ${step}: chunks disagree with the total`);
    check(sched.numRunning <= c.maxNumSeqs, `step ${step}: ${sched.numRunning} running > maxNumSeqs`);
    checkBlocks(`step ${step} after schedule`);
    // The fake runner: for each sampling chunk, 1 + its lookahead tokens, each from the prefix before it.
    const sampled = new Map<string, number[]>();
    for (const ch of out.chunks) {
      if (!ch.samplesToken) continue;
      const r = sched.getRequest(ch.requestId)!;
      const seq = [...r.allTokenIds];
      const toks: number[] = [];
      for (let j = 0; j <= ch.numLookaheadTokens; j++) {
        const t = nextToken(seq);
        seq.push(t);
        toks.push(t);
      }
      sampled.set(ch.requestId, toks);
    }
    sched.updateFromOutput(out, sampled);
    checkBlocks(`step ${step} after update`);
  }
  check(step < maxSteps, `not done after ${maxSteps} steps: ${sched.numRunning} running, ${sched.numWaiting} waiting`);
  for (const r of all) {
    check(r.isFinished, `${r.requestId} ended as ${r.status}`);
    check((r.finishReason === 'abort') === aborted.has(r.requestId), `${r.requestId}: finishReason ${r.finishReason}, aborted ${aborted.has(r.requestId)}`);
    if (!aborted.has(r.requestId)) {
      const want = alone(r.promptTokenIds, r.samplingParams, c.maxModelLen);
      check(r.outputTokenIds.join() === want.join(), `${r.requestId}: ${r.outputTokenIds} != alone ${want}`);
    }
  }
  seen.runs++;
  seen.steps += step;
  seen.requests += all.length;
  seen.preemptions += sched.numPreemptions;
  seen.prefixHitTokens += kv.prefixCacheStats.hits;
  seen.forks += all.filter((r) => r.forkOf !== null).length;
  seen.aborts += aborted.size;
  seen.continuations += continuations;
  check(kv.pool.numUsedBlocks === 0, `${kv.pool.numUsedBlocks} blocks leaked`);
  check(kv.numRequests === 0, `${kv.numRequests} block tables left`);
  checkBlocks('end');
}

describe('scheduler + KV-cache manager: random workloads (fast-check)', () => {
  it('keep their invariants: budgets, ref counts, no leak, every request finishes or is aborted, output as alone', () => {
    fc.assert(fc.property(workloadArb, (w) => { run(w); }), { numRuns: 1000 });
    console.log(`  ${JSON.stringify(seen)}`);
    // The generated workloads must reach preemption, prefix hits, forks and aborts, or the property proves little.
    check(seen.preemptions > 0 && seen.prefixHitTokens > 0 && seen.forks > 0 && seen.aborts > 0, `paths not reached: ${JSON.stringify(seen)}`);
  });

  it('keep them with asynchronous scheduling: continuations planned one step ahead, outputs processed one behind', () => {
    const before = { ...seen };
    fc.assert(fc.property(workloadArb, (w) => { run(w, undefined, true); }), { numRuns: 1000 });
    const d = Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, v - before[k as keyof typeof seen]]));
    console.log(`  async: ${JSON.stringify(d)}`);
    check(d.continuations > 1000 && d.preemptions > 0 && d.prefixHitTokens > 0 && d.forks > 0 && d.aborts > 0, `paths not reached: ${JSON.stringify(d)}`);
  });

  it('catches a KV-cache manager that leaks (the property can fail, and shrinks)', () => {
    // free() that forgets the blocks of finished forks: the end-of-run leak check must notice.
    class LeakyKv extends KVCacheManager {
      override free(request: Request): void {
        if (request.isFinished && request.forkOf !== null) return;
        super.free(request);
      }
    }
    let message = '';
    try {
      fc.assert(fc.property(workloadArb, (w) => { run(w, (cfg) => new LeakyKv(cfg)); }), { numRuns: 300 });
    } catch (e) {
      const err = e as Error & { cause?: unknown };
      message = `${err.message}\n${err.cause instanceof Error ? err.cause.message : String(err.cause)}`;
    }
    check(/leaked|refCount|block tables left/.test(message), `the leak must be detected, got: ${message.slice(-600)}`);
  });
});
