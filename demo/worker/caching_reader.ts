/**
 * Model file readers for the demo: the library's readers (src/model/weights/sources.ts), wrapped so that every
 * read reports progress to the page and URL files go through the Cache API.
 *
 * LLM.create reads a checkpoint through a ModelFileReader without a progress callback of its own, so the
 * wrapper supplies one; the reader is otherwise the library's, with its checks (404, truncated bodies, ...).
 */
import type { ModelFileReader, ReadOptions } from '../../src/model/weights/sources.ts';
import type { LoadProgressEvent } from '../protocol.ts';
import { isAbsentMarker, readCachedFile, storeAbsent, storeFile } from './weight_cache.ts';

/** Reports every read's progress as `phase`. */
export function withProgress(inner: ModelFileReader, phase: LoadProgressEvent['phase'], report: (e: LoadProgressEvent) => void): ModelFileReader {
  return {
    description: inner.description,
    locate: (name) => inner.locate(name),
    list: inner.list?.bind(inner),
    read: (name: string, options: ReadOptions = {}) =>
      inner.read(name, {
        ...options,
        onProgress: (p) => report({ phase, file: p.file, loadedBytes: p.loadedBytes, totalBytes: p.totalBytes }),
      }),
  };
}

export interface CachingReader extends ModelFileReader {
  /** Store what this load downloaded (call once the model loaded: a failed load caches nothing). */
  commit(): Promise<void>;
  readonly stats: { networkFiles: number; cachedFiles: number; downloadedBytes: number };
}

/**
 * A URL reader backed by the Cache API: a file found there is read from it (phase 'cache'); otherwise it is
 * downloaded (phase 'download') and kept for `commit()`. Absent files (an optional read that 404s, such as
 * model.safetensors of a repository that only has pytorch_model.bin) are remembered too, so a cached load
 * touches the network not at all.
 */
export function cachingUrlReader(inner: ModelFileReader, report: (e: LoadProgressEvent) => void): CachingReader {
  const pending = new Map<string, Uint8Array | null>();
  const stats = { networkFiles: 0, cachedFiles: 0, downloadedBytes: 0 };
  return {
    description: inner.description,
    locate: (name) => inner.locate(name),
    stats,
    async read(name: string, options: ReadOptions = {}) {
      const url = inner.locate(name);
      if (pending.has(url)) {
        const known = pending.get(url)!;
        if (known || options.optional) return known;
      }
      const hit = await readCachedFile(url);
      if (hit) {
        stats.cachedFiles++;
        if (isAbsentMarker(hit)) {
          if (options.optional) return null;
          // Cached as absent but now required: ask the network again (the inner reader names the failure).
        } else {
          return readCachedBody(hit, name, report);
        }
      }
      stats.networkFiles++;
      const bytes = await inner.read(name, {
        ...options,
        onProgress: (p) => report({ phase: 'download', file: p.file, loadedBytes: p.loadedBytes, totalBytes: p.totalBytes }),
      });
      if (bytes) stats.downloadedBytes += bytes.byteLength;
      pending.set(url, bytes);
      return bytes;
    },
    async commit() {
      for (const [url, bytes] of pending) {
        if (bytes) await storeFile(url, bytes);
        else await storeAbsent(url);
      }
      pending.clear();
    },
  };
}

async function readCachedBody(res: Response, name: string, report: (e: LoadProgressEvent) => void): Promise<Uint8Array> {
  const total = Number(res.headers.get('content-length') ?? NaN);
  if (!res.body || !Number.isFinite(total)) {
    const bytes = new Uint8Array(await res.arrayBuffer());
    report({ phase: 'cache', file: name, loadedBytes: bytes.byteLength, totalBytes: bytes.byteLength });
    return bytes;
  }
  const buf = new Uint8Array(total);
  const reader = res.body.getReader();
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf.set(value, loaded);
    loaded += value.byteLength;
    report({ phase: 'cache', file: name, loadedBytes: loaded, totalBytes: total });
  }
  return buf;
}
