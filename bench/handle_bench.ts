/**
 * Weight sync by handles, end to end: a trainer actor's weights of OPT-125m (synthetic) copied into an engine
 * actor's weights on the same virtual GPU, both RemoteGpu actors of one device host:
 *   per-tensor  trainer exports one handle per tensor; the engine opens them (one request) and copies each on the GPU
 *   packed      trainer exports one handle to its weight arena plus an index (zero-copy); the engine opens it and,
 *               its arena having the same layout, copies everything with one copy
 *   packed-cached  the same with the handle exported and opened once (what repeated syncs of the colocate
 *               extension do): each sync is the copy alone
 *   cpu-staging trainer reads every tensor back to the CPU (map), the engine writes them (no handles)
 *   flat-copy   the floor (the peer): one device-to-device copy of all parameter bytes on the host's own device
 * For each, two times from the start: `submitted_ms` (the host has run the engine's last copy command: any later
 * work on the device sees the new weights) and `done_ms` (the GPU has finished; in Deno any GPU->CPU wait costs
 * ~10 ms however small, DESIGN.md). Medians of --reps runs; the engine's weights are checked equal to the
 * trainer's after every variant. Issue 5's target: <= 3 ms end to end.
 *
 * Usage: deno run -A --unstable-webgpu bench/handle_bench.ts [--model synthetic:opt-125m:1] [--reps 10] [--out FILE]
 * On lavapipe (no GPU) prove it runs with a small model:
 *   bash scripts/deno.sh run -A --unstable-webgpu bench/handle_bench.ts --model ../shared/fixtures/opt-tiny --reps 3
 */
import { DeviceHost } from '../src/actors/device_host.ts';
import { closeTensors, copyIntoWeights, exportPackedHandles, exportTensorHandles, openTensors, weightTensors } from '../src/actors/handles.ts';
// Both actors hold their weights in arenas of the same layout (src/model/weight_arena.ts), as a trainer and an engine do.
import { RemoteGpu } from '../src/gpu/remote.ts';
import { parseOptConfig } from '../src/model/config.ts';
import { type OptGpuWeights, uploadWeights } from '../src/model/gpu_weights.ts';
import { loadCheckpoint } from '../src/model/weights/sources.ts';

const arg = (n: string, d: string) => { const i = Deno.args.indexOf(`--${n}`); return i >= 0 ? Deno.args[i + 1] : d; };
const model = arg('model', 'synthetic:opt-125m:1');
const reps = Number(arg('reps', '10'));

const host = await DeviceHost.create();
const connect = (actorId: string) => RemoteGpu.connect(host.attach({ actorId, virtualGpuUuid: 'GPU-0', weight: 0.4 }).port);
const trainer = await connect('trainer-0'), engine = await connect('engine-0');
const ckpt = await loadCheckpoint(model);
const config = parseOptConfig(ckpt.configJson);
const tw = await uploadWeights(trainer, config, ckpt.tensors, 'f32');
// The engine starts from other weights (scaled by -1) so a sync that copies nothing cannot pass the check.
const negated = new Map([...ckpt.tensors].map(([n, t]) => {
  const f = new Float32Array(t.bytes.buffer.slice(t.bytes.byteOffset, t.bytes.byteOffset + t.bytes.byteLength)).map((x) => -x - 1);
  return [n, { ...t, bytes: new Uint8Array(f.buffer) }];
}));
if ([...ckpt.tensors.values()].some((t) => t.dtype !== 'F32')) throw new Error('handle_bench expects an f32 checkpoint');
const ew = await uploadWeights(engine, config, negated, 'f32');
await trainer.sync();
await engine.sync();
const tensors = weightTensors(tw);
const totalBytes = [...tw.locations.values()].reduce((s, l) => s + l.byteLength, 0);

/** Make the engine's weights differ again, then after the sync check every tensor equals the trainer's. */
async function scramble(w: OptGpuWeights) {
  for (const loc of w.locations.values()) engine.write(loc.buffer, new Uint8Array(Math.min(loc.byteLength, 64)).fill(0xab), loc.byteOffset);
  await engine.sync();
}
async function check(variant: string) {
  for (const [name, loc] of ew.locations) {
    const t = tw.locations.get(name)!;
    const [a, b] = await Promise.all([trainer.read(t.buffer, t.byteOffset, t.byteLength), engine.read(loc.buffer, loc.byteOffset, loc.byteLength)]);
    const x = new Uint32Array(a), y = new Uint32Array(b);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) throw new Error(`${variant}: ${name}[${i}] differs after the sync`);
  }
}

