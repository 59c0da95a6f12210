import type { BufferBinding, Gpu, GpuBuffer, KernelSource } from '../../gpu/gpu.ts';
import { packParams } from '../../gpu/gpu.ts';
import { grid1d, shaderSource } from '../../kernels/shader.ts';
import { LARGE_TILE, matmulTile, type Tile, TUNED_SMS } from '../../kernels/tiles.ts';

/** Where one operand of a matmul lives: element offset, leading dimension, and batch strides. */
export interface Operand {
  buffer: GpuBuffer | BufferBinding;
  /** Leading dimension (elements between consecutive rows of the stored layout). */
  ld: number;
  /** Element offset of entry (0, 0) of batch 0. */
  offset?: number;
  /** Batch strides: offset += (zg / zdiv) * s1 + (zg % zdiv) * s2 + zl * s3 (global and group-local batch index). */
  s1?: number;
  s2?: number;
  s3?: number;
}

export interface MatmulArgs {
  /** C[m, n] (+)= alpha * sum_k A(m, k) B(k, n). */
  M: number;
  N: number;
  K: number;
  /** A(m, k) = a[m * lda + k] when `aKContiguous`, else a[k * lda + m]. */
  a: Operand;
  aKContiguous: boolean;
  /** B(k, n) = b[n * ldb + k] when `bKContiguous` (a torch Linear weight used as W^T), else b[k * ldb + n]. */
  b: Operand;
  bKContiguous: boolean;
  c: Operand;
  alpha?: number;
  /** C += instead of C =. */
  accumulate?: boolean;
  /** Multiply the result by (reluOutput(m, n) > 0): ReLU's backward fused into the matmul that produces dX. */
  reluOutput?: GpuBuffer;
  /** Batched over `count` entries starting at global entry `first` (default 0); `div` splits the index for s1/s2. */
  batch?: { count: number; first?: number; div?: number };
  /** Causal structure to skip: tiles above the diagonal of C, or the zero half of a triangular A. */
  skipUpperTiles?: boolean;
  aLowerTriangular?: boolean;
  aUpperTriangular?: boolean;
  /**
   * Scratch for split-K: when C has too few tiles to fill the GPU and K is long, slices of K run as separate
   * workgroups into this buffer ([splits, M, N] f32) and a second pass adds them in order. Unbatched calls only.
   */
  splitK?: { scratch: GpuBuffer; floats: number };
  /** Bound where an operand is unused. */
  dummy: GpuBuffer;
  /** The output tile (default: 128 x 128 where K may split or causal tiles are skipped, else matmulTile's choice). Same bits either way. */
  tile?: Tile;
}

export const MATMUL_TILE = 128;

const SMS = TUNED_SMS;

/**
 * Split-K choice by a small cost model of the GPU (TUNED_SMS: waves of one 128 x 128 workgroup per SM). Cost of s slices: waves x (k per slice + per-workgroup
 * overhead) at the measured per-SM rate, plus the ordered reduction's traffic. A 64 x 128 tile counts as half a
 * 128 x 128 one (two share an SM). Measured on the H100 (train_profile): dX at N = 768 is fastest in 2 slices
 * (3 lost), dW of fc1 / fc2 gains up to 4-5.
 */
/** Per-workgroup prologue and epilogue, in k values of a 128 x 128 tile. */
const WG_OVERHEAD_K = 32;
/** µs per k value of one 128 x 128 tile on one SM (~20 TFLOP/s over 132 SMs). */
const US_PER_TILE_K = (2 * MATMUL_TILE * MATMUL_TILE) / (20e12 / SMS) * 1e6;
/** Bytes per µs the reduction reads and writes at (~2.5 TB/s), and its dispatch cost (µs). */
const REDUCE_BYTES_PER_US = 2.5e6;
const REDUCE_US = 8;
/** Fewest k values per slice, and most slices. */
const SPLIT_MIN_K = 128;
const MAX_SPLITS = 16;

/** How many k slices a call would use (1 = no split) with `tile` (default 128 x 128). */
export function splitCount(M: number, N: number, K: number, scratchFloats: number, tile: Tile = { tm: 128, tn: 128 }): number {
  const tiles = Math.ceil(M / tile.tm) * Math.ceil(N / tile.tn);
  const perSm = (MATMUL_TILE * MATMUL_TILE) / (tile.tm * tile.tn);
  const maxSplits = Math.min(MAX_SPLITS, Math.floor(K / SPLIT_MIN_K), Math.floor(scratchFloats / (M * N)));
  const cost = (s: number) => {
    const kSlice = Math.ceil(K / s / 16) * 16;
    const waves = Math.ceil((tiles * s) / (SMS * perSm));
    const reduce = s > 1 ? ((s + 1) * M * N * 4) / REDUCE_BYTES_PER_US + REDUCE_US : 0;
    return waves * (kSlice + WG_OVERHEAD_K) * US_PER_TILE_K + reduce;
  };
  const costs = Array.from({ length: Math.max(1, maxSplits) }, (_, i) => cost(i + 1));
  const best = Math.min(...costs);
  // The most slices within 0.5% of the best: near-ties go to the fuller GPU (measured slightly faster).
  let pick = 1;
  costs.forEach((c, i) => { if (c <= best * 1.005) pick = i + 1; });
  return pick;
}

/** train_matmul.wgsl for a layout and tile: 128 x 128 tiles read workgroup memory unrolled (see the shader). */
export function matmulSource(aKContiguous: boolean, bKContiguous: boolean, tile: Tile): KernelSource {
  const unrolled = tile.tm === 128 && tile.tn === 128;
  return shaderSource('train_matmul', { A_KC: aKContiguous, B_KC: bKContiguous, TM: tile.tm, TN: tile.tn, UNROLLED: unrolled, LOOPED: !unrolled });
}

