/**
 * PyTorch `pytorch_model.bin` (torch.save since 1.6): a zip archive holding
 *   <archive>/data.pkl      the state dict, pickled; tensors refer to storages by persistent id
 *   <archive>/data/<key>    each storage's raw little-endian bytes
 *   <archive>/byteorder     "little" (absent in old files, which are little-endian too)
 *
 * The pickle is run by the restricted unpickler with an allow-list of exactly the globals a state dict
 * needs; any other global (`os.system`, `builtins.eval`, ...) is rejected by name when the GLOBAL opcode
 * is read, before anything could be called. Tensors become HostTensors: views into the archive when
 * contiguous (the normal case), copies otherwise.
 */
import { CheckpointFormatError } from '../../errors.ts';
import { numElements } from './dtype.ts';
import { PyCallable, PyDict, PyTuple, restrictedUnpickle } from './pickle.ts';
import type { HostTensor, StorageDType, TensorMap } from './types.ts';
import { isZip, readZipDirectory, readZipEntry } from './zip.ts';

/** A storage class named in the pickle (torch.HalfStorage, ...): the dtype of the storages it tags. */
class StorageType {
  constructor(readonly qualifiedName: string, readonly dtype: StorageDType | 'U8') {}
}

/** A storage referenced by persistent id: its bytes are the zip entry data/<key>. */
class StorageRef {
  constructor(readonly key: string, readonly type: StorageType, readonly numel: number) {}
}

/** A tensor as `_rebuild_tensor_v2` describes it: a strided window onto a storage. */
class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly shape: number[], readonly stride: number[]) {}
}

const STORAGE_DTYPES: Record<string, StorageDType | 'U8'> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', UntypedStorage: 'U8',
};
/** Torch storage classes we recognise but cannot load, with their dtype for the error message. */
const UNSUPPORTED_STORAGES: Record<string, string> = {
  DoubleStorage: 'float64', LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8',
  ByteStorage: 'uint8', BoolStorage: 'bool', ComplexFloatStorage: 'complex64', ComplexDoubleStorage: 'complex128',
};
const ELEMENT_BYTES: Record<StorageDType | 'U8', number> = { F32: 4, F16: 2, BF16: 2, U8: 1 };
const ALLOWED_GLOBALS = [
  'collections.OrderedDict', 'torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_parameter',
  'torch.FloatStorage', 'torch.HalfStorage', 'torch.BFloat16Storage', 'torch.UntypedStorage',
];

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function intTuple(v: unknown): number[] | undefined {
  if (!(v instanceof PyTuple) || !v.items.every(isInt)) return undefined;
  return v.items as number[];
}

/** Parse a PyTorch zip checkpoint into tensors (names as stored; see names.ts). Throws CheckpointFormatError. */
export async function parsePytorchCheckpoint(bytes: Uint8Array, fileName: string): Promise<TensorMap> {
  const fail: (msg: string) => never = (msg) => { throw new CheckpointFormatError(`${fileName}: ${msg}`); };
  if (!isZip(bytes)) {
    if (bytes[0] === 0x80) {
      fail('this is the legacy (PyTorch < 1.6) pickle-only format, which is not supported; re-save it with torch >= 1.6 or convert it to safetensors');
    }
    fail('not a PyTorch zip checkpoint (no zip signature)');
  }
  const dir = readZipDirectory(bytes, fileName);
  const pkls = [...dir.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1) fail(pkls.length === 0 ? 'no <archive>/data.pkl entry' : `several data.pkl entries: ${pkls.join(', ')}`);
  const prefix = pkls[0].slice(0, -'data.pkl'.length);

  const byteorder = dir.get(prefix + 'byteorder');
  if (byteorder) {
    const order = new TextDecoder().decode(await readZipEntry(bytes, byteorder, fileName)).trim();
    if (order !== 'little') fail(`byteorder is "${order}"; only little-endian checkpoints are supported`);
  }

  const where = `${fileName}: ${pkls[0]}`;
  const storages = new Map<string, StorageRef>();
  const result = restrictedUnpickle(await readZipEntry(bytes, dir.get(pkls[0])!, fileName), where, {
    resolveGlobal(module, name) {
      const q = `${module}.${name}`;
      switch (q) {
        case 'collections.OrderedDict':
          return new PyCallable(q, (args) => {
            const d = new PyDict();
            // OrderedDict() or OrderedDict([(k, v), ...]).
            if (args.length > 0 && Array.isArray(args[0])) {
              for (const kv of args[0] as unknown[]) {
                if (!(kv instanceof PyTuple) || kv.items.length !== 2) fail(`${pkls[0]}: OrderedDict item is not a pair`);
                d.map.set((kv as PyTuple).items[0], (kv as PyTuple).items[1]);
              }
            } else if (args.length > 0) fail(`${pkls[0]}: unsupported OrderedDict arguments`);
            return d;
          });
        case 'torch._utils._rebuild_tensor_v2':
          return new PyCallable(q, (args) => rebuildTensor(args, where));
        case 'torch._utils._rebuild_parameter':
          return new PyCallable(q, (args) => {
            if (!(args[0] instanceof TensorRef)) fail(`${pkls[0]}: _rebuild_parameter of something that is not a tensor`);
            return args[0];
          });
      }
      if (module === 'torch' || module === 'torch.storage') {
        const dt = STORAGE_DTYPES[name];
        if (dt !== undefined && (module === 'torch' || name === 'UntypedStorage')) return new StorageType(q, dt);
        if (module === 'torch' && name in UNSUPPORTED_STORAGES) {
          fail(`${pkls[0]}: tensor storage ${q} holds ${UNSUPPORTED_STORAGES[name]}; only float32, float16 and bfloat16 tensors are supported`);
        }
      }
      return fail(
        `${pkls[0]}: the pickle references the global "${q}", which a state dict never needs; refusing to load it ` +
          `(allowed: ${ALLOWED_GLOBALS.join(', ')})`,
      );
    },
    persistentLoad(pid) {
      // ('storage', storage_type, key, location, numel), as torch.save writes it.
      const it = pid instanceof PyTuple ? pid.items : [];
      if (it.length !== 5 || it[0] !== 'storage' || !(it[1] instanceof StorageType) || typeof it[2] !== 'string' || !isInt(it[4])) {
        fail(`${pkls[0]}: unsupported persistent id (expected ('storage', type, key, location, numel))`);
      }
      const [, type, key, , numel] = it as [string, StorageType, string, string, number];
      const known = storages.get(key);
      if (known) {
        if (known.type.dtype !== type.dtype || known.numel !== numel) fail(`${pkls[0]}: storage ${key} is declared twice differently`);
        return known;
      }
      const ref = new StorageRef(key, type, numel);
      storages.set(key, ref);
      return ref;
    },
    build(obj) {
      // Parameters may carry BUILD state (hooks, attributes): irrelevant to the values.
      if (!(obj instanceof TensorRef)) fail(`${pkls[0]}: BUILD on an unsupported object`);
    },
  });

  if (!(result instanceof PyDict)) fail(`${pkls[0]}: top-level object is not a dict (a state dict is expected)`);
  const storageBytes = new Map<string, Uint8Array>();
  const tensors: TensorMap = new Map();
  for (const [name, value] of (result as PyDict).map) {
    if (typeof name !== 'string') fail(`${pkls[0]}: state-dict key ${String(name)} is not a string`);
    if (!(value instanceof TensorRef)) fail(`${pkls[0]}: state-dict entry "${name}" is not a tensor`);
    const t = value as TensorRef;
    let data = storageBytes.get(t.storage.key);
    if (!data) {
      const entry = dir.get(`${prefix}data/${t.storage.key}`);
      if (!entry) fail(`tensor "${name}": storage entry ${prefix}data/${t.storage.key} is missing`);
      data = await readZipEntry(bytes, entry!, fileName);
      storageBytes.set(t.storage.key, data);
    }
    tensors.set(name as string, materialize(name as string, t, data, fileName));
  }
  return tensors;
}

