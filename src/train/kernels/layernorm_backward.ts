import type { Gpu, GpuBuffer } from '../../gpu/gpu.ts';
import { packParams } from '../../gpu/gpu.ts';
import { LAYER_NORM_EPS } from '../../kernels/layernorm.ts';
import { grid1d, shaderSource } from '../../kernels/shader.ts';
import { layerNormColumnSums } from './colsum.ts';

/**
 * Backward of y = LayerNorm(x) * gamma + beta over rows of `dim`: dx (+)= ..., dgamma += sum dy * xhat,
 * dbeta += sum dy. `stats` ([rows] x vec2) and `scratch` (columnSumScratch(rows, 2 * dim) floats) are scratch.
 */
export function layerNormBackward(
  gpu: Gpu,
  a: {
    x: GpuBuffer; gamma: GpuBuffer; dy: GpuBuffer; dx: GpuBuffer; accumulate: boolean; rows: number; dim: number;
    dgamma: GpuBuffer; dbeta: GpuBuffer; stats: GpuBuffer; scratch: GpuBuffer; dummy: GpuBuffer;
  },
): void {
  const k = gpu.kernel(shaderSource('train_layernorm_backward'));
  gpu.dispatch(k, [a.x, a.gamma, a.dy, a.stats, a.dx], packParams([a.rows, a.dim, { f: LAYER_NORM_EPS }, a.accumulate ? 1 : 0]), grid1d(a.rows));
  layerNormColumnSums(gpu, { dy: a.dy, x: a.x, stats: a.stats, M: a.rows, N: a.dim, dgamma: a.dgamma, dbeta: a.dbeta, scratch: a.scratch });
}

/** CPU reference (float64): returns dx, dgamma, dbeta for y = LayerNorm(x) * gamma + beta. */
export function layerNormBackwardReference(
  x: ArrayLike<number>, gamma: ArrayLike<number>, dy: ArrayLike<number>, rows: number, dim: number,
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const dx = new Float64Array(rows * dim), dgamma = new Float64Array(dim), dbeta = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[o + i];
    mean /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) v += (x[o + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / dim + LAYER_NORM_EPS);
    let mg = 0, mgx = 0;
    for (let i = 0; i < dim; i++) {
      const xhat = (x[o + i] - mean) * rstd, g = dy[o + i] * gamma[i];
      mg += g; mgx += g * xhat;
      dgamma[i] += dy[o + i] * xhat;
      dbeta[i] += dy[o + i];
    }
    mg /= dim; mgx /= dim;
    for (let i = 0; i < dim; i++) {
      const xhat = (x[o + i] - mean) * rstd;
      dx[o + i] = rstd * (dy[o + i] * gamma[i] - mg - xhat * mgx);
    }
  }
  return { dx, dgamma, dbeta };
}
