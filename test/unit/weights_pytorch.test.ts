/**
 * pytorch_model.bin: the restricted unpickler refuses every global a state dict does not need (before
 * anything could run), rejects unknown opcodes by name, and rebuilds strided tensors correctly.
 */
import { describe, expect, it } from 'vitest';
import { CheckpointFormatError } from '../../src/errors.ts';
import { toFloat32 } from '../../src/model/weights/dtype.ts';
import { PyDict, PyTuple, restrictedUnpickle } from '../../src/model/weights/pickle.ts';
import { parsePytorchCheckpoint } from '../../src/model/weights/pytorch.ts';
import { fsp, tempDir } from './helpers/node.ts';
import { buildZip, P, pickle, tensorEntry } from './helpers/torchzip.ts';

/** A torch.save-style archive: archive/data.pkl, archive/byteorder, archive/data/<key>. */
async function archive(pkl: Uint8Array, storages: Record<string, Uint8Array> = {}, byteorder = 'little'): Promise<Uint8Array> {
  return buildZip([
    { name: 'archive/data.pkl', data: pkl },
    { name: 'archive/byteorder', data: new TextEncoder().encode(byteorder) },
    ...Object.entries(storages).map(([key, data]) => ({ name: `archive/data/${key}`, data })),
  ]);
}

async function rejects(p: Promise<unknown>, ...fragments: (string | RegExp)[]): Promise<string> {
  let err: unknown;
  try { await p; } catch (e) { err = e; }
  expect(err, 'expected a CheckpointFormatError').toBeInstanceOf(CheckpointFormatError);
  const msg = (err as Error).message;
  for (const f of fragments) expect(msg).toMatch(f);
  return msg;
}

const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);
const stateDict = (...entries: number[][]) => pickle(P.proto(2), P.emptyDict(), P.mark(), ...entries, P.setitems(), P.stop());

describe('restricted unpickler: refusing code execution', () => {
  it('rejects GLOBAL os.system without running anything', async () => {
    const tmp = await tempDir();
    const marker = `${tmp.path}/pwned`;
    try {
      // pickle.loads of this runs os.system('touch <marker>') in Python.
      const evil = pickle(P.proto(2), P.global('os', 'system'), P.str(`touch ${marker}`), P.tuple1(), P.reduce(), P.stop());
      await rejects(parsePytorchCheckpoint(await archive(evil), 'evil.bin'), 'evil.bin', '"os.system"', /refusing to load/);
      let exists = true;
      try { await (await fsp()).readFile(marker); } catch { exists = false; }
      expect(exists).toBe(false);
    } finally {
      await tmp.cleanup();
    }
  });

  it('rejects the global when it is read, before any later opcode', async () => {
    // After the global comes an opcode we do not support: the error must be about the global.
    const evil = pickle(P.proto(2), P.global('builtins', 'exec'), P.raw(0x81), P.stop());
    await rejects(parsePytorchCheckpoint(await archive(evil), 'evil.bin'), '"builtins.exec"');
  });

  it('rejects dangerous globals through STACK_GLOBAL too', async () => {
    const evil = pickle(P.proto(4), P.str('builtins'), P.str('eval'), P.stackGlobal(), P.str('1+1'), P.tuple1(), P.reduce(), P.stop());
    await rejects(parsePytorchCheckpoint(await archive(evil), 'evil.bin'), '"builtins.eval"');
  });

  it('rejects every global outside the allow-list, including lookalikes', async () => {
    for (const [m, n] of [
      ['posix', 'system'], ['subprocess', 'Popen'], ['builtins', 'getattr'], ['__builtin__', 'eval'],
      ['torch', 'load'], ['torch._utils', '_rebuild_device_tensor_from_numpy'], ['collections', 'defaultdict'],
      ['torch._utils ', '_rebuild_tensor_v2'], ['numpy.core.multiarray', '_reconstruct'],
    ]) {
      const evil = pickle(P.proto(2), P.global(m, n), P.emptyTuple(), P.reduce(), P.stop());
      await rejects(parsePytorchCheckpoint(await archive(evil), 'g.bin'), `"${m}.${n}"`);
    }
  });

  it('names unsupported storage dtypes', async () => {
    const pkl = stateDict(tensorEntry('w', 'DoubleStorage', '0', 2, 0, [2], [1]));
    await rejects(parsePytorchCheckpoint(await archive(pkl, { 0: new Uint8Array(16) }), 'd.bin'), 'torch.DoubleStorage', 'float64');
  });

  it('rejects unknown opcodes by name', async () => {
    const cases: [number[], string][] = [
      [[0x81], 'NEWOBJ'], [[0x69], 'INST'], [[0x8f], 'EMPTY_SET'], [[0x82, 1], 'EXT1'], [[0xff], '0xff'],
    ];
    for (const [op, name] of cases) {
      const pkl = pickle(P.proto(2), P.emptyTuple(), op, P.stop());
      await rejects(parsePytorchCheckpoint(await archive(pkl), 'op.bin'), `opcode ${name}`);
    }
  });

  it('rejects truncated pickles, unbalanced marks, and pickle protocols it does not know', () => {
    const hooks = { resolveGlobal: (m: string, n: string): never => { throw new CheckpointFormatError(`${m}.${n}`); } };
    expect(() => restrictedUnpickle(pickle(P.proto(2), P.str('abc')).subarray(0, 6), 'x', hooks)).toThrow(/truncated/);
    expect(() => restrictedUnpickle(pickle(P.proto(2), P.emptyDict()), 'x', hooks)).toThrow(/without STOP/);
    expect(() => restrictedUnpickle(pickle(P.proto(2), P.mark(), P.none(), P.stop()), 'x', hooks)).toThrow(/unbalanced MARK/);
    expect(() => restrictedUnpickle(pickle(P.proto(9), P.none(), P.stop()), 'x', hooks)).toThrow(/protocol 9/);
    expect(() => restrictedUnpickle(pickle(P.proto(2), P.raw(0x68, 5), P.stop()), 'x', hooks)).toThrow(/memo slot 5/);
  });
});

