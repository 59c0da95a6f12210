// The OPT forward pass and greedy decoding against Hugging Face transformers in float64 (../shared/fixtures),
// with the tolerances of its README: logits max |diff| <= 1e-4 (tiny sets), <= 1e-3 (opt-125m-synth) in f32;
// <= 5e-2 and top-1 agreement where the margin exceeds 0.1 in f16. Errors actually reached are printed.
import { generate } from '../../src/model/generate.ts';
import { OptModel } from '../../src/model/opt.ts';
import { logitsSummary } from '../../src/cli/logits_summary.ts';
import { assert, assertEquals, FIXTURES, greedyStepsToCompare, maxAbsDiff, readReference, testGpu } from './helpers.ts';

const TINY_SETS = ['opt-tiny', 'opt-tiny-postln'];

function report(what: string, err: number, tol: number): void {
  console.log(`  ${what}: max |diff| ${err.toExponential(2)} (tolerance ${tol})`);
  assert(err <= tol, `${what}: max |diff| ${err} exceeds ${tol}`);
}

async function checkGreedy(model: OptModel, prompts: number[][], results: Array<{ greedy: number[]; greedy_margins: number[] }>, label: string) {
  for (let i = 0; i < prompts.length; i++) {
    const r = results[i];
    const out = await generate(model, prompts[i], { maxTokens: r.greedy.length, ignoreEos: true });
    const n = greedyStepsToCompare(r.greedy_margins);
    assertEquals(out.tokens.slice(0, n), r.greedy.slice(0, n), `${label} prompt ${i}: greedy tokens (first ${n} steps)`);
    assertEquals(out.tokens.length, r.greedy.length);
  }
}

for (const set of TINY_SETS) {
  Deno.test(`${set} f32: logits at every position and greedy tokens match HF`, async () => {
    const gpu = await testGpu();
    const { ref, tensors } = await readReference(set);
    for (const blockSize of [16, 8, 32]) {
      const model = await OptModel.load(gpu, `${FIXTURES}${set}`, { dtype: 'f32', blockSize });
      let worst = 0;
      for (let i = 0; i < ref.prompts.length; i++) {
        worst = Math.max(worst, maxAbsDiff(await model.logits(ref.prompts[i]), tensors(`p${i}.logits`)!));
      }
      report(`${set} f32 block ${blockSize} logits`, worst, 1e-4);
      await checkGreedy(model, ref.prompts, ref.prompt_results, `${set} f32 block ${blockSize}`);
      model.release();
    }
  });

  Deno.test(`${set} f16: logits within 5e-2 and top-1 agreement where the margin exceeds 0.1`, async () => {
    const gpu = await testGpu();
    if (!gpu.caps.shaderF16) throw new Error('this adapter lacks shader-f16; the f16 path cannot be tested here');
    const { ref, tensors } = await readReference(set);
    const model = await OptModel.load(gpu, `${FIXTURES}${set}`, { dtype: 'f16' });
    let worst = 0;
    const V = model.config.vocabSize;
    for (let i = 0; i < ref.prompts.length; i++) {
      const got = await model.logits(ref.prompts[i]);
      const want = tensors(`p${i}.logits`)!;
      worst = Math.max(worst, maxAbsDiff(got, want));
      for (let t = 0; t < ref.prompts[i].length; t++) {
        const row = want.subarray(t * V, (t + 1) * V);
        const sorted = Array.from(row).map((v, j) => [v, j]).sort((a, b) => b[0] - a[0]);
        if (sorted[0][0] - sorted[1][0] <= 0.1) continue;
        const gotRow = got.subarray(t * V, (t + 1) * V);
        let best = 0;
        for (let j = 1; j < V; j++) if (gotRow[j] > gotRow[best]) best = j;
        assertEquals(best, sorted[0][1], `prompt ${i} position ${t}: top-1`);
      }
    }
    report(`${set} f16 logits`, worst, 5e-2);
    model.release();
  });
}

