// The remote GPU path in Chromium with real Web Workers (SwiftShader WebGPU): a device host (in this page, or
// in a dedicated worker of its own) and an engine actor in another dedicated worker running OptModel on a
// RemoteGpu. Its logits and greedy tokens must equal, bit for bit, those of the same model in-process on a
// LocalGpu here, and be within the fixtures' tolerance of HF's. With the host in the page, also the handles:
// the worker exports its weights, an in-page actor opens them and reads them back (zero-copy), then the worker
// is terminated mid-work and the opened handle fails with StaleHandleError.
//   run.html?module=/test/e2e/pages/actors-remote.ts&host=page|worker
import { DeviceHost } from '../../../src/actors/device_host.ts';
import { openTensors } from '../../../src/actors/handles.ts';
import type { ModelActor } from '../../../src/actors/model_actor.ts';
import { spawnActorWorker, startHostWorker } from '../../../src/actors/spawn.ts';
import { RemoteGpu } from '../../../src/gpu/remote.ts';
import { generate, LocalGpu, OptModel, parseSafetensors, toFloat32 } from '../../../src/index.ts';

export interface ActorsRemoteResult {
  host: 'page' | 'worker';
  adapter: string;
  logitsBitwiseEqual: boolean;
  maxRemoteLocalDiff: number;
  maxHfDiff: number;
  localTokens: number[];
  remoteTokens: number[];
  /** Page host only: the handle round trip and the fault. */
  handles?: { tensors: number; firstTensorEqual: boolean; afterTerminate: string; clientsLeft: number };
  ms: { total: number };
}

const MODEL_WORKER = new URL('../../../src/actors/model_worker.ts', import.meta.url);

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return a.length === b.length ? m : Infinity;
}

export async function run(params: Record<string, string>): Promise<ActorsRemoteResult> {
  const t0 = performance.now();
  const hostKind = params.host === 'worker' ? 'worker' : 'page';
  const base = new URL('/fixtures/opt-tiny/', location.href).href;
  const ref = (await (await fetch(`${base}reference.json`)).json()) as { prompts: number[][] };
  const refTensors = parseSafetensors(new Uint8Array(await (await fetch(`${base}reference.safetensors`)).arrayBuffer()), 'reference.safetensors');
  const prompt = ref.prompts[0];

  const pageHost = hostKind === 'page' ? await DeviceHost.create() : null;
  const hostWorker = hostKind === 'worker' ? await startHostWorker(new URL('../../../src/actors/host_worker.ts', import.meta.url)) : null;
  const control = pageHost ?? hostWorker!.control;
  const localGpu = pageHost?.gpu ?? await LocalGpu.create();
  const local = await OptModel.load(localGpu, base);
  const want = await local.logits(prompt);
  const localTokens = (await generate(local, prompt, { maxTokens: 8, ignoreEos: true })).tokens;

  const actor = await spawnActorWorker<ModelActor>(MODEL_WORKER, control, { actorId: 'engine-0', virtualGpuUuid: 'GPU-0' });
  await actor.api.loadModel(base);
  const got = await actor.api.logits(prompt);
  const remoteTokens = (await actor.api.generate(prompt, { maxTokens: 8, ignoreEos: true })).tokens;
  const bits = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length);
  const logitsBitwiseEqual = got.length === want.length && bits(got).every((v, i) => v === bits(want)[i]);

  let handles: ActorsRemoteResult['handles'];
  if (pageHost) {
    const exported = await actor.api.exportWeights({ packed: true });
    const reader = await RemoteGpu.connect(pageHost.attach({ actorId: 'reader', virtualGpuUuid: 'GPU-0' }).port);
    const opened = await openTensors(reader, exported);
    const name = 'model.decoder.embed_tokens.weight';
    const t = opened.tensors.get(name)!;
    const viaHandle = new Float32Array(await reader.read(t.buffer, t.offset, t.size));
    const loc = local.weights.locations.get(name)!;
    const direct = new Float32Array(await localGpu.read(loc.buffer, loc.byteOffset, loc.byteLength));
    await actor.api.startBusyLoop(prompt);
    await new Promise((r) => setTimeout(r, 200));
    await actor.terminate();
    let afterTerminate = 'no error';
    try {
      await reader.read(t.buffer, t.offset, 16);
    } catch (e) {
      afterTerminate = `${(e as Error).name}: ${(e as Error).message}`;
    }
    reader.destroy();
    await new Promise((r) => setTimeout(r, 50));
    handles = {
      tensors: opened.tensors.size, firstTensorEqual: maxAbsDiff(viaHandle, direct) === 0 && viaHandle.length > 0,
      afterTerminate, clientsLeft: pageHost.stats().clients.length,
    };
  } else {
    await actor.terminate();
  }
  local.release();
  const adapter = localGpu.caps.adapterDescription;
  if (pageHost) pageHost.destroy();
  else {
    localGpu.destroy();
    await hostWorker!.terminate();
  }
  return {
    host: hostKind, adapter, logitsBitwiseEqual, maxRemoteLocalDiff: maxAbsDiff(got, want),
    maxHfDiff: maxAbsDiff(got, toFloat32(refTensors.get('p0.logits')!)), localTokens, remoteTokens, handles,
    ms: { total: Math.round(performance.now() - t0) },
  };
}
