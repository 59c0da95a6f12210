// Megatron-style tensor parallelism on one device (src/model/tensor_parallel.ts, src/gpu/tensor_parallel_group.ts):
// the ranks' logits against HF's float64 reference (same tolerance as TP=1) and against TP=1 itself.
import { ActorDisconnectedError, ConfigError } from '../../src/errors.ts';
import { DeviceHost } from '../../src/actors/device_host.ts';
import { RemoteGpu } from '../../src/gpu/remote.ts';
import { closeTensors, copyIntoWeights, exportHandles, openTensors, weightTensors } from '../../src/actors/handles.ts';
import type { Checkpoint } from '../../src/model/weights/types.ts';
import { uploadWeights } from '../../src/model/gpu_weights.ts';
import { parseOptConfig } from '../../src/model/config.ts';
import { copyFullIntoShard } from '../../src/model/tensor_parallel.ts';
import { OptModel } from '../../src/model/opt.ts';
import { TensorParallelOptModel } from '../../src/model/tensor_parallel_model.ts';
import { LLMEngine } from '../../src/engine/llm_engine.ts';
import { loadCheckpoint } from '../../src/model/weights/sources.ts';
import { assert, assertEquals, assertRejects, FIXTURES, greedyStepsToCompare, maxAbsDiff, readReference, testGpu } from './helpers.ts';

for (const [set, sizes] of [['opt-tiny', [2, 4]], ['opt-tiny-postln', [3]]] as const) {
  Deno.test(`${set}: tensor-parallel logits (TP=${sizes.join(', ')}) match HF and TP=1`, async () => {
    const gpu = await testGpu();
    const { ref, tensors } = await readReference(set);
    const single = await OptModel.load(gpu, `${FIXTURES}${set}`, { dtype: 'f32' });
    for (const size of sizes) {
      const tp = await TensorParallelOptModel.load(gpu, `${FIXTURES}${set}`, { dtype: 'f32', size });
      let vsRef = 0, vsSingle = 0;
      for (let i = 0; i < ref.prompts.length; i++) {
        const got = await tp.logits(ref.prompts[i]);
        vsRef = Math.max(vsRef, maxAbsDiff(got, tensors(`p${i}.logits`)!));
        vsSingle = Math.max(vsSingle, maxAbsDiff(got, await single.logits(ref.prompts[i])));
      }
      console.log(`  ${set} TP=${size}: max |diff| vs HF ${vsRef.toExponential(2)}, vs TP=1 ${vsSingle.toExponential(2)}; ${tp.group.collectives} all-reduces`);
      assert(vsRef <= 1e-4, `TP=${size} logits differ from HF by ${vsRef}`);
      assert(vsSingle <= 1e-5, `TP=${size} logits differ from TP=1 by ${vsSingle}`);
      assert(tp.group.collectives > 0, 'no all-reduce ran');
      tp.release();
    }
    single.release();
  });
}

Deno.test('tensor parallelism: a size that does not divide the heads is a ConfigError naming both', async () => {
  const gpu = await testGpu();
  await assertRejects(() => TensorParallelOptModel.load(gpu, `${FIXTURES}opt-tiny`, { size: 3 }), ConfigError, 'does not divide');
});

