/**
 * Builders for hand-made test inputs: a zip writer (stored or deflated entries, as PyTorch / other tools
 * write them) and a tiny pickle assembler, so that the tests can craft malicious or unusual checkpoints
 * byte by byte.
 */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

async function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream('deflate-raw'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

export interface ZipInput { name: string; data: Uint8Array; deflate?: boolean }

/** A zip archive of the entries (no zip64; small test archives only). */
export async function buildZip(entries: ZipInput[]): Promise<Uint8Array> {
  const enc = new TextEncoder();
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = enc.encode(e.name);
    const body = e.deflate ? await deflateRaw(e.data) : e.data;
    const crc = crc32(e.data);
    const local = new Uint8Array(30 + name.length + body.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, e.deflate ? 8 : 0, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.length, true);
    lv.setUint32(22, e.data.length, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    local.set(body, 30 + name.length);
    const central = new Uint8Array(46 + name.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(10, e.deflate ? 8 : 0, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, body.length, true);
    cv.setUint32(24, e.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    central.set(name, 46);
    locals.push(local);
    centrals.push(central);
    offset += local.length;
  }
  const cdSize = centrals.reduce((s, c) => s + c.length, 0);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + 22);
  let p = 0;
  for (const part of [...locals, ...centrals, eocd]) { out.set(part, p); p += part.length; }
  return out;
}

/** A pickle assembled from opcode helpers: `pickle(P.proto(2), P.global('os', 'system'), ...)`. */
export function pickle(...parts: (number[] | Uint8Array)[]): Uint8Array {
  const bytes: number[] = [];
  for (const part of parts) for (const b of part) bytes.push(b);
  return new Uint8Array(bytes);
}

const enc = new TextEncoder();
const u32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];

/** Pickle opcodes (protocol 2), as byte arrays. */
export const P = {
  proto: (v = 2) => [0x80, v],
  stop: () => [0x2e],
  mark: () => [0x28],
  emptyDict: () => [0x7d],
  emptyTuple: () => [0x29],
  emptyList: () => [0x5d],
  tuple: () => [0x74],
  tuple1: () => [0x85],
  tuple2: () => [0x86],
  tuple3: () => [0x87],
  setitem: () => [0x73],
  setitems: () => [0x75],
  reduce: () => [0x52],
  build: () => [0x62],
  binpersid: () => [0x51],
  newfalse: () => [0x89],
  none: () => [0x4e],
  int: (n: number) => (n < 256 ? [0x4b, n] : n < 65536 ? [0x4d, n & 0xff, n >>> 8] : [0x4a, ...u32(n)]),
  str: (s: string) => { const b = enc.encode(s); return [0x58, ...u32(b.length), ...b]; },
  global: (module: string, name: string) => [0x63, ...enc.encode(`${module}\n${name}\n`)],
  stackGlobal: () => [0x93],
  raw: (...b: number[]) => b,
};

/**
 * The pickle of one `_rebuild_tensor_v2` call, as torch.save writes it for a state-dict entry:
 * key -> _rebuild_tensor_v2(('storage', torch.<storage>, key, 'cpu', numel), offset, shape, stride, False, OrderedDict()).
 */
export function tensorEntry(
  key: string, storage: string, storageKey: string, numel: number, offset: number, shape: number[], stride: number[],
): number[] {
  const tup = (xs: number[]) => [...P.mark(), ...xs.flatMap((x) => P.int(x)), ...P.tuple()];
  return [
    ...P.str(key),
    ...P.global('torch._utils', '_rebuild_tensor_v2'),
    ...P.mark(),
    ...P.mark(), ...P.str('storage'), ...P.global('torch', storage), ...P.str(storageKey), ...P.str('cpu'), ...P.int(numel), ...P.tuple(),
    ...P.binpersid(),
    ...P.int(offset), ...tup(shape), ...tup(stride), ...P.newfalse(),
    ...P.global('collections', 'OrderedDict'), ...P.emptyTuple(), ...P.reduce(),
    ...P.tuple(),
    ...P.reduce(),
  ];
}
