// Faults and sleep in the colocate setting, with real Deno Web Workers:
// - a training actor terminated mid-step: the host frees its buffers and invalidates its handles (the engine's
//   update fails with StaleHandleError, named by rank), its placement goes back to the cluster, the engine is
//   unharmed;
// - a rank whose placement the cluster kills: collectiveRpc rejects naming that rank; every placement returns;
// - sleep mode: the memory an engine frees becomes a trainer's through a borrowed placement (budgets are fixed at
//   placement), and the engine's wake-up waits until the trainer gives it back.
import { COLOCATE_EXTENSION_URL } from '../../src/actors/colocate_extension.ts';
import { DeviceHost } from '../../src/actors/device_host.ts';
import { InferenceEngine } from '../../src/actors/inference_engine.ts';
import { spawnTrainingActor } from '../../src/actors/training_actor.ts';
import { Cluster } from '../../src/cluster/cluster.ts';
import { ActorOutOfMemoryError, CollectiveRpcError } from '../../src/errors.ts';
import { assert, assertEquals, assertRejects, FIXTURES } from './helpers.ts';

const opts = { sanitizeResources: false, sanitizeOps: false };
const TINY = `${FIXTURES}opt-tiny`;
const GPU_MEMORY = 256 * 2 ** 20;
const PROMPT = { tokens: [2, 45, 99, 7] };

async function setup(gpus: number) {
  const host = await DeviceHost.create();
  const cluster = Cluster.create({ gpus, gpuMemoryBytes: GPU_MEMORY, seed: 'faults' });
  const pg = cluster.placementGroup(Array.from({ length: gpus }, () => ({ GPU: 1 })));
  await pg.ready();
  return { host, cluster, pg };
}

Deno.test('faults: a training actor terminated mid-step; its handles go stale, its placement returns, the engine is unharmed', opts, async () => {
  const { host, cluster, pg } = await setup(1);
  const engine = await InferenceEngine.create({
    cluster, host, placementGroup: pg, bundleIndices: [0], gpuMemoryUtilization: 0.4, model: TINY, name: 'e', workerExtension: COLOCATE_EXTENSION_URL,
  });
  const trainer = await spawnTrainingActor({ cluster, host, numGpus: 0.4, placementGroup: pg, bundleIndex: 0, name: 't' });
  try {
    await trainer.api.createTrainer({ model: TINY, maxBatchTokens: 64 });
    const handles = await trainer.api.exportWeights();
    const before = (await engine.generate([PROMPT], { maxTokens: 6, ignoreEos: true }))[0].tokenIds;
    const batch = [[2, 45, 99, 7, 11, 12, 13, 14], [2, 8, 9, 10, 11, 300, 301, 302]];
    await trainer.api.startBusyLoop(batch);
    await new Promise((r) => setTimeout(r, 300));
    const busy = host.stats().clients.find((c) => c.actorId === 't')!;
    assert(busy.servedCost > 0 && busy.bytesInUse > 0, 'the trainer was stepping on the GPU');
    await trainer.terminate();

    assertEquals(host.stats().clients.map((c) => c.actorId), ['e.rank0'], 'the host dropped the trainer');
    assertEquals(trainer.placement.state, 'released');
    assertEquals(cluster.actorsOnGpu(cluster.gpus[0].uuid).map((a) => a.name), ['e.rank0'], 'its placement went back');
    const err = await assertRejects(() => engine.collectiveRpc('updateWeightsFromIpcHandles', [handles]), CollectiveRpcError) as CollectiveRpcError;
    assertEquals(err.failures.map((f) => [f.rank, f.name]), [[0, 'StaleHandleError']]);
    assert(err.message.includes('"t"') && err.message.includes('terminated'), err.message);
    // The engine is unharmed: same tokens as before, and a new trainer fits where the old one was.
    assertEquals((await engine.generate([PROMPT], { maxTokens: 6, ignoreEos: true }))[0].tokenIds, before);
    const again = await spawnTrainingActor({ cluster, host, numGpus: 0.4, placementGroup: pg, bundleIndex: 0, name: 't2' });
    await again.terminate();
  } finally {
    await engine.terminate();
    await trainer.terminate();
    host.destroy();
  }
});