Deno.test('engine with tensorParallelSize 2: greedy tokens of every fixture prompt, batched, equal TP=1 and HF; sleep, wake and updateWeights act on every rank', async () => {
  const gpu = await testGpu();
  const { ref } = await readReference('opt-tiny');
  const opts = { numBlocks: 64, blockSize: 16, maxNumSeqs: 8, numLookaheadTokens: 7 };
  const single = await LLMEngine.create(gpu, `${FIXTURES}opt-tiny`, opts);
  const tp = await LLMEngine.create(gpu, `${FIXTURES}opt-tiny`, { ...opts, tensorParallelSize: 2 });
  assertEquals(tp.ranks.length, 2);
  assertEquals(tp.runner.cache.bytes * 2, single.runner.cache.bytes, 'each rank holds half of the KV cache');
  const maxTokens = Math.max(...ref.prompt_results.map((r) => r.greedy.length));
  const params = { maxTokens, ignoreEos: true };
  const want = await single.generate(ref.prompts, params);
  const got = await tp.generate(ref.prompts, params);
  for (let i = 0; i < ref.prompts.length; i++) {
    const n = greedyStepsToCompare(ref.prompt_results[i].greedy_margins);
    assertEquals(got[i].tokenIds.slice(0, n), ref.prompt_results[i].greedy.slice(0, n), `prompt ${i} vs HF`);
    assertEquals(got[i].tokenIds, want[i].tokenIds, `prompt ${i} vs TP=1`);
  }
  assert(tp.tpGroup!.collectives > 0);
  // Sleep level 1 gathers the shards to the host; waking re-shards them: the same tokens after.
  await tp.sleep(1);
  await tp.wakeUp();
  assertEquals((await tp.generate([ref.prompts[0]], params))[0].tokenIds, want[0].tokenIds, 'after sleep(1) + wakeUp');
  // Zeroing a row-split (fc1) and a column-split (fc2) tensor on every rank changes the output as it does TP=1's.
  const ckpt = await loadCheckpoint(`${FIXTURES}opt-tiny`);
  const zero = (name: string) => {
    const t = ckpt.tensors.get(name)!;
    return [name, { ...t, bytes: new Uint8Array(t.bytes.byteLength) }] as [string, typeof t];
  };
  const update = [zero('model.decoder.layers.0.fc1.weight'), zero('model.decoder.layers.1.fc2.weight')];
  single.updateWeights(update);
  tp.updateWeights(update);
  const a = await single.generate([ref.prompts[1]], params), b = await tp.generate([ref.prompts[1]], params);
  assertEquals(b[0].tokenIds, a[0].tokenIds, 'after updateWeights');
  assert(a[0].tokenIds.join() !== want[1].tokenIds.join(), 'the update changed the output');
});

Deno.test('tensor parallelism across device-host actors: two RemoteGpu ranks on their own virtual GPUs all-reduce through the host and generate what TP=1 does; losing a rank detaches its peer', { sanitizeResources: false, sanitizeOps: false }, async () => {
  const host = await DeviceHost.create();
  const { ref } = await readReference('opt-tiny');
  const opts = { numBlocks: 64, blockSize: 16, maxNumSeqs: 8, numLookaheadTokens: 7 };
  const params = { maxTokens: 12, ignoreEos: true };
  const single = await LLMEngine.create(host.gpu, `${FIXTURES}opt-tiny`, opts);
  const want = await single.generate(ref.prompts, params);
  const ranks = await Promise.all([0, 1].map((rank) => RemoteGpu.connect(host.attach({
    actorId: `engine-0-rank-${rank}`, virtualGpuUuid: `GPU-${rank}`, memoryBudgetBytes: 64 << 20, tensorParallel: { group: 'engine-0', rank, size: 2 },
  }).port)));
  const tp = await LLMEngine.create(ranks[0], `${FIXTURES}opt-tiny`, { ...opts, tensorParallelGpus: ranks });
  const got = await tp.generate(ref.prompts, params);
  for (let i = 0; i < ref.prompts.length; i++) assertEquals(got[i].tokenIds, want[i].tokenIds, `prompt ${i}`);
  const perRank = host.stats().clients.filter((c) => c.actorId.startsWith('engine-0-rank-'));
  assertEquals(perRank.length, 2);
  assert(perRank.every((c) => c.bytesInUse > 0 && c.bytesInUse <= 64 << 20), 'each rank allocates within its own budget');
  // A rank alone is not an engine: detaching rank 1 detaches rank 0, whose next call fails with a typed error.
  host.detach(host.stats().clients.find((c) => c.actorId === 'engine-0-rank-1')!.clientId, 'was terminated');
  assertEquals(host.stats().clients.filter((c) => c.actorId.startsWith('engine-0-rank-')).length, 0);
  await assertRejects(() => tp.generate([ref.prompts[0]], params), ActorDisconnectedError, 'engine-0');
  host.destroy();
});

