/**
 * Where a batched decode step of OPT-125m goes: B sequences at context C decode one token each (the flat batch
 * the engine builds), captured once; GPU time of the whole step and of each kernel alone, for each choice of the
 * batched-decode linear kernel (32x64 segment tiles vs split 128x128 tiles) and attention kernel (single-query
 * decode kernel vs the 16-query block kernel): all give the same bits.
 * Usage: deno run -A --unstable-webgpu bench/batch_decode_profile.ts [--batches 16,64,256] [--context 144] [--out F]
 */
import { LocalGpu } from '../src/gpu/local.ts';
import { linearTuning, SPLIT_TILED_MIN_ROWS } from '../src/kernels/linear.ts';
import { attentionKernelChoice, buildQueryBlocks } from '../src/kernels/paged_attention.ts';
import { parseOptConfig, OPT_125M_CONFIG_JSON } from '../src/model/config.ts';
import { OptForward } from '../src/model/forward.ts';
import { uploadWeights } from '../src/model/gpu_weights.ts';
import { allocateKvCache } from '../src/model/kv_cache.ts';
import { syntheticTensors } from '../src/model/weights/synthetic.ts';

const arg = (name: string, fallback: string) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : fallback;
};
const batches = arg('--batches', '16,64,256').split(',').map(Number);
const C = Number(arg('--context', '144'));
const out = arg('--out', '');
const modelName = arg('--model', 'opt-125m');
const gpu = await LocalGpu.create();
const config = modelName === 'opt-125m' ? parseOptConfig(OPT_125M_CONFIG_JSON) : parseOptConfig(JSON.parse(await Deno.readTextFile(modelName)));
const weights = await uploadWeights(gpu, config, syntheticTensors(config, 1), 'f32');
const Bmax = Math.max(...batches);
const bs = 16, perSeq = Math.ceil(C / bs);
const cache = await allocateKvCache(gpu, config, { blockSize: bs, numBlocks: Bmax * perSeq, dtype: 'f32' });
const forward = await OptForward.create(gpu, config, weights, { maxTokens: Bmax, maxLogitRows: Bmax, maxContext: C });
const u32 = async (data: Uint32Array, label: string) => {
  const b = await gpu.createBuffer(Math.max(16, data.byteLength), label);
  gpu.write(b, data);
  return b;
};
const logits = await gpu.createBuffer(Bmax * config.vocabSize * 4, 'logits');
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results: Record<string, unknown>[] = [];
const DECODE_MIN = attentionKernelChoice.decodeKernelMinTokens;
for (const B of batches) {
  const inputs = {
    numTokens: B,
    tokenIds: await u32(Uint32Array.from({ length: B }, (_, i) => 4 + i), 'ids'),
    positions: await u32(new Uint32Array(B).fill(C - 1), 'pos'),
    tokenSeq: await u32(Uint32Array.from({ length: B }, (_, i) => i), 'seq'),
    slotMapping: await u32(Uint32Array.from({ length: B }, (_, i) => i * perSeq * bs + C - 1), 'slots'),
    blockTables: await u32(Uint32Array.from({ length: B * perSeq }, (_, i) => i), 'tables'),
    maxBlocksPerSeq: perSeq,
    maxContext: C,
    queryBlocks: await u32(buildQueryBlocks(Array.from({ length: B }, (_, i) => [i, 1] as const), 16), 'qb'),
    numQueryBlocks: B,
  };
  // The default kernel choices, and each alternative (same bits, different speed).
  const variants = [
    { linear: 'default', attention: 'default' }, { linear: 'segments', attention: 'default' }, { linear: 'split', attention: 'default' },
    { linear: 'default', attention: 'decode' }, { linear: 'default', attention: 'general' },
  ];
  for (const v of variants) {
    const split = v.linear === 'split';
    linearTuning.splitTiledMinRows = v.linear === 'default' ? SPLIT_TILED_MIN_ROWS : split ? 1 : 1e9;
    attentionKernelChoice.decodeKernel = v.attention !== 'general';
    attentionKernelChoice.decodeKernelMinTokens = v.attention === 'decode' ? 1 : DECODE_MIN;
    const plan = gpu.capture(() => forward.forward(inputs, cache, 'all', B, logits));
    const step: number[] = [];
    for (let r = 0; r < 9; r++) step.push((await gpu.timeOnGpu(() => gpu.replay(plan)))!);
    const per = await gpu.profileRecording(plan);
    const byKernel: Record<string, number> = {};
    for (const p of per ?? []) {
      const k = p.kernel.replace(/\(.*$/, '') + (p.kernel.includes('SPLIT=true') ? '[split]' : '');
      byKernel[k] = +((byKernel[k] ?? 0) + p.ms).toFixed(4);
    }
    const r = { batch: B, context: C, linear: v.linear, attention: v.attention, dispatches: plan.dispatches, gpu_ms_step: +med(step).toFixed(4), tokens_per_s_gpu: +(B / (med(step) / 1000)).toFixed(1), gpu_ms_by_kernel_alone: byKernel };
    console.log(JSON.stringify(r));
    results.push(r);
    gpu.releaseRecording(plan);
  }
}
if (out) await Deno.writeTextFile(out, JSON.stringify({ adapter: gpu.caps.adapterDescription, date: new Date().toISOString(), results }, null, 1));
Deno.exit(0);
