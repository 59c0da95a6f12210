/**
 * OPT-125m speed on the GPU machine (synthetic weights: speed does not depend on their values).
 *   decode: batch 1, 16-token prompt, 128 generated tokens, greedy, readback included (the peer's setting)
 *   prefill: 8 sequences x 512 tokens in one step, logits for each sequence's last token (what serving
 *            needs) and, separately, for all 4096 positions (what the HF peer's m(ids) computes)
 *   copy: a device-to-device buffer copy, the memory-bandwidth ceiling as WebGPU sees it
 * Usage: deno run -A --unstable-webgpu bench/opt_bench.ts [--dtypes f32,f16] [--out FILE]
 */
import { LocalGpu } from '../src/gpu/local.ts';
import { generate } from '../src/model/generate.ts';
import { OptModel } from '../src/model/opt.ts';
import { uploadWeights } from '../src/model/gpu_weights.ts';
import { preparePrefillBatch } from './prefill_batch.ts';
import { loadCheckpoint } from '../src/model/weights/sources.ts';
import type { ElementType } from '../src/kernels/shader.ts';

const args = Deno.args;
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const dtypes = opt('dtypes', 'f32,f16').split(',') as ElementType[];
const out = opt('out', '');
const log = (...a: unknown[]) => console.error(...a);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const gpu = await LocalGpu.create();
const res: Record<string, unknown> = { adapter: gpu.caps.adapterDescription, date: new Date().toISOString(), deno: Deno.version.deno };
log('adapter', gpu.caps.adapterDescription);

// Memory-bandwidth ceiling: copy 1 GiB device to device (bytes read + written).
{
  const size = 1 << 30;
  const a = await gpu.createBuffer(size, 'copy.src'), b = await gpu.createBuffer(size, 'copy.dst');
  gpu.copy(a, 0, b, 0, size);
  await gpu.sync();
  const times: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    for (let i = 0; i < 10; i++) gpu.copy(a, 0, b, 0, size);
    await gpu.sync();
    times.push((performance.now() - t) / 10);
  }
  const ms = median(times);
  res.copy_1GiB_ms = +ms.toFixed(3);
  res.copy_GBps = +((2 * size) / (ms / 1e3) / 1e9).toFixed(1);
  gpu.destroyBuffer(a);
  gpu.destroyBuffer(b);
  log('copy', res.copy_GBps, 'GB/s');
}

const ckpt = await loadCheckpoint('synthetic:opt-125m:1');
for (const dtype of dtypes) {
  if (dtype === 'f16' && !gpu.caps.shaderF16) { log('no shader-f16: skipping f16'); continue; }
  // ---- decode, batch 1 ----
  const model = await OptModel.load(gpu, ckpt, { dtype });
  res[`weights_${dtype}_bytes`] = model.weights.totalBytes;
  const prompt = Array.from({ length: 16 }, (_, i) => 4 + ((i * 7919) % 50000));
  await generate(model, prompt, { maxTokens: 128, ignoreEos: true }); // warm-up: compiles every pipeline
  const runs: number[] = [];
  const stepRuns: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    let first = 0;
    const result = await generate(model, prompt, { maxTokens: 128, ignoreEos: true, onTokens: () => { first ||= performance.now(); } });
    const total = performance.now() - t0;
    if (result.tokens.length !== 128) throw new Error(`generated ${result.tokens.length} tokens`);
    runs.push(total);
    stepRuns.push(total / 128);
  }
  const ms = median(runs);
  res[`decode_${dtype}_B1`] = { ms_per_step: +(ms / 128).toFixed(3), tok_per_s: +((128 / ms) * 1e3).toFixed(1), total_ms: +ms.toFixed(1), note: 'prefill of 16 tokens and all readbacks included' };
  // Steady-state GPU time per decode step: record 128 steps back to back and sync once.
  {
    const t0 = performance.now();
    await generate(model, prompt, { maxTokens: 128, ignoreEos: true, stepsPerReadback: 128 });
    res[`decode_${dtype}_B1_one_readback_ms_per_step`] = +((performance.now() - t0) / 128).toFixed(3);
  }
  log(`decode ${dtype}`, res[`decode_${dtype}_B1`]);
  const cfg = model.config;
  model.release();

  // ---- prefill, 8 x 512 ----
  const B = 8, L = 512, T = B * L;
  const weights = await uploadWeights(gpu, cfg, ckpt.tensors, dtype);
  const { runner, cache, inputs, lastRows, allRows, logits } = await preparePrefillBatch(gpu, cfg, weights, {
    B, L, ids: Uint32Array.from({ length: T }, (_, i) => 4 + ((i * 104729) % 50000)),
  });
  const timeIt = async (label: string, body: () => void, iters: number) => {
    body();
    await gpu.sync();
    const times: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      for (let i = 0; i < iters; i++) body();
      await gpu.sync();
      times.push((performance.now() - t0) / iters);
    }
    const m = median(times);
    log(label, m.toFixed(2), 'ms');
    return m;
  };
  const lastMs = await timeIt(`prefill ${dtype} last-token logits`, () => runner.forward(inputs, cache, lastRows, B, logits), 5);
  const allMs = await timeIt(`prefill ${dtype} all logits`, () => {
    runner.forward(inputs, cache, lastRows, 0, logits);
    for (let s = 0; s < B; s++) runner.logitsFor(allRows[s], L, logits);
  }, 3);
  res[`prefill_${dtype}_8x512`] = {
    last_token_logits: { ms: +lastMs.toFixed(2), tok_per_s: +((T / lastMs) * 1e3).toFixed(0) },
    all_logits: { ms: +allMs.toFixed(2), tok_per_s: +((T / allMs) * 1e3).toFixed(0) },
  };
  gpu.destroyBuffer(logits);
}
console.log(JSON.stringify(res, null, 1));
if (out) await Deno.writeTextFile(out, JSON.stringify(res, null, 1));
Deno.exit(0);
