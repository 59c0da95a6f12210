/**
 * GPU time shared by weight under contention (issue 5: "two saturating actors at 0.4 / 0.6 get GPU time within
 * ±5 points of 40 / 60"). In-process actors (RemoteGpu clients of one DeviceHost, as workers would be) run
 * realistic work:
 *   engine   the serving engine's decode loop: LLM.generate of --batch prompts x --tokens tokens, over and over
 *   train    Trainer.step (AdamW) on --train-batch x --seq tokens, over and over
 *   matmul   f32 matmuls of --matmul-size^3 (4 per command list), always 4 lists queued at the host
 *   matmul-short  the same with half-size matmuls, 8 per list (two synthetic saturating actors: the baseline)
 * An actor can only get its share if it asks for it: `alone_gpu_busy_pct` is the GPU time it uses alone per
 * wall second (the engine's decode loop waits for its tokens, so it may not saturate the GPU by itself).
 * For each pair (--pairs, first at --weights[0], second at --weights[1]): each actor alone (the other attached
 * but idle), then both at once; over --seconds after a warm-up it reports each actor's share of the GPU time
 * the host charged (timestamp queries), its throughput, and that throughput relative to running alone
 * (a saturating actor's relative throughput is about its share of the GPU). Then the same pair with the window
 * off (gpuWindowMs Infinity: everything submitted at once, the GPU's FIFO decides), the control.
 *
 * Usage: deno run -A --unstable-webgpu bench/fair_share_bench.ts [--model synthetic:opt-125m:1] [--pairs matmul-short:matmul,engine:train,engine:matmul]
 *          [--weights 0.4,0.6] [--seconds 8] [--warmup 2] [--batch 32] [--tokens 64] [--train-batch 4] [--seq 512]
 *          [--matmul-size 2048] [--gpu-memory-mb 8192] [--max-model-len 512] [--out FILE]
 * On lavapipe (no GPU) prove it runs:
 *   bash scripts/deno.sh run -A --unstable-webgpu bench/fair_share_bench.ts --model ../shared/fixtures/opt-tiny --seconds 2 --warmup 1
 *     --batch 4 --tokens 8 --train-batch 2 --seq 32 --matmul-size 256 --gpu-memory-mb 64 --max-model-len 128
 */
import { DeviceHost } from '../src/actors/device_host.ts';
import { LLM } from '../src/engine/llm.ts';
import type { GpuBuffer } from '../src/gpu/gpu.ts';
import { RemoteGpu } from '../src/gpu/remote.ts';
import { linear } from '../src/kernels/linear.ts';
import { Trainer } from '../src/train/trainer.ts';

const arg = (n: string, d: string) => {
  const i = Deno.args.indexOf(`--${n}`);
  return i >= 0 ? Deno.args[i + 1] : d;
};
const model = arg('model', 'synthetic:opt-125m:1');
const pairs = arg('pairs', 'matmul-short:matmul,engine:train,engine:matmul').split(',').map((p) => p.split(':') as [string, string]);
const weights = arg('weights', '0.4,0.6').split(',').map(Number);
const seconds = Number(arg('seconds', '8'));
const warmupS = Number(arg('warmup', '2'));
const B = Number(arg('batch', '32'));
const T = Number(arg('tokens', '64'));
const trainB = Number(arg('train-batch', '4'));
const L = Number(arg('seq', '512'));
const SIZE = Number(arg('matmul-size', '2048'));
const gpuMemoryBytes = Number(arg('gpu-memory-mb', '8192')) * 2 ** 20;
const maxModelLen = Number(arg('max-model-len', '512'));
const out = arg('out', '');
const log = (...a: unknown[]) => console.error(...a);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A workload that loops until stopped and counts completed units (tokens, steps, GFLOP). */
interface Workload {
  name: string;
  unit: string;
  gpu: RemoteGpu;
  done: number;
  start(): void;
  stop(): Promise<void>;
}

function looping(name: string, unit: string, gpu: RemoteGpu, once: () => Promise<number>): Workload {
  let stopped = true;
  let loop: Promise<void> = Promise.resolve();
  const w: Workload = {
    name, unit, gpu, done: 0,
    start() {
      stopped = false;
      loop = (async () => {
        while (!stopped) w.done += await once();
      })();
    },
    async stop() {
      stopped = true;
      await loop;
    },
  };
  return w;
}

const host = await DeviceHost.create();
log('adapter', host.gpu.caps.adapterDescription);
const attach = (actorId: string, weight: number) => RemoteGpu.connect(host.attach({ actorId, virtualGpuUuid: 'GPU-0', weight }).port);

async function engine(weight: number): Promise<Workload> {
  const gpu = await attach('engine', weight);
  const llm = await LLM.create({ model, gpu, gpuMemoryBytes, gpuMemoryUtilization: 0.45, maxNumSeqs: B, maxNumBatchedTokens: Math.max(512, B * 16), maxModelLen });
  const vocab = llm.engine.config.vocabSize;
  const prompts = Array.from({ length: B }, (_, b) => ({ tokens: [2, ...Array.from({ length: 15 }, (_, i) => 4 + ((b * 977 + i * 7919) % (vocab - 4)))] }));
  const params = { maxTokens: T, ignoreEos: true };
  await llm.generate(prompts.slice(0, 2), { maxTokens: 4, ignoreEos: true });
  return looping('engine', 'tok/s', gpu, async () => {
    const outs = await llm.generate(prompts, params);
    return outs.reduce((n, o) => n + o.tokenIds.length, 0);
  });
}

