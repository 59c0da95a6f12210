// InferenceEngine through real Deno Web Workers: a TP=2 engine (ranks on two virtual GPUs, all-reduces run by
// the device host) equals a TP=1 engine and HF's greedy runs (fixtures README: identical tokens up to the first
// near-tie); collectiveRpc gathers per rank and names the ranks that fail; the colocate extension refuses
// handles of another GPU (as CUDA-IPC) and its weights check can say "no".
import { COLOCATE_EXTENSION_URL } from '../../src/actors/colocate_extension.ts';
import { DeviceHost } from '../../src/actors/device_host.ts';
import { InferenceEngine } from '../../src/actors/inference_engine.ts';
import { spawnTrainingActor, type WeightHandles } from '../../src/actors/training_actor.ts';
import { Cluster } from '../../src/cluster/cluster.ts';
import { CollectiveRpcError, InvalidInputError } from '../../src/errors.ts';
import { assert, assertEquals, assertRejects, FIXTURES, greedyStepsToCompare, readReference } from './helpers.ts';

const opts = { sanitizeResources: false, sanitizeOps: false };
const TINY = `${FIXTURES}opt-tiny`;

async function setup(gpus: number) {
  const host = await DeviceHost.create();
  const cluster = Cluster.create({ gpus, gpuMemoryBytes: 256 * 2 ** 20, seed: 'engine-test' });
  const pg = cluster.placementGroup(Array.from({ length: gpus }, () => ({ GPU: 1 })));
  await pg.ready();
  return { host, cluster, pg };
}

Deno.test('InferenceEngine: TP=2 on two virtual GPUs equals TP=1 and HF greedy; logprobs within f32 tolerance', opts, async () => {
  const { host, cluster, pg } = await setup(2);
  const { ref } = await readReference('opt-tiny');
  const steps = 10;
  const prompts = ref.prompts.slice(0, 4).map((tokens) => ({ tokens }));
  const tp1 = await InferenceEngine.create({ cluster, host, placementGroup: pg, bundleIndices: [0], gpuMemoryUtilization: 0.3, model: TINY, name: 'tp1' });
  const tp2 = await InferenceEngine.create({ cluster, host, placementGroup: pg, bundleIndices: [0, 1], gpuMemoryUtilization: 0.3, model: TINY, name: 'tp2' });
  try {
    assertEquals(tp2.connections.map((c) => c.virtualGpuUuid), [cluster.gpus[0].uuid, cluster.gpus[1].uuid]);
    const params = { maxTokens: steps, ignoreEos: true, logprobs: 0 };
    const [a, b] = await Promise.all([tp1.generate(prompts, params), tp2.generate(prompts, params)]);
    let maxLp = 0;
    for (let i = 0; i < prompts.length; i++) {
      const n = greedyStepsToCompare(ref.prompt_results[i].greedy_margins.slice(0, steps));
      assertEquals(a[i].tokenIds.slice(0, n), ref.prompt_results[i].greedy.slice(0, n), `TP=1 prompt ${i} vs HF`);
      assertEquals(b[i].tokenIds, a[i].tokenIds, `TP=2 prompt ${i} vs TP=1`);
      a[i].logprobs!.forEach((l, t) => { maxLp = Math.max(maxLp, Math.abs(l.logprob - b[i].logprobs![t].logprob)); });
    }
    console.log(`  TP=2 vs TP=1 through workers: same tokens, max |logprob diff| ${maxLp.toExponential(2)}`);
    assert(maxLp <= 1e-4, `logprobs differ by ${maxLp}`);
  } finally {
    await tp1.terminate();
    await tp2.terminate();
    host.destroy();
  }
});

Deno.test('collectiveRpc: per-rank results in rank order; unknown methods refused; failures name their rank', opts, async () => {
  const { host, cluster, pg } = await setup(2);
  const engine = await InferenceEngine.create({
    cluster, host, placementGroup: pg, bundleIndices: [0, 1], gpuMemoryUtilization: 0.3, model: TINY, name: 'rpc', workerExtension: COLOCATE_EXTENSION_URL,
  });
  const t0 = await spawnTrainingActor({ cluster, host, numGpus: 0.4, placementGroup: pg, bundleIndex: 0, name: 'rpc-trainer-0' });
  const t1 = await spawnTrainingActor({ cluster, host, numGpus: 0.4, placementGroup: pg, bundleIndex: 1, name: 'rpc-trainer-1' });
  try {
    assertEquals(engine.memory.extensionMethods.sort(), ['checkWeightsChanged', 'reportDeviceId', 'updateWeightsFromIpcHandles', 'updateWeightsFromSafetensors']);
    assertEquals(await engine.collectiveRpc('reportDeviceId'), engine.placedDeviceIds);
    const info = await engine.collectiveRpc<{ rank: number; actorId: string; memoryBudgetBytes: number }>('rankInfo');
    assertEquals(info.map((i) => [i.rank, i.actorId]), [[0, 'rpc.rank0'], [1, 'rpc.rank1']]);
    assertEquals(info[0].memoryBudgetBytes, Math.floor(0.4 * 256 * 2 ** 20));
    await assertRejects(() => engine.collectiveRpc('loadModel'), InvalidInputError, 'no rank method "loadModel"');

    // The check can fail: the engine still holds its own weights, not the trainers' zeros.
    for (const t of [t0, t1]) await t.api.createTrainer({ model: TINY });
    assertEquals(await engine.collectiveRpc('checkWeightsChanged'), [false, false]);
    await Promise.all([t0.api.zeroWeights(), t1.api.zeroWeights()]);
    const h0 = await t0.api.exportWeights(), h1 = await t1.api.exportWeights();
    const [u0, u1] = engine.placedDeviceIds;

    // Only GPU 0's handles: rank 1 has nothing to open, and only rank 1 is named.
    const e1 = await assertRejects(() => engine.collectiveRpc('updateWeightsFromIpcHandles', [h0]), CollectiveRpcError) as CollectiveRpcError;
    assertEquals(e1.failures.map((f) => f.rank), [1]);
    assert(e1.message.includes('rank 1') && e1.message.includes(u1), e1.message);
    // GPU 0's handles offered to rank 1 as if they were GPU 1's: opening them fails as CUDA-IPC would.
    const forged: WeightHandles = { [u0]: h0[u0], [u1]: h0[u0] };
    const e2 = await assertRejects(() => engine.collectiveRpc('updateWeightsFromIpcHandles', [forged]), CollectiveRpcError) as CollectiveRpcError;
    assertEquals(e2.failures.map((f) => [f.rank, f.name]), [[1, 'HandleDeviceMismatchError']]);

    const done = await engine.collectiveRpc<{ tensors: number; bytes: number }>('updateWeightsFromIpcHandles', [{ ...h0, ...h1 }]);
    assertEquals(done[0].tensors, done[1].tensors);
    assertEquals(await engine.collectiveRpc('checkWeightsChanged'), [true, true]);
    const [out] = await engine.generate([{ tokens: [2, 45, 99] }], { maxTokens: 3, ignoreEos: true });
    assertEquals(out.tokenIds, [0, 0, 0]);
  } finally {
    await engine.terminate();
    await t0.terminate();
    await t1.terminate();
    host.destroy();
  }
});
