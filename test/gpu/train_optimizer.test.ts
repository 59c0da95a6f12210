// The optimizer alone (no backward pass): fixture gradients in, fixture parameters out, plus CPU references for
// SGD, multi-step AdamW, clipping, windowing, determinism and the NaN guard.
import type { Gpu } from '../../src/gpu/gpu.ts';
import { InvalidInputError, WeightMismatchError } from '../../src/errors.ts';
import { Optimizer, type NamedGpuTensor, type OptimizerConfig } from '../../src/train/optimizer.ts';
import { adamwHyper, adamwReference } from '../../src/train/optimizer_adamw.ts';
import { sgdHyper, sgdReference } from '../../src/train/optimizer_sgd.ts';
import { parseSafetensors } from '../../src/model/weights/safetensors.ts';
import { toFloat32 } from '../../src/model/weights/dtype.ts';
import { allocateArenas, planArenas } from '../../src/model/weight_arena.ts';
import { assert, assertEquals, assertRejects, FIXTURES, maxAbsDiff, randomFloats, testGpu } from './helpers.ts';

type Host = Map<string, { shape: number[]; data: Float32Array }>;

async function readTensors(path: string): Promise<Host> {
  const st = parseSafetensors(await Deno.readFile(path), path);
  return new Map([...st].map(([n, t]) => [n, { shape: t.shape, data: toFloat32(t) }]));
}

async function upload(gpu: Gpu, host: Host, suffix: string): Promise<Map<string, NamedGpuTensor>> {
  const out = new Map<string, NamedGpuTensor>();
  for (const [name, t] of host) {
    const buffer = await gpu.createBuffer(t.data.byteLength, name + suffix);
    gpu.write(buffer, t.data);
    out.set(name, { name, shape: t.shape, buffer });
  }
  return out;
}

async function download(gpu: Gpu, ts: ReadonlyMap<string, NamedGpuTensor>): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [n, t] of ts) out.set(n, new Float32Array(await gpu.read(t.buffer)));
  return out;
}

function release(gpu: Gpu, ...maps: ReadonlyMap<string, NamedGpuTensor>[]): void {
  for (const m of maps) for (const t of m.values()) gpu.destroyBuffer(t.buffer);
}

interface TrainRef {
  grad_l2: Record<string, number>;
  adamw: { hyperparameters: { lr: number; betas: [number, number]; eps: number; weight_decay: number } };
}
async function trainRef(set: string): Promise<TrainRef> {
  return JSON.parse(await Deno.readTextFile(`${FIXTURES}${set}/reference.json`)).train as TrainRef;
}

/** Fixture params + fixture grads -> one AdamW step on the GPU; per-tensor max |diff| vs adamw_step1. */
async function adamwStepOnFixture(set: string, maxBindingBytes?: number) {
  const gpu = await testGpu();
  const model = await readTensors(`${FIXTURES}${set}/model.safetensors`);
  const grads = await readTensors(`${FIXTURES}${set}/grads.safetensors`);
  const want = await readTensors(`${FIXTURES}${set}/adamw_step1.safetensors`);
  const hp = (await trainRef(set)).adamw.hyperparameters;
  // The fixtures' model.safetensors has the same tensors as grads (HF omits the tied head).
  for (const n of model.keys()) if (!grads.has(n)) model.delete(n);
  const params = await upload(gpu, model, '');
  const g = await upload(gpu, grads, '.grad');
  const cfg: OptimizerConfig = { type: 'adamw', lr: hp.lr, betas: hp.betas, eps: hp.eps, weightDecay: hp.weight_decay };
  const opt = await Optimizer.create(gpu, params, g, cfg, { maxBindingBytes });
  opt.record();
  const status = await opt.finish();
  const got = await download(gpu, params);
  const diffs = new Map<string, number>();
  for (const [n, w] of want) diffs.set(n, maxAbsDiff(got.get(n)!, w.data));
  const norms = await opt.readGradNorms();
  opt.release();
  release(gpu, params, g);
  return { status, diffs, got, norms, step: opt.step };
}

