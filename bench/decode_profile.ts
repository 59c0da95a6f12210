/**
 * Where a batch-1 decode step of OPT-125m goes: GPU time of one whole step (timestamp queries around a pass
 * holding only that step), GPU time of each kernel kind alone, and the CPU time to record a step.
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
// Reuse the decode state generate() left: its buffers hold valid next-step inputs.
const s = (model as unknown as { extraBuffers: unknown[] }).extraBuffers;
void s;
const step = (n: number) => {
  for (let k = 0; k < n; k++) {
    model.runner.forward({
      numTokens: 1, tokenIds: model.prefill.tokenIds, positions: model.prefill.positions, tokenSeq: model.prefill.tokenSeq,
      slotMapping: model.prefill.slotMapping, blockTables: model.prefill.blockTables, maxBlocksPerSeq: model.maxBlocksPerSeq, maxContext: 80,
    }, model.cache, 'all', 1, model.logitsBuffer);
  }
};
gpu.write(model.prefill.positions, Uint32Array.of(79));
gpu.write(model.prefill.slotMapping, Uint32Array.of(79));
step(1);
await gpu.sync();
const before = gpu.stats().dispatches;
step(1);
const perStep = gpu.stats().dispatches - before;
await gpu.sync();
const res: Record<string, unknown> = { adapter: gpu.caps.adapterDescription, dtype, dispatches_per_step: perStep };
const times: number[] = [];
for (let r = 0; r < 10; r++) times.push((await gpu.timeOnGpu(() => step(1)))!);
res.gpu_ms_one_step = times.sort((a, b) => a - b)[5];
const t10: number[] = [];
for (let r = 0; r < 5; r++) t10.push((await gpu.timeOnGpu(() => step(10)))! / 10);
res.gpu_ms_per_step_10_in_one_pass = t10.sort((a, b) => a - b)[2];
// CPU time to record (encode) steps, without waiting for the GPU.
await gpu.sync();
let t0 = performance.now();
step(50);
res.cpu_record_ms_per_step = (performance.now() - t0) / 50;
t0 = performance.now();
gpu.flush();
res.cpu_submit_ms_50_steps = performance.now() - t0;
await gpu.sync();
console.log(JSON.stringify(res, null, 1));
Deno.exit(0);
