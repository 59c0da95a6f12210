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
  if (a.M === 0) return;
  const chunks = Math.ceil(a.M / COLSUM_ROWS);
  const k = gpu.kernel(shaderSource('train_colsum', { XHAT: Boolean(a.xhat) }));
  gpu.dispatch(k, [a.y, a.xhat?.x ?? a.dummy, a.xhat?.stats ?? a.dummy, a.scratch], packParams([a.M, a.N, a.ld, a.off ?? 0]),
    [Math.ceil(a.N / 64), chunks]);
  gpu.dispatch(gpu.kernel(shaderSource('train_colsum_finish')), [a.scratch, a.out], packParams([a.N, chunks]), [Math.ceil(a.N / 64)]);
}
