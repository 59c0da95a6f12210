// Every kernel against its plain-TS CPU reference, on random inputs, including shapes that are not tile
// multiples, windowed tables, several sequences with scattered blocks, and split-K partitions.

import type { Gpu, GpuBuffer } from '../../src/gpu/gpu.ts';
import { gatherRows, gatherRowsReference } from '../../src/kernels/embedding.ts';
import { layerNorm, layerNormReference } from '../../src/kernels/layernorm.ts';
import { linear, linearReference, segmentedScratchBytes, SPLIT_TILED_MIN_ROWS } from '../../src/kernels/linear.ts';
import { ATTENTION_PARTITION, attentionKernelChoice, attentionReference, attentionScratchBytes, buildQueryBlocks, pagedAttention, queryBlockSize, writeKvCache } from '../../src/kernels/paged_attention.ts';
import { argmaxReference, packSamplingRows, sampleAndAdvance } from '../../src/kernels/sample.ts';
import { assert, assertEquals, maxAbsDiff, randomFloats, testGpu } from './helpers.ts';

const DECODE_MIN_TOKENS = attentionKernelChoice.decodeKernelMinTokens;

async function upload(gpu: Gpu, data: Float32Array | Uint32Array, label = 'test'): Promise<GpuBuffer> {
  const b = await gpu.createBuffer(Math.max(4, data.byteLength), label);
  gpu.write(b, data);
  return b;
}
/** Query blocks for a flat batch whose tokens are grouped by sequence, in order. */
async function queryBlocksFor(gpu: Gpu, seqs: number[], headDim: number): Promise<{ queryBlocks: GpuBuffer; numQueryBlocks: number }> {
  const runs: Array<[number, number]> = [];
  seqs.forEach((s, t) => {
    if (t > 0 && seqs[t - 1] === s) runs[runs.length - 1][1]++;
    else runs.push([t, 1]);
  });
  const blocks = buildQueryBlocks(runs, queryBlockSize(headDim));
  return { queryBlocks: await upload(gpu, blocks), numQueryBlocks: blocks.length / 2 };
}

async function readF32(gpu: Gpu, b: GpuBuffer, n: number): Promise<Float32Array> {
  return new Float32Array(await gpu.read(b, 0, n * 4));
}

Deno.test('linear: tiled and GEMV paths match the reference (bias, relu, residual, odd shapes)', async () => {
  const gpu = await testGpu();
  const dummy = await gpu.createBuffer(16, 'dummy');
  for (const [M, N, K] of [[1, 70, 36], [3, 130, 64], [4, 64, 16], [5, 33, 20], [67, 129, 72], [130, 64, 48]]) {
    for (const opts of [{}, { relu: true }, { residual: true }]) {
      const x = randomFloats(M * K, M * 31 + K), w = randomFloats(N * K, N + 7, 0.5), bias = randomFloats(N, 3, 0.1);
      const res = randomFloats(M * N, 11);
      const yb = await gpu.createBuffer(M * N * 4, 'y');
      linear(gpu, {
        x: await upload(gpu, x), w: await upload(gpu, w), bias: await upload(gpu, bias),
        residual: 'residual' in opts ? await upload(gpu, res) : undefined,
        y: yb, M, N, K, relu: 'relu' in opts, act: 'f32', weight: 'f32', dummy,
      });
      const want = linearReference(x, w, bias, M, N, K, { relu: 'relu' in opts, residual: 'residual' in opts ? res : undefined });
      const err = maxAbsDiff(await readF32(gpu, yb, M * N), want);
      assert(err < 2e-5, `M=${M} N=${N} K=${K} ${JSON.stringify(opts)}: max error ${err}`);
    }
  }
});

