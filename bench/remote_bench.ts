/**
 * The cost of the remote path: the serving engine's decode in-process (LocalGpu) vs inside a Web Worker on a
 * RemoteGpu talking to the device host (which runs on this thread and owns the same device). Same model, same
 * prompts (B requests of 16-token prompts, --tokens generated each, greedy, EOS ignored), wall time of
 * generate() over all of them; runs alternate in-process / worker and the median is reported.
 * Issue 5's targets: remote <= 10% over in-process at batch 1, <= 3% at batch 64.
 *
 * Usage: deno run -A --unstable-webgpu bench/remote_bench.ts [--model synthetic:opt-125m:1] [--batches 1,64]
 *          [--tokens 128] [--lookahead 15] [--reps 3] [--max-model-len 512] [--gpu-memory-mb 8192] [--worker-module FILE] [--out FILE]
 * On lavapipe (no GPU) prove it runs with a small model:
 *   bash scripts/deno.sh run -A --unstable-webgpu bench/remote_bench.ts --model ../shared/fixtures/opt-tiny --max-model-len 128 --gpu-memory-mb 64 --tokens 32 --reps 2
 */
import { DeviceHost } from '../src/actors/device_host.ts';
import type { ModelActor } from '../src/actors/model_actor.ts';
import { spawnActorWorker } from '../src/actors/spawn.ts';
import { LLM } from '../src/engine/llm.ts';

const arg = (n: string, d: string) => { const i = Deno.args.indexOf(`--${n}`); return i >= 0 ? Deno.args[i + 1] : d; };
const model = arg('model', 'synthetic:opt-125m:1');
const batches = arg('batches', '1,64').split(',').map(Number);
const tokens = Number(arg('tokens', '128'));
const lookahead = Number(arg('lookahead', '15'));
const reps = Number(arg('reps', '3'));
const maxB = Math.max(...batches);
const maxModelLen = Number(arg('max-model-len', '512'));

const host = await DeviceHost.create();
const llmOpts = {
  model, gpuMemoryBytes: Number(arg('gpu-memory-mb', '8192')) * 1024 ** 2, gpuMemoryUtilization: 0.45, maxNumSeqs: maxB, maxNumBatchedTokens: Math.max(512, maxB * 16),
  maxModelLen, numLookaheadTokens: lookahead,
};
const local = await LLM.create({ ...llmOpts, gpu: host.gpu });
const vocab = local.engine.config.vocabSize;
// Bundled runs (the GPU machine has no node_modules) pass the bundled worker: --worker-module .gpu/model_worker.js
const workerArg = arg('worker-module', '');
const workerUrl = workerArg ? new URL(workerArg, `file://${Deno.cwd()}/`) : new URL('../src/actors/model_worker.ts', import.meta.url);
const actor = await spawnActorWorker<ModelActor>(workerUrl, host, { actorId: 'engine', virtualGpuUuid: 'GPU-0' });
await actor.api.createEngine(llmOpts);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const res: Record<string, unknown> = { model, tokens, lookahead, reps, adapter: host.gpu.caps.adapterDescription };
for (const B of batches) {
  const prompts = Array.from({ length: B }, (_, b) => ({ tokens: [2, ...Array.from({ length: 15 }, (_, i) => 4 + ((b * 977 + i * 7919) % (vocab - 4)))] }));
  const params = { maxTokens: tokens, ignoreEos: true };
  const warm = prompts.slice(0, Math.min(B, 4));
  await local.generate(warm, { maxTokens: 8, ignoreEos: true });
  await actor.api.engineGenerate(warm, { maxTokens: 8, ignoreEos: true });
  const times = { local: [] as number[], remote: [] as number[] };
  let same = true;
  for (let r = 0; r < reps; r++) {
    let t0 = performance.now();
    const a = await local.generate(prompts, params);
    times.local.push(performance.now() - t0);
    t0 = performance.now();
    const b = await actor.api.engineGenerate(prompts, params);
    times.remote.push(performance.now() - t0);
    same &&= a.every((o, i) => o.tokenIds.join() === b[i].tokenIds.join());
  }
  const l = median(times.local), rm = median(times.remote);
  res[`B${B}`] = {
    local_ms: +l.toFixed(1), remote_ms: +rm.toFixed(1), overhead_pct: +((rm / l - 1) * 100).toFixed(1),
    local_tok_per_s: +((B * tokens) / l * 1e3).toFixed(1), remote_tok_per_s: +((B * tokens) / rm * 1e3).toFixed(1),
    same_tokens: same, runs_ms: times,
  };
  console.error(`B${B}`, res[`B${B}`]);
}
console.log(JSON.stringify(res, null, 1));
const out = arg('out', '');
if (out) await Deno.writeTextFile(out, JSON.stringify(res, null, 1));
await actor.terminate();
host.destroy();
Deno.exit(0);
