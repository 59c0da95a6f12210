// onnxruntime-web as an independent oracle (src/onnx): Tandem's ONNX export of each fixture runs on
// onnxruntime-web's wasm execution provider in Deno, and
//   1. agrees with Hugging Face's float64 references (../shared/fixtures) within the README's tolerances, so the
//      export itself is right (every position of every prompt of the tiny sets; the last-position logits and
//      per-position logsumexp/top-5 of opt-125m-synth);
//   2. agrees with Tandem's WebGPU forward pass (verifyCheckpoint, what `tandem verify` runs) within the f32
//      tolerance 1e-3, on opt-tiny, opt-tiny-postln and opt-125m-synth;
//   3. `tandem verify` as a user runs it: one JSON document, exit 0 when within tolerance, 1 when not.
import { loadCheckpoint } from '../../src/model/weights/sources.ts';
import { exportOptOnnx } from '../../src/onnx/export.ts';
import { loadOrt, runOnnxLogits, sessionOptions } from '../../src/onnx/ort.ts';
import { verifyCheckpoint } from '../../src/onnx/verify.ts';
import type { Checkpoint } from '../../src/model/weights/types.ts';
import { assert, assertEquals, FIXTURES, maxAbsDiff, readReference, testGpu } from './helpers.ts';
import { runCli, singleJson } from './cli_helpers.ts';


function report(what: string, err: number, tol: number): void {
  console.log(`  ${what}: max |diff| ${err.toExponential(2)} (tolerance ${tol})`);
  assert(err <= tol, `${what}: max |diff| ${err} exceeds ${tol}`);
}

/** ONNX logits of each prompt on the wasm EP: one session for all of them. */
async function onnxLogitsOf(ckpt: Checkpoint, prompts: number[][]): Promise<Float32Array[]> {
  const ort = await loadOrt('wasm');
  const session = await ort.InferenceSession.create(exportOptOnnx(ckpt), sessionOptions('wasm'));
  try {
    const out: Float32Array[] = [];
    for (const p of prompts) out.push(await runOnnxLogits(ort, session, [p]));
    return out;
  } finally {
    await session.release();
  }
}

for (const set of ['opt-tiny', 'opt-tiny-postln']) {
  Deno.test(`${set}: onnxruntime-web on the ONNX export matches HF's logits (1e-4) and Tandem's (1e-3)`, async () => {
    const { ref, tensors } = await readReference(set);
    const ckpt = await loadCheckpoint(`${FIXTURES}${set}`);
    const V = (ckpt.configJson.vocab_size as number);
    const onnx = await onnxLogitsOf(ckpt, ref.prompts);
    let err = 0;
    ref.prompts.forEach((p, i) => {
      const expected = tensors(`p${i}.logits`);
      assert(expected && expected.length === p.length * V, `${set}: reference p${i}.logits`);
      err = Math.max(err, maxAbsDiff(onnx[i], expected));
    });
    report(`${set} ONNX vs HF, all positions of ${ref.prompts.length} prompts`, err, 1e-4);

    // Tandem against onnxruntime on the longest prompt (every position compared).
    const longest = ref.prompts.reduce((a, b) => (b.length > a.length ? b : a));
    const r = await verifyCheckpoint(await testGpu(), ckpt, longest);
    assertEquals(r.positions.length, longest.length);
    assert(r.ok, `${set}: verify not ok: ${r.maxAbsDiff}`);
    report(`${set} Tandem vs ONNX, ${longest.length} positions (top-1 agrees at ${r.top1Agree})`, r.maxAbsDiff, 1e-3);
    // The export of verifyCheckpoint is the same model: its ONNX logits equal the ones above.
    assertEquals(maxAbsDiff(r.onnxLogits, onnx[ref.prompts.indexOf(longest)]), 0);
    // Where onnxruntime's top-1 is not a near-tie, Tandem's top-1 is the same.
    for (const p of r.positions) assert(p.agree || p.marginB < 2e-3, `${set}: top-1 differs at ${p.position} (margin ${p.marginB})`);
  });
}