Deno.test('every checkpoint format of opt-tiny loads to the same model', async () => {
  const gpu = await testGpu();
  const { ref, tensors } = await readReference('opt-tiny');
  const rounded = JSON.parse(await Deno.readTextFile(`${FIXTURES}opt-tiny/formats/reference_rounded_weights.json`));
  const sharded = await OptModel.load(gpu, `${FIXTURES}opt-tiny/formats/sharded`, { dtype: 'f32' });
  report('sharded safetensors logits', maxAbsDiff(await sharded.logits(ref.prompts[2]), tensors('p2.logits')!), 1e-4);
  sharded.release();
  for (const [dtype, file] of [['f16', 'pytorch_model.bin'], ['bf16', 'model.bf16.safetensors']] as const) {
    const r = rounded[dtype];
    const model = await OptModel.load(gpu, await fileSource(`${FIXTURES}opt-tiny/`, ['config.json'], `formats/${file}`), { dtype: 'f32' });
    const got = await model.logits(r.prompt);
    const V = model.config.vocabSize;
    const summary = logitsSummary(got, r.prompt.length, V);
    report(`${file} logsumexp`, maxAbsDiff(summary.logsumexp, r.logsumexp), 1e-4);
    report(`${file} last logits`, maxAbsDiff(summary.last_logits, r.last_logits), 1e-4);
    model.release();
  }
});

/** A File-list source (the browser's path) built from files on disk. */
async function fileSource(dir: string, names: string[], weights: string): Promise<File[]> {
  const files = [];
  for (const n of names) files.push(new File([await Deno.readFile(dir + n)], n));
  const base = weights.split('/').pop()!;
  files.push(new File([await Deno.readFile(dir + weights)], base));
  return files;
}

Deno.test({
  name: 'opt-125m-synth (synthetic weights): logsumexp, top-5 and last logits within 1e-3, greedy tokens; f16 weights <= 260 MB',
  async fn() {
    const gpu = await testGpu();
    const { ref, tensors } = await readReference('opt-125m-synth');
    const model = await OptModel.load(gpu, `synthetic:${FIXTURES}opt-125m-synth/config.json:1`, { dtype: 'f32' });
    assert(model.weights.lmHead.buffer === model.weights.embedTokens.buffer, 'the tied head must not be a second copy');
    const V = model.config.vocabSize;
    let lse = 0, top = 0, last = 0;
    for (let i = 0; i < ref.prompts.length; i++) {
      const r = ref.prompt_results[i];
      const s = logitsSummary(await model.logits(ref.prompts[i]), ref.prompts[i].length, V);
      lse = Math.max(lse, maxAbsDiff(s.logsumexp, r.logsumexp));
      top = Math.max(top, maxAbsDiff(s.top5_logits.flat(), r.top5_logits.flat()));
      for (let t = 0; t < r.top5_ids.length; t++) {
        // Ids must agree except where two reference logits are within the tolerance of each other.
        for (let k = 0; k < 5; k++) {
          if (s.top5_ids[t][k] !== r.top5_ids[t][k]) {
            const gap = Math.min(...[k - 1, k + 1].filter((j) => j >= 0 && j < 5).map((j) => Math.abs(r.top5_logits[t][k] - r.top5_logits[t][j])));
            assert(gap < 2e-3, `prompt ${i} position ${t}: top-5 id ${k} differs with reference gap ${gap}`);
          }
        }
      }
      last = Math.max(last, maxAbsDiff(s.last_logits, tensors(`p${i}.last_logits`)!));
    }
    report('opt-125m-synth logsumexp', lse, 1e-3);
    report('opt-125m-synth top-5 logits', top, 1e-3);
    report('opt-125m-synth last logits', last, 1e-3);
    await checkGreedy(model, ref.prompts, ref.prompt_results, 'opt-125m-synth f32');
    model.release();

    if (gpu.caps.shaderF16) {
      const m16 = await OptModel.load(gpu, `synthetic:${FIXTURES}opt-125m-synth/config.json:1`, { dtype: 'f16' });
      console.log(`  opt-125m f16 weights: ${m16.weights.totalBytes} bytes`);
      assert(m16.weights.totalBytes <= 260e6, `f16 weights take ${m16.weights.totalBytes} bytes`);
      const s = logitsSummary(await m16.logits(ref.prompts[1]), ref.prompts[1].length, V);
      report('opt-125m-synth f16 last logits', maxAbsDiff(s.last_logits, tensors('p1.last_logits')!), 5e-2);
      m16.release();
    }
  },
});
