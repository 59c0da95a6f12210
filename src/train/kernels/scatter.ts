import type { Gpu, GpuBuffer } from '../../gpu/gpu.ts';
import { packParams } from '../../gpu/gpu.ts';
import type { RowTable } from '../../kernels/embedding.ts';
import { windowBinding, windowCount } from '../../kernels/embedding.ts';
import { grid1d, shaderSource } from '../../kernels/shader.ts';

/** Token indices grouped by destination row: what makes the scatter-add deterministic without atomics. */
export interface RowRuns {
  /** Distinct destination rows, ascending. */
  rows: Uint32Array;
  /** starts[u] .. starts[u + 1] index `order` for rows[u]; rows.length + 1 entries. */
  starts: Uint32Array;
  /** Token indices sorted by destination row, ascending index within a row. */
  order: Uint32Array;
}

/** Sort token indices by destination row (on the host, at pack time). */
export function rowRuns(dest: ArrayLike<number>): RowRuns {
  const order = Uint32Array.from({ length: dest.length }, (_, i) => i);
  order.sort((a, b) => dest[a] - dest[b] || a - b);
  const rows: number[] = [], starts: number[] = [];
  for (let k = 0; k < order.length; k++) {
    if (k === 0 || dest[order[k]] !== dest[order[k - 1]]) { rows.push(dest[order[k]]); starts.push(k); }
  }
  starts.push(order.length);
  return { rows: Uint32Array.from(rows), starts: Uint32Array.from(starts), order };
}

/** GPU buffers holding a RowRuns (sized for up to maxTokens tokens). */
export interface RowRunBuffers {
  rows: GpuBuffer;
  starts: GpuBuffer;
  order: GpuBuffer;
}

/** grad[rows[u]] += sum of src rows of its tokens, over every window of a (possibly windowed) gradient table. */
export function scatterAddRows(gpu: Gpu, a: { runs: RowRunBuffers; numRows: number; src: GpuBuffer; grad: RowTable }): void {
  const k = gpu.kernel(shaderSource('train_scatter_rows'));
  for (let w = 0; w < windowCount(a.grad); w++) {
    const { binding, rowStart, rowCount } = windowBinding(a.grad, w);
    gpu.dispatch(k, [a.runs.rows, a.runs.starts, a.runs.order, a.src, binding], packParams([a.numRows, a.grad.dim, rowStart, rowCount]), grid1d(a.numRows));
  }
}

/** CPU reference: grad[dest[t]] += src[t] for every token t. */
export function scatterAddRowsReference(dest: ArrayLike<number>, src: ArrayLike<number>, dim: number, grad: Float64Array | Float32Array): void {
  for (let t = 0; t < dest.length; t++) for (let i = 0; i < dim; i++) grad[dest[t] * dim + i] += src[t * dim + i];
}
