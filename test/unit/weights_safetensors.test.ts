/** safetensors: every malformed input is rejected with a CheckpointFormatError naming file and tensor. */
import { describe, expect, it } from 'vitest';
import { CheckpointFormatError } from '../../src/errors.ts';
import { parseSafetensors, parseSafetensorsFile, serializeSafetensors } from '../../src/model/weights/safetensors.ts';
import { fromFloat32, toFloat32 } from '../../src/model/weights/dtype.ts';
import type { TensorMap } from '../../src/model/weights/types.ts';
import { readFixture } from './helpers/node.ts';

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);
}

/** A safetensors file from a header object (or raw header text) and `dataBytes` bytes of data. */
function build(header: unknown, dataBytes: number, rawHeader?: string): Uint8Array {
  const json = new TextEncoder().encode(rawHeader ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  for (let i = 0; i < dataBytes; i++) out[8 + json.length + i] = i & 0xff;
  return out;
}

function expectFormatError(fn: () => unknown, ...fragments: (string | RegExp)[]): void {
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  expect(err, 'expected a CheckpointFormatError').toBeInstanceOf(CheckpointFormatError);
  const msg = (err as Error).message;
  for (const f of fragments) expect(msg).toMatch(f);
}

const ok = { w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] } };

describe('parseSafetensors', () => {
  it('parses a valid file into views, skipping __metadata__', () => {
    const bytes = build({ __metadata__: { format: 'pt' }, ...ok, b: { dtype: 'F16', shape: [4], data_offsets: [24, 32] } }, 32);
    const { tensors, metadata } = parseSafetensorsFile(bytes, 'good.safetensors');
    expect([...tensors.keys()]).toEqual(['w', 'b']);
    expect(metadata).toEqual({ format: 'pt' });
    const w = tensors.get('w')!;
    expect(w.shape).toEqual([2, 3]);
    expect(w.bytes.buffer).toBe(bytes.buffer); // a view, not a copy
    expect(w.bytes[0]).toBe(0);
    expect(tensors.get('b')!.bytes[0]).toBe(24);
  });

  it('accepts zero-size tensors and scalars', () => {
    const t = parseSafetensors(build({ e: { dtype: 'F32', shape: [0, 5], data_offsets: [0, 0] }, s: { dtype: 'BF16', shape: [], data_offsets: [0, 2] } }, 2), 'x');
    expect(t.get('e')!.bytes.byteLength).toBe(0);
    expect(t.get('s')!.bytes.byteLength).toBe(2);
  });

  it('rejects a file shorter than 8 bytes', () => {
    expectFormatError(() => parseSafetensors(new Uint8Array(5), 'short.safetensors'), 'short.safetensors', /5 bytes, shorter than/);
  });

  it('rejects a header length beyond the file', () => {
    const bytes = build(ok, 24);
    new DataView(bytes.buffer).setUint32(0, bytes.length, true);
    expectFormatError(() => parseSafetensors(bytes, 'f.safetensors'), 'f.safetensors', /runs past the end of the file/);
  });

  it('rejects an absurd header length (> 100 MB), also in the high 32 bits', () => {
    const bytes = build(ok, 24);
    new DataView(bytes.buffer).setUint32(0, 200 * 1024 * 1024, true);
    expectFormatError(() => parseSafetensors(bytes, 'f.safetensors'), /absurd/);
    const hi = build(ok, 24);
    new DataView(hi.buffer).setUint32(4, 1, true);
    expectFormatError(() => parseSafetensors(hi, 'f.safetensors'), /absurd/);
  });

  it('rejects a header that is not JSON, or not an object', () => {
    expectFormatError(() => parseSafetensors(build(null, 0, '{"w": {"dtype": "F32",'), 'bad.safetensors'), 'bad.safetensors', /not valid UTF-8 JSON/);
    expectFormatError(() => parseSafetensors(build([1, 2], 0), 'arr.safetensors'), /not a JSON object/);
    expectFormatError(() => parseSafetensors(build(7, 0), 'num.safetensors'), /not a JSON object/);
    expectFormatError(() => parseSafetensors(build({ w: 'x' }, 0), 'e.safetensors'), /tensor "w": entry is not an object/);
  });

  for (const key of ['dtype', 'shape', 'data_offsets']) {
    it(`rejects an entry without ${key}`, () => {
      const entry: Record<string, unknown> = { ...ok.w };
      delete entry[key];
      expectFormatError(() => parseSafetensors(build({ w: entry }, 24), 'm.safetensors'), 'm.safetensors', 'tensor "w"', `no "${key}"`);
    });
  }

  it('rejects unknown dtypes, naming the dtype', () => {
    for (const dtype of ['F64', 'I64', 'U8', 'BOOL', 'F8_E4M3']) {
      expectFormatError(
        () => parseSafetensors(build({ w: { dtype, shape: [3], data_offsets: [0, 24] } }, 24), 'd.safetensors'),
        'tensor "w"', `dtype ${dtype} is not supported`,
      );
    }
  });

  it('rejects malformed shapes and offsets', () => {
    expectFormatError(() => parseSafetensors(build({ w: { dtype: 'F32', shape: [2, -3], data_offsets: [0, 24] } }, 24), 's'), /shape/);
    expectFormatError(() => parseSafetensors(build({ w: { dtype: 'F32', shape: [6], data_offsets: [0] } }, 24), 's'), /data_offsets/);
    expectFormatError(() => parseSafetensors(build({ w: { dtype: 'F32', shape: [6], data_offsets: [0.5, 24] } }, 24), 's'), /data_offsets/);
  });

  it('rejects offsets out of bounds', () => {
    expectFormatError(() => parseSafetensors(build({ w: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, 24), 'o.safetensors'),
      'o.safetensors', 'tensor "w"', /run past the data section \(24 bytes\)/);
  });

  it('rejects begin > end', () => {
    expectFormatError(() => parseSafetensors(build({ w: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, 24), 'r'),
      'tensor "w"', /begin 8 > end 4/);
  });

  it('rejects overlapping ranges, naming both tensors', () => {
    const header = { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } };
    expectFormatError(() => parseSafetensors(build(header, 24), 'ov.safetensors'), 'ov.safetensors', '"a"', '"b"', /overlap/);
    const same = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F16', shape: [4], data_offsets: [0, 8] } };
    expectFormatError(() => parseSafetensors(build(same, 8), 'ov.safetensors'), /overlap/);
  });

  it('rejects a byte length that does not match shape x element size', () => {
    expectFormatError(() => parseSafetensors(build({ w: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 24] } }, 24), 'n.safetensors'),
      'n.safetensors', 'tensor "w"', /24 bytes but shape \[2,3\] of F16 needs 12/);
  });

  it('catches corruption edited into a real checkpoint', async () => {
    const original = await readFixture('opt-tiny/model.safetensors');
    // Truncated download: the last tensor runs past the end.
    expectFormatError(() => parseSafetensors(original.subarray(0, original.length - 100), 'model.safetensors'),
      'model.safetensors', /run past the data section/);
    // A dtype edited in place ("F32" -> "F64", same length so the offsets stay valid).
    const edited = original.slice();
    const headerLen = new DataView(edited.buffer).getUint32(0, true);
    const text = new TextDecoder().decode(edited.subarray(8, 8 + headerLen));
    const at = text.indexOf('"F32"');
    edited.set(new TextEncoder().encode('"F64"'), 8 + at);
    expectFormatError(() => parseSafetensors(edited, 'model.safetensors'), /dtype F64 is not supported/);
    // A shape edited in place ([130, 64] -> [131, 64]): size no longer matches the offsets.
    const reshaped = original.slice();
    const m = /"model\.decoder\.embed_positions\.weight":\{[^}]*"shape":\[(\d+),(\d+)\]/.exec(text)!;
    const rows = Number(m[1]);
    const cols = Number(m[2]);
    const s = m.index + m[0].lastIndexOf('[') + 1;
    const longer = String(rows + 1);
    expect(longer.length).toBe(m[1].length);
    reshaped.set(new TextEncoder().encode(longer), 8 + s);
    expectFormatError(() => parseSafetensors(reshaped, 'model.safetensors'), 'model.decoder.embed_positions.weight',
      `needs ${(rows + 1) * cols * 4}`);
  });
});

