/**
 * The serving engine's decode throughput on OPT-125m (synthetic weights), the peer's setting: B requests of
 * 16-token prompts, 128 generated tokens each, greedy, EOS ignored; wall time of llm.generate() over all of
 * them (prefill included). Up to --lookahead decode steps run on the GPU per readback.
 *
 * Each batch size runs with asynchronous scheduling (the next group of steps recorded while the last group's
 * tokens are read back: the default) and without it (every group waits for its readback before the next is
 * scheduled), alternating, --repeat times each; the best of each is reported, with the async/sync ratio.
 * `--modes async` or `--modes sync` runs one of them only.
 *
 * Usage: deno run -A --unstable-webgpu bench/engine_bench.ts [--batches 1,16,64,256] [--dtype f32] [--lookahead 15]
 *          [--modes async,sync] [--steps-per-submit 1] [--repeat 2] [--tokens 128] [--model SPEC] [--gpu-memory-gib 16] [--max-model-len 512] [--out FILE]
 * (Smoke test on lavapipe: --model ../shared/fixtures/opt-tiny --gpu-memory-gib 0.0625 --max-model-len 128 --batches 1,4 --tokens 40.)
 * On the GPU machine: bash bench/bundle.sh, then bash .gpu/enter.sh deno run -A --unstable-webgpu .gpu/engine_bench.js
 */
import { LLM } from '../src/engine/llm.ts';
import { runnerTuning } from '../src/engine/model_runner.ts';
import type { ElementType } from '../src/kernels/shader.ts';

const arg = (n: string, d: string) => { const i = Deno.args.indexOf(`--${n}`); return i >= 0 ? Deno.args[i + 1] : d; };
const batches = arg('batches', '1,16,64,256').split(',').map(Number);
runnerTuning.stepsPerSubmit = Number(arg('steps-per-submit', String(runnerTuning.stepsPerSubmit)));
const dtype = arg('dtype', 'f32') as ElementType;
const lookahead = Number(arg('lookahead', '15'));
const modes = arg('modes', 'async,sync').split(',') as Array<'async' | 'sync'>;
const repeat = Number(arg('repeat', '2'));
const tokens = Number(arg('tokens', '128'));
const maxB = Math.max(...batches);
const model = arg('model', 'synthetic:opt-125m:1');
const llm = await LLM.create({
  model, dtype, gpuMemoryBytes: Number(arg('gpu-memory-gib', '16')) * 1024 ** 3, gpuMemoryUtilization: 0.9,
  maxNumSeqs: maxB, maxNumBatchedTokens: Math.max(512, maxB * 16), maxModelLen: Number(arg('max-model-len', '512')),
  numLookaheadTokens: lookahead,
});
const engine = llm.engine;
const res: Record<string, unknown> = { model, dtype, lookahead, tokens, kv_blocks: llm.memory.numBlocks, kv_bytes_per_block: llm.memory.kvPerBlock };

type Run = { tok_per_s: number; ms_per_step: number; total_ms: number; scheduled_steps: number; continuation_steps: number };

async function once(B: number, mode: 'async' | 'sync'): Promise<Run> {
  engine.asyncScheduling = mode === 'async';
  const prompts = Array.from({ length: B }, (_, b) => ({ tokens: [2, ...Array.from({ length: 15 }, (_, i) => 4 + ((b * 977 + i * 7919) % (engine.config.vocabSize - 4)))] }));
  const before = { ...engine.pipelineStats };
  const t0 = performance.now();
  const outs = await llm.generate(prompts, { maxTokens: tokens, ignoreEos: true });
  const ms = performance.now() - t0;
  const n = outs.reduce((s, o) => s + o.tokenIds.length, 0);
  if (n !== B * tokens) throw new Error(`expected ${B * tokens} tokens, got ${n}`);
  return {
    tok_per_s: +((n / ms) * 1e3).toFixed(1), ms_per_step: +(ms / tokens).toFixed(3), total_ms: +ms.toFixed(1),
    scheduled_steps: engine.pipelineStats.scheduledSteps - before.scheduledSteps,
    continuation_steps: engine.pipelineStats.continuationSteps - before.continuationSteps,
  };
}

for (const B of batches) {
  // Warm-up: compiles pipelines and captures the decode steps of both paths at this batch size.
  for (const mode of modes) {
    engine.asyncScheduling = mode === 'async';
    await llm.generate(Array.from({ length: B }, (_, b) => ({ tokens: [2, 5 + (b % 100), 7] })), { maxTokens: 2 * (lookahead + 1) + 1, ignoreEos: true });
  }
  const best = new Map<string, Run>();
  for (let r = 0; r < repeat; r++) {
    for (const mode of modes) {
      const run = await once(B, mode);
      if (!best.has(mode) || run.total_ms < best.get(mode)!.total_ms) best.set(mode, run);
    }
  }
  for (const [mode, run] of best) {
    res[`decode_${dtype}_B${B}_${mode}`] = run;
    console.error(B, mode, run);
  }
  if (best.has('async') && best.has('sync')) {
    const speedup = +(best.get('sync')!.total_ms / best.get('async')!.total_ms).toFixed(2);
    res[`decode_${dtype}_B${B}_async_speedup`] = speedup;
    console.error(B, 'async speedup', speedup);
  }
}
engine.asyncScheduling = true;
console.log(JSON.stringify(res, null, 1));
const out = arg('out', '');
if (out) await Deno.writeTextFile(out, JSON.stringify(res, null, 1));
Deno.exit(0);
