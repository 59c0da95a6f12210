// The remote GPU path: the same model code on a RemoteGpu (command lists to a device host) gives bitwise the
// same logits and tokens as in-process on the host's own LocalGpu, on the opt-tiny fixtures; in-process
// actors, actors in Deno Web Workers, and a device host in a worker of its own. Also checked against the HF
// references, so "equal" cannot mean "equally broken".
import * as Comlink from 'comlink';
import { DeviceHost } from '../../src/actors/device_host.ts';
import type { ModelActor } from '../../src/actors/model_actor.ts';
import { spawnActorWorker, startHostWorker } from '../../src/actors/spawn.ts';
import { LLM } from '../../src/engine/llm.ts';
import { RemoteGpu } from '../../src/gpu/remote.ts';
import { generate } from '../../src/model/generate.ts';
import { OptModel } from '../../src/model/opt.ts';
import { assert, assertEquals, FIXTURES, greedyStepsToCompare, maxAbsDiff, readReference } from './helpers.ts';

const MODEL_WORKER = new URL('../../src/actors/model_worker.ts', import.meta.url);
const opts = { sanitizeResources: false, sanitizeOps: false };
const LOGITS_TOLERANCE = 1e-4; // fixtures README, tiny sets

let hostPromise: Promise<DeviceHost> | undefined;
const sharedHost = () => (hostPromise ??= DeviceHost.create());

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** In-process reference on the host's own LocalGpu: logits and greedy tokens of every fixture prompt. */
async function localReference(host: DeviceHost, set: string) {
  const { ref } = await readReference(set);
  const model = await OptModel.load(host.gpu, `${FIXTURES}${set}`);
  const logits: Float32Array[] = [];
  const greedy: number[][] = [];
  for (let i = 0; i < ref.prompts.length; i++) {
    logits.push(await model.logits(ref.prompts[i]));
    greedy.push((await generate(model, ref.prompts[i], { maxTokens: ref.prompt_results[i].greedy.length, ignoreEos: true })).tokens);
  }
  model.release();
  return { ref, logits, greedy };
}

Deno.test('in-process RemoteGpu: OptModel logits and generate() are bitwise those of LocalGpu (opt-tiny, opt-tiny-postln)', opts, async () => {
  const host = await sharedHost();
  for (const set of ['opt-tiny', 'opt-tiny-postln']) {
    const want = await localReference(host, set);
    const gpu = await RemoteGpu.connect(host.attach({ actorId: `inproc-${set}`, virtualGpuUuid: 'GPU-0' }).port);
    const model = await OptModel.load(gpu, `${FIXTURES}${set}`);
    const { tensors } = await readReference(set);
    for (let i = 0; i < want.ref.prompts.length; i++) {
      const got = await model.logits(want.ref.prompts[i]);
      assert(bitsEqual(got, want.logits[i]), `${set} prompt ${i}: remote logits differ from local (max |diff| ${maxAbsDiff(got, want.logits[i])})`);
      const hf = maxAbsDiff(got, tensors(`p${i}.logits`)!);
      assert(hf <= LOGITS_TOLERANCE, `${set} prompt ${i}: |logits - HF| ${hf}`);
      const toks = (await generate(model, want.ref.prompts[i], { maxTokens: want.greedy[i].length, ignoreEos: true })).tokens;
      assertEquals(toks, want.greedy[i], `${set} prompt ${i}: greedy tokens`);
      const n = greedyStepsToCompare(want.ref.prompt_results[i].greedy_margins);
      assertEquals(toks.slice(0, n), want.ref.prompt_results[i].greedy.slice(0, n), `${set} prompt ${i}: HF greedy`);
    }
    const stats = gpu.stats();
    assert(stats.dispatches > 0 && stats.submits > 0);
    gpu.destroy();
  }
  await new Promise((r) => setTimeout(r, 50)); // the host runs the goodbye
  assertEquals(host.stats().clients.length, 0, 'the actors detached');
});