Deno.test('opt-tiny: the lastTokenOnly export gives each sequence\'s last row of the full logits (batch of 2)', async () => {
  const { ref } = await readReference('opt-tiny');
  const ckpt = await loadCheckpoint(`${FIXTURES}opt-tiny`);
  const V = ckpt.configJson.vocab_size as number;
  const batch = [ref.prompts[2], ref.prompts[2].map((t, i) => (t * 7 + i) % V)];
  const T = batch[0].length;
  const ort = await loadOrt('wasm');
  const full = await ort.InferenceSession.create(exportOptOnnx(ckpt), sessionOptions('wasm'));
  const last = await ort.InferenceSession.create(exportOptOnnx(ckpt, { lastTokenOnly: true }), sessionOptions('wasm'));
  try {
    assertEquals(last.outputNames, ['last_logits']);
    const all = await runOnnxLogits(ort, full, batch);
    const lastRows = await runOnnxLogits(ort, last, batch);
    assertEquals(lastRows.length, 2 * V);
    for (let b = 0; b < 2; b++) {
      const err = maxAbsDiff(lastRows.subarray(b * V, (b + 1) * V), all.subarray((b * T + T - 1) * V, (b * T + T) * V));
      assert(err <= 1e-6, `sequence ${b}: last_logits differ from the full logits' last row by ${err}`);
    }
    // Batching is exact per sequence: sequence 0 of the batch equals it alone.
    const alone = await runOnnxLogits(ort, full, [batch[0]]);
    assert(maxAbsDiff(all.subarray(0, T * V), alone) <= 1e-6, 'batched logits differ from the single sequence');
  } finally {
    await full.release();
    await last.release();
  }
});

for (const flavor of ['webgpu', 'jsep'] as const) {
  Deno.test(`onnxruntime-web's WebGPU EP (${flavor === 'webgpu' ? 'native' : 'JSEP'}) runs the export in Deno and matches HF (1e-4)`, async () => {
    const { ref, tensors } = await readReference('opt-tiny');
    const ckpt = await loadCheckpoint(`${FIXTURES}opt-tiny`);
    const ort = await loadOrt(flavor);
    const session = await ort.InferenceSession.create(exportOptOnnx(ckpt), sessionOptions('webgpu'));
    try {
      const i = ref.prompts.length - 1;
      report(`opt-tiny ONNX on ${flavor} vs HF (p${i}, ${ref.prompts[i].length} positions)`,
        maxAbsDiff(await runOnnxLogits(ort, session, [ref.prompts[i]]), tensors(`p${i}.logits`)!), 1e-4);
    } finally {
      await session.release();
    }
  });
}

Deno.test('opt-tiny f16: Tandem f16 against the f32 ONNX model within 5e-2', async () => {
  const gpu = await testGpu();
  if (!gpu.caps.shaderF16) {
    console.log('  no shader-f16 on this adapter: skipped');
    return;
  }
  const { ref } = await readReference('opt-tiny');
  const ckpt = await loadCheckpoint(`${FIXTURES}opt-tiny`);
  const r = await verifyCheckpoint(gpu, ckpt, ref.prompts[2], { dtype: 'f16' });
  assertEquals(r.tolerance, 5e-2);
  assert(r.ok);
  report(`opt-tiny Tandem f16 vs ONNX f32 (top-1 agrees at ${r.top1Agree}/${r.positions.length})`, r.maxAbsDiff, 5e-2);
});

