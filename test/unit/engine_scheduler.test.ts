// Scheduler: chunked prefill, decode-first budgets, maxNumSeqs, FCFS, preemption by recompute and its exact
// resumption, abort, stop conditions, lookahead reservations, n > 1 forks.
import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/errors.ts';
import { EngineConfigError, EngineProtocolError } from '../../src/engine/errors.ts';
import { KVCacheManager, type KVCacheManagerConfig } from '../../src/engine/kv_cache_manager.ts';
import { Request, type RequestSamplingParams } from '../../src/engine/request.ts';
import { Scheduler, type SchedulerConfig, type SchedulerOutput } from '../../src/engine/scheduler.ts';

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);
const EOS = 2;

/** A deterministic "model": the next token is a function of the whole sequence, as with a real LM. */
function nextToken(tokens: readonly number[]): number {
  let h = 17;
  for (const t of tokens) h = (Math.imul(h, 31) + t + 1) >>> 0;
  return 10 + (h % 1000); // never EOS (2) unless a test says so
}

function setup(s: Partial<SchedulerConfig> = {}, k: Partial<KVCacheManagerConfig> = {}) {
  const kv = new KVCacheManager({ numBlocks: 64, blockSize: 4, maxModelLen: 64, ...k });
  const sched = new Scheduler({ maxNumSeqs: 8, maxNumBatchedTokens: 64, ...s }, kv);
  const add = (id: string, prompt: number[], sp: RequestSamplingParams = {}, forkOf?: Request) => {
    const r = new Request({ requestId: id, promptTokenIds: prompt, samplingParams: sp, eosTokenId: EOS, forkOf });
    sched.addRequest(r);
    return r;
  };
  return { kv, sched, add };
}

/** One engine step with the fake model: the runner samples for every chunk that reaches its last token. */
function step(sched: Scheduler, sample: (id: string, tokens: readonly number[]) => number[] = (_, t) => [nextToken(t)]) {
  const out = sched.schedule();
  const sampled = new Map<string, number[]>();
  for (const c of out.chunks) {
    if (!c.samplesToken) continue;
    const r = sched.getRequest(c.requestId)!;
    sampled.set(c.requestId, sample(c.requestId, r.allTokenIds));
  }
  return { out, results: sched.updateFromOutput(out, sampled) };
}

function runToCompletion(sched: Scheduler, maxSteps = 1000): SchedulerOutput[] {
  const outs: SchedulerOutput[] = [];
  for (let i = 0; i < maxSteps && sched.hasUnfinishedRequests(); i++) outs.push(step(sched).out);
  expect(sched.hasUnfinishedRequests()).toBe(false);
  return outs;
}

/** The tokens a request generates alone: the reference any batching must reproduce. */
function soloOutput(prompt: number[], maxTokens: number): number[] {
  const all = [...prompt];
  for (let i = 0; i < maxTokens; i++) all.push(nextToken(all));
  return all.slice(prompt.length);
}

describe('Scheduler config and admission', () => {
  it('validates its config and requests', () => {
    const kv = new KVCacheManager({ numBlocks: 8, blockSize: 4, maxModelLen: 16 });
    expect(() => new Scheduler({ maxNumSeqs: 0, maxNumBatchedTokens: 8 }, kv)).toThrow(EngineConfigError);
    expect(() => new Scheduler({ maxNumSeqs: 1, maxNumBatchedTokens: 1.5 }, kv)).toThrow(EngineConfigError);
    expect(() => new Scheduler({ maxNumSeqs: 1, maxNumBatchedTokens: 8, numLookaheadTokens: -1 }, kv)).toThrow(EngineConfigError);
    const { add } = setup({}, { maxModelLen: 16, numBlocks: 8 });
    add('a', [1]);
    expect(() => add('a', [1])).toThrow(InvalidInputError);
    expect(() => add('long', range(17))).toThrow(InvalidInputError);
    expect(() => add('x', [])).toThrow(InvalidInputError);
    expect(() => add('y', [1], { maxTokens: 2, minTokens: 3 })).toThrow(InvalidInputError);
    const leader = add('l', [1, 2, 3]);
    expect(() => add('f', [1, 2, 4], {}, leader)).toThrow(InvalidInputError);
  });
});

