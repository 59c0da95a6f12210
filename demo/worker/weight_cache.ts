/**
 * Downloaded model files, kept in the Cache API under their URL so a second visit loads without the network.
 * Files are stored only after a load succeeded as a whole (see caching_reader.ts): a truncated or corrupt
 * download never reaches the cache. Works in the page and in workers (both see the same origin's caches).
 */

export const WEIGHT_CACHE_NAME = 'tandem-weights-v1';

/** Header with the byte size we stored, so sizing the cache never reads bodies. */
const SIZE_HEADER = 'x-tandem-bytes';
const ABSENT_HEADER = 'x-tandem-absent';

export function cacheApiAvailable(): boolean {
  return typeof caches !== 'undefined';
}

export async function readCachedFile(url: string): Promise<Response | null> {
  if (!cacheApiAvailable()) return null;
  const cache = await caches.open(WEIGHT_CACHE_NAME);
  return (await cache.match(url)) ?? null;
}

export async function storeFile(url: string, bytes: Uint8Array): Promise<void> {
  if (!cacheApiAvailable()) return;
  const cache = await caches.open(WEIGHT_CACHE_NAME);
  const body = new Uint8Array(bytes); // a copy: the Response owns its bytes, and `bytes` may be a view into more
  await cache.put(url, new Response(body, {
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength), [SIZE_HEADER]: String(bytes.byteLength) },
  }));
}

/** Remember that `url` does not exist (an optional file the source lacks), so a cached load needs no request. */
export async function storeAbsent(url: string): Promise<void> {
  if (!cacheApiAvailable()) return;
  const cache = await caches.open(WEIGHT_CACHE_NAME);
  await cache.put(url, new Response(null, { headers: { [ABSENT_HEADER]: '1', [SIZE_HEADER]: '0' } }));
}

export function isAbsentMarker(res: Response): boolean {
  return res.headers.get(ABSENT_HEADER) === '1';
}

export async function weightCacheInfo(): Promise<{ available: boolean; files: number; bytes: number }> {
  if (!cacheApiAvailable()) return { available: false, files: 0, bytes: 0 };
  const cache = await caches.open(WEIGHT_CACHE_NAME);
  let bytes = 0;
  const keys = await cache.keys();
  let files = 0;
  for (const req of keys) {
    const res = await cache.match(req);
    if (!res || isAbsentMarker(res)) continue;
    files++;
    const size = Number(res.headers.get(SIZE_HEADER) ?? NaN);
    bytes += Number.isFinite(size) ? size : (await res.arrayBuffer()).byteLength;
  }
  return { available: true, files, bytes };
}

export async function clearWeightCache(): Promise<void> {
  if (cacheApiAvailable()) await caches.delete(WEIGHT_CACHE_NAME);
}
