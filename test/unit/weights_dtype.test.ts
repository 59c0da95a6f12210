/** dtype conversions: exhaustive over all 16-bit patterns, round-to-nearest-even at every tie. */
import { describe, expect, it } from 'vitest';
import {
  bf16BitsToF32, bytesPerElement, convertTensor, f16BitsToF32, f32BitsToBf16Bits, f32BitsToF16Bits, float32Bits,
  fromFloat32, roundToBf16, roundToF16, toFloat32,
} from '../../src/model/weights/dtype.ts';

const f16 = (x: number) => f32BitsToF16Bits(float32Bits(x));
const bf16 = (x: number) => f32BitsToBf16Bits(float32Bits(x));

describe('float16', () => {
  it('decodes the special and boundary values', () => {
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16BitsToF32(0x0400)).toBe(2 ** -14);
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
    expect(f16BitsToF32(0x7e00)).toBeNaN();
  });

  it('round-trips every non-NaN f16 value exactly', () => {
    const bad: number[] = [];
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue;
      if (f16(f16BitsToF32(h)) !== h) bad.push(h);
    }
    expect(bad).toEqual([]);
  });

  it('rounds every midpoint between neighbouring f16 values to the even one, and nudged midpoints to the nearer', () => {
    const bad: number[] = [];
    for (let h = 0; h < 0x7bff; h++) {
      const lo = f16BitsToF32(h);
      const hi = f16BitsToF32(h + 1);
      const mid = (lo + hi) / 2; // exact in float32: f16 has 11 significant bits
      const even = h % 2 === 0 ? h : h + 1;
      const ulp32 = 2 ** (Math.floor(Math.log2(mid)) - 23);
      if (Math.fround(mid) !== mid || f16(mid) !== even || f16(-mid) !== (even | 0x8000) ||
        f16(mid + ulp32) !== h + 1 || f16(mid - ulp32) !== h) bad.push(h);
    }
    expect(bad).toEqual([]);
  });

  it('overflows to infinity at 65520, underflows to zero at and below 2^-25, keeps NaN', () => {
    expect(f16(65519.99)).toBe(0x7bff);
    expect(f16(65520)).toBe(0x7c00);
    expect(f16(1e10)).toBe(0x7c00);
    expect(f16(-1e10)).toBe(0xfc00);
    expect(f16(Infinity)).toBe(0x7c00);
    expect(f16(2 ** -25)).toBe(0); // tie between 0 and the smallest subnormal: even is 0
    expect(f16(2 ** -25 * 1.5)).toBe(1);
    expect(f16(2 ** -26)).toBe(0);
    expect(f16(1e-30)).toBe(0);
    expect(f16(-1e-30)).toBe(0x8000);
    expect(f16BitsToF32(f16(NaN))).toBeNaN();
    expect(roundToF16(0.1)).toBe(f16BitsToF32(0x2e66));
  });
});

describe('bfloat16', () => {
  it('round-trips every non-NaN bf16 value exactly', () => {
    const bad: number[] = [];
    for (let b = 0; b < 65536; b++) {
      if ((b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0) continue;
      if (bf16(bf16BitsToF32(b)) !== b) bad.push(b);
    }
    expect(bad).toEqual([]);
  });

  it('rounds midpoints to even and nudged midpoints to the nearer', () => {
    const bad: number[] = [];
    for (let b = 0; b < 0x7f7f; b++) {
      const midBits = ((b << 16) | 0x8000) >>> 0; // exactly halfway, in float32 bits
      const even = b % 2 === 0 ? b : b + 1;
      if (f32BitsToBf16Bits(midBits) !== even || f32BitsToBf16Bits(midBits + 1) !== b + 1 ||
        f32BitsToBf16Bits(midBits - 1) !== b || f32BitsToBf16Bits((midBits | 0x80000000) >>> 0) !== (even | 0x8000)) bad.push(b);
    }
    expect(bad).toEqual([]);
  });

  it('handles infinities, overflow and NaN', () => {
    expect(bf16(Infinity)).toBe(0x7f80);
    expect(bf16(-Infinity)).toBe(0xff80);
    expect(f32BitsToBf16Bits(0x7f7fffff)).toBe(0x7f80); // max float32 rounds up to inf, as in torch
    expect(bf16BitsToF32(bf16(NaN))).toBeNaN();
    expect(bf16BitsToF32(f32BitsToBf16Bits(0x7f800001))).toBeNaN(); // a signalling NaN stays NaN
    expect(roundToBf16(1 + 2 ** -8)).toBe(1); // tie -> even
    expect(roundToBf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
  });
});

describe('host tensors', () => {
  it('bytesPerElement', () => {
    expect([bytesPerElement('F32'), bytesPerElement('F16'), bytesPerElement('BF16')]).toEqual([4, 2, 2]);
  });

  it('toFloat32 reads aligned and unaligned bytes of every dtype', () => {
    const values = new Float32Array([1, -2.5, 0.333, 1e-6, 65504, -0]);
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const t = fromFloat32(values, [2, 3], dtype);
      const expected = Array.from(values, (v) => (dtype === 'F32' ? v : dtype === 'F16' ? roundToF16(v) : roundToBf16(v)));
      expect(Array.from(toFloat32(t))).toEqual(expected);
      // The same bytes at an odd offset in a larger buffer.
      const shifted = new Uint8Array(t.bytes.byteLength + 1);
      shifted.set(t.bytes, 1);
      expect(Array.from(toFloat32({ ...t, bytes: shifted.subarray(1) }))).toEqual(expected);
      expect(Array.from(toFloat32(convertTensor(t, 'F32')))).toEqual(expected);
    }
  });

  it('toFloat32 of an aligned F32 tensor is a view (no copy)', () => {
    const t = fromFloat32(new Float32Array([1, 2]), [2], 'F32');
    expect(toFloat32(t).buffer).toBe(t.bytes.buffer);
  });

  it('rejects a tensor whose byte length disagrees with its shape', () => {
    expect(() => toFloat32({ dtype: 'F16', shape: [3], bytes: new Uint8Array(4) })).toThrow(/must have 6 bytes/);
  });
});
