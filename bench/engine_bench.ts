/**
 * The serving engine's decode throughput on OPT-125m (synthetic weights), the peer's setting: B requests of
 * 16-token prompts, 128 generated tokens each, greedy, EOS ignored; wall time of llm.generate() over all of
 * them (prefill included). Up to --lookahead decode steps run on the GPU per readback.
 * Usage: deno run -A --unstable-webgpu bench/engine_bench.ts [--batches 1,16,64,256] [--dtype f32] [--lookahead 15] [--out FILE]
 */
import { LLM } from '../src/engine/llm.ts';
import type { ElementType } from '../src/kernels/shader.ts';

const arg = (n: string, d: string) => { const i = Deno.args.indexOf(`--${n}`); return i >= 0 ? Deno.args[i + 1] : d; };
const batches = arg('batches', '1,16,64,256').split(',').map(Number);
const dtype = arg('dtype', 'f32') as ElementType;
const maxB = Math.max(...batches);
const llm = await LLM.create({
  model: 'synthetic:opt-125m:1', dtype, gpuMemoryBytes: 16 * 1024 ** 3, gpuMemoryUtilization: 0.9,
  maxNumSeqs: maxB, maxNumBatchedTokens: Math.max(512, maxB * 16), maxModelLen: 512,
  numLookaheadTokens: Number(arg('lookahead', '15')),
});
const res: Record<string, unknown> = { dtype, lookahead: Number(arg('lookahead', '15')), kv_blocks: llm.memory.numBlocks, kv_bytes_per_block: llm.memory.kvPerBlock };
for (const B of batches) {
  const prompts = Array.from({ length: B }, (_, b) => ({ tokens: [2, ...Array.from({ length: 15 }, (_, i) => 4 + ((b * 977 + i * 7919) % 50000))] }));
  const params = { maxTokens: 128, ignoreEos: true };
  await llm.generate(prompts.slice(0, Math.min(B, 4)), { maxTokens: 8, ignoreEos: true }); // warm-up
  const t0 = performance.now();
  const outs = await llm.generate(prompts, params);
  const ms = performance.now() - t0;
  const tokens = outs.reduce((s, o) => s + o.tokenIds.length, 0);
  res[`decode_${dtype}_B${B}`] = { tok_per_s: +((tokens / ms) * 1e3).toFixed(1), ms_per_step: +(ms / 128).toFixed(3), total_ms: +ms.toFixed(1) };
  console.error(B, res[`decode_${dtype}_B${B}`]);
}
console.log(JSON.stringify(res, null, 1));
const out = arg('out', '');
if (out) await Deno.writeTextFile(out, JSON.stringify(res, null, 1));
Deno.exit(0);
