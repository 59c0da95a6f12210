// GPU time under contention, shared by weight (issue 5, item 3): actors (in-process RemoteGpu clients of one
// DeviceHost) that keep a backlog of matmuls get GPU time in proportion to their weights within 5 points, by
// two measures: the GPU time the host charged them (timestamp queries) and, independently, the dispatches each
// had run times the per-dispatch time. Where the actors run the same matmul, the per-dispatch time is common
// and the dispatch counts alone decide (no calibration); their lists differ in length (1 to 3 matmuls), so a
// split by lists would be far off. Where they run different matmuls (one long vs two short per list: only
// measured time can split that), the charged time is asserted and the count x time-alone figure is logged:
// per-dispatch times measured alone drift 2x with this shared 2-core machine's load. A lone actor is not
// slowed by the mechanism; without the window (everything submitted at once) the split is the GPU's FIFO.
import { DeviceHost, type DeviceHostOptions } from '../../src/actors/device_host.ts';
import type { GpuBuffer } from '../../src/gpu/gpu.ts';
import { RemoteGpu } from '../../src/gpu/remote.ts';
import { linear } from '../../src/kernels/linear.ts';
import { LLMEngine } from '../../src/engine/llm_engine.ts';
import { assert, assertEquals, FIXTURES, readReference } from './helpers.ts';

const opts = { sanitizeResources: false, sanitizeOps: false };
/** Command lists each actor keeps queued at the host beyond those it has running: always a backlog. */
const DEPTH = 4;
const TOLERANCE_POINTS = 5;

/** A matmul work item: `perList` dispatches of an S x S x S f32 matmul in each command list. */
interface Work {
  size: number;
  perList: number;
}

/** An actor that keeps submitting command lists of `work` until stopped; counts the lists the host has run. */
class Saturator {
  executedLists = 0;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private constructor(readonly gpu: RemoteGpu, readonly work: Work, private bufs: { x: GpuBuffer; w: GpuBuffer; y: GpuBuffer; d: GpuBuffer }) {}

  static async create(host: DeviceHost, actorId: string, weight: number, work: Work): Promise<Saturator> {
    const gpu = await RemoteGpu.connect(host.attach({ actorId, virtualGpuUuid: 'GPU-0', weight }).port);
    const n = work.size * work.size * 4;
    const [x, w, y, d] = [await gpu.createBuffer(n, 'x'), await gpu.createBuffer(n, 'w'), await gpu.createBuffer(n, 'y'), await gpu.createBuffer(16, 'd')];
    const s = new Saturator(gpu, work, { x, w, y, d });
    s.list();
    await gpu.sync(); // the pipeline is compiled before anyone measures
    return s;
  }

  /** Record one command list's dispatches. */
  private list(): void {
    const S = this.work.size;
    for (let i = 0; i < this.work.perList; i++) {
      linear(this.gpu, { ...this.bufs, dummy: this.bufs.d, M: S, N: S, K: S, act: 'f32', weight: 'f32' });
    }
  }

