import type { Gpu, GpuBuffer } from '../../gpu/gpu.ts';
import { packParams } from '../../gpu/gpu.ts';
import { grid1d, shaderSource } from '../../kernels/shader.ts';

/** Record zeroing `bytes` of `buffer` (a multiple of 16), in windows under the per-binding limit. */
export function fillZero(gpu: Gpu, buffer: GpuBuffer, bytes = buffer.size): void {
  const k = gpu.kernel(shaderSource('train_fill'));
  const total = Math.ceil(bytes / 16) * 16;
  // Windows stay 256-byte aligned (the storage offset alignment) and under the binding limit.
  const window = Math.max(256, Math.floor(Math.min(gpu.caps.maxStorageBindingSize, 1 << 30) / 256) * 256);
  for (let off = 0; off < total; off += window) {
    const size = Math.min(window, total - off);
    const vec4s = size / 16;
    gpu.dispatch(k, [{ buffer, offset: off, size }], packParams([vec4s]), grid1d(Math.ceil(vec4s / 256)));
  }
}
