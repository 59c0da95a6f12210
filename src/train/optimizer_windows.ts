/**
 * Binding windows for element-wise optimizer kernels. A storage binding is limited (128 MiB on lavapipe and
 * by default in WebGPU), and OPT-125m's embedding alone is 154 MB, so every tensor is processed in windows of
 * at most `maxBindingBytes`. Windows are whole multiples of the grad-norm chunk (4096 f32 = 16 KiB), which keeps
 * binding offsets aligned (256 bytes) and makes a window's chunk sums land at a fixed place.
 */

/** Elements one workgroup of optim_sumsq reduces: 256 threads x 16 elements. */
export const NORM_CHUNK = 256 * 16;

export interface ElementWindow {
  /** First element of the window. */
  start: number;
  /** Elements in the window. */
  count: number;
}

/** Largest window, in elements, that fits `maxBindingBytes` of f32 and is a multiple of NORM_CHUNK. */
export function windowElements(maxBindingBytes: number): number {
  const w = Math.floor(maxBindingBytes / 4 / NORM_CHUNK) * NORM_CHUNK;
  if (w < NORM_CHUNK) throw new RangeError(`a binding of ${maxBindingBytes} bytes cannot hold one ${NORM_CHUNK}-element chunk`);
  return w;
}

/** The windows covering `numElements` elements. */
export function elementWindows(numElements: number, maxWindow: number): ElementWindow[] {
  const out: ElementWindow[] = [];
  for (let start = 0; start < numElements; start += maxWindow) out.push({ start, count: Math.min(maxWindow, numElements - start) });
  return out;
}

/** The byte range of window `w` of an f32 buffer, as a binding. */
export function windowRange(w: ElementWindow): { offset: number; size: number } {
  return { offset: w.start * 4, size: w.count * 4 };
}