describe('chunked prefill', () => {
  it('splits a prompt across steps under a small token budget and samples only at its end', () => {
    const { sched, add, kv } = setup({ maxNumBatchedTokens: 16 });
    const prompt = range(50, 100);
    const r = add('a', prompt, { maxTokens: 3 });
    const chunks: [number, number, boolean][] = [];
    for (let i = 0; i < 4; i++) {
      const { out } = step(sched);
      const c = out.chunks[0];
      chunks.push([c.startPosition, c.tokenIds.length, c.samplesToken]);
      expect(c.tokenIds).toEqual(prompt.slice(c.startPosition, c.startPosition + c.tokenIds.length));
      expect(c.blockIds.length * kv.blockSize).toBeGreaterThanOrEqual(c.startPosition + c.tokenIds.length);
      expect(out.totalNumScheduledTokens).toBe(c.tokenIds.length);
    }
    expect(chunks).toEqual([[0, 16, false], [16, 16, false], [32, 16, false], [48, 2, true]]);
    expect(r.numOutputTokens).toBe(1);
    expect(r.numComputedTokens).toBe(50);
    // The first output of the step after is a decode at position 50.
    const { out } = step(sched);
    expect(out.chunks[0]).toMatchObject({ startPosition: 50, tokenIds: [r.outputTokenIds[0]], samplesToken: true });
    expect(out.scheduledRunningReqs).toEqual([{ requestId: 'a', newBlockIds: [], numComputedTokens: 50 }]);
  });

  it('gives a new prompt the budget left after the running requests', () => {
    const { sched, add } = setup({ maxNumBatchedTokens: 10 });
    add('a', range(6));
    step(sched); // a prefilled (6 tokens)
    add('b', range(30, 200));
    const { out } = step(sched);
    expect(Object.fromEntries(out.numScheduledTokens)).toEqual({ a: 1, b: 9 });
    expect(out.scheduledNewReqs.map((n) => [n.requestId, n.numComputedTokens])).toEqual([['b', 0]]);
  });
});

describe('ordering and limits', () => {
  it('schedules running decodes, then the ongoing prefill chunk, then waiting requests', () => {
    const { sched, add } = setup({ maxNumBatchedTokens: 8 });
    for (const id of ['d1', 'd2', 'd3']) add(id, [1, 2]);
    step(sched); // the three prompts (6 tokens)
    add('long', range(20, 300));
    add('late', [5]);
    // Decodes take 1 token each before the long prompt gets a chunk; 'late' waits behind it (FCFS).
    let { out } = step(sched);
    expect(Object.fromEntries(out.numScheduledTokens)).toEqual({ d1: 1, d2: 1, d3: 1, long: 5 });
    expect(out.chunks.map((c) => c.requestId)).toEqual(['d1', 'd2', 'd3', 'long']);
    ({ out } = step(sched));
    expect(Object.fromEntries(out.numScheduledTokens)).toEqual({ d1: 1, d2: 1, d3: 1, long: 5 });
    expect(out.scheduledNewReqs).toEqual([]);
    ({ out } = step(sched));
    expect(Object.fromEntries(out.numScheduledTokens)).toEqual({ d1: 1, d2: 1, d3: 1, long: 5 });
    // long has 5 of 20 left: the remaining budget finally admits 'late'.
    ({ out } = step(sched));
    expect(Object.fromEntries(out.numScheduledTokens)).toEqual({ d1: 1, d2: 1, d3: 1, long: 5 });
    ({ out } = step(sched));
    expect(Object.fromEntries(out.numScheduledTokens)).toEqual({ d1: 1, d2: 1, d3: 1, long: 1, late: 1 });
  });

  it('runs at most maxNumSeqs requests', () => {
    const { sched, add } = setup({ maxNumSeqs: 2 });
    for (let i = 0; i < 5; i++) add(`r${i}`, range(5, i * 10), { maxTokens: 3 });
    let { out } = step(sched);
    expect(out.scheduledNewReqs.map((r) => r.requestId)).toEqual(['r0', 'r1']);
    expect(sched.numRunning).toBe(2);
    ({ out } = step(sched));
    expect([...out.numScheduledTokens.keys()]).toEqual(['r0', 'r1']);
    step(sched); // r0, r1 finish (3 tokens)
    ({ out } = step(sched));
    expect(out.scheduledNewReqs.map((r) => r.requestId)).toEqual(['r2', 'r3']);
    expect(out.finished).toEqual(['r0', 'r1']);
  });

  it('admits FCFS: a request that does not fit blocks the ones behind it', () => {
    const { sched, add } = setup({}, { numBlocks: 8, maxModelLen: 32 });
    add('a', range(20)); // 5 blocks
    step(sched);
    add('big', range(16, 100)); // 4 blocks: only 3 free
    add('small', [1]); // would fit, must not overtake
    const { out } = step(sched);
    expect([...out.numScheduledTokens.keys()]).toEqual(['a']);
    expect(sched.waitingRequests().map((r) => r.requestId)).toEqual(['big', 'small']);
  });
});

