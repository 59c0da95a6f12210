import type { Gpu, GpuBuffer } from '../../gpu/gpu.ts';
import { packParams } from '../../gpu/gpu.ts';
import { shaderSource } from '../../kernels/shader.ts';

/** Rows per partial sum of train_colsum. */
export const COLSUM_ROWS = 64;

/** Scratch floats columnSum needs for M rows of N columns. */
export function columnSumScratch(M: number, N: number): number {
  return Math.ceil(M / COLSUM_ROWS) * N;
}

/**
 * out[n] += sum_m y[off + m * ld + n] (a bias gradient), or with `xhat` the LayerNorm dgamma sum
 * y[m, n] * (x[m, n] - mean_m) * rstd_m. Two deterministic passes through `scratch`.
 */
export function columnSum(
  gpu: Gpu,
  a: { y: GpuBuffer; M: number; N: number; ld: number; off?: number; out: GpuBuffer; scratch: GpuBuffer; dummy: GpuBuffer; xhat?: { x: GpuBuffer; stats: GpuBuffer } },
): void {
  columnSums(gpu, { ...a, outs: [{ col: 0, count: a.N, out: a.out }] });
}

/**
 * One column-sum pass over N columns feeding several outputs: outs[i].out[n] += the sum of column
 * outs[i].col + n, n < outs[i].count (e.g. the q and v biases from one pass over q | k | v, skipping k's).
 * Each output gets the bits columnSum would give it alone.
 */
export function columnSums(
  gpu: Gpu,
  a: {
    y: GpuBuffer; M: number; N: number; ld: number; off?: number; scratch: GpuBuffer; dummy: GpuBuffer;
    xhat?: { x: GpuBuffer; stats: GpuBuffer }; outs: ReadonlyArray<{ col: number; count: number; out: GpuBuffer }>;
  },
): void {
  if (a.M === 0) return;
  const chunks = Math.ceil(a.M / COLSUM_ROWS);
  const k = gpu.kernel(shaderSource('train_colsum', { XHAT: Boolean(a.xhat), BOTH: false }));
  gpu.dispatch(k, [a.y, a.xhat?.x ?? a.dummy, a.xhat?.stats ?? a.dummy, a.scratch], packParams([a.M, a.N, a.ld, a.off ?? 0]),
    [Math.ceil(a.N / 64), chunks]);
  finish(gpu, a.scratch, chunks, a.N, a.outs);
}

/**
 * A LayerNorm's parameter gradients in one pass over dy: dgamma += sum dy * xhat, dbeta += sum dy (each the bits
 * of its own columnSum).
 */
export function layerNormColumnSums(
  gpu: Gpu,
  a: { dy: GpuBuffer; x: GpuBuffer; stats: GpuBuffer; M: number; N: number; dgamma: GpuBuffer; dbeta: GpuBuffer; scratch: GpuBuffer },
): void {
  if (a.M === 0) return;
  const chunks = Math.ceil(a.M / COLSUM_ROWS);
  const k = gpu.kernel(shaderSource('train_colsum', { XHAT: true, BOTH: true }));
  gpu.dispatch(k, [a.dy, a.x, a.stats, a.scratch], packParams([a.M, a.N, a.N, 0]), [Math.ceil(a.N / 64), chunks]);
  finish(gpu, a.scratch, chunks, 2 * a.N, [{ col: 0, count: a.N, out: a.dgamma }, { col: a.N, count: a.N, out: a.dbeta }]);
}

function finish(gpu: Gpu, scratch: GpuBuffer, chunks: number, stride: number, outs: ReadonlyArray<{ col: number; count: number; out: GpuBuffer }>): void {
  const k = gpu.kernel(shaderSource('train_colsum_finish'));
  for (const o of outs) gpu.dispatch(k, [scratch, o.out], packParams([o.count, chunks, stride, o.col]), [Math.ceil(o.count / 64)]);
}