async function train(weight: number): Promise<Workload> {
  const gpu = await attach('train', weight);
  const trainer = await Trainer.create({
    model, gpu, maxBatchTokens: trainB * L, optimizer: { type: 'adamw', lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 },
  });
  const limit = Math.min(50000, trainer.config.vocabSize);
  let x = 12345;
  const ids = Array.from({ length: trainB }, () => Array.from({ length: L }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return 4 + (x % (limit - 4));
  }));
  await trainer.step(ids);
  return looping('train', 'steps/s', gpu, async () => {
    await trainer.step(ids);
    return 1;
  });
}

async function matmul(weight: number, name = 'matmul', S = SIZE, perList = 4): Promise<Workload> {
  const gpu = await attach(name, weight);
  const n = S * S * 4;
  const bufs: Record<'x' | 'w' | 'y' | 'dummy', GpuBuffer> = {
    x: await gpu.createBuffer(n, 'x'), w: await gpu.createBuffer(n, 'w'), y: await gpu.createBuffer(n, 'y'), dummy: await gpu.createBuffer(16, 'd'),
  };
  const gflop = (2 * S ** 3 * perList) / 1e9;
  const list = () => {
    for (let i = 0; i < perList; i++) linear(gpu, { ...bufs, M: S, N: S, K: S, act: 'f32', weight: 'f32' });
  };
  list();
  await gpu.sync();
  // Always 4 lists queued at the host: a saturating actor. A list counts once the host has run it.
  let stopped = true;
  let loop: Promise<void> = Promise.resolve();
  const w: Workload = {
    name, unit: 'GFLOP/s', gpu, done: 0,
    start() {
      stopped = false;
      loop = (async () => {
        const pending: Promise<void>[] = [];
        while (!stopped) {
          list();
          pending.push(gpu.executed().then(() => void (w.done += gflop)));
          if (pending.length >= 4) await pending.shift();
        }
        await Promise.all(pending);
        await gpu.sync();
      })();
    },
    async stop() {
      stopped = true;
      await loop;
    },
  };
  return w;
}

const makers: Record<string, (weight: number) => Promise<Workload>> = {
  engine, train, matmul: (w) => matmul(w),
  // Half-size matmuls, 8 per list: short lists against matmul's long ones.
  'matmul-short': (w) => matmul(w, 'matmul-short', SIZE / 2, 8),
};

/** Run `ws` together: after the warm-up, each one's rate and charged GPU ms over `seconds`. */
async function measure(ws: Workload[]): Promise<Array<{ rate: number; gpuMs: number }>> {
  for (const w of ws) w.start();
  await sleep(warmupS * 1000);
  const snap = () => ({ t: performance.now(), done: ws.map((w) => w.done), gpu: ws.map((w) => host.stats().clients.find((c) => c.clientId === w.gpu.clientId)!.gpuTimeMs) });
  const a = snap();
  await sleep(seconds * 1000);
  const b = snap();
  await Promise.all(ws.map((w) => w.stop()));
  return ws.map((_, i) => ({ rate: ((b.done[i] - a.done[i]) / (b.t - a.t)) * 1000, gpuMs: b.gpu[i] - a.gpu[i] }));
}

const res: Record<string, unknown> = {
  model, weights, seconds, warmup_s: warmupS, engine: { batch: B, tokens: T }, train: { batch: `${trainB}x${L}`, optimizer: 'AdamW' },
  matmul: { size: SIZE, per_list: 4, dtype: 'f32' }, 'matmul-short': { size: SIZE / 2, per_list: 8 }, adapter: host.gpu.caps.adapterDescription, timestamp_query: host.gpu.caps.timestampQuery,
  gpu_window_ms: host.gpuWindowMs, date: new Date().toISOString(),
};
const cache = new Map<string, Workload>();
for (const [first, second] of pairs) {
  // An actor's weight is fixed at attach: one actor per (work, weight).
  const get = async (name: string, weight: number) => {
    const key = `${name}@${weight}`;
    if (!cache.has(key)) cache.set(key, await makers[name](weight));
    return cache.get(key)!;
  };
  const ws = [await get(first, weights[0]), await get(second, weights[1])];
  const alone = [(await measure([ws[0]]))[0], (await measure([ws[1]]))[0]];
  const pct = (xs: number[]) => xs.map((x) => +((100 * x) / xs.reduce((s, y) => s + y, 0)).toFixed(1));
  const report = (r: Array<{ rate: number; gpuMs: number }>) => {
    const shares = pct(r.map((x) => x.gpuMs));
    return Object.fromEntries(ws.map((w, i) => [w.name, {
      weight: weights[i], gpu_share_pct: shares[i], [w.unit]: +r[i].rate.toFixed(2), alone: +alone[i].rate.toFixed(2),
      vs_alone_pct: +((100 * r[i].rate) / alone[i].rate).toFixed(1), gpu_ms_charged: +r[i].gpuMs.toFixed(1),
      alone_gpu_busy_pct: +(alone[i].gpuMs / (10 * seconds)).toFixed(1),
    }]));
  };
  const shared = report(await measure(ws));
  const window = host.gpuWindowMs;
  host.gpuWindowMs = Infinity;
  const control = report(await measure(ws));
  host.gpuWindowMs = window;
  const target = weights.map((w) => (100 * w) / (weights[0] + weights[1]));
  const within = ws.every((w, i) => Math.abs((shared[w.name] as { gpu_share_pct: number }).gpu_share_pct - target[i]) <= 5);
  res[`${first}:${second}`] = { shared, within_5_points: within, control_no_window: control };
  log(`${first}:${second}`, JSON.stringify(res[`${first}:${second}`]));
}
console.log(JSON.stringify(res, null, 1));
if (out) await Deno.writeTextFile(out, JSON.stringify(res, null, 1));
host.destroy();
Deno.exit(0);