for (const set of ['opt-tiny', 'opt-tiny-postln']) {
  Deno.test(`${set}: AdamW step 1 from the fixture gradients matches adamw_step1.safetensors (max |diff| <= 1e-5)`, async () => {
    const { status, diffs, step } = await adamwStepOnFixture(set);
    assert(status.applied && step === 1);
    assertEquals(status.clipCoef, 1);
    const worst = Math.max(...diffs.values());
    const [worstName] = [...diffs].sort((a, b) => b[1] - a[1])[0];
    console.log(`${set} AdamW step 1: max |diff| ${worst.toExponential(2)} (${worstName}) over ${diffs.size} tensors`);
    for (const [n, d] of diffs) assert(d <= 1e-5, `${n}: max |diff| ${d}`);
  });

  Deno.test(`${set}: per-tensor and global gradient norms match the fixture's grad_l2`, async () => {
    const { status, norms } = await adamwStepOnFixture(set);
    const ref = (await trainRef(set)).grad_l2;
    let worst = 0, total = 0;
    for (const [n, r] of Object.entries(ref)) {
      total += r * r;
      // k_proj.bias's gradient is zero in exact arithmetic (softmax is shift invariant): its fixture norm is
      // float64 round-off, ~1e-22, whose square is below f32's smallest normal (1.18e-38) and cannot be summed in
      // f32. Such tensors are checked in absolute terms; every other one relative to its norm.
      if (r * r < 1.18e-38) {
        assert(Math.abs(norms.get(n)! - r) < 1e-19, `${n}: ${norms.get(n)} vs ${r}`);
        continue;
      }
      const rel = Math.abs(norms.get(n)! - r) / r;
      worst = Math.max(worst, rel);
      assert(rel <= 1e-5, `${n}: ${norms.get(n)} vs ${r}`); // the fixture grads are f32 roundings of these
    }
    const globalRel = Math.abs(status.gradNorm - Math.sqrt(total)) / Math.sqrt(total);
    console.log(`${set} grad norms: worst per-tensor rel err ${worst.toExponential(2)}, global ${globalRel.toExponential(2)}`);
    assert(globalRel <= 1e-6, `global norm ${status.gradNorm} vs ${Math.sqrt(total)}`);
  });
}

Deno.test('windowed bindings (16 KiB windows) give bit-identical AdamW results and norms', async () => {
  const whole = await adamwStepOnFixture('opt-tiny');
  const windowed = await adamwStepOnFixture('opt-tiny', 4 * 4096);
  for (const [n, a] of whole.got) assertEquals(maxAbsDiff(a, windowed.got.get(n)!), 0, n);
  for (const [n, a] of whole.norms) assertEquals(windowed.norms.get(n), a, n);
  assertEquals(windowed.status.gradNorm, whole.status.gradNorm);
});

/** Random params/grads for a few odd-sized tensors (not multiples of any chunk). */
function randomSet(seed: number): { params: Host; grads: Host[] } {
  const shapes: Array<[string, number[]]> = [['a', [37, 129]], ['b', [5000]], ['c', [3]], ['d', [9000]]];
  const params: Host = new Map(shapes.map(([n, s], i) => [n, { shape: s, data: randomFloats(s.reduce((x, y) => x * y), seed + i, 0.5) }]));
  const grads = [0, 1, 2].map((k) => new Map(shapes.map(([n, s], i) => [n, { shape: s, data: randomFloats(s.reduce((x, y) => x * y), seed * 31 + 7 * k + i, 0.01 * (k + 1)) }])));
  return { params, grads };
}

function globalNorm(g: Host): number {
  let s = 0;
  for (const t of g.values()) for (const x of t.data) s += x * x;
  return Math.sqrt(s);
}

