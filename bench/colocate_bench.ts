/**
 * Weight sync in the colocate setting, end to end through the actors: a TrainingActor worker (OPT-125m,
 * synthetic) hands its parameters to an InferenceEngine worker on the same virtual GPU(s), one call each:
 *   per-tensor   trainer.exportWeights()               + engine.collectiveRpc('updateWeightsFromIpcHandles')
 *   packed       trainer.exportWeights({packed: true}) + the same (one handle to the trainer's parameter arena;
 *                the engine's arena has the same layout: one copy per rank at TP 1)
 *   cpu-staging  trainer.saveWeights() (GPU -> CPU)     + engine.collectiveRpc('updateWeightsFromSafetensors')
 *   flat-copy    the floor (the peer's): one device-to-device copy of every parameter byte, on the host's device
 * `ms`: from the export call until the engine's ranks return — the copies are queued on the device, ordered
 * before any later work of any actor (the sync's contract; no completion wait: in Deno any GPU->CPU wait costs
 * ~11 ms however small, `empty-sync_ms`). `first_use_added_ms`: what the sync adds to the engine's next
 * result — median(sync + a 1-token generate) minus median(the same generate alone) — so the GPU's time for
 * the copies counts too, and the readback floor both include cancels out.
 * Engines with tensorParallelSize 1 and 2 (ranks on two virtual GPUs, two trainers as in the scenario).
 * Medians of --reps runs after one warm-up; after every variant, checkWeightsChanged(handles) verifies the
 * engine holds exactly the trainers' weights, and the trainers' weights are perturbed (one SGD step) between
 * runs so a sync that copies nothing cannot pass. Issue 5's target: <= 3 ms by handles.
 *
 * Usage (unbundled, in a checkout):
 *   deno run -A --unstable-webgpu bench/colocate_bench.ts [--model synthetic:opt-125m:1] [--reps 10] [--tp 1,2] [--gpu-memory-gb 4] [--out FILE]
 * Bundled for the GPU machine (workers and the extension are modules of their own):
 *   for f in training_worker engine_worker colocate_extension; do deno bundle -o .gpu/$f.js src/actors/$f.ts; done
 *   deno bundle -o .gpu/colocate_bench.js bench/colocate_bench.ts
 *   deno run -A --unstable-webgpu .gpu/colocate_bench.js --worker-dir .gpu
 * On lavapipe (no GPU), prove it runs: ... bench/colocate_bench.ts --model ../shared/fixtures/opt-tiny --reps 2 --gpu-memory-gb 0.25
 */
import { DeviceHost } from '../src/actors/device_host.ts';
import { COLOCATE_EXTENSION_URL } from '../src/actors/colocate_extension.ts';
import { InferenceEngine } from '../src/actors/inference_engine.ts';
import { type PlacedTrainingActor, spawnTrainingActor, type WeightHandles } from '../src/actors/training_actor.ts';
import { Cluster } from '../src/cluster/cluster.ts';

const arg = (n: string, d: string) => { const i = Deno.args.indexOf(`--${n}`); return i >= 0 ? Deno.args[i + 1] : d; };
const model = arg('model', 'synthetic:opt-125m:1');
const reps = Number(arg('reps', '10'));
const gpuMemoryBytes = Math.round(Number(arg('gpu-memory-gb', '4')) * 2 ** 30);
const tps = arg('tp', '1,2').split(',').map(Number);
const dir = arg('worker-dir', '');
const workerUrls = dir
  ? {
    training: new URL(`${dir}/training_worker.js`, `file://${Deno.cwd()}/`).href,
    engine: new URL(`${dir}/engine_worker.js`, `file://${Deno.cwd()}/`).href,
    extension: new URL(`${dir}/colocate_extension.js`, `file://${Deno.cwd()}/`).href + '#ColocateWorkerExtension',
  }
  : undefined;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const log = (...a: unknown[]) => console.error(...a);

const host = await DeviceHost.create();
const res: Record<string, unknown> = { model, reps, adapter: host.gpu.caps.adapterDescription, date: new Date().toISOString() };
log('adapter', host.gpu.caps.adapterDescription);