Deno.test('linear: 128x128, 64x128 and 128x64 tiles give the same bits (bias, relu, residual, ragged edges, ldy window)', async () => {
  const gpu = await testGpu();
  const dummy = await gpu.createBuffer(16, 'dummy');
  const M = 200, N = 136, K = 200, ld = 150, col = 7;
  const x = await upload(gpu, randomFloats(M * K, 41)), w = await upload(gpu, randomFloats(N * K, 42, 0.5));
  const bias = await upload(gpu, randomFloats(N, 43, 0.1)), res = await upload(gpu, randomFloats(M * N, 44));
  const want = linearReference(await readF32(gpu, x, M * K), await readF32(gpu, w, N * K), await readF32(gpu, bias, N), M, N, K, { relu: true, residual: await readF32(gpu, res, M * N) });
  let first: Float32Array | null = null;
  for (const tile of [{ tm: 128, tn: 128 }, { tm: 64, tn: 128 }, { tm: 128, tn: 64 }, { tm: 64, tn: 64 }]) {
    const y = await upload(gpu, new Float32Array(M * ld).fill(-3));
    linear(gpu, { x, w, bias, residual: res, y, M, N, K, relu: true, ldy: ld, ycol: col, act: 'f32', weight: 'f32', dummy, tile });
    const got = await readF32(gpu, y, M * ld);
    const window = new Float32Array(M * N);
    for (let m = 0; m < M; m++) {
      for (let j = 0; j < ld; j++) if (j < col || j >= col + N) assertEquals(got[m * ld + j], -3);
      window.set(got.subarray(m * ld + col, m * ld + col + N), m * N);
    }
    const err = maxAbsDiff(window, want);
    assert(err < 2e-5, `tile ${tile.tm}x${tile.tn}: max error ${err}`);
    if (first) assert(window.every((v, i) => Object.is(v, first![i])), `tile ${tile.tm}x${tile.tn} differs from 128x128`);
    else first = window;
  }
});

Deno.test('linear: writes a column window of a wider output (ldy, ycol) and nothing else', async () => {
  const gpu = await testGpu();
  const dummy = await gpu.createBuffer(16, 'dummy');
  for (const M of [1, 9]) {
    const K = 32, N = 40, ld = 100, col = 30;
    const x = randomFloats(M * K, 5), w = randomFloats(N * K, 6);
    const y = await upload(gpu, new Float32Array(M * ld).fill(-7));
    linear(gpu, { x: await upload(gpu, x), w: await upload(gpu, w), y, M, N, K, ldy: ld, ycol: col, act: 'f32', weight: 'f32', dummy });
    const got = await readF32(gpu, y, M * ld);
    const want = linearReference(x, w, null, M, N, K);
    for (let m = 0; m < M; m++) {
      for (let j = 0; j < ld; j++) {
        const v = got[m * ld + j];
        if (j >= col && j < col + N) assert(Math.abs(v - want[m * N + j - col]) < 2e-5);
        else assertEquals(v, -7);
      }
    }
  }
});

Deno.test('layerNorm matches the reference', async () => {
  const gpu = await testGpu();
  for (const [rows, dim] of [[1, 64], [7, 48], [3, 768], [2, 300]]) {
    const x = randomFloats(rows * dim, dim, 3), g = randomFloats(dim, 2), b = randomFloats(dim, 4, 0.1);
    const y = await gpu.createBuffer(rows * dim * 4, 'y');
    layerNorm(gpu, { x: await upload(gpu, x), gamma: await upload(gpu, g), beta: await upload(gpu, b), y, rows, dim, act: 'f32', weight: 'f32' });
    const err = maxAbsDiff(await readF32(gpu, y, rows * dim), layerNormReference(x, g, b, rows, dim));
    assert(err < 1e-5, `rows=${rows} dim=${dim}: ${err}`);
  }
});

Deno.test('gatherRows: token rows from a table bound in windows, then accumulated positions', async () => {
  const gpu = await testGpu();
  const rows = 300, dim = 16;
  const table = randomFloats(rows * dim, 9);
  const ids = Uint32Array.from([0, 299, 64, 63, 128, 5, 200]);
  const out = await gpu.createBuffer(ids.length * dim * 4, 'out');
  // rowsPerWindow 64: five windows, each token's row in exactly one.
  const t = { buffer: await upload(gpu, table), rows, dim, dtype: 'f32' as const, rowsPerWindow: 64 };
  const idx = await upload(gpu, ids);
  gatherRows(gpu, { index: idx, table: t, out, numTokens: ids.length, act: 'f32', indexOffset: 0, accumulate: false });
  const pos = Uint32Array.from([0, 1, 2, 3, 4, 5, 6]);
  gatherRows(gpu, { index: await upload(gpu, pos), table: t, out, numTokens: ids.length, act: 'f32', indexOffset: 2, accumulate: true });
  const want = new Float32Array(ids.length * dim);
  gatherRowsReference(ids, table, dim, 0, want, false);
  gatherRowsReference(pos, table, dim, 2, want, true);
  assertEquals(await readF32(gpu, out, ids.length * dim), want);
});