/** _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]). */
function rebuildTensor(args: unknown[], where: string): TensorRef {
  const [storage, offset, size, stride] = args;
  const shape = intTuple(size);
  const strides = intTuple(stride);
  if (args.length < 4 || !(storage instanceof StorageRef) || !isInt(offset) || !shape || !strides || shape.length !== strides.length) {
    throw new CheckpointFormatError(`${where}: _rebuild_tensor_v2 called with unexpected arguments`);
  }
  return new TensorRef(storage, offset, [...shape], [...strides]);
}

/** The tensor's bytes: a view when contiguous row-major, else a gathered copy. */
function materialize(name: string, t: TensorRef, data: Uint8Array, fileName: string): HostTensor {
  const fail: (msg: string) => never = (msg) => { throw new CheckpointFormatError(`${fileName}: tensor "${name}": ${msg}`); };
  const dtype = t.storage.type.dtype;
  if (dtype === 'U8') fail(`stored in an untyped (uint8) storage; only float32, float16 and bfloat16 tensors are supported`);
  const es = ELEMENT_BYTES[dtype];
  if (data.byteLength < t.storage.numel * es) {
    fail(`storage ${t.storage.key} has ${data.byteLength} bytes, ${t.storage.numel} elements of ${dtype} need ${t.storage.numel * es}`);
  }
  const n = numElements(t.shape);
  const shape = [...t.shape];
  if (n === 0) return { dtype: dtype as StorageDType, shape, bytes: new Uint8Array(0) };
  let last = t.offset; // index of the last element addressed
  for (let d = 0; d < shape.length; d++) last += (shape[d] - 1) * t.stride[d];
  if (last >= t.storage.numel) fail(`offset ${t.offset}, shape [${shape}], strides [${t.stride}] reach past its storage of ${t.storage.numel} elements`);

  let contiguous = true;
  for (let d = shape.length - 1, expect = 1; d >= 0; d--) {
    if (shape[d] !== 1 && t.stride[d] !== expect) contiguous = false;
    expect *= shape[d];
  }
  if (contiguous) return { dtype: dtype as StorageDType, shape, bytes: data.subarray(t.offset * es, (t.offset + n) * es) };

  // Strided (e.g. a saved transpose): copy element by element into row-major order.
  const out = new Uint8Array(n * es);
  const idx = new Array<number>(shape.length).fill(0);
  let src = t.offset;
  for (let i = 0; i < n; i++) {
    out.set(data.subarray(src * es, (src + 1) * es), i * es);
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d]++;
      src += t.stride[d];
      if (idx[d] < shape[d]) break;
      src -= t.stride[d] * shape[d];
      idx[d] = 0;
    }
  }
  return { dtype: dtype as StorageDType, shape, bytes: out };
}
