/**
 * Storage dtypes of checkpoint tensors and conversions between them.
 *
 * Checkpoints arrive as f32, f16 or bf16; the GPU side wants f32 (or f16 where shader-f16 exists).
 * f32 -> f16 / bf16 rounds to nearest, ties to even, exactly as PyTorch's `.half()` / `.bfloat16()` do,
 * so a tensor converted here is bit-identical to one converted by torch.
 * All tensor bytes are little-endian (safetensors and PyTorch zip files are; so is every WebGPU host).
 */
import { CheckpointFormatError } from '../../errors.ts';
import type { HostTensor, StorageDType } from './types.ts';

/** Bytes per element of a storage dtype. */
export function bytesPerElement(dtype: StorageDType): number {
  switch (dtype) {
    case 'F32': return 4;
    case 'F16': case 'BF16': return 2;
  }
}

/** Number of elements of a shape (1 for a scalar `[]`). */
export function numElements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

// One shared scratch pair to reinterpret a float32 as its bits and back.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The IEEE-754 bits of `x` rounded to float32. */
export function float32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0];
}

/** The float32 whose bits are `bits`. */
export function float32FromBits(bits: number): number {
  scratchU32[0] = bits;
  return scratchF32[0];
}

/** float32 bits -> float16 bits, round to nearest even; overflow -> inf, NaN stays (quiet) NaN. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15; // re-biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Result is a float16 subnormal (or zero): shift the full 24-bit significand into 10 bits.
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const m24 = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = m24 & ((1 << shift) - 1);
    let m = m24 >>> shift;
    if (rem > half || (rem === half && (m & 1) !== 0)) m++; // may carry into the smallest normal: correct
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // a carry into the exponent is correct (up to inf)
  return sign | h;
}

/** float16 bits -> the float32 value (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 bits -> bfloat16 bits, round to nearest even; NaN stays (quiet) NaN. */
export function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** bfloat16 bits -> the float32 value (exact: bf16 is the top half of an f32). */
export function bf16BitsToF32(b: number): number {
  return float32FromBits((b << 16) >>> 0);
}

/** Round a number to float16 and back (the value torch's `.half().float()` gives). */
export function roundToF16(x: number): number {
  return f16BitsToF32(f32BitsToF16Bits(float32Bits(x)));
}

/** Round a number to bfloat16 and back. */
export function roundToBf16(x: number): number {
  return bf16BitsToF32(f32BitsToBf16Bits(float32Bits(x)));
}

// f16 -> f32 for whole tensors goes through a 64K-entry table (256 KiB), built on first use.
let f16Table: Float32Array | undefined;
function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16BitsToF32(i);
  }
  return f16Table;
}

/** Little-endian u16 elements of a byte range (a view when aligned, else a copy). */
function u16View(bytes: Uint8Array): Uint16Array {
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  return new Uint16Array(bytes.slice().buffer);
}

function checkLength(t: HostTensor): number {
  const n = numElements(t.shape);
  if (t.bytes.byteLength !== n * bytesPerElement(t.dtype)) {
    throw new CheckpointFormatError(
      `tensor of shape [${t.shape}] and dtype ${t.dtype} must have ${n * bytesPerElement(t.dtype)} bytes, has ${t.bytes.byteLength}`,
    );
  }
  return n;
}

/**
 * The tensor's values as float32. For an F32 tensor whose bytes are 4-aligned this is a view that shares
 * memory with `t.bytes` (no copy for the common case); copy it before mutating.
 */
export function toFloat32(t: HostTensor): Float32Array {
  const n = checkLength(t);
  switch (t.dtype) {
    case 'F32':
      if (t.bytes.byteOffset % 4 === 0) return new Float32Array(t.bytes.buffer, t.bytes.byteOffset, n);
      return new Float32Array(t.bytes.slice().buffer);
    case 'F16': {
      const table = f16ToF32Table();
      const src = u16View(t.bytes);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[src[i]];
      return out;
    }
    case 'BF16': {
      const src = u16View(t.bytes);
      const out = new Uint32Array(n);
      for (let i = 0; i < n; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
  }
}

/** A host tensor of `dtype` holding `values` (rounded to nearest even for F16/BF16). Always a fresh buffer. */
export function fromFloat32(values: Float32Array, shape: number[], dtype: StorageDType): HostTensor {
  const n = numElements(shape);
  if (values.length !== n) throw new RangeError(`fromFloat32: ${values.length} values for shape [${shape}]`);
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  switch (dtype) {
    case 'F32':
      return { dtype, shape: [...shape], bytes: new Uint8Array(values.slice().buffer) };
    case 'F16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = f32BitsToF16Bits(bits[i]);
      return { dtype, shape: [...shape], bytes: new Uint8Array(out.buffer) };
    }
    case 'BF16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = f32BitsToBf16Bits(bits[i]);
      return { dtype, shape: [...shape], bytes: new Uint8Array(out.buffer) };
    }
  }
}

/** The tensor converted to `dtype` (the same object when it already has that dtype). */
export function convertTensor(t: HostTensor, dtype: StorageDType): HostTensor {
  if (t.dtype === dtype) return t;
  return fromFloat32(toFloat32(t), t.shape, dtype);
}
