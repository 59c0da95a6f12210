import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';

const ZERO_CHUNK = 1 << 24;
let zeros: Uint8Array | undefined;

/** Overwrite a buffer with zeros, in 16 MiB writes (no kernel; zeroing is rare: resets, zeroWeights). */
export function zeroBuffer(gpu: Gpu, b: GpuBuffer, byteOffset = 0, byteLength = b.size - byteOffset): void {
  zeros ??= new Uint8Array(ZERO_CHUNK);
  for (let o = 0; o < byteLength; o += ZERO_CHUNK) {
    const n = Math.min(ZERO_CHUNK, byteLength - o);
    gpu.write(b, zeros.subarray(0, n), byteOffset + o);
  }
}
