/**
 * Virtual GPU uuids in nvidia-smi's format ("GPU-1f0c3a7e-95d2-4b1e-8c3a-0e2f4d6b8a90"). With a seed they are
 * deterministic (reproducible reports and tests); without one they are random, so two clusters in one process
 * never share a uuid (a handle from one must not open on the other, as CUDA-IPC refuses foreign devices).
 */

/** mulberry32: a small deterministic 32-bit generator, enough for ids (not for secrets). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** FNV-1a 32 of a string's UTF-16 code units: turns a string seed into a number. */
function hashSeed(seed: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function formatUuid(bytes: Uint8Array): string {
  bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `GPU-${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A source of GPU uuids: seeded (deterministic) or random (crypto.getRandomValues). */
export function gpuUuidSource(seed?: number | string): () => string {
  if (seed === undefined) {
    return () => formatUuid(crypto.getRandomValues(new Uint8Array(16)));
  }
  const next = mulberry32(typeof seed === 'number' ? seed : hashSeed(seed));
  return () => {
    const bytes = new Uint8Array(16);
    for (let i = 0; i < 16; i += 4) {
      const w = next();
      bytes[i] = w & 0xff;
      bytes[i + 1] = (w >>> 8) & 0xff;
      bytes[i + 2] = (w >>> 16) & 0xff;
      bytes[i + 3] = w >>> 24;
    }
    return formatUuid(bytes);
  };
}

/** The uuid shape, for validation by consumers (handles carry a uuid). */
export const GPU_UUID_PATTERN = /^GPU-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
