// Megatron-style tensor parallelism on one device (src/model/tensor_parallel.ts, src/gpu/tensor_parallel_group.ts):
// the ranks' logits against HF's float64 reference (same tolerance as TP=1) and against TP=1 itself.
import { ConfigError } from '../../src/errors.ts';
import { OptModel } from '../../src/model/opt.ts';
import { TensorParallelOptModel } from '../../src/model/tensor_parallel_model.ts';
import { assert, assertRejects, FIXTURES, maxAbsDiff, readReference, testGpu } from './helpers.ts';

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
