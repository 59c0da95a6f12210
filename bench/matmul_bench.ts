/**
 * The training matmul kernels side by side on the step's shapes (H100): GPU time per call from pass timestamps,
 * TFLOP/s, and whether the variants' outputs are bit-identical to train_matmul.wgsl's.
 * Usage: deno run -A --unstable-webgpu bench/matmul_bench.ts [--reps 10] [--out FILE]
 */
import { packParams, type GpuBuffer, type KernelSource } from '../src/gpu/gpu.ts';
import { LocalGpu } from '../src/gpu/local.ts';
import { shaderSource } from '../src/kernels/shader.ts';
import { matmul, matmulSource, splitCount } from '../src/train/kernels/matmul.ts';
import type { Tile } from '../src/kernels/tiles.ts';

const args = Deno.args;
const opt = (name: string, dflt: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : dflt; };
const reps = Number(opt('reps', '10'));
const out = opt('out', '');
const gpu = await LocalGpu.create();
console.error('adapter', gpu.caps.adapterDescription);

interface Case { name: string; M: number; N: number; K: number; aKC: boolean; bKC: boolean }
const scale = Number(opt('scale', '1'));
const shrink = (x: number) => scale === 1 ? x : Math.max(4, Math.round(x / scale / 4) * 4);
const fullCases: Case[] = [
  { name: 'fwd qkv/out_proj x W^T', M: 4096, N: 768, K: 768, aKC: true, bKC: true },
  { name: 'fwd fc1 x W^T', M: 4096, N: 3072, K: 768, aKC: true, bKC: true },
  { name: 'fwd fc2 x W^T', M: 4096, N: 768, K: 3072, aKC: true, bKC: true },
  { name: 'dX fc1 (dY W)', M: 4096, N: 768, K: 3072, aKC: true, bKC: false },
  { name: 'dX fc2 (dY W)', M: 4096, N: 3072, K: 768, aKC: true, bKC: false },
  { name: 'dX 768 (dY W)', M: 4096, N: 768, K: 768, aKC: true, bKC: false },
  { name: 'dW 768x768 (dY^T X)', M: 768, N: 768, K: 4096, aKC: false, bKC: false },
  { name: 'dW fc1 3072x768', M: 3072, N: 768, K: 4096, aKC: false, bKC: false },
  { name: 'head logits chunk', M: 2048, N: 50272, K: 768, aKC: true, bKC: true },
  { name: 'head dE chunk', M: 50272, N: 768, K: 2048, aKC: false, bKC: false },
  { name: 'head dHidden chunk', M: 2048, N: 768, K: 50272, aKC: true, bKC: false },
  { name: 'fwd qkv fused x W^T', M: 4096, N: 2304, K: 768, aKC: true, bKC: true },
];
// --scale S: every dimension / S (multiples of 4), to check the variants on a slow device.
const cases = fullCases.map((c) => ({ ...c, M: shrink(c.M), N: shrink(c.N), K: shrink(c.K) }));

function randomBuffer(n: number, seed: number, label: string): Promise<GpuBuffer> {
  const data = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; data[i] = (x / 4294967296 - 0.5) * 0.5; }
  return gpu.createBuffer(4 * n, label).then((b) => { gpu.write(b, data); return b; });
}

// 'lin*': linear.wgsl (x W^T in 64-value segments: other rounding, so compared among themselves).
type Variant = { src: KernelSource; tm: number; tn: number; linear?: boolean };
const variants = (c: Case): Record<string, Variant> => ({
  ...(c.aKC && c.bKC ? {
    lin128x128: { src: shaderSource('linear', { A: 'f32', W: 'f32', Y: 'f32', SPLIT: false, TM: 128, TN: 128 }), tm: 128, tn: 128, linear: true },
    lin64x128: { src: shaderSource('linear', { A: 'f32', W: 'f32', Y: 'f32', SPLIT: false, TM: 64, TN: 128 }), tm: 64, tn: 128, linear: true },
  } : {}),
  t128x128: { src: matmulSource(c.aKC, c.bKC, { tm: 128, tn: 128 }), tm: 128, tn: 128 },
  t64x128: { src: matmulSource(c.aKC, c.bKC, { tm: 64, tn: 128 }), tm: 64, tn: 128 },
});