Deno.test({
  name: 'opt-125m-synth: ONNX export matches HF (last logits, logsumexp, top-5; 1e-3) and Tandem (1e-3)',
  fn: async () => {
    const { ref, tensors } = await readReference('opt-125m-synth');
    // The shortest prompt that is more than one token keeps the suite fast on lavapipe.
    const i = ref.prompts.findIndex((p) => p.length > 1 && p.length === Math.min(...ref.prompts.filter((q) => q.length > 1).map((q) => q.length)));
    const prompt = ref.prompts[i];
    const ckpt = await loadCheckpoint(`synthetic:${FIXTURES}opt-125m-synth/config.json:1`);
    const r = await verifyCheckpoint(await testGpu(), ckpt, prompt);
    const V = r.vocabSize, T = prompt.length;
    console.log(`  prompt p${i} (${T} tokens); ONNX model ${(r.onnx.modelBytes / 1e6).toFixed(0)} MB; ms: ` +
      Object.entries(r.timingsMs).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', '));

    // The ONNX model against HF.
    const last = tensors(`p${i}.last_logits`);
    assert(last && last.length === V, `reference p${i}.last_logits`);
    report(`opt-125m-synth ONNX vs HF last logits (p${i})`, maxAbsDiff(r.onnxLogits.subarray((T - 1) * V), last), 1e-3);
    const res = ref.prompt_results[i];
    let lseErr = 0, topErr = 0;
    for (let t = 0; t < T; t++) {
      const row = r.onnxLogits.subarray(t * V, (t + 1) * V);
      let mx = -Infinity;
      for (let k = 0; k < V; k++) mx = Math.max(mx, row[k]);
      let s = 0;
      for (let k = 0; k < V; k++) s += Math.exp(row[k] - mx);
      lseErr = Math.max(lseErr, Math.abs(mx + Math.log(s) - res.logsumexp[t]));
      res.top5_ids[t].forEach((id, k) => { topErr = Math.max(topErr, Math.abs(row[id] - res.top5_logits[t][k])); });
    }
    report('opt-125m-synth ONNX vs HF logsumexp, every position', lseErr, 1e-3);
    report('opt-125m-synth ONNX vs HF top-5 logits, every position', topErr, 1e-3);

    // Tandem against the ONNX model.
    assert(r.ok, `verify not ok: ${r.maxAbsDiff}`);
    report(`opt-125m-synth Tandem vs ONNX, ${T} positions (top-1 agrees at ${r.top1Agree})`, r.maxAbsDiff, 1e-3);
  },
});

// ------------------------------------------------------------------------------------------------ the CLI




Deno.test('cli verify --json: one document, per-position diffs, exit 0 within tolerance and 1 beyond it', async () => {
  const { ref } = await readReference('opt-tiny-postln');
  const prompt = ref.prompts[1];
  const args = ['verify', '--model', `${FIXTURES}opt-tiny-postln`, '--tokens', prompt.join(','), '--json'];
  const ok = await runCli(args);
  assertEquals(ok.code, 0, ok.stderr);
  const r = singleJson(ok, 'verify');
  assertEquals(r.ok, true);
  assertEquals(r.tokens, prompt);
  assertEquals(r.tolerance, 1e-3);
  const positions = r.positions as Array<{ position: number; token: number; max_abs_diff: number; top1_agree: boolean }>;
  assertEquals(positions.map((p) => p.token), prompt);
  assertEquals(Math.max(...positions.map((p) => p.max_abs_diff)), r.max_abs_diff);
  assertEquals((r.onnx as { execution_provider: string }).execution_provider, 'wasm');
  report('cli verify opt-tiny-postln', r.max_abs_diff as number, 1e-3);

  // Beyond the tolerance: the same document with ok=false, and exit code 1. (--tolerance 0 fails unless the
  // two runtimes agree to the last bit, in which case the run must pass.)
  const strict = await runCli([...args, '--tolerance', '0']);
  const s = singleJson(strict, 'verify --tolerance 0');
  assertEquals(s.ok, (s.max_abs_diff as number) === 0);
  assertEquals(strict.code, s.ok ? 0 : 1, strict.stderr);
  assert(!('error' in s));
});
