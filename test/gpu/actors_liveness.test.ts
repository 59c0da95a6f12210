// Liveness (issue 5, item 7): a worker killed without its spawner noticing (no error event, no detach; a
// MessagePort has no close event in Deno) shows as silence, and the device host detaches it after
// livenessTimeoutMs: its buffers are freed, its handles invalidated with a reason that says so. Actors that are
// alive but idle keep being heard (RemoteGpu's heartbeats) and stay attached.
import { DeviceHost } from '../../src/actors/device_host.ts';
import { openHandle } from '../../src/actors/handles.ts';
import type { ModelActor } from '../../src/actors/model_actor.ts';
import { spawnActorWorker } from '../../src/actors/spawn.ts';
import { InvalidInputError, StaleHandleError } from '../../src/errors.ts';
import { RemoteGpu } from '../../src/gpu/remote.ts';
import { assert, assertEquals, assertRejects, FIXTURES } from './helpers.ts';

const opts = { sanitizeResources: false, sanitizeOps: false };
const MODEL_WORKER = new URL('../../src/actors/model_worker.ts', import.meta.url);
const HEARTBEAT_MS = 100;
const TIMEOUT_MS = 800;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test('liveness: a worker terminated behind the spawner\'s back is detached after the timeout; idle live actors stay', opts, async () => {
  const host = await DeviceHost.create({}, { heartbeatMs: HEARTBEAT_MS, livenessTimeoutMs: TIMEOUT_MS });
  try {
    const bytesBefore = host.gpu.stats().bytesAllocated;
    const w = await spawnActorWorker<ModelActor>(MODEL_WORKER, host, { actorId: 'trainer-w', virtualGpuUuid: 'GPU-0' });
    await w.api.loadModel(`${FIXTURES}opt-tiny`);
    const exported = await w.api.exportWeights({ packed: false });
    assert(exported.kind === 'tensors');
    const handle = Object.values(exported.handles)[0];
    // An in-process actor and the worker, both idle for several timeouts: heartbeats keep them attached.
    const idle = await RemoteGpu.connect(host.attach({ actorId: 'idle-engine', virtualGpuUuid: 'GPU-0' }).port);
    const view = await openHandle(idle, handle);
    await sleep(3 * TIMEOUT_MS);
    assertEquals(host.stats().clients.map((c) => c.actorId).sort(), ['idle-engine', 'trainer-w'], 'idle actors are alive');
    assert(host.stats().clients.find((c) => c.actorId === 'trainer-w')!.bytesInUse > 0);

    // Kill the worker directly: spawnActorWorker's terminate() (which detaches) is never called.
    const killedAt = performance.now();
    w.worker.terminate();
    while (host.stats().clients.some((c) => c.actorId === 'trainer-w')) {
      assert(performance.now() - killedAt < TIMEOUT_MS + 5000, 'the dead worker was never detached');
      await sleep(20);
    }
    const after = performance.now() - killedAt;
    console.log(`  the killed worker was detached ${after.toFixed(0)} ms after it died (timeout ${TIMEOUT_MS} ms, heartbeat ${HEARTBEAT_MS} ms)`);
    assert(after >= TIMEOUT_MS - HEARTBEAT_MS, `detached after ${after} ms: before the timeout`);
    const st = host.stats();
    assertEquals(st.clients.map((c) => c.actorId), ['idle-engine'], 'the other actor is unharmed');
    assertEquals(st.exportedBuffers, 0, "the dead actor's buffers are freed");
    const err = await assertRejects(() => idle.read(view), StaleHandleError, 'trainer-w');
    assert(err.message.includes('stopped responding'), err.message);
    await assertRejects(() => openHandle(idle, handle), StaleHandleError);
    // The survivor keeps working.
    const b = await idle.createBuffer(64, 'after');
    idle.write(b, new Float32Array(16).fill(3));
    assertEquals(Array.from(new Float32Array(await idle.read(b))), new Array(16).fill(3));
    idle.destroy();
    await w.terminate(); // the spawner finds out late: a no-op on the host
    await sleep(50);
    assertEquals(host.stats().clients.length, 0);
    assertEquals(host.gpu.stats().bytesAllocated, bytesBefore, 'every byte freed');
  } finally {
    host.destroy();
  }
});

Deno.test('liveness: bad settings are InvalidInputErrors naming them', () => {
  assert(DeviceHost.length >= 1);
  const gpu = {} as ConstructorParameters<typeof DeviceHost>[0];
  const make = (o: ConstructorParameters<typeof DeviceHost>[1]) => () => new DeviceHost(gpu, o);
  for (const [o, name] of [
    [{ heartbeatMs: 0 }, 'heartbeatMs'],
    [{ heartbeatMs: 1000, livenessTimeoutMs: 500 }, 'livenessTimeoutMs'],
    [{ gpuWindowMs: 0 }, 'gpuWindowMs'],
  ] as const) {
    let err: unknown;
    try {
      make(o)();
    } catch (e) {
      err = e;
    }
    assert(err instanceof InvalidInputError && err.message.includes(name), `${JSON.stringify(o)}: ${err}`);
  }
});