const results: Record<string, unknown>[] = [];
// Warm the GPU up (clocks) for ~1 s before the first timing.
{
  const n = scale === 1 ? 2048 : 128;
  const x = await randomBuffer(n * n, 3, 'warm'), y = await gpu.createBuffer(4 * n * n, 'warm.y');
  const k = gpu.kernel(matmulSource(true, true, { tm: 128, tn: 128 }));
  const wp = packParams([n, n, n, n, n, n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, { f: 1 }, 0]);
  for (let i = 0; i < 5; i++) {
    for (let j = 0; j < 200; j++) gpu.dispatch(k, [x, x, x, y], wp, [n / 128, n / 128, 1]);
    await gpu.read(y, 0, 16);
  }
  gpu.destroyBuffer(x);
  gpu.destroyBuffer(y);
}
const dummy = await gpu.createBuffer(16, 'dummy');
// The first seconds of GPU work run slow (clocks, first touches): the list runs twice and the second pass counts.
for (const [pass, c] of [...cases.map((c) => [0, c] as const), ...cases.map((c) => [1, c] as const)]) {
  const a = await randomBuffer(c.M * c.K, 1, 'A');
  const b = await randomBuffer(c.K * c.N, 2, 'B');
  const outBuf = await gpu.createBuffer(4 * c.M * c.N, 'C');
  const params = packParams([
    c.M, c.N, c.K, c.aKC ? c.K : c.M, c.bKC ? c.K : c.N, c.N, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, { f: 1 }, 0,
  ]);
  const flop = 2 * c.M * c.N * c.K;
  const row: Record<string, unknown> = { case: c.name, M: c.M, N: c.N, K: c.K };
  const linParams = packParams([c.M, c.N, c.K, c.N, 0, 0]);
  const refs: Record<string, Float32Array> = {};
  const vs = Object.entries(variants(c)).map(([name, v]) => ({
    name, k: gpu.kernel(v.src), grid: [Math.ceil(c.N / v.tn), Math.ceil(c.M / v.tm), 1] as [number, number, number],
    same: true, times: [] as number[], linear: v.linear ?? false,
    bindings: v.linear ? [a, b, dummy, dummy, outBuf] : [a, b, dummy, outBuf], params: v.linear ? linParams : params,
  }));
  for (const v of vs) {
    gpu.dispatch(v.k, v.bindings, v.params, v.grid);
    const got = new Float32Array(await gpu.read(outBuf));
    const ref = refs[String(v.linear)];
    if (ref) { for (let i = 0; i < got.length; i++) if (got[i] !== ref[i]) { v.same = false; break; } }
    else refs[String(v.linear)] = got;
  }
  // Rounds interleave the variants, so a clock change hits them alike; the fastest round counts.
  for (let r = 0; r < 4; r++) {
    for (const v of vs) {
      gpu.beginTimedSpan();
      for (let i = 0; i < reps; i++) gpu.dispatch(v.k, v.bindings, v.params, v.grid);
      const t = await gpu.endTimedSpan();
      v.times.push((t.gpuMs ?? NaN) / reps);
    }
  }
  for (const v of vs) {
    const ms = Math.min(...v.times);
    row[v.name] = { ms: +ms.toFixed(3), tflops: +(flop / ms / 1e9).toFixed(1), bit_identical: v.same };
  }
  if (pass === 1) {
    console.error(JSON.stringify(row));
    results.push(row);
  }
  for (const x of [a, b, outBuf]) gpu.destroyBuffer(x);
}

// The training model's split-K calls through matmul() (tile forced; split count from the cost model), with the
// scratch the model gives them (4 x max(F, T) x H floats).
const splitCases: Case[] = [
  { name: 'split dW 768x768', M: 768, N: 768, K: 4096, aKC: false, bKC: false },
  { name: 'split dW fc1 3072x768', M: 3072, N: 768, K: 4096, aKC: false, bKC: false },
  { name: 'split dW fc2 768x3072', M: 768, N: 3072, K: 4096, aKC: false, bKC: false },
  { name: 'split dX 768', M: 4096, N: 768, K: 768, aKC: true, bKC: false },
  { name: 'split dX fc1', M: 4096, N: 768, K: 3072, aKC: true, bKC: false },
  { name: 'split head dHidden', M: 2048, N: 768, K: 50272, aKC: true, bKC: false },
].map((c) => ({ ...c, M: shrink(c.M), N: shrink(c.N), K: shrink(c.K) }));
const splitFloats = 4 * shrink(4096) * shrink(768);
const scratch = await gpu.createBuffer(4 * splitFloats, 'split');
for (const c of splitCases) {
  const a = await randomBuffer(c.M * c.K, 1, 'A');
  const b = await randomBuffer(c.K * c.N, 2, 'B');
  const outBuf = await gpu.createBuffer(4 * c.M * c.N, 'C');
  const flop = 2 * c.M * c.N * c.K;
  const row: Record<string, unknown> = { case: c.name, M: c.M, N: c.N, K: c.K };
  const tiles: Record<string, Tile> = { s128x128: { tm: 128, tn: 128 } };
  const times: Record<string, number[]> = {};
  const call = (tile: Tile) => matmul(gpu, {
    M: c.M, N: c.N, K: c.K, a: { buffer: a, ld: c.aKC ? c.K : c.M }, aKContiguous: c.aKC, b: { buffer: b, ld: c.bKC ? c.K : c.N },
    bKContiguous: c.bKC, c: { buffer: outBuf, ld: c.N }, splitK: { scratch, floats: splitFloats }, dummy, tile,
  });
  for (const tile of Object.values(tiles)) call(tile);
  await gpu.read(outBuf, 0, 16);
  for (let r = 0; r < 4; r++) {
    for (const [name, tile] of Object.entries(tiles)) {
      gpu.beginTimedSpan();
      for (let i = 0; i < reps; i++) call(tile);
      const t = await gpu.endTimedSpan();
      (times[name] ??= []).push((t.gpuMs ?? NaN) / reps);
    }
  }
  for (const [name, tile] of Object.entries(tiles)) {
    const ms = Math.min(...times[name]);
    row[name] = { ms: +ms.toFixed(3), tflops: +(flop / ms / 1e9).toFixed(1), splits: splitCount(c.M, c.N, c.K, splitFloats, tile) };
  }
  console.error(JSON.stringify(row));
  results.push(row);
  for (const x of [a, b, outBuf]) gpu.destroyBuffer(x);
}
const res = { adapter: gpu.caps.adapterDescription, date: new Date().toISOString(), reps, results };
console.log(JSON.stringify(res, null, 1));
if (out) await Deno.writeTextFile(out, JSON.stringify(res, null, 1));
Deno.exit(0);