Deno.test('paged attention: mixed batch over scattered blocks matches dense causal attention (direct and split-K)', async () => {
  const gpu = await testGpu();
  for (const [numHeads, headDim, blockSize] of [[4, 16, 8], [2, 64, 16], [3, 80, 32]]) {
    const H = numHeads * headDim;
    // Three sequences: a prefill chunk from 0, a chunk continuing a cached prefix, a long decode (split-K).
    const lens = [37, 90, 2 * ATTENTION_PARTITION + 41];
    const chunkStart = [0, 60, lens[2] - 1];
    const maxBlocks = Math.ceil(Math.max(...lens) / blockSize);
    const numBlocks = 3 * maxBlocks + 5;
    // A permutation of blocks so sequences' blocks are scattered through the pool.
    const perm = Array.from({ length: numBlocks }, (_, i) => (i * 7 + 3) % numBlocks);
    const tables = new Uint32Array(3 * maxBlocks);
    for (let s = 0; s < 3; s++) for (let b = 0; b < maxBlocks; b++) tables[s * maxBlocks + b] = perm[s * maxBlocks + b];
    const keys = lens.map((n, s) => randomFloats(n * H, 100 + s));
    const values = lens.map((n, s) => randomFloats(n * H, 200 + s));
    const slotOf = (s: number, p: number) => tables[s * maxBlocks + Math.floor(p / blockSize)] * blockSize + (p % blockSize);
    // Cache prefill: positions before each chunk are already cached (written through the kernel too).
    const keyCache = await gpu.createBuffer(numBlocks * blockSize * H * 4, 'k');
    const valueCache = await gpu.createBuffer(numBlocks * blockSize * H * 4, 'v');
    const tokens: Array<{ s: number; p: number }> = [];
    for (let s = 0; s < 3; s++) for (let p = 0; p < lens[s]; p++) tokens.push({ s, p });
    const qkv = new Float32Array(tokens.length * 3 * H);
    const q = randomFloats(tokens.length * H, 77);
    tokens.forEach(({ s, p }, t) => {
      qkv.set(q.subarray(t * H, (t + 1) * H), t * 3 * H);
      qkv.set(keys[s].subarray(p * H, (p + 1) * H), t * 3 * H + H);
      qkv.set(values[s].subarray(p * H, (p + 1) * H), t * 3 * H + 2 * H);
    });
    const allSlots = Uint32Array.from(tokens.map(({ s, p }) => slotOf(s, p)));
    const cache = { key: keyCache, value: valueCache };
    const fullBatch = {
      numTokens: tokens.length, positions: await upload(gpu, Uint32Array.from(tokens.map((t) => t.p))),
      tokenSeq: await upload(gpu, Uint32Array.from(tokens.map((t) => t.s))), slotMapping: await upload(gpu, allSlots),
      blockTables: await upload(gpu, tables), maxBlocksPerSeq: maxBlocks, maxContext: Math.max(...lens),
      queryBlocks: await upload(gpu, new Uint32Array(2)), numQueryBlocks: 0,
    };
    const qkvBuf = await upload(gpu, qkv);
    writeKvCache(gpu, { qkv: qkvBuf, batch: fullBatch, cache, hidden: H, act: 'f32', kv: 'f32' });
    // Attention for the step's query tokens only (each sequence's chunk).
    const stepTokens = tokens.map((t, i) => ({ ...t, i })).filter(({ s, p }) => p >= chunkStart[s]);
    const stepQkv = new Float32Array(stepTokens.length * 3 * H);
    stepTokens.forEach(({ i }, t) => stepQkv.set(qkv.subarray(i * 3 * H, (i + 1) * 3 * H), t * 3 * H));
    const positions = stepTokens.map((t) => t.p), seqs = stepTokens.map((t) => t.s);
    const want = attentionReference(
      Float32Array.from(stepTokens.flatMap(({ i }) => Array.from(q.subarray(i * H, (i + 1) * H)))),
      keys, values, positions, seqs, numHeads, headDim,
    );
    for (const maxContext of [Math.max(...positions) + 1]) {
      const sc = attentionScratchBytes(stepTokens.length, numHeads, headDim, maxContext);
      const out = await gpu.createBuffer(stepTokens.length * H * 4, 'out');
      pagedAttention(gpu, {
        qkv: await upload(gpu, stepQkv), out, cache, numHeads, headDim, blockSize, act: 'f32', kv: 'f32',
        scratch: { stats: await gpu.createBuffer(sc.stats, 's'), acc: await gpu.createBuffer(sc.acc, 'a') },
        batch: {
          ...fullBatch, numTokens: stepTokens.length, positions: await upload(gpu, Uint32Array.from(positions)),
          tokenSeq: await upload(gpu, Uint32Array.from(seqs)), maxContext, ...await queryBlocksFor(gpu, seqs, headDim),
        },
      });
      const batched = await readF32(gpu, out, stepTokens.length * H);
      const err = maxAbsDiff(batched, want);
      assert(err < 2e-5, `heads=${numHeads} dim=${headDim} bs=${blockSize}: ${err}`);
      // Batch invariance: each token alone (a block of one, as a decode step runs it) gives the same bits, from the
      // 16-query kernel and from the single-query decode kernel (forced here: it normally runs for 16+ tokens).
      for (const [t, minTokens] of [0, 5, stepTokens.length - 1].flatMap((t) => [[t, 1], [t, 1e9]] as const)) {
        attentionKernelChoice.decodeKernelMinTokens = minTokens;
        const single = await gpu.createBuffer(H * 4, 'single');
        const tok = stepTokens[t];
        pagedAttention(gpu, {
          qkv: await upload(gpu, qkv.slice(tok.i * 3 * H, (tok.i + 1) * 3 * H)), out: single, cache, numHeads, headDim, blockSize,
          act: 'f32', kv: 'f32', scratch: { stats: await gpu.createBuffer(sc.stats, 's'), acc: await gpu.createBuffer(sc.acc, 'a') },
          batch: {
            ...fullBatch, numTokens: 1, positions: await upload(gpu, Uint32Array.of(tok.p)), tokenSeq: await upload(gpu, Uint32Array.of(tok.s)),
            maxContext, queryBlocks: await upload(gpu, Uint32Array.of(0, 1)), numQueryBlocks: 1,
          },
        });
        attentionKernelChoice.decodeKernelMinTokens = DECODE_MIN_TOKENS;
        assertEquals(await readF32(gpu, single, H), batched.slice(t * H, (t + 1) * H), `token ${t} alone (decode kernel from ${minTokens} tokens) vs in the batch`);
      }
    }
    // Short contexts only: the direct (one-partition) path gives the same bits as split-K would.
    const short = stepTokens.filter((t) => t.s === 0);
    const sc = attentionScratchBytes(short.length, numHeads, headDim, 2 * ATTENTION_PARTITION);
    const run = async (maxContext: number) => {
      const out = await gpu.createBuffer(short.length * H * 4, 'out');
      const sq = new Float32Array(short.length * 3 * H);
      short.forEach(({ i }, t) => sq.set(qkv.subarray(i * 3 * H, (i + 1) * 3 * H), t * 3 * H));
      pagedAttention(gpu, {
        qkv: await upload(gpu, sq), out, cache, numHeads, headDim, blockSize, act: 'f32', kv: 'f32',
        scratch: { stats: await gpu.createBuffer(sc.stats, 's'), acc: await gpu.createBuffer(sc.acc, 'a') },
        batch: {
          ...fullBatch, numTokens: short.length, positions: await upload(gpu, Uint32Array.from(short.map((t) => t.p))),
          tokenSeq: await upload(gpu, Uint32Array.from(short.map((t) => t.s))), maxContext,
          ...await queryBlocksFor(gpu, short.map((t) => t.s), headDim),
        },
      });
      return readF32(gpu, out, short.length * H);
    };
    assertEquals(await run(lens[0]), await run(2 * ATTENTION_PARTITION), 'direct and split-K paths must agree bit for bit');
  }
});

