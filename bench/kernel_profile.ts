/**
 * Per-kernel timings at OPT-125m's prefill (8 x 512 tokens) and decode (1 token) shapes, to find where a
 * forward's time goes. Each kernel is recorded `iters` times back to back, then one sync; the median of 3
 * repeats is reported. Also the CPU time to record one decode step.
 * Usage: deno run -A --unstable-webgpu bench/kernel_profile.ts [--dtype f32|f16] [--out FILE]
 */
import { LocalGpu } from '../src/gpu/local.ts';
import type { GpuBuffer } from '../src/gpu/gpu.ts';
import { linear } from '../src/kernels/linear.ts';
import { layerNorm } from '../src/kernels/layernorm.ts';
import { buildQueryBlocks, pagedAttention, queryBlockSize, writeKvCache, attentionScratchBytes } from '../src/kernels/paged_attention.ts';
import { gatherRows } from '../src/kernels/embedding.ts';
import { sampleAndAdvance, packSamplingRows } from '../src/kernels/sample.ts';
import type { ElementType } from '../src/kernels/shader.ts';

const args = Deno.args;
const optArg = (n: string, d: string) => { const i = args.indexOf(`--${n}`); return i >= 0 ? args[i + 1] : d; };
const dt = optArg('dtype', 'f32') as ElementType;
const gpu = await LocalGpu.create();
const e = dt === 'f16' ? 2 : 4;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[1];
const buf = (bytes: number, label: string) => gpu.createBuffer(bytes, label);
const rows: Array<Record<string, unknown>> = [];
async function time(name: string, flops: number, bytes: number, body: () => void, iters = 100) {
  body();
  await gpu.sync();
  const ts: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) body();
    await gpu.sync();
    ts.push((performance.now() - t0) / iters);
  }
  const ms = median(ts);
  const row = { name, ms: +ms.toFixed(4), tflops: +(flops / ms / 1e9).toFixed(2), GBps: +(bytes / ms / 1e6).toFixed(0) };
  rows.push(row);
  console.error(JSON.stringify(row));
}
const H = 768, F = 3072, V = 50272, heads = 12, hd = 64, bs = 16;
const dummy = await buf(16, 'dummy');
const fill = (b: GpuBuffer, n: number) => { gpu.write(b, new Float32Array(n / 4).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5)); };
const wQkv = await buf(3 * H * H * e, 'wqkv'), wFc1 = await buf(F * H * e, 'wfc1'), wFc2 = await buf(F * H * e, 'wfc2'), bias = await buf(F * e, 'b');
const wEmb = await buf(V * H * e, 'emb');
for (const b of [wQkv, wFc1, wFc2, wEmb]) await fill(b, b.size);
for (const T of [4096, 1]) {
  const x = await buf(T * F * e, 'x'), y = await buf(T * F * e, 'y'), r = await buf(T * H * e, 'r');
  await fill(x, x.size);
  const lin = (w: GpuBuffer, N: number, K: number, extra: object = {}) => () =>
    linear(gpu, { x, w, bias, y, M: T, N, K, act: dt, weight: dt, dummy, ...extra });
  await time(`T${T} qkv ${T}x${3 * H}x${H}`, 2 * T * 3 * H * H, 3 * H * H * e, lin(wQkv, 3 * H, H));
  await time(`T${T} fc1 ${T}x${F}x${H} relu`, 2 * T * F * H, F * H * e, lin(wFc1, F, H, { relu: true }));
  await time(`T${T} fc2 ${T}x${H}x${F} +res`, 2 * T * F * H, F * H * e, lin(wFc2, H, F, { residual: r }));
  const lg = await buf(Math.min(T, 512) * V * 4, 'logits');
  const Tl = Math.min(T, 512);
  await time(`T${Tl} lm_head ${Tl}x${V}x${H}`, 2 * Tl * V * H, V * H * e, () =>
    linear(gpu, { x, w: wEmb, y: lg, M: Tl, N: V, K: H, act: dt, weight: dt, out: "f32", dummy }), T === 1 ? 100 : 5);
  await time(`T${T} layernorm`, 0, 2 * T * H * e, () => layerNorm(gpu, { x, gamma: bias, beta: bias, y, rows: T, dim: H, act: dt, weight: dt }));
  // Attention: 8 sequences of 512 (prefill) or one token at position 511 (decode).
  const L = T === 1 ? 512 : 512, S = T === 1 ? 1 : 8;
  const numBlocks = S * L / bs;
  const kc = await buf(numBlocks * bs * H * e, 'kc'), vc = await buf(numBlocks * bs * H * e, 'vc');
  const u32 = async (a: Uint32Array) => { const b = await buf(Math.max(16, a.byteLength), 'u'); gpu.write(b, a); return b; };
  const positions = await u32(Uint32Array.from({ length: T }, (_, i) => (T === 1 ? L - 1 : i % L)));
  const seqs = await u32(Uint32Array.from({ length: T }, (_, i) => (T === 1 ? 0 : Math.floor(i / L))));
  const batch = {
    numTokens: T, positions, tokenSeq: seqs, slotMapping: positions, blockTables: await u32(Uint32Array.from({ length: numBlocks }, (_, i) => i)),
    maxBlocksPerSeq: L / bs, maxContext: L,
    queryBlocks: await u32(buildQueryBlocks(Array.from({ length: S }, (_, s) => [s * (T / S), T / S] as const), queryBlockSize(hd))),
    numQueryBlocks: S * Math.ceil(T / S / queryBlockSize(hd)),
  };
  const sc = attentionScratchBytes(T, heads, hd, L);
  const scratch = { stats: await buf(sc.stats, 's'), acc: await buf(sc.acc, 'a') };
  const qkv = await buf(T * 3 * H * e, 'qkv');
  await fill(qkv, qkv.size);
  await time(`T${T} kv_write`, 0, 2 * T * H * e * 2, () => writeKvCache(gpu, { qkv, batch, cache: { key: kc, value: vc }, hidden: H, act: dt, kv: dt }));
  const attnFlops = T === 1 ? 4 * L * H : 4 * S * (L * (L + 1) / 2) * H;
  await time(`T${T} paged_attention ctx${L}`, attnFlops, T === 1 ? 2 * L * H * e : 2 * S * L * H * e, () =>
    pagedAttention(gpu, { qkv, out: y, batch, cache: { key: kc, value: vc }, numHeads: heads, headDim: hd, blockSize: bs, act: dt, kv: dt, scratch }));
  await time(`T${T} embedding`, 0, T * H * e, () =>
    gatherRows(gpu, { index: seqs, table: { buffer: wEmb, rows: V, dim: H, dtype: dt, rowsPerWindow: V }, out: y, numTokens: T, act: dt, indexOffset: 0, accumulate: false }));
  if (T === 1) {
    const sb = {
      logits: lg, sampling: await u32(packSamplingRows([{ temperature: 0, topK: 0, topP: 1, seed: 0 }])), blockTables: batch.blockTables,
      seqState: await u32(Uint32Array.of(0, 0)), nextIds: await buf(16, 'a'), nextPositions: await buf(16, 'b'), nextSlots: await buf(16, 'c'), outTokens: await buf(4096, 'o'),
    };
    await time('sample greedy', 0, V * 4, () => sampleAndAdvance(gpu, sb, { numSeqs: 1, vocab: V, blockSize: bs, maxBlocksPerSeq: 32, outCapacity: 1000 }));
    gpu.write(sb.sampling, packSamplingRows([{ temperature: 0.8, topK: 50, topP: 0.9, seed: 1 }]));
    await time('sample top-k/top-p', 0, V * 4, () => sampleAndAdvance(gpu, sb, { numSeqs: 1, vocab: V, blockSize: bs, maxBlocksPerSeq: 32, outCapacity: 1000 }));
    // Empty-ish dispatch cost: a 1-row layernorm 100 times.
    await time('100 tiny dispatches', 0, 0, () => { for (let i = 0; i < 100; i++) layerNorm(gpu, { x, gamma: bias, beta: bias, y, rows: 1, dim: 64, act: dt, weight: dt }); }, 5);
  }
}
const out = optArg('out', '');
console.log(JSON.stringify(rows));
if (out) await Deno.writeTextFile(out, JSON.stringify(rows, null, 1));
Deno.exit(0);
