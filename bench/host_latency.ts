/**
 * What a request through the device host costs, alone: the round trip of `executed()` (a Ping) with nothing
 * queued, and a device copy + Ping, small and OPT-125m-sized (501 MB), with one party attached (the host
 * neither times nor holds back a lone actor) and with two (every batch timed by timestamp queries for the fair
 * share). Medians of --reps. What bounds the weight sync's ~3 ms (issue 5) is one of these.
 *
 * Usage: deno run -A --unstable-webgpu bench/host_latency.ts [--reps 30] [--bytes 500957184] [--out FILE]
 */
import { DeviceHost } from '../src/actors/device_host.ts';
import { RemoteGpu } from '../src/gpu/remote.ts';

const arg = (n: string, d: string) => { const i = Deno.args.indexOf(`--${n}`); return i >= 0 ? Deno.args[i + 1] : d; };
const reps = Number(arg('reps', '30'));
const big = Number(arg('bytes', '500957184'));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const host = await DeviceHost.create();
const a = await RemoteGpu.connect(host.attach({ actorId: 'a', virtualGpuUuid: 'GPU-0' }).port);
const [src, dst] = [await a.createBuffer(big, 'src'), await a.createBuffer(big, 'dst')];
await a.sync();

async function measure(what: string, body: () => void): Promise<number> {
  const xs: number[] = [];
  for (let r = 0; r <= reps; r++) {
    await a.sync(); // GPU idle, nothing queued
    const t0 = performance.now();
    body();
    await a.executed();
    if (r > 0) xs.push(performance.now() - t0);
  }
  const m = +median(xs).toFixed(3);
  console.error(what, m);
  return m;
}

const res: Record<string, unknown> = { adapter: host.gpu.caps.adapterDescription, reps, bytes: big };
for (const parties of [1, 2]) {
  const other = parties === 2 ? await RemoteGpu.connect(host.attach({ actorId: 'b', virtualGpuUuid: 'GPU-0' }).port) : null;
  res[`parties${parties}`] = {
    ping_ms: await measure(`${parties} parties: ping`, () => {}),
    copy_4k_ms: await measure(`${parties} parties: 4 KB copy + ping`, () => { a.copy(src, 0, dst, 0, 4096); a.flush(); }),
    copy_big_ms: await measure(`${parties} parties: ${big} B copy + ping`, () => { a.copy(src, 0, dst, 0, big); a.flush(); }),
  };
  other?.destroy();
}
{
  // The same copies on the host's own device, no messages: submit alone.
  const g = host.gpu;
  const [s, d] = [await g.createBuffer(big, 's'), await g.createBuffer(big, 'd')];
  const xs: number[] = [];
  for (let r = 0; r <= reps; r++) {
    await g.sync();
    const t0 = performance.now();
    g.copy(s, 0, d, 0, big);
    g.flush();
    if (r > 0) xs.push(performance.now() - t0);
  }
  res.local_copy_big_submit_ms = +median(xs).toFixed(3);
  console.error('local copy submit', res.local_copy_big_submit_ms);
}
console.log(JSON.stringify(res, null, 1));
const out = arg('out', '');
if (out) await Deno.writeTextFile(out, JSON.stringify(res, null, 1));
Deno.exit(0);
