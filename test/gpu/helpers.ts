// Shared helpers for the Deno GPU tests.
import { LocalGpu } from '../../src/gpu/local.ts';
import { parseSafetensors } from '../../src/model/weights/safetensors.ts';
import { toFloat32 } from '../../src/model/weights/dtype.ts';

export const FIXTURES = new URL('../../../shared/fixtures/', import.meta.url).pathname;

let shared: Promise<LocalGpu> | undefined;
/** One device for the whole test file (creating devices is slow on lavapipe). */
export function testGpu(): Promise<LocalGpu> {
  shared ??= LocalGpu.create();
  return shared;
}

/** Deterministic pseudo-random floats in [-scale, scale). */
export function randomFloats(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = ((x / 0x100000000) * 2 - 1) * scale;
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export interface Reference {
  prompts: number[][];
  prompt_results: Array<{ logsumexp: number[]; top5_ids: number[][]; top5_logits: number[][]; greedy: number[]; greedy_margins: number[] }>;
  train: Record<string, unknown>;
}

export async function readReference(set: string): Promise<{ ref: Reference; tensors: (name: string) => Float32Array | undefined }> {
  const ref = JSON.parse(await Deno.readTextFile(`${FIXTURES}${set}/reference.json`)) as Reference;
  const st = parseSafetensors(await Deno.readFile(`${FIXTURES}${set}/reference.safetensors`), `${set}/reference.safetensors`);
  return { ref, tensors: (name) => { const t = st.get(name); return t ? toFloat32(t) : undefined; } };
}

/** Number of greedy steps that must match: up to the first step whose reference margin is below 1e-3. */
export function greedyStepsToCompare(margins: number[]): number {
  const i = margins.findIndex((m) => m < 1e-3);
  return i < 0 ? margins.length : i;
}

import nodeAssert from 'node:assert/strict';
/** Assertions (node:assert, built into Deno; jsr is not reachable offline). */
export function assert(cond: unknown, msg?: string): asserts cond {
  nodeAssert.ok(cond, msg);
}
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}
export async function assertRejects(fn: () => Promise<unknown>, cls: new (...a: never[]) => Error, includes?: string): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    nodeAssert.ok(e instanceof cls, `expected ${cls.name}, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
    if (includes) nodeAssert.ok((e as Error).message.includes(includes), `"${(e as Error).message}" should mention "${includes}"`);
    return e as Error;
  }
  throw new Error(`expected ${cls.name} to be thrown`);
}
export function assertThrows(fn: () => unknown, cls: new (...a: never[]) => Error, includes?: string): Error {
  try {
    fn();
  } catch (e) {
    nodeAssert.ok(e instanceof cls, `expected ${cls.name}, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
    if (includes) nodeAssert.ok((e as Error).message.includes(includes), `"${(e as Error).message}" should mention "${includes}"`);
    return e as Error;
  }
  throw new Error(`expected ${cls.name} to be thrown`);
}

/** A test kernel: out[i] = in[i] * 2 + 1 over n = arrayLength(out) (bindings 0: read, 1: read_write). */
export const AFFINE = {
  key: 'test.affine',
  code: `@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < arrayLength(&dst)) { dst[id.x] = src[id.x] * 2.0 + 1.0; }
}`,
};
