/**
 * Local file access for Deno and Node, detected at run time, so that the library itself has no Node-only
 * import: in Deno it uses `Deno.open`, in Node `node:fs/promises` through a dynamic import that bundlers
 * leave alone; in a browser there is no file system and these functions throw ModelSourceError.
 * Files are read in chunks straight into one buffer of the file's size, reporting progress as they go.
 */
import { ModelSourceError } from '../../errors.ts';
import type { ProgressCallback } from './types.ts';

const CHUNK = 64 * 1024 * 1024;

interface DenoFile {
  stat(): Promise<{ size: number; isFile: boolean }>;
  read(p: Uint8Array): Promise<number | null>;
  close(): void;
}
interface DenoLike {
  open(path: string): Promise<DenoFile>;
  readDir(path: string): AsyncIterable<{ name: string; isFile: boolean }>;
  errors: { NotFound: abstract new (...args: never[]) => Error };
}
interface NodeFileHandle {
  stat(): Promise<{ size: number; isFile(): boolean }>;
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}
interface NodeFsLike {
  open(path: string, flags: string): Promise<NodeFileHandle>;
  readdir(path: string, options: { withFileTypes: true }): Promise<{ name: string; isFile(): boolean }[]>;
}

function deno(): DenoLike | undefined {
  const d = (globalThis as { Deno?: DenoLike }).Deno;
  return d && typeof d.open === 'function' ? d : undefined;
}

function isNode(): boolean {
  return typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
}

let nodeFsPromise: Promise<NodeFsLike> | undefined;
function nodeFs(): Promise<NodeFsLike> {
  // A variable specifier keeps bundlers (and tsc, which has no Node types here) from resolving it.
  const specifier = 'node:fs/promises';
  nodeFsPromise ??= import(/* @vite-ignore */ specifier) as Promise<NodeFsLike>;
  return nodeFsPromise;
}

function noFileSystem(path: string): never {
  throw new ModelSourceError(
    `cannot read "${path}": this runtime has no file system (in a browser, load from a URL or from File objects)`,
  );
}

function isNotFound(e: unknown): boolean {
  const d = deno();
  if (d && e instanceof d.errors.NotFound) return true;
  return (e as { code?: string } | null)?.code === 'ENOENT';
}

/** Whether local paths can be read in this runtime (Deno or Node). */
export function hasLocalFileSystem(): boolean {
  return deno() !== undefined || isNode();
}

/** The file's bytes, or null when it does not exist. Other failures throw ModelSourceError. */
export async function readLocalFile(path: string, onProgress?: ProgressCallback, label = path): Promise<Uint8Array | null> {
  try {
    const d = deno();
    if (d) {
      const f = await d.open(path);
      try {
        const { size, isFile } = await f.stat();
        if (!isFile) throw new ModelSourceError(`"${path}" is not a file`);
        const buf = new Uint8Array(size);
        let done = 0;
        while (done < size) {
          const n = await f.read(buf.subarray(done, Math.min(size, done + CHUNK)));
          if (n === null) throw new ModelSourceError(`"${path}" ended after ${done} of ${size} bytes (truncated while reading)`);
          done += n;
          onProgress?.({ file: label, loadedBytes: done, totalBytes: size });
        }
        if (size === 0) onProgress?.({ file: label, loadedBytes: 0, totalBytes: 0 });
        return buf;
      } finally {
        f.close();
      }
    }
    if (!isNode()) noFileSystem(path);
    const fs = await nodeFs();
    const fh = await fs.open(path, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new ModelSourceError(`"${path}" is not a file`);
      const size = st.size;
      const buf = new Uint8Array(size);
      let done = 0;
      while (done < size) {
        const { bytesRead } = await fh.read(buf, done, Math.min(CHUNK, size - done), done);
        if (bytesRead === 0) throw new ModelSourceError(`"${path}" ended after ${done} of ${size} bytes (truncated while reading)`);
        done += bytesRead;
        onProgress?.({ file: label, loadedBytes: done, totalBytes: size });
      }
      if (size === 0) onProgress?.({ file: label, loadedBytes: 0, totalBytes: 0 });
      return buf;
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (e instanceof ModelSourceError) throw e;
    if (isNotFound(e)) return null;
    throw new ModelSourceError(`cannot read "${path}": ${(e as Error).message}`, { cause: e });
  }
}

/** Names of the plain files in a directory, or null when it does not exist. */
export async function listLocalDirectory(path: string): Promise<string[] | null> {
  try {
    const d = deno();
    if (d) {
      const names: string[] = [];
      for await (const e of d.readDir(path)) if (e.isFile) names.push(e.name);
      return names.sort();
    }
    if (!isNode()) noFileSystem(path);
    const fs = await nodeFs();
    return (await fs.readdir(path, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
  } catch (e) {
    if (e instanceof ModelSourceError) throw e;
    if (isNotFound(e)) return null;
    throw new ModelSourceError(`cannot list "${path}": ${(e as Error).message}`, { cause: e });
  }
}

/** `dir` joined with a plain file name. */
export function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') || dir.endsWith('\\') ? dir + name : `${dir}/${name}`;
}