Deno.test('weight sync by handles into tensor-parallel ranks: each rank copies its shard of a full f32 tensor (and f16 engines convert)', { sanitizeResources: false, sanitizeOps: false }, async () => {
  const host = await DeviceHost.create();
  const { ref } = await readReference('opt-tiny');
  const params = { maxTokens: 10, ignoreEos: true };
  const ckpt = await loadCheckpoint(`${FIXTURES}opt-tiny`);
  // The "trainer": an actor holding the real weights in an arena (as a Trainer does), exported per tensor and packed.
  const trainer = await RemoteGpu.connect(host.attach({ actorId: 'trainer-0', virtualGpuUuid: 'GPU-0' }).port);
  const refs = weightTensors(await uploadWeights(trainer, parseOptConfig(ckpt.configJson), ckpt.tensors, 'f32'));
  await trainer.sync();
  const want = await (await LLMEngine.create(host.gpu, ckpt, { numBlocks: 32 })).generate(ref.prompts, params);
  for (const packed of [false, true]) {
    const exported = await exportHandles(trainer, refs, { packed });
    const ranks = await Promise.all([0, 1].map((rank) => RemoteGpu.connect(host.attach({
      actorId: `engine-rank-${rank}-${packed}`, virtualGpuUuid: 'GPU-0', tensorParallel: { group: `e-${packed}`, rank, size: 2 },
    }).port)));
    // Engines start from zeros (vLLM colocate's engines load dummy weights); the sync must make them the model.
    const zeros: Checkpoint = { ...ckpt, tensors: new Map([...ckpt.tensors].map(([n, t]) => [n, { ...t, bytes: new Uint8Array(t.bytes.byteLength) }])) };
    const engine = await LLMEngine.create(ranks[0], zeros, { numBlocks: 32, tensorParallelGpus: ranks });
    for (const [r, rank] of engine.ranks.entries()) {
      const opened = await openTensors(ranks[r], exported);
      const { copies } = copyIntoWeights(rank.gpu, opened, rank.weights);
      // Packed, every shard copy of the rank is one dispatch (copy_segments); per tensor, one command each.
      if (packed) assertEquals(copies, 1, 'packed: one dispatch per rank');
      else assert(copies > 1, `per tensor: ${copies} commands`);
      await ranks[r].sync();
      closeTensors(ranks[r], opened);
    }
    engine.kv.resetPrefixCache();
    const got = await engine.generate(ref.prompts, params);
    for (let i = 0; i < ref.prompts.length; i++) assertEquals(got[i].tokenIds, want[i].tokenIds, `packed=${packed} prompt ${i}`);
  }
  if (host.gpu.caps.shaderF16) {
    // An f16 engine (TP=1) converts the f32 tensors on the GPU as it copies them.
    const exported = await exportHandles(trainer, refs, {});
    const g = await RemoteGpu.connect(host.attach({ actorId: 'engine-f16', virtualGpuUuid: 'GPU-0' }).port);
    const m = await OptModel.load(g, { ...ckpt, tensors: new Map([...ckpt.tensors].map(([n, t]) => [n, { ...t, bytes: new Uint8Array(t.bytes.byteLength) }])) }, { dtype: 'f16' });
    const opened = await openTensors(g, exported);
    copyIntoWeights(g, opened, m.weights);
    const direct = await OptModel.load(host.gpu, ckpt, { dtype: 'f16' });
    assertEquals(Array.from(await m.logits(ref.prompts[0])), Array.from(await direct.logits(ref.prompts[0])), 'f16 engine synced from f32 handles');
  }
  host.destroy();
});

Deno.test('copyFullIntoShard binds its source in windows under the binding limit: same bytes as one window', async () => {
  const gpu = await testGpu();
  const ckpt = await loadCheckpoint(`${FIXTURES}opt-tiny`);
  // A view of the device whose binding limit is 4 KiB, so every tensor below takes several windows.
  const narrow = Object.create(gpu, { caps: { value: { ...gpu.caps, maxStorageBindingSize: 4096 } } }) as typeof gpu;
  const names = ['model.decoder.layers.0.self_attn.out_proj.weight', 'model.decoder.layers.1.fc2.weight', 'model.decoder.embed_tokens.weight'];
  for (const dtype of gpu.caps.shaderF16 ? ['f32', 'f16'] as const : ['f32'] as const) {
    for (const rank of [0, 1]) {
      const tp = { rank, size: 2 };
      const wide = await uploadWeights(gpu, parseOptConfig(ckpt.configJson), ckpt.tensors, dtype, tp);
      const thin = await uploadWeights(gpu, parseOptConfig(ckpt.configJson), ckpt.tensors, dtype, tp);
      for (const name of names) {
        const t = ckpt.tensors.get(name)!;
        const src = await gpu.createBuffer(t.bytes.byteLength, name);
        gpu.write(src, t.bytes);
        copyFullIntoShard(narrow, { buffer: src }, 'f32', thin, name);
        const a = wide.locations.get(name)!, b = thin.locations.get(name)!;
        assertEquals(new Uint8Array(await gpu.read(b.buffer, b.byteOffset, b.byteLength)), new Uint8Array(await gpu.read(a.buffer, a.byteOffset, a.byteLength)), `${name} ${dtype} rank ${rank}`);
      }
    }
  }
});