describe('preemption by recompute', () => {
  it('preempts the newest request when blocks run out, then resumes it with identical tokens', () => {
    // 8 blocks of 4: a and b (5-token prompts) decode until the pool is dry.
    const { sched, add, kv } = setup({}, { numBlocks: 8, maxModelLen: 32 });
    const a = add('a', range(5, 0), { maxTokens: 20 });
    const b = add('b', range(5, 50), { maxTokens: 20 });
    let preemptedAt = -1;
    const preemptedOutputs: number[] = [];
    for (let i = 0; i < 200 && sched.hasUnfinishedRequests(); i++) {
      const { out } = step(sched);
      if (out.preempted.length > 0 && preemptedAt < 0) {
        preemptedAt = i;
        expect(out.preempted).toEqual(['b']); // the newest
        expect(b.status).toBe('preempted');
        expect(b.numComputedTokens).toBe(0);
        expect(kv.getBlocks('b')).toHaveLength(0);
        expect(sched.waitingRequests()[0]).toBe(b);
        expect(out.numScheduledTokens.has('b')).toBe(false);
        preemptedOutputs.push(...b.outputTokenIds);
      }
      const resumed = out.scheduledNewReqs.find((n) => n.requestId === 'b' && n.resumedFromPreemption);
      if (resumed) {
        // Recompute prompt + generated tokens (from a prefix-cache hit on b's own blocks, if they survived).
        expect(resumed.outputTokenIds).toEqual(preemptedOutputs);
        const c = out.chunks.find((x) => x.requestId === 'b')!;
        expect(c.startPosition + c.tokenIds.length).toBe(5 + preemptedOutputs.length);
        expect(c.tokenIds).toEqual([...range(5, 50), ...preemptedOutputs].slice(c.startPosition));
      }
    }
    expect(preemptedAt).toBeGreaterThan(0);
    expect(b.numPreemptions).toBeGreaterThan(0);
    expect(sched.numPreemptions).toBe(a.numPreemptions + b.numPreemptions);
    expect(a.outputTokenIds).toEqual(soloOutput(range(5, 0), 20));
    expect(b.outputTokenIds).toEqual(soloOutput(range(5, 50), 20));
    expect(kv.pool.numUsedBlocks).toBe(0);
  });

  it('a lone request that fills the cache preempts nobody else and always progresses', () => {
    const { sched, add, kv } = setup({}, { numBlocks: 8, maxModelLen: 32 });
    const r = add('a', range(4), {});
    runToCompletion(sched);
    expect(r.finishReason).toBe('length'); // stopped by maxModelLen
    expect(r.numTokens).toBe(32);
    expect(sched.numPreemptions).toBe(0);
    expect(kv.pool.numUsedBlocks).toBe(0);
  });
});

describe('abort', () => {
  it('frees every block whatever the state, and tells the runner in the next step', () => {
    const { sched, add, kv } = setup({ maxNumBatchedTokens: 8 });
    add('run', range(6));
    add('pre', range(20, 100)); // mid-prefill after one step
    step(sched);
    add('wait', range(3));
    expect(kv.pool.numUsedBlocks).toBeGreaterThan(0);
    expect(sched.abort('wait')).toBe(true);
    expect(sched.abort('pre')).toBe(true);
    // Abort between schedule() and updateFromOutput(): the result for it is ignored.
    const out = sched.schedule();
    expect(out.finished).toEqual(['wait', 'pre']);
    expect(sched.abort('run')).toBe(true);
    expect(sched.updateFromOutput(out, new Map([['run', [5]]]))).toEqual([]);
    expect(sched.abort('run')).toBe(false);
    expect(sched.abort('nope')).toBe(false);
    expect(kv.pool.numUsedBlocks).toBe(0);
    expect(kv.usage).toBe(0);
    expect(sched.hasUnfinishedRequests()).toBe(false);
    expect(sched.schedule().finished).toEqual(['run']);
  });
});