Deno.test('sampler: greedy argmax, top-k/top-p restrict the draw, seeds are reproducible, next inputs advance', async () => {
  const gpu = await testGpu();
  const V = 1000, S = 4, blockSize = 16, maxBlocks = 4, cap = 8;
  const logits = randomFloats(S * V, 42, 5);
  logits[V + 17] = 50; // sequence 1 has a clear winner
  const rows = [
    { temperature: 0, topK: 0, topP: 1, seed: 0 },
    { temperature: 1, topK: 0, topP: 0.000001, seed: 1 }, // top-p tiny: only the argmax survives
    { temperature: 1, topK: 3, topP: 1, seed: 2 },
    { temperature: 0.7, topK: 0, topP: 0.9, seed: 3 },
  ];
  const tables = Uint32Array.from({ length: S * maxBlocks }, (_, i) => 100 + i);
  const positions = [5, 15, 31, 0];
  const run = async (seedShift: number) => {
    const b = {
      logits: await upload(gpu, logits), sampling: await upload(gpu, packSamplingRows(rows.map((r) => ({ ...r, seed: r.seed + seedShift })))),
      blockTables: await upload(gpu, tables), seqState: await upload(gpu, Uint32Array.from(positions.flatMap((p) => [p, 0]))),
      nextIds: await gpu.createBuffer(S * 4, 'ids'), nextPositions: await gpu.createBuffer(S * 4, 'pos'),
      nextSlots: await gpu.createBuffer(S * 4, 'slots'), outTokens: await gpu.createBuffer(S * cap * 4, 'out'),
    };
    sampleAndAdvance(gpu, b, { numSeqs: S, vocab: V, blockSize, maxBlocksPerSeq: maxBlocks, outCapacity: cap });
    const u = async (x: GpuBuffer, n: number) => Array.from(new Uint32Array(await gpu.read(x, 0, n * 4)));
    return { ids: await u(b.nextIds, S), pos: await u(b.nextPositions, S), slots: await u(b.nextSlots, S), out: await u(b.outTokens, S * cap), state: await u(b.seqState, 2 * S) };
  };
  const a = await run(0);
  assertEquals(a.ids[0], argmaxReference(logits.subarray(0, V)));
  assertEquals(a.ids[1], 17);
  const row2 = Array.from(logits.subarray(2 * V, 3 * V));
  const top3 = row2.map((v, i) => [v, i]).sort((x, y) => y[0] - x[0]).slice(0, 3).map((x) => x[1]);
  assert(top3.includes(a.ids[2]), `top-k 3 drew ${a.ids[2]}, not in ${top3}`);
  assertEquals(a.pos, positions.map((p) => p + 1));
  assertEquals(a.slots, positions.map((p, s) => tables[s * maxBlocks + Math.floor((p + 1) / blockSize)] * blockSize + ((p + 1) % blockSize)));
  assertEquals(a.state, positions.flatMap((p) => [p + 1, 1]));
  for (let s = 0; s < S; s++) assertEquals(a.out[s * cap], a.ids[s]);
  assertEquals((await run(0)).ids, a.ids, 'same seeds, same draws');
  // Over many seeds, top-k 3 only ever yields the top 3, and the draws are not all the same.
  const seen = new Set<number>();
  for (let k = 1; k < 12; k++) {
    const r = await run(k * 1000);
    assert(top3.includes(r.ids[2]));
    assertEquals(r.ids[1], 17);
    seen.add(r.ids[2]);
  }
  assert(seen.size > 1, 'different seeds should give different draws');
});

