/**
 * The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
 * (`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`), then the data,
 * with offsets relative to the start of the data. https://github.com/huggingface/safetensors
 *
 * Parsing returns views into the file's bytes (no copies): a 500 MB checkpoint stays 500 MB.
 * Everything a corrupt or hostile file could get wrong is checked, and the error names the file and tensor.
 */
import { CheckpointFormatError } from '../../errors.ts';
import { bytesPerElement, numElements } from './dtype.ts';
import type { HostTensor, StorageDType, TensorMap } from './types.ts';

/** A header larger than this is not a model header but a corrupt length field. */
export const MAX_SAFETENSORS_HEADER_BYTES = 100 * 1024 * 1024;

const DTYPES: ReadonlySet<string> = new Set<StorageDType>(['F32', 'F16', 'BF16']);

export interface SafetensorsFile {
  tensors: TensorMap;
  /** The `__metadata__` string map (empty when absent). */
  metadata: Record<string, string>;
}

/** Parse a .safetensors file; tensors are views into `bytes`. Throws CheckpointFormatError. */
export function parseSafetensors(bytes: Uint8Array, fileName: string): TensorMap {
  return parseSafetensorsFile(bytes, fileName).tensors;
}

/** Like parseSafetensors, also returning `__metadata__`. */
export function parseSafetensorsFile(bytes: Uint8Array, fileName: string): SafetensorsFile {
  const fail: (msg: string) => never = (msg) => { throw new CheckpointFormatError(`${fileName}: ${msg}`); };
  if (bytes.byteLength < 8) fail(`file is ${bytes.byteLength} bytes, shorter than the 8-byte header length`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenLo = dv.getUint32(0, true);
  const lenHi = dv.getUint32(4, true);
  const headerLen = lenHi * 2 ** 32 + lenLo;
  if (headerLen > MAX_SAFETENSORS_HEADER_BYTES) {
    fail(`header length ${headerLen} is absurd (limit ${MAX_SAFETENSORS_HEADER_BYTES} bytes): corrupt file?`);
  }
  if (8 + headerLen > bytes.byteLength) {
    fail(`header length ${headerLen} runs past the end of the file (${bytes.byteLength} bytes): truncated?`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    fail(`header is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('header is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;
  const tensors: TensorMap = new Map();
  const metadata: Record<string, string> = {};
  const ranges: { name: string; begin: number; end: number }[] = [];

  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (entry !== null && typeof entry === 'object' && !Array.isArray(entry)) {
        for (const [k, v] of Object.entries(entry)) if (typeof v === 'string') metadata[k] = v;
      }
      continue;
    }
    const where = `tensor "${name}"`;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) fail(`${where}: entry is not an object`);
    const e = entry as Record<string, unknown>;
    for (const key of ['dtype', 'shape', 'data_offsets']) {
      if (!(key in e)) fail(`${where}: entry has no "${key}"`);
    }
    if (typeof e.dtype !== 'string') fail(`${where}: dtype ${JSON.stringify(e.dtype)} is not a string`);
    const dtype = e.dtype as string;
    if (!DTYPES.has(dtype)) fail(`${where}: dtype ${dtype} is not supported (only F32, F16 and BF16 are)`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`${where}: data_offsets ${JSON.stringify(offs)} is not a pair of non-negative integers`);
    }
    const [begin, end] = offs as [number, number];
    if (begin > end) fail(`${where}: data_offsets begin ${begin} > end ${end}`);
    if (end > dataLen) fail(`${where}: data_offsets [${begin}, ${end}] run past the data section (${dataLen} bytes): truncated?`);
    const want = numElements(shape as number[]) * bytesPerElement(dtype as StorageDType);
    if (end - begin !== want) {
      fail(`${where}: ${end - begin} bytes but shape [${shape}] of ${dtype} needs ${want}`);
    }
    ranges.push({ name, begin, end });
    tensors.set(name, {
      dtype: dtype as StorageDType,
      shape: [...(shape as number[])],
      bytes: bytes.subarray(dataStart + begin, dataStart + end),
    });
  }

  // Two tensors sharing bytes would alias silently (a write through one changes the other): reject.
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < ranges.length; i++) {
    const prev = ranges[i - 1];
    const cur = ranges[i];
    if (cur.begin < prev.end) {
      fail(`tensors "${prev.name}" [${prev.begin}, ${prev.end}] and "${cur.name}" [${cur.begin}, ${cur.end}] overlap`);
    }
  }
  return { tensors, metadata };
}

/**
 * Serialize tensors to safetensors bytes. Tensors are laid out by element size, largest first (as the
 * reference implementation does), so every tensor's data stays aligned to its element size; the header is
 * padded with spaces to a multiple of 8 bytes.
 */
export function serializeSafetensors(tensors: TensorMap, metadata?: Record<string, string>): Uint8Array {
  const entries = [...tensors.entries()];
  // Stable sort: within one element size the caller's order is kept.
  entries.sort((a, b) => bytesPerElement(b[1].dtype) - bytesPerElement(a[1].dtype));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw new CheckpointFormatError('serializeSafetensors: "__metadata__" is not a valid tensor name');
    const want = numElements(t.shape) * bytesPerElement(t.dtype);
    if (t.bytes.byteLength !== want) {
      throw new CheckpointFormatError(
        `serializeSafetensors: tensor "${name}" has ${t.bytes.byteLength} bytes, shape [${t.shape}] of ${t.dtype} needs ${want}`,
      );
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + want] };
    offset += want;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + padded + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, padded % 2 ** 32, true);
  dv.setUint32(4, Math.floor(padded / 2 ** 32), true);
  out.set(json, 8);
  let pos = 8 + padded;
  for (const [, t] of entries) {
    out.set(t.bytes, pos);
    pos += t.bytes.byteLength;
  }
  return out;
}