  start(): void {
    this.stopped = false;
    this.loop = (async () => {
      const pending: Promise<void>[] = [];
      while (!this.stopped) {
        this.list();
        // executed() ends the list and resolves once the host has run it (submitted it to the GPU).
        pending.push(this.gpu.executed().then(() => void this.executedLists++));
        if (pending.length >= DEPTH) await pending.shift();
      }
      await Promise.all(pending);
      await this.gpu.sync();
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** Runs alone: wall milliseconds per dispatch with the GPU kept busy (steady state, after a ramp-up). */
  async msPerDispatchAlone(ms: number): Promise<number> {
    this.start();
    await sleep(100);
    const [t0, n0] = [performance.now(), this.executedLists];
    await sleep(ms);
    const [t1, n1] = [performance.now(), this.executedLists];
    await this.stop();
    return (t1 - t0) / ((n1 - n0) * this.work.perList);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Shares {
  /** Percent of the GPU time the host charged, per actor. */
  charged: number[];
  /** Percent of dispatches x per-dispatch time, per actor. */
  counted: number[];
  /** Percent of command lists run, per actor. */
  lists: number[];
}

const pct = (xs: number[]) => {
  const total = xs.reduce((a, b) => a + b, 0);
  return xs.map((x) => (100 * x) / total);
};
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(' / ');

/**
 * Actors at `weights` run `works` (each calibrated alone first), all saturating for `measureMs` after a warm-up;
 * returns their shares over the measured interval.
 */
async function contend(weights: number[], works: Work[], measureMs: number, hostOpts: DeviceHostOptions = {}): Promise<Shares> {
  const sameKernel = works.every((w) => w.size === works[0].size);
  const host = await DeviceHost.create({}, hostOpts);
  try {
    const actors = await Promise.all(weights.map((w, i) => Saturator.create(host, `actor-${i}`, w, works[i])));
    // Per-dispatch times alone, in interleaved rounds before and after the contention (this 2-core machine's
    // load drifts; the medians of interleaved samples keep the ratios between the matmuls right).
    const samples: number[][] = actors.map(() => []);
    const calibrate = async () => {
      for (let round = 0; round < 2; round++) for (const [i, a] of actors.entries()) samples[i].push(await a.msPerDispatchAlone(300));
    };
    if (!sameKernel) await calibrate();
    for (const a of actors) a.start();
    await sleep(600); // warm-up: every actor backlogged, estimates measured
    const snap = () => ({
      charged: host.stats().clients.map((c) => c.gpuTimeMs),
      lists: actors.map((a) => a.executedLists),
    });
    const before = snap();
    await sleep(measureMs);
    const after = snap();
    await Promise.all(actors.map((a) => a.stop()));
    if (!sameKernel) await calibrate();
    // The same matmul everywhere: one per-dispatch time, whatever it is.
    const perDispatch = samples.map((xs) => {
      const sorted = [...xs].sort((x, y) => x - y);
      return sameKernel ? 1 : (sorted[1] + sorted[2]) / 2; // median of 4
    });
    const lists = after.lists.map((n, i) => n - before.lists[i]);
    const shares: Shares = {
      charged: pct(after.charged.map((t, i) => t - before.charged[i])),
      counted: pct(lists.map((n, i) => n * works[i].perList * perDispatch[i])),
      lists: pct(lists),
    };
    console.log(
      `  weights ${weights.join(' / ')}, gpuWindowMs ${host.gpuWindowMs}: charged ${fmt(shares.charged)} %, counted (dispatches x time) ` +
        `${fmt(shares.counted)} %, lists ${fmt(shares.lists)} %` +
        (sameKernel ? ' (same matmul: dispatch counts)' : ` (ms per dispatch alone: ${perDispatch.map((t) => t.toFixed(2)).join(', ')})`),
    );
    for (const a of actors) a.gpu.destroy();
    return shares;
  } finally {
    host.destroy();
  }
}

function assertShares(got: number[], weights: number[], what: string): void {
  const total = weights.reduce((a, b) => a + b, 0);
  got.forEach((g, i) => {
    const want = (100 * weights[i]) / total;
    assert(Math.abs(g - want) <= TOLERANCE_POINTS, `${what}: actor ${i} at weight ${weights[i]} got ${g.toFixed(1)} % of GPU time, want ${want.toFixed(1)} ± ${TOLERANCE_POINTS}`);
  });
}

const MATMUL = 192;
/** Lists of 3 matmuls vs lists of 1 of the same matmul. */
const LONG_LISTS: Work = { size: MATMUL, perList: 3 };
const SHORT_LISTS: Work = { size: MATMUL, perList: 1 };
/** One long matmul per list vs two short ones: the short actor runs ~4x the lists per unit of GPU time. */
const LONG: Work = { size: 256, perList: 1 };
const SHORT: Work = { size: 128, perList: 2 };

Deno.test('fair share: two saturating actors at 0.4 / 0.6 get GPU time 40 / 60 within 5 points (charged and counted)', opts, async () => {
  for (const works of [[LONG_LISTS, SHORT_LISTS], [SHORT_LISTS, LONG_LISTS]]) {
    const s = await contend([0.4, 0.6], works, 3500);
    assertShares(s.charged, [0.4, 0.6], 'charged');
    assertShares(s.counted, [0.4, 0.6], 'dispatches');
    // The split is of time, not of lists.
    const longIndex = works[0] === LONG_LISTS ? 0 : 1;
    assert(s.lists[longIndex] < 100 * [0.4, 0.6][longIndex] - 15, `lists ${fmt(s.lists)}`);
  }
});

Deno.test('fair share: different matmuls (one long vs two short per list) at 0.4 / 0.6: charged GPU time 40 / 60 within 5 points', opts, async () => {
  for (const works of [[LONG, SHORT], [SHORT, LONG]]) {
    const s = await contend([0.4, 0.6], works, 3000);
    assertShares(s.charged, [0.4, 0.6], 'charged');
  }
});

Deno.test('fair share: three saturating actors at 0.2 / 0.3 / 0.5 get 20 / 30 / 50 within 5 points (charged and counted)', opts, async () => {
  const works = [{ size: MATMUL, perList: 2 }, SHORT_LISTS, LONG_LISTS];
  const s = await contend([0.2, 0.3, 0.5], works, 4500);
  assertShares(s.charged, [0.2, 0.3, 0.5], 'charged');
  assertShares(s.counted, [0.2, 0.3, 0.5], 'dispatches');
});

Deno.test('fair share: without the window (everything submitted at once) the GPU FIFO decides, not the weights', opts, async () => {
  // The control: same actors, gpuWindowMs Infinity. The long-list actor at 0.4 then takes most of the GPU.
  const s = await contend([0.4, 0.6], [LONG_LISTS, SHORT_LISTS], 2500, { gpuWindowMs: Infinity });
  assert(s.counted[0] > 40 + 2 * TOLERANCE_POINTS, `without the window the 0.4 actor got ${fmt(s.counted)} %: the test above would not tell the window apart`);
});

Deno.test('fair share: a lone actor is not slowed (same throughput as with the window off)', opts, async () => {
  const rates: Record<string, number[]> = { window: [], noWindow: [] };
  for (let rep = 0; rep < 3; rep++) {
    for (const [name, hostOpts] of [['window', {}], ['noWindow', { gpuWindowMs: Infinity }]] as const) {
      const host = await DeviceHost.create({}, hostOpts);
      const a = await Saturator.create(host, 'lone', 0.4, SHORT);
      // Another actor attached but idle: contention needs work, not just company.
      const idle = await RemoteGpu.connect(host.attach({ actorId: 'idle', virtualGpuUuid: 'GPU-0', weight: 0.6 }).port);
      rates[name].push(1 / (await a.msPerDispatchAlone(900)));
      idle.destroy();
      a.gpu.destroy();
      host.destroy();
    }
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[1];
  const ratio = median(rates.window) / median(rates.noWindow);
  console.log(`  lone actor: ${median(rates.window).toFixed(3)} dispatches/ms with the fair-share window, ${median(rates.noWindow).toFixed(3)} without (ratio ${ratio.toFixed(3)})`);
  assert(ratio >= 0.9, `a lone actor ran at ${(ratio * 100).toFixed(1)} % of its throughput without the window`);
});

Deno.test('fair share: a tensor-parallel engine (2 rank actors) generates what TP=1 does while a saturating actor contends (no deadlock at all-reduces)', opts, async () => {
  const host = await DeviceHost.create();
  try {
    const { ref } = await readReference('opt-tiny');
    const engineOpts = { numBlocks: 64, blockSize: 16, maxNumSeqs: 8, numLookaheadTokens: 7 };
    const params = { maxTokens: 12, ignoreEos: true };
    const want = await (await LLMEngine.create(host.gpu, `${FIXTURES}opt-tiny`, engineOpts)).generate(ref.prompts, params);
    const busy = await Saturator.create(host, 'trainer', 0.6, LONG_LISTS);
    busy.start();
    const ranks = await Promise.all([0, 1].map((rank) => RemoteGpu.connect(host.attach({
      actorId: `engine-rank-${rank}`, virtualGpuUuid: 'GPU-0', weight: 0.2, tensorParallel: { group: 'engine', rank, size: 2 },
    }).port)));
    const tp = await LLMEngine.create(ranks[0], `${FIXTURES}opt-tiny`, { ...engineOpts, tensorParallelGpus: ranks });
    const before = busy.executedLists;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('tensor-parallel generate did not finish in 120 s under contention')), 120_000)));
    const got = await Promise.race([tp.generate(ref.prompts, params), deadline]);
    clearTimeout(timer);
    for (let i = 0; i < ref.prompts.length; i++) assertEquals(got[i].tokenIds, want[i].tokenIds, `prompt ${i}`);
    assert(busy.executedLists > before, 'the saturating actor kept running meanwhile');
    const st = host.stats().clients;
    console.log(`  under contention: ${st.map((c) => `${c.actorId} ${c.gpuTimeMs.toFixed(0)} ms`).join(', ')}`);
    await busy.stop();
    for (const r of ranks) r.destroy();
    busy.gpu.destroy();
  } finally {
    host.destroy();
  }
});
