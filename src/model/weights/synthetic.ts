/**
 * Synthetic weights: reproducible, bit for bit, from (config, seed) alone, so opt-125m-sized models can be
 * tested and benchmarked without downloading anything. The formula is the one the fixtures were generated
 * with (../shared/fixtures/README.md, "Synthetic weights"):
 *
 *   h = FNV-1a-32(utf8(`${seed}:${name}`))
 *   x = fmix32((i * 0x9E3779B9 + h) mod 2^32)            (murmur3's finalizer)
 *   s = 2 * ((x >>> 8) / 2^24) - 1                        (exact in float32)
 *   value = 1 + s*0.1 (layer_norm.weight) | s*0.02 (.bias) | s*0.035 (other weights), float32 after each op
 *
 * "float32 after each op" means what PyTorch does for a float32 tensor times a Python scalar: the scalar is
 * cast to float32 and the product rounded to float32, hence Math.fround on the constants and on each result.
 */
import type { OptConfig } from '../config.ts';
import { expectedTensors } from '../config.ts';
import { numElements } from './dtype.ts';
import type { TensorMap } from './types.ts';

/** FNV-1a, 32-bit, over the UTF-8 bytes of `s`. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}

/** murmur3's 32-bit finalizer. */
export function fmix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The (scale, offset) of a parameter: value = offset + s*scale. */
function scaleOf(name: string): { scale: number; offset: number } {
  if (name.endsWith('layer_norm.weight')) return { scale: Math.fround(0.1), offset: 1 };
  if (name.endsWith('.bias')) return { scale: Math.fround(0.02), offset: 0 };
  return { scale: Math.fround(0.035), offset: 0 };
}

/** Fill `out` with the synthetic values of parameter `name` for `seed`. */
export function fillSynthetic(out: Float32Array, name: string, seed: number): void {
  const h = fnv1a32(`${seed}:${name}`) | 0;
  const { scale, offset } = scaleOf(name);
  const n = out.length;
  // The hash is inlined and kept in int32 arithmetic (`| 0`, Math.imul): values above 2^31 as doubles would
  // make V8 leave its integer fast path (3x slower). `x >>> 8` reads the bits as unsigned, as the formula says.
  // Two loops so that the hot loop has no branch on the kind of parameter. Storing into a Float32Array
  // rounds to float32, which is the final fround; s*scale needs its own fround before the addition.
  if (offset === 0) {
    for (let i = 0; i < n; i++) {
      let x = (Math.imul(i, 0x9e3779b9) + h) | 0;
      x ^= x >>> 16;
      x = Math.imul(x, 0x85ebca6b);
      x ^= x >>> 13;
      x = Math.imul(x, 0xc2b2ae35);
      x ^= x >>> 16;
      out[i] = ((x >>> 8) / 16777216 * 2 - 1) * scale;
    }
  } else {
    for (let i = 0; i < n; i++) {
      let x = (Math.imul(i, 0x9e3779b9) + h) | 0;
      x ^= x >>> 16;
      x = Math.imul(x, 0x85ebca6b);
      x ^= x >>> 13;
      x = Math.imul(x, 0xc2b2ae35);
      x ^= x >>> 16;
      out[i] = offset + Math.fround(((x >>> 8) / 16777216 * 2 - 1) * scale);
    }
  }
}

/**
 * Every tensor of `expectedTensors(config)` (so no tied `lm_head.weight`), float32, filled with the
 * synthetic formula for `seed`. opt-125m (125M values) takes under 1 s in Deno.
 */
export function syntheticTensors(config: OptConfig, seed: number): TensorMap {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`synthetic weights: seed must be an integer, got ${seed}`);
  const tensors: TensorMap = new Map();
  for (const [name, shape] of expectedTensors(config)) {
    const values = new Float32Array(numElements(shape));
    fillSynthetic(values, name, seed);
    tensors.set(name, { dtype: 'F32', shape: [...shape], bytes: new Uint8Array(values.buffer) });
  }
  return tensors;
}
