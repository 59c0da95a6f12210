/**
 * A minimal zip reader: just enough for PyTorch's checkpoint archives (torch.save since 1.6).
 *
 * It reads the central directory (the authoritative list of entries, at the end of the file), supports
 * zip64 (archives or entries over 4 GiB), and returns stored entries as views into the file. PyTorch writes
 * entries uncompressed and 64-byte aligned, so a view is the common case; a deflated entry (re-zipped by
 * some other tool) is inflated with the platform's DecompressionStream('deflate-raw').
 * CRCs are not checked: the tensor parsers validate sizes and structure, and hashing 500 MB costs seconds.
 */
import { CheckpointFormatError } from '../../errors.ts';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  flags: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;

/** Whether the bytes start like a zip archive ("PK\x03\x04", or an empty archive's "PK\x05\x06"). */
export function isZip(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b &&
    ((bytes[2] === 3 && bytes[3] === 4) || (bytes[2] === 5 && bytes[3] === 6));
}

function u64(dv: DataView, at: number, what: string, fileName: string): number {
  const v = dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 2 ** 32;
  if (!Number.isSafeInteger(v)) throw new CheckpointFormatError(`${fileName}: zip ${what} ${v} is too large`);
  return v;
}

/** The archive's entries by name, from its central directory. Throws CheckpointFormatError. */
export function readZipDirectory(bytes: Uint8Array, fileName: string): Map<string, ZipEntry> {
  const fail: (msg: string) => never = (msg) => { throw new CheckpointFormatError(`${fileName}: ${msg}`); };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = bytes.byteLength;

  // The end-of-central-directory record is the last 22 bytes plus an optional comment of up to 64 KiB.
  let eocd = -1;
  for (let p = len - 22; p >= Math.max(0, len - 22 - 0xffff); p--) {
    if (dv.getUint32(p, true) === SIG_EOCD && p + 22 + dv.getUint16(p + 20, true) === len) { eocd = p; break; }
  }
  if (eocd < 0) fail('not a zip archive (no end-of-central-directory record): truncated or not a PyTorch zip checkpoint');

  let count = dv.getUint16(eocd + 10, true);
  let cdSize = dv.getUint32(eocd + 12, true);
  let cdOffset = dv.getUint32(eocd + 16, true);
  // zip64: the real values live in the zip64 end-of-central-directory record, found through its locator.
  if (eocd >= 20 && dv.getUint32(eocd - 20, true) === SIG_ZIP64_LOCATOR) {
    const z = u64(dv, eocd - 20 + 8, 'zip64 record offset', fileName);
    if (z + 56 > len || dv.getUint32(z, true) !== SIG_ZIP64_EOCD) fail('zip64 end-of-central-directory record is missing');
    count = u64(dv, z + 32, 'entry count', fileName);
    cdSize = u64(dv, z + 40, 'central directory size', fileName);
    cdOffset = u64(dv, z + 48, 'central directory offset', fileName);
  }
  if (cdOffset + cdSize > len) fail(`central directory [${cdOffset}, ${cdOffset + cdSize}] runs past the end of the file (${len} bytes)`);

  const entries = new Map<string, ZipEntry>();
  const decoder = new TextDecoder();
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > len || dv.getUint32(p, true) !== SIG_CENTRAL) fail(`central directory entry ${i} is corrupt`);
    const flags = dv.getUint16(p + 8, true);
    const method = dv.getUint16(p + 10, true);
    let compressedSize = dv.getUint32(p + 20, true);
    let uncompressedSize = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let localHeaderOffset = dv.getUint32(p + 42, true);
    if (p + 46 + nameLen + extraLen + commentLen > len) fail(`central directory entry ${i} runs past the end of the file`);
    const name = decoder.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // zip64 extra field (id 1): 8-byte values for exactly those fields that are 0xFFFFFFFF, in this order.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = dv.getUint16(e, true);
      const size = dv.getUint16(e + 2, true);
      if (id === 1) {
        let q = e + 4;
        if (uncompressedSize === 0xffffffff) { uncompressedSize = u64(dv, q, 'entry size', fileName); q += 8; }
        if (compressedSize === 0xffffffff) { compressedSize = u64(dv, q, 'entry size', fileName); q += 8; }
        if (localHeaderOffset === 0xffffffff) { localHeaderOffset = u64(dv, q, 'entry offset', fileName); q += 8; }
      }
      e += 4 + size;
    }
    entries.set(name, { name, method, flags, compressedSize, uncompressedSize, localHeaderOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** The compressed bytes of an entry, located through its local header. */
function rawEntryData(bytes: Uint8Array, entry: ZipEntry, fileName: string): Uint8Array {
  const fail: (msg: string) => never = (msg) => { throw new CheckpointFormatError(`${fileName}: zip entry "${entry.name}": ${msg}`); };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = entry.localHeaderOffset;
  if (h + 30 > bytes.byteLength || dv.getUint32(h, true) !== SIG_LOCAL) fail('local header is missing or corrupt');
  // The local header's name/extra lengths may differ from the central directory's (PyTorch pads the
  // local extra field so that data is 64-byte aligned), so read them here.
  const start = h + 30 + dv.getUint16(h + 26, true) + dv.getUint16(h + 28, true);
  const end = start + entry.compressedSize;
  if (end > bytes.byteLength) fail(`data [${start}, ${end}] runs past the end of the file (${bytes.byteLength} bytes): truncated?`);
  return bytes.subarray(start, end);
}

/**
 * An entry's contents: a view into `bytes` when stored, a new buffer when deflated.
 * Throws CheckpointFormatError for encryption, other compression methods, or a size mismatch.
 */
export async function readZipEntry(bytes: Uint8Array, entry: ZipEntry, fileName: string): Promise<Uint8Array> {
  const where = `${fileName}: zip entry "${entry.name}"`;
  if (entry.flags & 1) throw new CheckpointFormatError(`${where} is encrypted`);
  const raw = rawEntryData(bytes, entry, fileName);
  let data: Uint8Array;
  if (entry.method === 0) {
    data = raw;
  } else if (entry.method === 8) {
    data = await inflateRaw(raw, where);
  } else {
    throw new CheckpointFormatError(`${where} uses compression method ${entry.method}; only stored (0) and deflate (8) are supported`);
  }
  if (data.byteLength !== entry.uncompressedSize) {
    throw new CheckpointFormatError(`${where} has ${data.byteLength} bytes, the directory says ${entry.uncompressedSize}`);
  }
  return data;
}

async function inflateRaw(raw: Uint8Array, where: string): Promise<Uint8Array> {
  if (typeof DecompressionStream === 'undefined') {
    throw new CheckpointFormatError(`${where} is deflate-compressed and this runtime has no DecompressionStream; re-save it uncompressed`);
  }
  try {
    const stream = new Blob([raw as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new CheckpointFormatError(`${where}: deflate data is corrupt: ${(e as Error).message}`, { cause: e });
  }
}
