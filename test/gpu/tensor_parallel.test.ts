// Megatron-style tensor parallelism on one device (src/model/tensor_parallel.ts, src/gpu/tensor_parallel_group.ts):
// the ranks' logits against HF's float64 reference (same tolerance as TP=1) and against TP=1 itself.
import { ConfigError } from '../../src/errors.ts';
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