describe('stop conditions', () => {
  const forced = (tokens: number[]) => {
    const queue = new Map<string, number[]>();
    return (id: string) => {
      if (!queue.has(id)) queue.set(id, [...tokens]);
      return [queue.get(id)!.shift() ?? 99];
    };
  };

  it('EOS stops unless ignoreEos; stop ids report themselves; minTokens defers both', () => {
    const { sched, add } = setup();
    const eos = add('eos', [1], {});
    const ign = add('ign', [1], { ignoreEos: true, maxTokens: 3 });
    const sid = add('sid', [1], { stopTokenIds: [7] });
    const min = add('min', [1], { minTokens: 3, stopTokenIds: [7] });
    const sample = forced([5, EOS, 7, 7, EOS, 7]);
    for (let i = 0; i < 10 && sched.hasUnfinishedRequests(); i++) step(sched, (id) => sample(id));
    expect([eos.outputTokenIds, eos.finishReason, eos.stopReason]).toEqual([[5, EOS], 'stop', null]);
    expect([ign.outputTokenIds, ign.finishReason]).toEqual([[5, EOS, 7], 'length']);
    expect([sid.outputTokenIds, sid.finishReason, sid.stopReason]).toEqual([[5, EOS], 'stop', null]); // EOS first
    expect([min.outputTokenIds, min.finishReason, min.stopReason]).toEqual([[5, EOS, 7], 'stop', 7]);
  });

  it('maxTokens and maxModelLen cap with reason length', () => {
    const { sched, add } = setup({}, { maxModelLen: 12, numBlocks: 3 });
    const a = add('a', range(10), { maxTokens: 100 });
    const b = add('b', range(4, 20), { maxTokens: 2 });
    runToCompletion(sched);
    expect([a.numTokens, a.finishReason]).toEqual([12, 'length']);
    expect([b.numOutputTokens, b.finishReason]).toEqual([2, 'length']);
  });

  it('a prompt of exactly maxModelLen tokens yields one token', () => {
    const { sched, add } = setup({}, { maxModelLen: 8, numBlocks: 2 });
    const a = add('a', range(8));
    runToCompletion(sched);
    expect([a.numOutputTokens, a.finishReason]).toEqual([1, 'length']);
  });

  it('the stop hook and finishRequest end requests with a custom reason (stop strings)', () => {
    const kv = new KVCacheManager({ numBlocks: 16, blockSize: 4, maxModelLen: 64 });
    const sched = new Scheduler({
      maxNumSeqs: 4, maxNumBatchedTokens: 64,
      stopChecker: (r, t) => (r.requestId === 'hook' && t === 42 ? '\n\n' : null),
    }, kv);
    const hook = new Request({ requestId: 'hook', promptTokenIds: [1], samplingParams: {} });
    const ext = new Request({ requestId: 'ext', promptTokenIds: [1], samplingParams: {} });
    sched.addRequest(hook);
    sched.addRequest(ext);
    step(sched, () => [41]);
    const { results } = step(sched, () => [42]);
    expect(results.find((r) => r.requestId === 'hook')).toEqual({ requestId: 'hook', newTokenIds: [42], finished: true, finishReason: 'stop', stopReason: '\n\n' });
    expect(sched.finishRequest('ext', 'stop', 'END')).toBe(true);
    expect([ext.finishReason, ext.stopReason, ext.outputTokenIds]).toEqual(['stop', 'END', [41, 42]]);
    expect(kv.pool.numUsedBlocks).toBe(0);
  });

  it('rejects a runner that skips a sampled token', () => {
    const { sched, add } = setup();
    add('a', [1, 2]);
    const out = sched.schedule();
    expect(() => sched.updateFromOutput(out, new Map())).toThrow(EngineProtocolError);
  });
});