Deno.test('linear: a row gets the same bits alone, in any group of rows, tiled or streaming, with or without a fused LayerNorm', async () => {
  const gpu = await testGpu();
  const dummy = await gpu.createBuffer(16, 'dummy');
  for (const [N, K] of [[70, 768], [33, 64], [130, 3072]]) {
    const M = 9;
    const x = randomFloats(M * K, K + 1, 2), w = randomFloats(N * K, N + 2, 0.2), bias = randomFloats(N, 5, 0.1);
    const gamma = randomFloats(K, 8, 1), beta = randomFloats(K, 9, 0.1), res = randomFloats(M * N, 10);
    const xb = await upload(gpu, x), wb = await upload(gpu, w), bb = await upload(gpu, bias), rb = await upload(gpu, res);
    const gb = await upload(gpu, gamma), beb = await upload(gpu, beta);
    for (const ln of [false, true]) {
      // All 9 rows at once: the tiled kernel, after a separate LayerNorm.
      let input = xb;
      if (ln) {
        input = await gpu.createBuffer(M * K * 4, 'normed');
        layerNorm(gpu, { x: xb, gamma: gb, beta: beb, y: input, rows: M, dim: K, act: 'f32', weight: 'f32' });
      }
      const all = await gpu.createBuffer(M * N * 4, 'all');
      linear(gpu, { x: input, w: wb, bias: bb, residual: rb, y: all, M, N, K, relu: true, act: 'f32', weight: 'f32', dummy });
      const want = await readF32(gpu, all, M * N);
      // The segmented kernel (batched decode) for all rows, and for 5 of them.
      const scratch = await gpu.createBuffer(segmentedScratchBytes(M, N, K), 'scratch');
      if (!ln) {
        for (const rows of [M, 5]) {
          const y = await gpu.createBuffer(rows * N * 4, 'yseg');
          linear(gpu, { x: await upload(gpu, x.slice(0, rows * K)), w: wb, bias: bb, residual: await upload(gpu, res.slice(0, rows * N)), y, M: rows, N, K, relu: true, act: 'f32', weight: 'f32', dummy, scratch });
          assertEquals(await readF32(gpu, y, rows * N), want.slice(0, rows * N), `segmented kernel, N=${N} K=${K} rows ${rows}`);
        }
      }
      // The same rows in groups of 1..4: the streaming kernel (LayerNorm fused when ln).
      for (const group of [1, 3, 4]) {
        for (let m0 = 0; m0 < M; m0 += group) {
          const g = Math.min(group, M - m0);
          const xs = await upload(gpu, x.slice(m0 * K, (m0 + g) * K));
          const rs = await upload(gpu, res.slice(m0 * N, (m0 + g) * N));
          const y = await gpu.createBuffer(g * N * 4, 'y');
          linear(gpu, {
            x: xs, w: wb, bias: bb, residual: rs, y, M: g, N, K, relu: true, act: 'f32', weight: 'f32', dummy,
            lnInput: ln ? { gamma: gb, beta: beb } : undefined,
          });
          assertEquals(await readF32(gpu, y, g * N), want.slice(m0 * N, (m0 + g) * N), `N=${N} K=${K} ln=${ln} rows ${m0}..${m0 + g}`);
        }
      }
    }
  }
});