Deno.test('faults: a rank killed by the cluster makes collectiveRpc reject naming it; every placement returns', opts, async () => {
  const { host, cluster, pg } = await setup(2);
  const engine = await InferenceEngine.create({
    cluster, host, placementGroup: pg, bundleIndices: [0, 1], gpuMemoryUtilization: 0.4, model: TINY, name: 'k', workerExtension: COLOCATE_EXTENSION_URL,
  });
  try {
    assertEquals((await engine.collectiveRpc('checkWeightsChanged')).length, 2);
    engine.placements[1].kill('test');
    await new Promise((r) => setTimeout(r, 50));
    const err = await assertRejects(() => engine.collectiveRpc('checkWeightsChanged'), CollectiveRpcError) as CollectiveRpcError;
    const rank1 = err.failures.find((f) => f.rank === 1);
    assert(rank1 && rank1.message.includes('killed'), err.message);
    // The device host ends the whole tensor-parallel group with it (rank 0 would wait at its next all-reduce).
    assert(err.failures.every((f) => f.message.includes('rank 1')), err.message);
    assertEquals(host.stats().clients.length, 0);
    await engine.terminate();
    assertEquals(cluster.actors().length, 0);
    assertEquals(engine.placements.map((p) => p.state), ['released', 'killed']);
  } finally {
    await engine.terminate();
    host.destroy();
  }
});

Deno.test('sleep: the memory an engine frees becomes a trainer\'s (borrowed placement); wake-up waits for it back', opts, async () => {
  const { host, cluster, pg } = await setup(1);
  const engine = await InferenceEngine.create({ cluster, host, placementGroup: pg, bundleIndices: [0], gpuMemoryUtilization: 0.4, model: TINY, name: 's' });
  const trainer = await spawnTrainingActor({ cluster, host, numGpus: 0.4, placementGroup: pg, bundleIndex: 0, name: 'st' });
  try {
    await trainer.api.createTrainer({ model: TINY, maxBatchTokens: 64 });
    const want = (await engine.generate([PROMPT], { maxTokens: 6, ignoreEos: true }))[0].tokenIds;
    const share = Math.floor(0.4 * GPU_MEMORY);
    const own = await trainer.api.memory();
    assertEquals(own.budgetBytes, share);
    const big = own.budgetBytes - own.bytesInUse + 2 ** 20; // 1 MiB more than the trainer's own budget has left
    // Awake, the engine holds its 0.4: the trainer's own budget cannot take `big` more, and no share is free.
    await assertRejects(() => trainer.api.allocateScratch(big), ActorOutOfMemoryError, '"st"');
    let borrowed = false;
    const loan = trainer.borrow(0.4).then((r) => { borrowed = true; return r; });
    await new Promise((r) => setTimeout(r, 100));
    assert(!borrowed, 'a third 0.4 share does not fit the bundle while the engine is awake');

    const freed = await engine.sleep(1);
    const engineBytes = host.stats().clients.find((c) => c.actorId === 's.rank0')!.bytesInUse;
    console.log(`  engine slept: freed ${(freed / 1e6).toFixed(1)} MB (holds ${engineBytes} bytes); loan budget ${(await loan).memoryBudgetBytes}`);
    assert(freed >= 0.9 * share, `the engine freed ${freed} of its ${share}-byte share`);
    assertEquals((await loan).memoryBudgetBytes, share);
    const got = await trainer.api.allocateScratch(big);
    assertEquals(got.pool, 'borrowed');
    const data = Uint8Array.from({ length: 4096 }, (_, i) => i % 251);
    assertEquals(await trainer.api.roundTrip(got.buffer, data), data, 'the trainer reads and writes the borrowed memory');
    assertEquals(host.stats().clients.find((c) => c.actorId === 'st.borrowed')!.bytesInUse, Math.ceil(big / 16) * 16);

    // Waking needs the share back: pending until the trainer returns it.
    let awake = false;
    const waking = engine.wakeUp().then(() => { awake = true; });
    await new Promise((r) => setTimeout(r, 100));
    assert(!awake, 'the engine cannot wake while its share is lent');
    await trainer.giveBack();
    await waking;
    assertEquals(host.stats().clients.map((c) => c.actorId).sort(), ['s.rank0', 'st']);
    assertEquals((await engine.generate([PROMPT], { maxTokens: 6, ignoreEos: true }))[0].tokenIds, want, 'same output after the sleep');
  } finally {
    await engine.terminate();
    await trainer.terminate();
    host.destroy();
  }
});
