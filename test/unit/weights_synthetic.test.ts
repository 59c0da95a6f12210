/**
 * Synthetic weights against the fixtures: bit for bit against model.safetensors of the tiny sets, and
 * against weights_checksum.json (float64 sum and first 4 values per tensor) for all three sets.
 *
 * Sum tolerance. Our sum is compensated (Neumaier), so it is the exact sum of the float32 values to within
 * ~2 ulp of the result. The reference sum was computed in float64 in an unknown order; any order of
 * float64 summation of n terms is within (n-1)*u*sum|x| of the exact sum (u = 2^-53, the classic bound for
 * recursive summation, which also covers pairwise/blocked orders). So |ours - ref| <= n*u*sum|x| can only
 * fail when a value is wrong. Values are also checked exactly: the first 4 per tensor here, every value
 * of the tiny sets against model.safetensors.
 */
import { describe, expect, it } from 'vitest';
import { parseOptConfig } from '../../src/model/config.ts';
import { expectedTensors } from '../../src/model/config.ts';
import { toFloat32 } from '../../src/model/weights/dtype.ts';
import { parseSafetensors } from '../../src/model/weights/safetensors.ts';
import { fmix32, fnv1a32, syntheticTensors } from '../../src/model/weights/synthetic.ts';
import type { TensorMap } from '../../src/model/weights/types.ts';
import { readFixture, readFixtureJson } from './helpers/node.ts';

type Checksums = Record<string, [number, number[]]>;

/** Neumaier-compensated float64 sum and the sum of magnitudes. */
function sums(v: Float32Array): { sum: number; abs: number } {
  let s = 0;
  let c = 0;
  let abs = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    const t = s + x;
    c += Math.abs(s) >= Math.abs(x) ? (s - t) + x : (x - t) + s;
    s = t;
    abs += Math.abs(x);
  }
  return { sum: s + c, abs };
}

function checkAgainstChecksums(tensors: TensorMap, checksums: Checksums): number {
  expect(new Set(tensors.keys())).toEqual(new Set(Object.keys(checksums)));
  let worstRatio = 0;
  for (const [name, [refSum, refFirst]] of Object.entries(checksums)) {
    const v = toFloat32(tensors.get(name)!);
    expect(Array.from(v.subarray(0, refFirst.length)), name).toEqual(refFirst);
    const { sum, abs } = sums(v);
    const tol = v.length * 2 ** -53 * abs;
    const diff = Math.abs(sum - refSum);
    expect(diff, `${name}: sum ${sum} vs ${refSum}, tolerance ${tol}`).toBeLessThanOrEqual(tol);
    worstRatio = Math.max(worstRatio, diff / tol);
  }
  return worstRatio;
}

describe('hash primitives', () => {
  it('FNV-1a-32 and fmix32 give the published test values', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
    expect(fmix32(0)).toBe(0);
    // fmix32 is a bijection: no collisions over a sample.
    const seen = new Set<number>();
    for (let i = 0; i < 10000; i++) seen.add(fmix32(i * 0x9e3779b9 >>> 0));
    expect(seen.size).toBe(10000);
  });
});

describe('syntheticTensors', () => {
  for (const [set, seed] of [['opt-tiny', 1], ['opt-tiny-postln', 3]] as const) {
    it(`${set} (seed ${seed}) equals model.safetensors bit for bit and matches weights_checksum.json`, async () => {
      const config = parseOptConfig(await readFixtureJson<Record<string, unknown>>(`${set}/config.json`));
      const tensors = syntheticTensors(config, seed);
      const reference = parseSafetensors(await readFixture(`${set}/model.safetensors`), 'model.safetensors');
      expect([...tensors.keys()]).toEqual([...expectedTensors(config).keys()]);
      expect(new Set(tensors.keys())).toEqual(new Set(reference.keys()));
      for (const [name, ref] of reference) {
        const t = tensors.get(name)!;
        expect(t.dtype).toBe('F32');
        expect(t.shape, name).toEqual(ref.shape);
        const a = toFloat32(t);
        const b = toFloat32(ref);
        let firstDiff = -1;
        for (let i = 0; i < a.length && firstDiff < 0; i++) if (!Object.is(a[i], b[i])) firstDiff = i;
        expect(firstDiff, `${name}: first differing element`).toBe(-1);
      }
      checkAgainstChecksums(tensors, await readFixtureJson<Checksums>(`${set}/weights_checksum.json`));
    });
  }

  it('a different seed gives different weights', async () => {
    const config = parseOptConfig(await readFixtureJson<Record<string, unknown>>('opt-tiny/config.json'));
    const a = toFloat32(syntheticTensors(config, 1).get('model.decoder.layers.0.fc1.weight')!);
    const b = toFloat32(syntheticTensors(config, 2).get('model.decoder.layers.0.fc1.weight')!);
    expect(a.some((x, i) => x !== b[i])).toBe(true);
  });

  it('opt-125m-synth (seed 1) matches weights_checksum.json (sum within n*2^-53*sum|x|, first 4 values exact)', async () => {
    const config = parseOptConfig(await readFixtureJson<Record<string, unknown>>('opt-125m-synth/config.json'));
    const t0 = performance.now();
    const tensors = syntheticTensors(config, 1);
    const ms = performance.now() - t0;
    let n = 0;
    for (const t of tensors.values()) n += t.bytes.byteLength / 4;
    expect(n).toBeGreaterThan(125e6);
    expect(ms, 'generation time (ms) for opt-125m').toBeLessThan(10_000); // ~1 s measured; generous for slow CI
    const worst = checkAgainstChecksums(tensors, await readFixtureJson<Checksums>('opt-125m-synth/weights_checksum.json'));
    expect(worst).toBeLessThanOrEqual(1);
  }, 60_000);
});