/** Three steps on the GPU vs the float64 CPU reference, each step with new gradients. */
async function threeSteps(cfg: OptimizerConfig, maxGradNorm?: number) {
  const gpu = await testGpu();
  const { params, grads } = randomSet(11);
  const p = await upload(gpu, params, '');
  const g = await upload(gpu, grads[0], '.grad');
  const opt = await Optimizer.create(gpu, p, g, cfg, { maxGradNorm });
  const ref = new Map([...params].map(([n, t]) => [n, { p: Float64Array.from(t.data), m: new Float64Array(t.data.length), v: new Float64Array(t.data.length) }]));
  const clips: number[] = [];
  for (let t = 1; t <= 3; t++) {
    for (const [n, x] of grads[t - 1]) gpu.write(g.get(n)!.buffer, x.data);
    opt.record();
    const st = await opt.finish();
    const norm = globalNorm(grads[t - 1]);
    assert(Math.abs(st.gradNorm - norm) / norm < 1e-6, `step ${t} norm ${st.gradNorm} vs ${norm}`);
    const clip = maxGradNorm === undefined ? 1 : Math.min(1, maxGradNorm / (norm + 1e-6));
    clips.push(st.clipCoef);
    assert(Math.abs(st.clipCoef - clip) < 1e-6, `step ${t} clip ${st.clipCoef} vs ${clip}`);
    for (const [n, r] of ref) {
      if (cfg.type === 'adamw') adamwReference(r.p, grads[t - 1].get(n)!.data, r.m, r.v, adamwHyper(cfg), t, clip);
      else sgdReference(r.p, grads[t - 1].get(n)!.data, r.m, sgdHyper(cfg), t, clip);
    }
  }
  const got = await download(gpu, p);
  let worst = 0;
  for (const [n, r] of ref) worst = Math.max(worst, maxAbsDiff(got.get(n)!, r.p));
  assertEquals(opt.step, 3);
  opt.release();
  release(gpu, p, g);
  return { worst, clips };
}

Deno.test('AdamW: 3 steps match the float64 reference (bias correction over steps, weight decay)', async () => {
  const { worst } = await threeSteps({ type: 'adamw', lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 });
  console.log(`AdamW 3 steps vs f64 reference: max |diff| ${worst.toExponential(2)}`);
  assert(worst <= 2e-7, `max |diff| ${worst}`);
});

Deno.test('AdamW with clipping: the clip coefficient and parameters match clip_grad_norm_ + AdamW', async () => {
  const { params, grads } = randomSet(11);
  void params;
  const maxNorm = 0.5 * globalNorm(grads[0]);
  const { worst, clips } = await threeSteps({ type: 'adamw', lr: 1e-2, weightDecay: 0.01 }, maxNorm);
  assert(clips[0] < 0.51 && clips[0] > 0.49, `clip ${clips[0]}`);
  assert(worst <= 2e-7, `max |diff| ${worst}`);
});

for (const [label, cfg] of [
  ['plain', { type: 'sgd', lr: 0.1 }],
  ['momentum + dampening + weight decay', { type: 'sgd', lr: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 0.01 }],
  ['Nesterov', { type: 'sgd', lr: 0.05, momentum: 0.8, nesterov: true }],
] as Array<[string, OptimizerConfig]>) {
  Deno.test(`SGD (${label}): 3 steps match the float64 reference`, async () => {
    const { worst } = await threeSteps(cfg);
    console.log(`SGD ${label} 3 steps vs f64 reference: max |diff| ${worst.toExponential(2)}`);
    assert(worst <= 2e-7, `max |diff| ${worst}`);
  });
}