/** The tiled matmul of train_matmul.wgsl (deterministic: every output has one owner, a fixed k order). */
export function matmul(gpu: Gpu, x: MatmulArgs): void {
  if (x.M === 0 || x.N === 0) return;
  const triangular = x.skipUpperTiles || x.aLowerTriangular || x.aUpperTriangular;
  // A call that may split K takes 128 x 128 tiles (the unrolled kernel) and fills the GPU with slices: 27-34
  // TFLOP/s on the backward's products where 64 x 128 tiles with the same slices reached 20-29
  // (bench/matmul_bench.ts). Other calls take the tile that fills the GPU (causal skips work per tile, any size).
  const maysplit = x.splitK !== undefined && !x.batch && !triangular;
  const tile = x.tile ?? (maysplit ? LARGE_TILE : matmulTile(x.M, x.N, x.batch?.count ?? 1, x.K));
  if (maysplit) {
    const splits = splitCount(x.M, x.N, x.K, x.splitK!.floats, tile);
    if (splits > 1) return splitMatmul(gpu, x, x.splitK!.scratch, splits, tile);
  }
  const k = gpu.kernel(matmulSource(x.aKContiguous, x.bKContiguous, tile));
  const flags = (x.accumulate ? 1 : 0) | (x.reluOutput ? 2 : 0) | (x.skipUpperTiles ? 4 : 0) |
    (x.aLowerTriangular ? 8 : 0) | (x.aUpperTriangular ? 16 : 0);
  const o = (v: number | undefined) => v ?? 0;
  const params = packParams([
    x.M, x.N, x.K, x.a.ld, x.b.ld, x.c.ld, o(x.a.offset), o(x.b.offset), o(x.c.offset),
    o(x.a.s1), o(x.a.s2), o(x.b.s1), o(x.b.s2), o(x.c.s1), o(x.c.s2), o(x.a.s3), o(x.b.s3), o(x.c.s3),
    x.batch?.first ?? 0, x.batch?.div ?? 1, flags, { f: x.alpha ?? 1 }, 0,
  ]);
  gpu.dispatch(k, [x.a.buffer, x.b.buffer, x.reluOutput ?? x.dummy, x.c.buffer], params,
    [Math.ceil(x.N / tile.tn), Math.ceil(x.M / tile.tm), x.batch?.count ?? 1]);
}

function splitMatmul(gpu: Gpu, x: MatmulArgs, scratch: GpuBuffer, splits: number, tile: Tile): void {
  const kchunk = Math.ceil(x.K / splits / 16) * 16;
  const o = (v: number | undefined) => v ?? 0;
  const k = gpu.kernel(matmulSource(x.aKContiguous, x.bKContiguous, tile));
  const MN = x.M * x.N;
  gpu.dispatch(k, [x.a.buffer, x.b.buffer, x.dummy, scratch], packParams([
    x.M, x.N, x.K, x.a.ld, x.b.ld, x.N, o(x.a.offset), o(x.b.offset), 0,
    0, 0, 0, 0, 0, 0, 0, 0, MN, 0, 1, 0, { f: x.alpha ?? 1 }, kchunk,
  ]), [Math.ceil(x.N / tile.tn), Math.ceil(x.M / tile.tm), splits]);
  const flags = (x.accumulate ? 1 : 0) | (x.reluOutput ? 2 : 0);
  gpu.dispatch(gpu.kernel(shaderSource('train_matmul_reduce')), [scratch, x.reluOutput ?? x.dummy, x.c.buffer],
    packParams([x.M, x.N, x.c.ld, o(x.c.offset), splits, flags]), grid1d(Math.ceil(MN / 256)));
}

/** Host arrays for matmulReference (offsets and strides as in Operand). */
export interface HostOperand {
  data: Float32Array;
  ld: number;
  offset?: number;
  s1?: number;
  s2?: number;
  s3?: number;
}

/** CPU reference of `matmul` (float64 accumulation), writing into c.data. */
export function matmulReference(x: {
  M: number; N: number; K: number; a: HostOperand; aKContiguous: boolean; b: HostOperand; bKContiguous: boolean; c: HostOperand;
  alpha?: number; accumulate?: boolean; reluOutput?: Float32Array; batch?: { count: number; first?: number; div?: number };
}): void {
  const count = x.batch?.count ?? 1, first = x.batch?.first ?? 0, div = x.batch?.div ?? 1;
  const base = (op: HostOperand, zl: number) => {
    const zg = first + zl;
    return (op.offset ?? 0) + Math.floor(zg / div) * (op.s1 ?? 0) + (zg % div) * (op.s2 ?? 0) + zl * (op.s3 ?? 0);
  };
  for (let zl = 0; zl < count; zl++) {
    const ba = base(x.a, zl), bb = base(x.b, zl), bc = base(x.c, zl);
    for (let m = 0; m < x.M; m++) {
      for (let n = 0; n < x.N; n++) {
        let s = 0;
        for (let k = 0; k < x.K; k++) {
          const av = x.aKContiguous ? x.a.data[ba + m * x.a.ld + k] : x.a.data[ba + k * x.a.ld + m];
          const bv = x.bKContiguous ? x.b.data[bb + n * x.b.ld + k] : x.b.data[bb + k * x.b.ld + n];
          s += av * bv;
        }
        const i = bc + m * x.c.ld + n;
        let v = (x.alpha ?? 1) * s;
        if (x.reluOutput && !(x.reluOutput[i] > 0)) v = 0;
        x.c.data[i] = (x.accumulate ? x.c.data[i] : 0) + v;
      }
    }
  }
}