Deno.test('sampler: top-k keeps exactly the k largest (ties at the k-th kept), top-p the smallest head holding the mass', async () => {
  const gpu = await testGpu();
  const V = 5000;
  // Row 0: top-k 5 with a tie at the 5th value. Row 1: probabilities ~0.6, ~0.3, then a long flat tail.
  const row0 = randomFloats(V, 3, 1);
  const top = [11, 222, 3333, 4000, 4001, 4002];
  [9, 8, 7, 6, 5, 5].forEach((v, i) => { row0[top[i]] = v; });
  const row1 = new Float32Array(V).fill(-20);
  row1[100] = Math.log(0.6);
  row1[200] = Math.log(0.3);
  const logits = new Float32Array(2 * V);
  logits.set(row0, 0);
  logits.set(row1, V);
  const seen = [new Set<number>(), new Set<number>()];
  const lb = await upload(gpu, logits);
  const tables = await upload(gpu, new Uint32Array(8));
  for (let seed = 0; seed < 40; seed++) {
    const b = {
      logits: lb, sampling: await upload(gpu, packSamplingRows([{ temperature: 1, topK: 5, topP: 1, seed }, { temperature: 1, topK: 0, topP: 0.8, seed }])),
      blockTables: tables, seqState: await upload(gpu, Uint32Array.of(0, 0, 0, 0)),
      nextIds: await gpu.createBuffer(8, 'ids'), nextPositions: await gpu.createBuffer(8, 'pos'),
      nextSlots: await gpu.createBuffer(8, 'slots'), outTokens: await gpu.createBuffer(8, 'out'),
    };
    sampleAndAdvance(gpu, b, { numSeqs: 2, vocab: V, blockSize: 16, maxBlocksPerSeq: 4, outCapacity: 1 });
    const ids = new Uint32Array(await gpu.read(b.nextIds, 0, 8));
    seen[0].add(ids[0]);
    seen[1].add(ids[1]);
  }
  for (const id of seen[0]) assert(top.includes(id), `top-k drew ${id}, outside the 5 largest (+ tie)`);
  assert(seen[0].size >= 3, `top-k over 40 seeds drew only ${[...seen[0]]}`);
  assertEquals([...seen[1]].sort((a, b) => a - b), [100, 200], 'top-p 0.8 keeps exactly the two head tokens');
  // Min-p 0.1 on row 1: p >= 0.06 keeps the same two tokens (the tail is ~2e-9 each).
  const minP = new Set<number>();
  for (let seed = 0; seed < 30; seed++) {
    const b = {
      logits: await upload(gpu, row1), sampling: await upload(gpu, packSamplingRows([{ temperature: 1, topK: 0, topP: 1, seed, minP: 0.1 }])),
      blockTables: tables, seqState: await upload(gpu, Uint32Array.of(0, 0)),
      nextIds: await gpu.createBuffer(4, 'ids'), nextPositions: await gpu.createBuffer(4, 'pos'),
      nextSlots: await gpu.createBuffer(4, 'slots'), outTokens: await gpu.createBuffer(4, 'out'),
    };
    sampleAndAdvance(gpu, b, { numSeqs: 1, vocab: V, blockSize: 16, maxBlocksPerSeq: 4, outCapacity: 1 });
    minP.add(new Uint32Array(await gpu.read(b.nextIds, 0, 4))[0]);
  }
  assertEquals([...minP].sort((a, b) => a - b), [100, 200], 'min-p 0.1 keeps exactly the two head tokens');
});