Deno.test('a NaN gradient or NaN loss skips the update: weights and state untouched, step not counted', async () => {
  const gpu = await testGpu();
  const { params, grads } = randomSet(5);
  const p = await upload(gpu, params, '');
  const g = await upload(gpu, grads[0], '.grad');
  const opt = await Optimizer.create(gpu, p, g, { type: 'adamw', lr: 1e-3 });
  opt.record();
  assert((await opt.finish()).applied);
  const before = await download(gpu, p);
  const stateBefore = await download(gpu, opt.state());
  // Poison one gradient element.
  const poisoned = Float32Array.from(grads[1].get('b')!.data);
  poisoned[4321] = NaN;
  gpu.write(g.get('b')!.buffer, poisoned);
  opt.record();
  const st = await opt.finish();
  assert(!st.applied && Number.isNaN(st.gradNorm), `status ${JSON.stringify(st)}`);
  assertEquals(opt.step, 1);
  // Finite gradients but a NaN loss, checked on the GPU.
  gpu.write(g.get('b')!.buffer, grads[1].get('b')!.data);
  const loss = await gpu.createBuffer(16, 'loss');
  gpu.write(loss, Float32Array.of(1, Infinity, 3, 4));
  opt.record({ loss: { buffer: loss, index: 1 } });
  assert(!(await opt.finish()).applied);
  opt.record({ loss: { buffer: loss, index: 0, count: 2 } }); // micro-batch losses: any one non-finite stops it
  assert(!(await opt.finish()).applied);
  const after = await download(gpu, p);
  const stateAfter = await download(gpu, opt.state());
  for (const [n, a] of before) assertEquals(maxAbsDiff(a, after.get(n)!), 0, n);
  for (const [n, a] of stateBefore) assertEquals(maxAbsDiff(a, stateAfter.get(n)!), 0, n);
  // A finite loss at that location lets the step run again, as step 2.
  gpu.write(loss, Float32Array.of(1, 2.5, 3, 4));
  opt.record({ loss: { buffer: loss, index: 0, count: 4 } });
  assert((await opt.finish()).applied);
  assertEquals(opt.step, 2);
  gpu.destroyBuffer(loss);
  opt.release();
  release(gpu, p, g);
});

Deno.test('the gradient norm is deterministic: identical bits over repeated runs', async () => {
  const gpu = await testGpu();
  const { params, grads } = randomSet(9);
  const p = await upload(gpu, params, '');
  const g = await upload(gpu, grads[0], '.grad');
  const opt = await Optimizer.create(gpu, p, g, { type: 'sgd', lr: 0 });
  const seen = new Set<number>();
  for (let i = 0; i < 4; i++) {
    opt.record();
    seen.add((await opt.finish()).gradNorm);
  }
  assertEquals(seen.size, 1);
  opt.release();
  release(gpu, p, g);
});

Deno.test('bad optimizer input: mismatched gradient shapes, missing gradients, bad hyperparameters', async () => {
  const gpu = await testGpu();
  const b = await gpu.createBuffer(64, 'x');
  const p = new Map([['w', { name: 'w', shape: [4, 4], buffer: b }]]);
  await assertRejects(() => Optimizer.create(gpu, p, new Map([['w', { name: 'w', shape: [16], buffer: b }]]), { type: 'sgd', lr: 1 }), WeightMismatchError, 'w');
  await assertRejects(() => Optimizer.create(gpu, p, new Map(), { type: 'sgd', lr: 1 }), WeightMismatchError, 'w has no gradient');
  await assertRejects(() => Optimizer.create(gpu, p, p, { type: 'adamw', lr: 1, betas: [1, 0.999] }), InvalidInputError, 'beta1');
  await assertRejects(() => Optimizer.create(gpu, p, p, { type: 'adamw', lr: NaN }), InvalidInputError, 'lr');
  await assertRejects(() => Optimizer.create(gpu, p, p, { type: 'sgd', lr: 1, nesterov: true }), InvalidInputError, 'Nesterov');
  await assertRejects(() => Optimizer.create(gpu, p, p, { type: 'sgd', lr: 1 }, { maxGradNorm: -1 }), InvalidInputError, 'maxGradNorm');
  gpu.destroyBuffer(b);
});