type Timed = { submitted: number; done: number };
let copies = 0;
/** packed-cached: ms to record the copies (CPU), before the round trip to the host. */
const recorded: number[] = [];
let cached: Awaited<ReturnType<typeof openTensors>> | undefined;
const variants: Record<string, () => Promise<Timed>> = {
  'per-tensor': async () => {
    const t0 = performance.now();
    const exported = await exportTensorHandles(trainer, tensors);
    const opened = await openTensors(engine, exported);
    copies = copyIntoWeights(engine, opened, ew).copies;
    closeTensors(engine, opened);
    await engine.executed();
    const submitted = performance.now() - t0;
    await engine.sync();
    return { submitted, done: performance.now() - t0 };
  },
  packed: async () => {
    const t0 = performance.now();
    const exported = await exportPackedHandles(trainer, tensors);
    const opened = await openTensors(engine, exported);
    copies = copyIntoWeights(engine, opened, ew).copies;
    closeTensors(engine, opened);
    await engine.executed();
    const submitted = performance.now() - t0;
    await engine.sync();
    return { submitted, done: performance.now() - t0 };
  },
  'packed-cached': async () => {
    cached ??= await openTensors(engine, await exportPackedHandles(trainer, tensors));
    const t0 = performance.now();
    copies = copyIntoWeights(engine, cached, ew).copies;
    recorded.push(performance.now() - t0);
    await engine.executed();
    const submitted = performance.now() - t0;
    await engine.sync();
    return { submitted, done: performance.now() - t0 };
  },
  'cpu-staging': async () => {
    const t0 = performance.now();
    const names = [...ew.locations.keys()];
    const data = await Promise.all(names.map((n) => { const l = tw.locations.get(n)!; return trainer.read(l.buffer, l.byteOffset, l.byteLength); }));
    names.forEach((n, i) => { const l = ew.locations.get(n)!; engine.write(l.buffer, new Uint8Array(data[i]), l.byteOffset); });
    engine.flush();
    await engine.executed();
    const submitted = performance.now() - t0;
    await engine.sync();
    return { submitted, done: performance.now() - t0 };
  },
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const res: Record<string, unknown> = { model, reps, parameter_bytes: totalBytes, tensors: tw.locations.size, adapter: host.gpu.caps.adapterDescription };
for (const [name, run] of Object.entries(variants)) {
  const runs: Timed[] = [];
  copies = 0;
  for (let r = 0; r <= reps; r++) {
    await scramble(ew);
    const t = await run();
    if (r > 0) runs.push(t); // the first run is a warm-up (pipelines, staging buffers)
    await check(name);
  }
  res[name] = { submitted_ms: +median(runs.map((t) => t.submitted)).toFixed(3), done_ms: +median(runs.map((t) => t.done)).toFixed(3), copies };
  if (name === 'packed-cached') (res[name] as Record<string, number>).record_ms = +median(recorded.slice(1)).toFixed(3);
  console.error(name, res[name]);
}
{
  // The floor: one flat copy of every parameter byte, directly on the device.
  const g = host.gpu;
  const size = Math.ceil(totalBytes / 4) * 4;
  const [a, b] = [await g.createBuffer(size, 'flat.src'), await g.createBuffer(size, 'flat.dst')];
  const runs: Timed[] = [];
  for (let r = 0; r <= reps; r++) {
    const t0 = performance.now();
    g.copy(a, 0, b, 0, size);
    g.flush();
    const submitted = performance.now() - t0;
    await g.sync();
    if (r > 0) runs.push({ submitted, done: performance.now() - t0 });
  }
  res['flat-copy'] = { submitted_ms: +median(runs.map((t) => t.submitted)).toFixed(3), done_ms: +median(runs.map((t) => t.done)).toFixed(3) };
  console.error('flat-copy', res['flat-copy']);
  // What a GPU->CPU wait alone costs here (subtract it from done_ms to see the sync's own cost).
  const idle: number[] = [];
  for (let r = 0; r < reps; r++) { const t0 = performance.now(); await g.sync(); idle.push(performance.now() - t0); }
  res['empty-sync_ms'] = +median(idle).toFixed(3);
  g.destroyBuffer(a);
  g.destroyBuffer(b);
}
console.log(JSON.stringify(res, null, 1));
const out = arg('out', '');
if (out) await Deno.writeTextFile(out, JSON.stringify(res, null, 1));
trainer.destroy();
engine.destroy();
host.destroy();
Deno.exit(0);