describe('restricted unpickler: data', () => {
  it('builds dicts, lists, tuples, ints, floats, strings and memo references', () => {
    const dv = new DataView(new ArrayBuffer(8));
    dv.setFloat64(0, -2.5, false);
    const pkl = pickle(
      P.proto(2), P.emptyDict(), P.raw(0x71, 0), P.mark(),
      P.str('list'), P.emptyList(), P.raw(0x71, 1), P.mark(), P.int(1), P.int(300), P.int(70000), P.raw(0x65),
      P.str('tuple'), P.str('a'), P.raw(0x71, 2), P.raw(0x68, 2), P.tuple2(),
      P.str('long'), P.raw(0x8a, 5, 0, 0, 0, 0, 1), // LONG1: 2^32
      P.str('neg'), P.raw(0x8a, 1, 0xff), // LONG1: -1
      P.str('float'), P.raw(0x47, ...new Uint8Array(dv.buffer)),
      P.str('flags'), P.raw(0x88), P.newfalse(), P.none(), P.tuple3(),
      P.setitems(), P.stop(),
    );
    const v = restrictedUnpickle(pkl, 'x', { resolveGlobal: () => { throw new Error('no globals here'); } }) as PyDict;
    expect(v).toBeInstanceOf(PyDict);
    expect(v.map.get('list')).toEqual([1, 300, 70000]);
    expect((v.map.get('tuple') as PyTuple).items).toEqual(['a', 'a']);
    expect(v.map.get('long')).toBe(2 ** 32);
    expect(v.map.get('neg')).toBe(-1);
    expect(v.map.get('float')).toBe(-2.5);
    expect((v.map.get('flags') as PyTuple).items).toEqual([true, false, null]);
  });
});