Deno.test('reset() zeroes the state and the step count: the next step is a fresh step 1', async () => {
  const gpu = await testGpu();
  const { params, grads } = randomSet(3);
  const p = await upload(gpu, params, '');
  const g = await upload(gpu, grads[0], '.grad');
  const cfg: OptimizerConfig = { type: 'adamw', lr: 1e-2, weightDecay: 0.1 };
  const opt = await Optimizer.create(gpu, p, g, cfg);
  for (let i = 0; i < 2; i++) { opt.record(); await opt.finish(); }
  opt.reset();
  assertEquals(opt.step, 0);
  for (const [n, s] of await download(gpu, opt.state())) assert(s.every((x) => x === 0), `${n} not zeroed`);
  const start = await download(gpu, p);
  opt.record();
  await opt.finish();
  const got = await download(gpu, p);
  let worst = 0;
  for (const [n, x] of start) {
    const ref = { p: Float64Array.from(x), m: new Float64Array(x.length), v: new Float64Array(x.length) };
    adamwReference(ref.p, grads[0].get(n)!.data, ref.m, ref.v, adamwHyper(cfg as { type: 'adamw'; lr: number }), 1);
    worst = Math.max(worst, maxAbsDiff(got.get(n)!, ref.p));
  }
  assert(worst <= 2e-7, `max |diff| ${worst}`);
  opt.release();
  release(gpu, p, g);
});

Deno.test('AdamW over parameter arenas (one dispatch per window, padding included) gives the bits of the per-tensor update', async () => {
  const gpu = await testGpu();
  const { params, grads } = randomSet(23); // odd sizes: the arena has padding between tensors
  const names = [...params.keys()];
  /** The same tensors in one arena (and gradients in another of the same layout), as the trainer keeps them. */
  const arenaUpload = async (host: Host, label: string) => {
    const plan = planArenas(names.map((n) => host.get(n)!.data.byteLength), gpu.caps.maxBufferSize);
    const { arenas, groups } = await allocateArenas(gpu, plan, names, label);
    const out = new Map<string, NamedGpuTensor>();
    names.forEach((n, i) => { gpu.write(groups[i], host.get(n)!.data); out.set(n, { name: n, shape: host.get(n)!.shape, buffer: groups[i] }); });
    return { out, arenas };
  };
  const cfg: OptimizerConfig = { type: 'adamw', lr: 1e-2, weightDecay: 0.1 };
  const run = async (arena: boolean, maxBindingBytes?: number) => {
    const pa = arena ? await arenaUpload(params, 'params') : { out: await upload(gpu, params, ''), arenas: [] };
    const ga = arena ? await arenaUpload(grads[0], 'grads') : { out: await upload(gpu, grads[0], '.grad'), arenas: [] };
    const opt = await Optimizer.create(gpu, pa.out, ga.out, cfg, { maxBindingBytes });
    let dispatches = 0;
    for (let t = 0; t < 3; t++) {
      for (const [n, x] of grads[t]) gpu.write(ga.out.get(n)!.buffer, x.data);
      const before = gpu.stats().dispatches;
      opt.record();
      await opt.finish();
      dispatches = gpu.stats().dispatches - before;
    }
    const got = await download(gpu, pa.out);
    const state = await download(gpu, opt.state());
    for (const b of [...pa.arenas, ...ga.arenas]) gpu.destroyBuffer(b);
    if (!arena) release(gpu, pa.out, ga.out);
    opt.release();
    return { got, state, dispatches };
  };
  const perTensor = await run(false);
  for (const window of [undefined, 4 * 4096]) {
    const flat = await run(true, window);
    for (const [n, a] of perTensor.got) assertEquals(maxAbsDiff(a, flat.got.get(n)!), 0, `${n} (window ${window})`);
    for (const [n, a] of perTensor.state) assertEquals(maxAbsDiff(a, flat.state.get(n)!), 0, `${n} (window ${window})`);
    if (window === undefined) assert(flat.dispatches < perTensor.dispatches, `arena: ${flat.dispatches} dispatches vs ${perTensor.dispatches} per tensor`);
  }
});