describe('lookahead (multi-step decoding)', () => {
  it('reserves slots for k extra GPU steps and accounts for the tokens they return', () => {
    const { sched, add, kv } = setup({ numLookaheadTokens: 4 });
    const a = add('a', range(6), { maxTokens: 30 });
    // Prefill + 4 extra decode steps run on the GPU without the CPU.
    let out = sched.schedule();
    let c = out.chunks[0];
    expect(c.numLookaheadTokens).toBe(4);
    expect(c.blockIds.length * 4).toBeGreaterThanOrEqual(6 + 4); // slots for positions 6..9
    const gen = soloOutput(range(6), 30);
    sched.updateFromOutput(out, new Map([['a', gen.slice(0, 5)]]));
    expect(a.outputTokenIds).toEqual(gen.slice(0, 5));
    expect(a.numComputedTokens).toBe(10); // tokens 6..9 were fed by the extra steps
    // The next step decodes token 10 and reserves 4 more.
    out = sched.schedule();
    c = out.chunks[0];
    expect([c.startPosition, c.tokenIds, c.numLookaheadTokens]).toEqual([10, [gen[4]], 4]);
    expect(c.blockIds.length * 4).toBeGreaterThanOrEqual(15);
    // Too many tokens is a runner bug; fewer is fine (the runner may stop early).
    expect(() => sched.updateFromOutput(out, new Map([['a', gen.slice(5, 11)]]))).toThrow(EngineProtocolError);
    sched.updateFromOutput(out, new Map([['a', gen.slice(5, 7)]]));
    expect(a.numComputedTokens).toBe(12);
    expect(a.numTokens).toBe(13);
    while (sched.hasUnfinishedRequests()) step(sched, (_, t) => [nextToken(t)]);
    expect(a.outputTokenIds).toEqual(gen);
    expect(kv.pool.numUsedBlocks).toBe(0);
  });

  it('caps the reservation at maxTokens and drops it rather than preempting', () => {
    const { sched, add } = setup({ numLookaheadTokens: 8 }, { numBlocks: 4, maxModelLen: 16 });
    add('a', range(3), { maxTokens: 3 });
    let out = sched.schedule();
    expect(out.chunks[0].numLookaheadTokens).toBe(2); // 3 tokens in all: 1 + 2 extra
    sched.updateFromOutput(out, new Map([['a', [20, 21, 22]]]));
    expect(sched.hasUnfinishedRequests()).toBe(false);
    // Two requests that each fit only without lookahead: nobody is preempted for a reservation.
    add('b', range(7), { maxTokens: 1 });
    add('c', range(7, 30), { maxTokens: 1 });
    out = sched.schedule();
    expect(out.preempted).toEqual([]);
    expect(out.chunks.map((c) => c.numLookaheadTokens)).toEqual([0, 0]);
  });

  it('cuts the tokens after a stop found late', () => {
    const { sched, add } = setup({ numLookaheadTokens: 3 });
    const a = add('a', [1, 2, 3], { stopTokenIds: [9] });
    const out = sched.schedule();
    const [res] = sched.updateFromOutput(out, new Map([['a', [5, 9, 6, 7]]]));
    expect(res).toMatchObject({ newTokenIds: [5, 9], finished: true, stopReason: 9 });
    expect(a.outputTokenIds).toEqual([5, 9]);
  });
});