for (const tp of tps) {
  const cluster = Cluster.create({ gpus: tp, gpuMemoryBytes, seed: 'bench' });
  const pg = cluster.placementGroup(Array.from({ length: tp }, () => ({ GPU: 1 })));
  await pg.ready();
  const trainers: PlacedTrainingActor[] = [];
  for (let r = 0; r < tp; r++) {
    trainers.push(await spawnTrainingActor({ cluster, host, numGpus: 0.4, placementGroup: pg, bundleIndex: r, name: `trainer-${r}`, workerUrl: workerUrls?.training }));
  }
  const info = await Promise.all(trainers.map((t) => t.api.createTrainer({ model, maxBatchTokens: 64, optimizer: { type: 'sgd', lr: 1e-4 } })));
  const engine = await InferenceEngine.create({
    cluster, host, placementGroup: pg, bundleIndices: Array.from({ length: tp }, (_, r) => r), gpuMemoryUtilization: 0.4, model,
    workerExtension: workerUrls?.extension ?? COLOCATE_EXTENSION_URL, workerUrl: workerUrls?.engine, engineOptions: { maxNumSeqs: 8 },
  });
  const batch = [[2, 100, 200, 300, 400, 50, 60, 70]];
  const perturb = () => Promise.all(trainers.map((t) => t.api.step(batch)));
  const gather = async (packed: boolean): Promise<WeightHandles> => Object.assign({}, ...await Promise.all(trainers.map((t) => t.api.exportWeights({ packed }))));
  const variants: Record<string, () => Promise<void>> = {
    'per-tensor': async () => { await engine.collectiveRpc('updateWeightsFromIpcHandles', [await gather(false)]); },
    packed: async () => { await engine.collectiveRpc('updateWeightsFromIpcHandles', [await gather(true)]); },
    'cpu-staging': async () => { await engine.collectiveRpc('updateWeightsFromSafetensors', [await trainers[0].api.saveWeights()]); },
  };
  const out: Record<string, unknown> = { parameter_bytes: info[0].parameterBytes, tensors: info[0].parameters };
  const firstUse = () => engine.generate([{ tokens: [2, 100, 200, 300] }], { maxTokens: 1, ignoreEos: true });
  const alone: number[] = [];
  for (let r = 0; r <= reps; r++) {
    await perturb();
    const t0 = performance.now();
    await firstUse();
    if (r > 0) alone.push(performance.now() - t0);
  }
  out['generate-1-token_ms'] = +median(alone).toFixed(3);
  for (const [name, run] of Object.entries(variants)) {
    const times: number[] = [], withUse: number[] = [], copies: number[] = [];
    for (let r = 0; r <= reps; r++) {
      await perturb();
      const t0 = performance.now();
      await run();
      const t1 = performance.now();
      await firstUse();
      if (r > 0) { times.push(t1 - t0); withUse.push(performance.now() - t0); }
    }
    const split: Record<string, number> = {};
    if (name !== 'cpu-staging') {
      // One more sync, timed by parts: gathering the handles (a round trip to each trainer), then the engine's
      // RPC, and inside each rank: opening (cached), recording the copies, the device host queueing them.
      const g0 = performance.now();
      const h = await gather(name === 'packed');
      const g1 = performance.now();
      const res = await engine.collectiveRpc<{ copies: number; ms: Record<string, number> }>('updateWeightsFromIpcHandles', [h]);
      Object.assign(split, { gather: g1 - g0, rpc: performance.now() - g1 });
      for (const [k, v] of Object.entries(res[0].ms)) split[`rank0_${k}`] = v;
      copies.push(...res.map((x) => x.copies));
      for (const k of Object.keys(split)) split[k] = +split[k].toFixed(3);
    }
    const ok = (await engine.collectiveRpc<boolean>('checkWeightsChanged', [await gather(false)])).every(Boolean);
    if (!ok) throw new Error(`tp ${tp} ${name}: the engine's weights differ from the trainers' after the sync`);
    out[name] = {
      ms: +median(times).toFixed(3), min_ms: +Math.min(...times).toFixed(3),
      first_use_added_ms: +(median(withUse) - median(alone)).toFixed(3), copies_per_rank: copies, one_sync_split_ms: split,
    };
    log(`tp ${tp}`, name, out[name]);
  }
  res[`tp${tp}`] = out;
  await engine.terminate();
  for (const t of trainers) await t.terminate();
}
{
  // The floor: one flat copy of every parameter byte on the host's device, and what an empty GPU wait costs.
  const bytes = Math.ceil(((res[`tp${tps[0]}`] as { parameter_bytes: number }).parameter_bytes) / 4) * 4;
  const g = host.gpu;
  const [a, b] = [await g.createBuffer(bytes, 'flat.src'), await g.createBuffer(bytes, 'flat.dst')];
  const times: number[] = [], idle: number[] = [];
  for (let r = 0; r <= reps; r++) {
    const t0 = performance.now();
    g.copy(a, 0, b, 0, bytes);
    g.flush();
    await g.sync();
    if (r > 0) times.push(performance.now() - t0);
  }
  for (let r = 0; r < reps; r++) { const t0 = performance.now(); await g.sync(); idle.push(performance.now() - t0); }
  res['flat-copy'] = { ms: +median(times).toFixed(3), bytes };
  res['empty-sync_ms'] = +median(idle).toFixed(3);
  log('flat-copy', res['flat-copy'], 'empty sync', res['empty-sync_ms']);
  g.destroyBuffer(a);
  g.destroyBuffer(b);
}
console.log(JSON.stringify(res, null, 1));
const outFile = arg('out', '');
if (outFile) await Deno.writeTextFile(outFile, JSON.stringify(res, null, 1));
host.destroy();
Deno.exit(0);
