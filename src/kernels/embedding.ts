import type { BufferBinding, Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { packParams } from '../gpu/gpu.ts';
import { grid1d, shaderSource, type ElementType } from './shader.ts';

/** A row table bound in windows of at most `rowsPerWindow` rows (each window one binding). */
export interface RowTable {
  buffer: GpuBuffer;
  rows: number;
  dim: number;
  dtype: ElementType;
  rowsPerWindow: number;
}

/** Byte range of window `w` of a row table. */
export function windowBinding(t: RowTable, w: number): { binding: BufferBinding; rowStart: number; rowCount: number } {
  const bytes = t.dtype === 'f16' ? 2 : 4;
  const rowStart = w * t.rowsPerWindow;
  const rowCount = Math.min(t.rowsPerWindow, t.rows - rowStart);
  return { binding: { buffer: t.buffer, offset: rowStart * t.dim * bytes, size: rowCount * t.dim * bytes }, rowStart, rowCount };
}

export function windowCount(t: RowTable): number {
  return Math.ceil(t.rows / t.rowsPerWindow);
}

/**
 * out[t, :] (+)= table[index[t] + indexOffset, :]. For token embeddings (indexOffset 0, overwrite) and OPT's
 * learned positions (indexOffset 2, accumulate).
 */
export function gatherRows(
  gpu: Gpu,
  a: { index: GpuBuffer; table: RowTable; out: GpuBuffer; numTokens: number; act: ElementType; indexOffset: number; accumulate: boolean },
): void {
  const k = gpu.kernel(shaderSource('embedding', { W: a.table.dtype, A: a.act }));
  for (let w = 0; w < windowCount(a.table); w++) {
    const { binding, rowStart, rowCount } = windowBinding(a.table, w);
    const params = packParams([a.numTokens, a.table.dim, rowStart, rowCount, a.indexOffset, a.accumulate ? 1 : 0]);
    gpu.dispatch(k, [a.index, binding, a.out], params, grid1d(a.numTokens));
  }
}

/** CPU reference for gatherRows. */
export function gatherRowsReference(index: ArrayLike<number>, table: Float32Array, dim: number, indexOffset: number, out: Float32Array, accumulate: boolean): void {
  for (let t = 0; t < index.length; t++) {
    const row = index[t] + indexOffset;
    for (let i = 0; i < dim; i++) out[t * dim + i] = (accumulate ? out[t * dim + i] : 0) + table[row * dim + i];
  }
}