Deno.test('linear: batched-decode rows get the same bits from the split 128x128 tiles, the 32x64 segments and the tiled kernel', async () => {
  const gpu = await testGpu();
  const dummy = await gpu.createBuffer(16, 'dummy');
  for (const [N, K] of [[70, 768], [130, 3072]]) {
    const M = SPLIT_TILED_MIN_ROWS + 34;
    const x = randomFloats(M * K, K + 3, 2), w = randomFloats(N * K, N + 4, 0.2), bias = randomFloats(N, 6, 0.1), res = randomFloats(M * N, 11);
    const wb = await upload(gpu, w), bb = await upload(gpu, bias);
    const run = async (rows: number, scratch?: GpuBuffer) => {
      const y = await gpu.createBuffer(rows * N * 4, 'y');
      linear(gpu, {
        x: await upload(gpu, x.slice(0, rows * K)), w: wb, bias: bb, residual: await upload(gpu, res.slice(0, rows * N)), y,
        M: rows, N, K, relu: true, act: 'f32', weight: 'f32', dummy, scratch,
      });
      return readF32(gpu, y, rows * N);
    };
    const tiled = await run(M);
    const scratch = await gpu.createBuffer(segmentedScratchBytes(M, N, K), 'scratch');
    assertEquals(await run(M, scratch), tiled, `split tiles, N=${N} K=${K} rows ${M}`);
    assertEquals(await run(SPLIT_TILED_MIN_ROWS - 1, scratch), tiled.slice(0, (SPLIT_TILED_MIN_ROWS - 1) * N), `segments, N=${N} K=${K}`);
    const ref = linearReference(x, w, bias, M, N, K, { relu: true, residual: res });
    const worst = maxAbsDiff(tiled, ref);
    assert(worst < 1e-3, `split tiles vs CPU reference: ${worst}`);
  }
});
