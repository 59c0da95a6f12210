import type { BufferBinding, Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { packParams } from '../gpu/gpu.ts';
import { LAYER_NORM_EPS } from './layernorm.ts';
import { grid1d, shaderSource, type ElementType } from './shader.ts';
import { LARGE_TILE, type Tile } from './tiles.ts';

export interface LinearArgs {
  x: GpuBuffer;
  /** Weight [N, K] as torch stores a Linear (out, in); may be a window of a larger buffer. */
  w: GpuBuffer | BufferBinding;
  bias?: GpuBuffer | BufferBinding;
  /** Added after the activation: y = act(xW^T + b) + residual. Layout [M, N]. */
  residual?: GpuBuffer;
  y: GpuBuffer;
  M: number;
  N: number;
  K: number;
  relu?: boolean;
  /** Row stride of y (defaults to N) and the column y's block starts at: for writing a vocab window of logits. */
  ldy?: number;
  ycol?: number;
  act: ElementType;
  weight: ElementType;
  out?: ElementType;
  /** A buffer bound where an operand is unused (WebGPU needs every binding). */
  dummy: GpuBuffer;
  /**
   * Scratch for the segmented kernel ([K/64, M, N] f32 partial sums): with it, M <= SEGMENTED_MAX_ROWS rows use
   * linear_segments (split over k, so a few rows still fill the GPU). Without it, the tiled kernel runs.
   */
  scratch?: GpuBuffer;
  /**
   * The tiled kernel's output tile (default 128 x 128: with two accumulator sets per output, segment and total,
   * 64 x 128 tiles measured no faster, even where 128 x 128 leaves a wave part-empty). Same bits either way.
   */
  tile?: Tile;
  /** LayerNorm the input rows first (fused; GEMV path only, i.e. M <= GEMV_MAX_ROWS). */
  lnInput?: { gamma: GpuBuffer; beta: GpuBuffer };
  /**
   * For the fused QKV projection with M <= GEMV_MAX_ROWS: also write the keys and values (outputs [hidden, 3
   * hidden)) into the paged cache at each row's slot, replacing writeKvCache's dispatch. Ignored (false returned
   * by linear) for more rows.
   */
  kvWrite?: { slotMapping: GpuBuffer; key: GpuBuffer; value: GpuBuffer; hidden: number; kv: ElementType };
}

/**
 * Rows at or under which the weight-streaming kernel (linear_small) is used instead of the tiled one. Both reduce
 * in the same order, so the choice never changes a row's result.
 */
export const GEMV_MAX_ROWS = 4;

/** Rows at or under which linear_segments runs when the caller gives scratch (batched decode). */
export const SEGMENTED_MAX_ROWS = 256;

/**
 * Rows from which batched decode computes its segment sums with the 128x128 tiles of linear.wgsl (SPLIT) rather
 * than linear_segments' 32x64 tiles. Both give the same bits; this only picks the faster.
 */
export const SPLIT_TILED_MIN_ROWS = 96;

/** Kernel-choice knobs benchmarks may turn (bench/batch_decode_profile.ts); results never depend on them. */
export const linearTuning = { splitTiledMinRows: SPLIT_TILED_MIN_ROWS };

/** Scratch bytes linear_segments needs for M rows of an [N, K] layer. */
export function segmentedScratchBytes(M: number, N: number, K: number): number {
  return Math.ceil(K / 64) * M * N * 4;
}

/**
 * y = act(x W^T + bias) + residual. Tiled GEMM for many rows, a weight-streaming kernel for a few; same bits either
 * way. Returns whether a.kvWrite was done too (only by the few-row kernel).
 */
export function linear(gpu: Gpu, a: LinearArgs): boolean {
  if (a.K % 4 !== 0) throw new RangeError(`linear: K = ${a.K} must be a multiple of 4`);
  if (a.M === 0) return a.kvWrite !== undefined;
  const flags = (a.bias ? 1 : 0) | (a.relu ? 2 : 0) | (a.residual ? 4 : 0);
  const bindings = [a.x, a.w, a.bias ?? a.dummy, a.residual ?? a.dummy, a.y];
  const types = { A: a.act, W: a.weight, Y: a.out ?? a.act };
  if (a.M <= GEMV_MAX_ROWS) {
    const ln = a.lnInput;
    const kvw = a.kvWrite;
    const k = gpu.kernel(shaderSource('linear_small', { ...types, LN: Boolean(ln), ROWS: a.M === 1 ? 1 : 4, KVW: Boolean(kvw), KV: kvw?.kv ?? 'f32' }));
    const params = packParams([a.M, a.N, a.K, a.ldy ?? a.N, a.ycol ?? 0, flags, { f: LAYER_NORM_EPS }, kvw?.hidden ?? 0]);
    const segments = Math.ceil(a.K / 64);
    if (segments > 256) throw new RangeError(`linear: K = ${a.K} exceeds the few-row kernel's 16384`);
    const outsPerGroup = Math.floor(256 / segments);
    const extra = kvw ? [kvw.slotMapping, kvw.key, kvw.value] : [];
    gpu.dispatch(k, [...bindings, ln?.gamma ?? a.dummy, ln?.beta ?? a.dummy, ...extra], params, grid1d(Math.ceil(a.N / outsPerGroup)));
    return kvw !== undefined;
  } else if (a.scratch && a.M <= SEGMENTED_MAX_ROWS && Math.ceil(a.K / 64) * a.M * a.N * 4 <= a.scratch.size) {
    if (a.lnInput) throw new RangeError('linear: a fused LayerNorm needs M <= GEMV_MAX_ROWS; run layerNorm first');
    const src = shaderSource('linear_segments', types);
    const params = packParams([a.M, a.N, a.K, a.ldy ?? a.N, a.ycol ?? 0, flags]);
    const all = [...bindings, a.scratch];
    const segments = Math.ceil(a.K / 64);
    if (a.M >= linearTuning.splitTiledMinRows) {
      // Segment sums from 128x128 tiles (8x8 per thread: 4x the work per workgroup-memory read of the 32x64 tiles).
      const split = gpu.kernel(shaderSource('linear', { ...types, Y: 'f32', SPLIT: true, TM: 128, TN: 128 }));
      gpu.dispatch(split, [a.x, a.w, a.dummy, a.dummy, a.scratch], params, [Math.ceil(a.N / 128), Math.ceil(a.M / 128), segments]);
    } else {
      gpu.dispatch(gpu.kernel(src), all, params, [Math.ceil(a.N / 64), Math.ceil(a.M / 32), segments]);
    }
    gpu.dispatch(gpu.kernel({ ...src, entryPoint: 'reduce' }), all, params, grid1d(Math.ceil((a.M * a.N) / 256)));
  } else {
    if (a.lnInput) throw new RangeError('linear: a fused LayerNorm needs M <= GEMV_MAX_ROWS; run layerNorm first');
    const tile = a.tile ?? LARGE_TILE;
    const k = gpu.kernel(shaderSource('linear', { ...types, SPLIT: false, TM: tile.tm, TN: tile.tn }));
    gpu.dispatch(k, bindings, packParams([a.M, a.N, a.K, a.ldy ?? a.N, a.ycol ?? 0, flags]), [Math.ceil(a.N / tile.tn), Math.ceil(a.M / tile.tm)]);
  }
  return false;
}

/** CPU reference (float64 accumulation). */
export function linearReference(
  x: Float32Array, w: Float32Array, bias: Float32Array | null, M: number, N: number, K: number,
  opts: { relu?: boolean; residual?: Float32Array } = {},
): Float32Array {
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n] : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      if (opts.relu) s = Math.max(s, 0);
      if (opts.residual) s += opts.residual[m * N + n];
      y[m * N + n] = s;
    }
  }
  return y;
}