Deno.test('Deno worker: OptModel logits, generate() and the LLM engine match in-process bitwise (opt-tiny)', opts, async () => {
  const host = await sharedHost();
  const set = 'opt-tiny';
  const want = await localReference(host, set);
  const actor = await spawnActorWorker<ModelActor>(MODEL_WORKER, host, { actorId: 'engine-0', virtualGpuUuid: 'GPU-0' });
  try {
    assertEquals((actor.info as { virtualGpuUuid: string }).virtualGpuUuid, 'GPU-0');
    await actor.api.loadModel(`${FIXTURES}${set}`);
    for (let i = 0; i < want.ref.prompts.length; i++) {
      const got = await actor.api.logits(want.ref.prompts[i]);
      assert(bitsEqual(got, want.logits[i]), `prompt ${i}: worker logits differ from local (max |diff| ${maxAbsDiff(got, want.logits[i])})`);
      const out = await actor.api.generate(want.ref.prompts[i], { maxTokens: want.greedy[i].length, ignoreEos: true });
      assertEquals(out.tokens, want.greedy[i], `prompt ${i}: worker greedy tokens`);
    }
    // The serving engine: every fixture prompt in one batch, greedy, and seeded sampling.
    const llmOpts = { model: `${FIXTURES}${set}`, gpuMemoryBytes: 64 << 20, gpuMemoryUtilization: 0.5, maxNumSeqs: 16 };
    const local = await LLM.create({ ...llmOpts, gpu: host.gpu });
    await actor.api.createEngine(llmOpts);
    const prompts = want.ref.prompts.map((tokens) => ({ tokens }));
    for (const params of [{ maxTokens: 20, ignoreEos: true }, { maxTokens: 20, ignoreEos: true, temperature: 0.9, topP: 0.95, seed: 7 }]) {
      const a = await local.generate(prompts, params);
      const b = await actor.api.engineGenerate(prompts, params);
      assertEquals(b.map((o) => o.tokenIds), a.map((o) => o.tokenIds), `engine ${JSON.stringify(params)}`);
      assertEquals(b.map((o) => o.text), a.map((o) => o.text));
    }
    // HF greedy parity of the engine in the worker (up to each prompt's first near-tie).
    const outs = await actor.api.engineGenerate(prompts, want.ref.prompt_results.map((r) => ({ maxTokens: r.greedy.length, ignoreEos: true })));
    outs.forEach((o, i) => {
      const n = greedyStepsToCompare(want.ref.prompt_results[i].greedy_margins);
      assertEquals(o.tokenIds.slice(0, n), want.ref.prompt_results[i].greedy.slice(0, n), `engine prompt ${i} vs HF`);
    });
    local.engine.runner.release?.();
    const s = await actor.api.gpuStats();
    console.log(`  worker actor: ${s.dispatches} dispatches recorded, ${s.submits} submits, ${s.bytesAllocated} bytes held`);
  } finally {
    await actor.terminate();
  }
  assertEquals(host.stats().clients.length, 0);
});

Deno.test('device host in its own worker, actor in another: logits bitwise equal to in-process', opts, async () => {
  const host = await sharedHost();
  const want = await localReference(host, 'opt-tiny');
  const hw = await startHostWorker();
  try {
    const actor = await spawnActorWorker<ModelActor>(MODEL_WORKER, hw.control, { actorId: 'engine-w', virtualGpuUuid: 'GPU-1' });
    try {
      await actor.api.loadModel(`${FIXTURES}opt-tiny`);
      for (let i = 0; i < want.ref.prompts.length; i++) {
        const got = await actor.api.logits(want.ref.prompts[i]);
        // A different device of the same adapter: same kernels, same order, so the same bits.
        assert(bitsEqual(got, want.logits[i]), `prompt ${i}: max |diff| ${maxAbsDiff(got, want.logits[i])}`);
      }
      const st = await hw.control.stats();
      assertEquals(st.clients.map((c) => c.actorId), ['engine-w']);
      assert(st.clients[0].bytesInUse > 0);
    } finally {
      await actor.terminate();
    }
    assertEquals((await hw.control.stats()).clients.length, 0, 'terminate detached the actor on the host worker');
  } finally {
    await hw.terminate();
  }
  void Comlink;
});