describe('pytorch_model.bin tensors', () => {
  it('reads a storage offset and copies a strided (transposed) tensor into row-major order', async () => {
    const storage = f32(0, 1, 2, 3, 4, 5, 6, 7);
    const pkl = stateDict(
      // Row-major [2, 3] view of elements 2..7: a view into the archive.
      tensorEntry('decoder.a', 'FloatStorage', '0', 8, 2, [2, 3], [3, 1]),
      // The transpose of storage[0..6] seen as [3, 2]: shape [2, 3], strides [1, 2].
      tensorEntry('decoder.t', 'FloatStorage', '0', 8, 0, [2, 3], [1, 2]),
      // Size-1 dims may have any stride and still be contiguous.
      tensorEntry('decoder.c', 'FloatStorage', '0', 8, 4, [1, 4], [99, 1]),
    );
    const tensors = await parsePytorchCheckpoint(await archive(pkl, { 0: storage }), 's.bin');
    expect(Array.from(toFloat32(tensors.get('decoder.a')!))).toEqual([2, 3, 4, 5, 6, 7]);
    expect(Array.from(toFloat32(tensors.get('decoder.t')!))).toEqual([0, 2, 4, 1, 3, 5]);
    expect(Array.from(toFloat32(tensors.get('decoder.c')!))).toEqual([4, 5, 6, 7]);
    expect(tensors.get('decoder.c')!.shape).toEqual([1, 4]);
  });

  it('reads a top-level OrderedDict carrying _metadata through BUILD (as model.state_dict() pickles)', async () => {
    const pkl = pickle(
      P.proto(2), P.global('collections', 'OrderedDict'), P.emptyTuple(), P.reduce(),
      P.mark(), tensorEntry('decoder.w', 'FloatStorage', '0', 2, 0, [2], [1]), P.setitems(),
      // state = {'_metadata': OrderedDict([('', {'version': 1})])}
      P.emptyDict(), P.str('_metadata'), P.global('collections', 'OrderedDict'), P.emptyTuple(), P.reduce(),
      P.str(''), P.emptyDict(), P.str('version'), P.int(1), P.setitem(), P.setitem(), P.setitem(),
      P.build(), P.stop(),
    );
    const t = await parsePytorchCheckpoint(await archive(pkl, { 0: f32(0.5, -1) }), 'od.bin');
    expect([...t.keys()]).toEqual(['decoder.w']);
    expect(Array.from(toFloat32(t.get('decoder.w')!))).toEqual([0.5, -1]);
  });

  it('wraps tensors saved as nn.Parameter (_rebuild_parameter)', async () => {
    const entry = tensorEntry('w', 'HalfStorage', '0', 2, 0, [2], [1]);
    const key = P.str('w');
    const pkl = stateDict([
      ...key, ...P.global('torch._utils', '_rebuild_parameter'), ...P.mark(), ...entry.slice(key.length),
      ...P.newfalse(), ...P.global('collections', 'OrderedDict'), ...P.emptyTuple(), ...P.reduce(), ...P.tuple(), ...P.reduce(),
    ]);
    const t = await parsePytorchCheckpoint(await archive(pkl, { 0: new Uint8Array([0x00, 0x3c, 0x00, 0xc0]) }), 'p.bin');
    expect(Array.from(toFloat32(t.get('w')!))).toEqual([1, -2]);
  });

  it('rejects views past the end of their storage, missing storages, and short storages', async () => {
    const past = stateDict(tensorEntry('w', 'FloatStorage', '0', 4, 2, [3], [1]));
    await rejects(parsePytorchCheckpoint(await archive(past, { 0: f32(0, 1, 2, 3) }), 'o.bin'), 'tensor "w"', /reach past its storage/);
    const missing = stateDict(tensorEntry('w', 'FloatStorage', '7', 4, 0, [4], [1]));
    await rejects(parsePytorchCheckpoint(await archive(missing, { 0: f32(0, 1, 2, 3) }), 'm.bin'), 'archive/data/7 is missing');
    const short = stateDict(tensorEntry('w', 'FloatStorage', '0', 4, 0, [4], [1]));
    await rejects(parsePytorchCheckpoint(await archive(short, { 0: f32(0, 1) }), 's.bin'), /storage 0 has 8 bytes/);
  });

  it('rejects non-dict pickles, non-tensor entries, big-endian archives, legacy and non-zip files', async () => {
    await rejects(parsePytorchCheckpoint(await archive(pickle(P.proto(2), P.emptyList(), P.stop())), 'l.bin'), /not a dict/);
    await rejects(parsePytorchCheckpoint(await archive(stateDict([...P.str('x'), ...P.int(3)])), 'n.bin'), '"x" is not a tensor');
    const pkl = stateDict(tensorEntry('w', 'FloatStorage', '0', 1, 0, [1], [1]));
    await rejects(parsePytorchCheckpoint(await archive(pkl, { 0: f32(1) }, 'big'), 'b.bin'), /byteorder is "big"/);
    // Pre-1.6 torch.save: a bare pickle stream starting with PROTO.
    await rejects(parsePytorchCheckpoint(pickle(P.proto(2), P.raw(0x8a, 0x0a), P.stop()), 'old.bin'), /legacy/);
    await rejects(parsePytorchCheckpoint(new TextEncoder().encode('<html>404</html>'), 'page.bin'), /not a PyTorch zip/);
    const zip = await archive(pkl, { 0: f32(1) });
    await rejects(parsePytorchCheckpoint(zip.subarray(0, zip.length - 30), 'cut.bin'), 'cut.bin');
  });
});