describe('n > 1: forks share the prompt blocks', () => {
  for (const enablePrefixCaching of [true, false]) {
    it(`holds samples until the leader's prompt is scheduled, then shares its blocks (prefix caching ${enablePrefixCaching ? 'on' : 'off'})`, () => {
      const { sched, add, kv } = setup({ maxNumBatchedTokens: 8 }, { enablePrefixCaching });
      const prompt = range(13, 100); // 3 full blocks + 1 token
      const leader = add('s0', prompt, { maxTokens: 4 });
      const s1 = add('s1', prompt, { maxTokens: 4 }, leader);
      const s2 = add('s2', prompt, { maxTokens: 4 }, leader);
      add('other', [7, 7]);
      let { out } = step(sched);
      // The samples are skipped while the leader prefills, without blocking the queue behind them.
      expect([...out.numScheduledTokens.keys()]).toEqual(['s0']);
      ({ out } = step(sched)); // leader: 8 more tokens => 13 of 13
      expect(out.numScheduledTokens.get('s0')).toBe(5);
      expect(out.numScheduledTokens.get('s1')).toBe(1); // shares 12 tokens, recomputes the last prompt token
      expect(out.numScheduledTokens.get('s2')).toBe(1);
      expect(out.numScheduledTokens.get('other')).toBe(1); // budget 8 = 5 + 1 + 1 + 1
      const l = kv.getBlocks('s0');
      expect(l.slice(0, 3).map((b) => b.refCount)).toEqual([3, 3, 3]);
      for (const s of [s1, s2]) {
        const t = kv.getBlockIds(s.requestId);
        expect(t.slice(0, 3)).toEqual(l.slice(0, 3).map((b) => b.blockId));
        expect(t[3]).not.toBe(l[3].blockId);
        expect(s.numCachedTokens).toBe(12);
      }
      runToCompletion(sched);
      expect(kv.pool.numUsedBlocks).toBe(0);
    });
  }
});

