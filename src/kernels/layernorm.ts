import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { packParams } from '../gpu/gpu.ts';
import { grid1d, shaderSource, type ElementType } from './shader.ts';

export const LAYER_NORM_EPS = 1e-5;

/** y = LayerNorm(x) * gamma + beta over rows of `dim`. */
export function layerNorm(
  gpu: Gpu,
  a: { x: GpuBuffer; gamma: GpuBuffer; beta: GpuBuffer; y: GpuBuffer; rows: number; dim: number; act: ElementType; weight: ElementType },
): void {
  const k = gpu.kernel(shaderSource('layernorm', { A: a.act, W: a.weight }));
  gpu.dispatch(k, [a.x, a.gamma, a.beta, a.y], packParams([a.rows, a.dim, { f: LAYER_NORM_EPS }]), grid1d(a.rows));
}

/** CPU reference (float64 statistics). */
export function layerNormReference(x: Float32Array, gamma: Float32Array, beta: Float32Array, rows: number, dim: number): Float32Array {
  const y = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[r * dim + i];
    mean /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) v += (x[r * dim + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / dim + LAYER_NORM_EPS);
    for (let i = 0; i < dim; i++) y[r * dim + i] = (x[r * dim + i] - mean) * rstd * gamma[i] + beta[i];
  }
  return y;
}
