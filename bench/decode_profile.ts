/**
 * Where a batch-1 decode step of OPT-125m goes: GPU time of one whole step (timestamp queries around a pass
 * holding only that step), GPU time of each dispatch alone (summed by kernel), the CPU time to replay a
 * captured step, and the end-to-end step time of generate().
 * Usage: deno run -A --unstable-webgpu bench/decode_profile.ts [--dtype f32|f16]
 */
import { LocalGpu } from '../src/gpu/local.ts';
import { generate } from '../src/model/generate.ts';
import { OptModel } from '../src/model/opt.ts';
import type { ElementType } from '../src/kernels/shader.ts';

const i = Deno.args.indexOf('--dtype');
const dtype = (i >= 0 ? Deno.args[i + 1] : 'f32') as ElementType;
const gpu = await LocalGpu.create();
const model = await OptModel.load(gpu, 'synthetic:opt-125m:1', { dtype });
const prompt = Array.from({ length: 16 }, (_, k) => 4 + k * 101);
await generate(model, prompt, { maxTokens: 64, ignoreEos: true });
gpu.write(model.prefill.positions, Uint32Array.of(79));
gpu.write(model.prefill.slotMapping, Uint32Array.of(79));
gpu.write(model.prefill.queryBlocks, Uint32Array.of(0, 1));
const plan = gpu.capture(() => model.runner.forward({
  numTokens: 1, tokenIds: model.prefill.tokenIds, positions: model.prefill.positions, tokenSeq: model.prefill.tokenSeq,
  slotMapping: model.prefill.slotMapping, blockTables: model.prefill.blockTables, maxBlocksPerSeq: model.maxBlocksPerSeq, maxContext: 80,
  queryBlocks: model.prefill.queryBlocks, numQueryBlocks: 1,
}, model.cache, 'all', 1, model.logitsBuffer));
const res: Record<string, unknown> = { adapter: gpu.caps.adapterDescription, dtype, dispatches_per_step: plan.dispatches };
const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const one: number[] = [];
for (let r = 0; r < 11; r++) one.push((await gpu.timeOnGpu(() => gpu.replay(plan)))!);
res.gpu_ms_one_step = +med(one).toFixed(4);
const per = await gpu.profileRecording(plan);
if (per) {
  const byKernel = new Map<string, number>();
  for (const p of per) {
    const k = p.kernel.replace(/\(.*$/, '');
    byKernel.set(k, (byKernel.get(k) ?? 0) + p.ms);
  }
  res.gpu_ms_by_kernel_alone = Object.fromEntries([...byKernel].map(([k, v]) => [k, +v.toFixed(4)]));
  res.gpu_ms_sum_alone = +per.reduce((s, p) => s + p.ms, 0).toFixed(4);
  res.slowest = per.sort((a, b) => b.ms - a.ms).slice(0, 8).map((p) => `${p.kernel}: ${p.ms.toFixed(4)}`);
}
await gpu.sync();
let t0 = performance.now();
for (let k = 0; k < 50; k++) gpu.replay(plan);
res.cpu_replay_ms_per_step = +((performance.now() - t0) / 50).toFixed(4);
t0 = performance.now();
gpu.flush();
res.cpu_submit_ms_per_step = +((performance.now() - t0) / 50).toFixed(4);
await gpu.sync();
const e2e: number[] = [];
for (let r = 0; r < 5; r++) {
  const t = performance.now();
  await generate(model, prompt, { maxTokens: 128, ignoreEos: true });
  e2e.push((performance.now() - t) / 128);
}
res.generate_128_ms_per_step = +med(e2e).toFixed(4);
console.log(JSON.stringify(res, null, 1));
Deno.exit(0);