describe('serializeSafetensors', () => {
  it('round-trips mixed dtypes with aligned data and a padded header', () => {
    const values = new Float32Array([1.5, -2.25, 3e-5, 65504, 1e-8, 0]);
    const tensors: TensorMap = new Map([
      ['half', fromFloat32(values.subarray(0, 3), [3], 'F16')],
      ['full', fromFloat32(values, [2, 3], 'F32')],
      ['brain', fromFloat32(values.subarray(0, 5), [5], 'BF16')],
      ['empty', fromFloat32(new Float32Array(0), [0, 4], 'F32')],
    ]);
    const bytes = serializeSafetensors(tensors, { format: 'pt' });
    const headerLen = new DataView(bytes.buffer).getUint32(0, true);
    expect(headerLen % 8).toBe(0);
    const { tensors: back, metadata } = parseSafetensorsFile(bytes, 'rt.safetensors');
    expect(metadata).toEqual({ format: 'pt' });
    expect(new Set(back.keys())).toEqual(new Set(tensors.keys()));
    for (const [name, t] of tensors) {
      const b = back.get(name)!;
      expect(b.dtype).toBe(t.dtype);
      expect(b.shape).toEqual(t.shape);
      expect(b.bytes).toEqual(t.bytes);
      expect((b.bytes.byteOffset) % 4 === 0 || b.dtype !== 'F32', `${name} aligned`).toBe(true);
    }
    expect(toFloat32(back.get('full')!)).toEqual(values);
  });

  it('round-trips a real checkpoint byte for byte in its tensors', async () => {
    const original = parseSafetensors(await readFixture('opt-tiny/model.safetensors'), 'model.safetensors');
    const again = parseSafetensors(serializeSafetensors(original), 'again.safetensors');
    expect([...again.keys()]).toEqual([...original.keys()]);
    for (const [name, t] of original) expect(bytesEqual(again.get(name)!.bytes, t.bytes), name).toBe(true);
  });

  it('refuses a tensor whose bytes do not match its shape', () => {
    const bad: TensorMap = new Map([['w', { dtype: 'F32', shape: [3], bytes: new Uint8Array(8) }]]);
    expect(() => serializeSafetensors(bad)).toThrow(CheckpointFormatError);
  });
});