describe('asynchronous scheduling (scheduleContinuation)', () => {
  it('continues every running request from its in-flight tokens, reserving slots, and catches up as outputs arrive', () => {
    const { sched, add, kv } = setup({ numLookaheadTokens: 2 });
    const a = add('a', range(5), { maxTokens: 20 });
    const b = add('b', range(3, 50), { maxTokens: 20 });
    const ga = soloOutput(range(5), 20), gb = soloOutput(range(3, 50), 20);
    const first = sched.schedule();
    expect(first.chunks.map((c) => c.numLookaheadTokens)).toEqual([2, 2]); // both sample: 1 + 2 tokens each
    expect(() => sched.schedule()).toThrow(EngineProtocolError); // tokens in flight: no full schedule
    const cont = sched.scheduleContinuation(first)!;
    expect(cont.continues).toBe(first.step);
    // a fed positions 4, 5, 6 (prompt's last, then 2 extra steps); the continuation feeds 7 (its 3rd token) on.
    expect(cont.chunks.map((c) => [c.requestId, c.startPosition, c.tokenIds.length, c.numLookaheadTokens, c.outputBase])).toEqual([
      ['a', 7, 0, 2, 3], ['b', 5, 0, 2, 3],
    ]);
    for (const c of cont.chunks) expect(c.blockIds.length * 4).toBeGreaterThanOrEqual(c.startPosition + 1 + 2);
    expect(sched.numInflightTokens('a')).toBe(6);
    // Outputs must come in scheduling order: the continuation's first is a protocol error.
    expect(() => sched.updateFromOutput(cont, new Map([['a', ga.slice(3, 6)], ['b', gb.slice(3, 6)]]))).toThrow(EngineProtocolError);
    // Too few tokens from a step that a later one continues from is a runner bug.
    expect(() => sched.updateFromOutput(first, new Map([['a', ga.slice(0, 2)], ['b', gb.slice(0, 3)]]))).toThrow(EngineProtocolError);
    sched.updateFromOutput(first, new Map([['a', ga.slice(0, 3)], ['b', gb.slice(0, 3)]]));
    expect([a.numTokens, a.numComputedTokens, sched.numInflightTokens('a')]).toEqual([8, 8, 3]);
    sched.updateFromOutput(cont, new Map([['a', ga.slice(3, 6)], ['b', gb.slice(3, 6)]]));
    expect([a.numTokens, a.numComputedTokens, sched.hasInflightTokens()]).toEqual([11, 10, false]);
    while (sched.hasUnfinishedRequests()) step(sched);
    expect(a.outputTokenIds).toEqual(ga);
    expect(b.outputTokenIds).toEqual(gb);
    expect(kv.pool.numUsedBlocks).toBe(0);
  });

  it('matches running alone, leaves out requests that reach maxTokens with what is in flight, and discards tokens after a stop', () => {
    const { sched, add, kv } = setup({ numLookaheadTokens: 3 });
    const reqs = [add('a', range(6), { maxTokens: 5 }), add('b', range(4, 30), { maxTokens: 17 }), add('c', range(9, 60), { maxTokens: 30 })];
    const solo = reqs.map((r) => soloOutput([...r.promptTokenIds], r.samplingParams.maxTokens!));
    // c stops at a token in the middle of its output: found one step late.
    const stopAt = solo[2][11];
    (reqs[2].samplingParams as RequestSamplingParams).stopTokenIds = [stopAt];
    const device = new Map<string, number[]>();
    const run = (out: SchedulerOutput) => {
      const sampled = new Map<string, number[]>();
      for (const c of out.chunks) {
        const r = sched.getRequest(c.requestId)!;
        const seq = out.continues === undefined ? [...r.allTokenIds] : device.get(c.requestId)!;
        if (out.continues !== undefined) expect(c.startPosition).toBe(seq.length - 1);
        const toks: number[] = [];
        for (let j = 0; j <= c.numLookaheadTokens; j++) { const t = nextToken(seq); seq.push(t); toks.push(t); }
        device.set(c.requestId, seq);
        sampled.set(c.requestId, toks);
      }
      return sampled;
    };
    let head: { out: SchedulerOutput; sampled: Map<string, number[]> } | undefined;
    const rowsPerStep: string[][] = [];
    for (let i = 0; i < 100 && (sched.hasUnfinishedRequests() || head); i++) {
      if (!head) { const out = sched.schedule(); head = { out, sampled: run(out) }; }
      const cont = sched.scheduleContinuation(head.out);
      const next = cont ? { out: cont, sampled: run(cont) } : undefined;
      if (cont) rowsPerStep.push(cont.chunks.map((c) => c.requestId));
      sched.updateFromOutput(head.out, head.sampled);
      head = next;
    }
    expect(reqs[0].outputTokenIds).toEqual(solo[0]);
    expect(reqs[1].outputTokenIds).toEqual(solo[1]);
    expect(reqs[2].outputTokenIds).toEqual(solo[2].slice(0, solo[2].indexOf(stopAt) + 1));
    expect(reqs.map((r) => r.finishReason)).toEqual(['length', 'length', 'stop']);
    // a (5 tokens) is done after its first 4 + the continuation's: it never appears in a later continuation.
    expect(rowsPerStep.some((rows) => rows.length < 3)).toBe(true);
    expect(rowsPerStep.filter((rows) => rows.includes('a')).length).toBe(1);
    expect(kv.pool.numUsedBlocks).toBe(0);
    expect(sched.hasInflightTokens()).toBe(false);
  });

  it('drains (returns null) for admission, partial prefills and a dry pool', () => {
    {
      const { sched, add } = setup({ numLookaheadTokens: 1, maxNumSeqs: 2 });
      add('a', range(4), { maxTokens: 10 });
      const out = sched.schedule();
      add('b', range(4)); // could be admitted: a full schedule is needed
      expect(sched.scheduleContinuation(out)).toBeNull();
      add('c', range(4));
      sched.updateFromOutput(out, new Map([['a', [11, 12]]]));
      const out2 = sched.schedule(); // a decodes, b admitted; c waits for a free sequence
      expect(out2.chunks.map((c) => c.requestId)).toEqual(['a', 'b']);
      expect(sched.scheduleContinuation(out2)).not.toBeNull(); // running is full: nobody could be admitted
    }
    {
      const { sched, add } = setup({ numLookaheadTokens: 1, maxNumBatchedTokens: 3 });
      add('a', range(6), { maxTokens: 10 });
      expect(sched.scheduleContinuation(sched.schedule())).toBeNull(); // a partial prefill: its tokens are the CPU's
    }
    {
      // 4 blocks of 4: a holds 3 (prompt 9 + 1 lookahead slot = 10 tokens), b 1 (3 + 1); b's continuation needs
      // a 5th slot even without extra steps, and the pool is dry: preempting is a full schedule's call.
      const { sched, add, kv } = setup({ numLookaheadTokens: 1 }, { numBlocks: 4, maxModelLen: 16 });
      add('a', range(9), { maxTokens: 6 });
      add('b', range(3), { maxTokens: 6 });
      const out = sched.schedule();
      expect(kv.pool.numFreeBlocks).toBe(0);
      expect(sched.scheduleContinuation(out)).toBeNull();
      expect(kv.pool.numFreeBlocks).toBe(0); // nothing reserved by the attempt
    }
  });
});
