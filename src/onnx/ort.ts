/**
 * onnxruntime-web, loaded so that it works offline: in Deno from node_modules or from a folder of its dist
 * files (a bundled benchmark on a machine without network), and in browsers the usual way.
 *
 * Flavours (which onnxruntime-web build, and so which .wasm it needs):
 *   wasm    `onnxruntime-web/wasm`    CPU (wasm) execution provider only   ort-wasm-simd-threaded.wasm
 *   webgpu  `onnxruntime-web/webgpu`  the native WebGPU EP (+ wasm)        ort-wasm-simd-threaded.asyncify.wasm
 *   jsep    `onnxruntime-web/all`     the JS WebGPU EP "JSEP" (+ wasm, webgl) ort-wasm-simd-threaded.jsep.wasm
 * The `.bundle.min.mjs` builds these entry points resolve to embed the Emscripten loader, so only the .wasm has
 * to be found: it is read from `distDir` (plain `.wasm`, or gzip-compressed `.wasm.gz`) and handed to
 * onnxruntime-web as bytes (`env.wasm.wasmBinary`), so nothing is fetched.
 */
import type * as OrtModule from 'onnxruntime-web';
import { joinPath, readLocalFile } from '../model/weights/localfs.ts';

export type Ort = typeof OrtModule;
export type OrtFlavor = 'wasm' | 'webgpu' | 'jsep';

/** The .wasm file each flavour loads. */
export const ORT_WASM_FILES: Record<OrtFlavor, string> = {
  wasm: 'ort-wasm-simd-threaded.wasm',
  webgpu: 'ort-wasm-simd-threaded.asyncify.wasm',
  jsep: 'ort-wasm-simd-threaded.jsep.wasm',
};

export interface LoadOrtOptions {
  /**
   * A folder (path or file:// URL) holding onnxruntime-web's dist .wasm files (or .wasm.gz). Default in Deno:
   * the installed package's dist folder, found through the module resolver; elsewhere: onnxruntime-web's own
   * lookup next to its module.
   */
  distDir?: string | URL;
  /**
   * wasm threads (default 1). More than 1 does not work in Deno 2.9: onnxruntime-web takes Deno for Node and
   * starts worker_threads from a blob: URL, which fails with "TypeError [ERR_INVALID_ARG_VALUE]: The argument
   * 'filename' must be a file URL object, file URL string, or absolute path string. Received 'blob:null/...'".
   */
  numThreads?: number;
  /** onnxruntime-web log level (default 'error'). */
  logLevel?: 'verbose' | 'info' | 'warning' | 'error' | 'fatal';
  /**
   * jsep in Deno: let GPUQueue.writeBuffer accept a bare SharedArrayBuffer (see patchWriteBufferForSharedMemory).
   * Default true; without it JSEP fails in Deno 2.9 with "TypeError: data must be an ArrayBuffer or ArrayBufferView".
   */
  denoSharedMemoryShim?: boolean;
}

/**
 * Deno 2.9's GPUQueue.writeBuffer rejects a bare SharedArrayBuffer ("TypeError: data must be an ArrayBuffer or
 * ArrayBufferView"; the WebGPU spec's AllowSharedBufferSource allows it, and Deno accepts a view on one). JSEP
 * uploads straight from the wasm heap, which is shared memory in onnxruntime-web's threaded build, so every
 * JSEP upload fails in Deno. This wraps writeBuffer to pass such a buffer as a Uint8Array view over the same
 * bytes (same offsets and size: a Uint8Array counts in bytes). Nothing else changes. Idempotent.
 */
export function patchWriteBufferForSharedMemory(): boolean {
  const Queue = (globalThis as { GPUQueue?: { prototype: GPUQueue } }).GPUQueue;
  if (!Queue || typeof SharedArrayBuffer === 'undefined') return false;
  const proto = Queue.prototype as GPUQueue & { __tandemSharedShim?: true };
  if (proto.__tandemSharedShim) return true;
  type WriteBuffer = (...args: unknown[]) => undefined;
  const original = proto.writeBuffer as unknown as WriteBuffer;
  const patched: WriteBuffer = function (this: GPUQueue, ...args) {
    const [buffer, bufferOffset, data, dataOffset, size] = args as [GPUBuffer, number, unknown, number?, number?];
    if (data instanceof SharedArrayBuffer) {
      const off = dataOffset ?? 0;
      return original.call(this, buffer, bufferOffset, new Uint8Array(data, off, size ?? data.byteLength - off));
    }
    return original.apply(this, args); // exactly as called
  };
  proto.writeBuffer = patched as unknown as GPUQueue['writeBuffer'];
  proto.__tandemSharedShim = true;
  return true;
}

const loaded = new Map<OrtFlavor, Promise<Ort>>();

const isDeno = (): boolean => typeof (globalThis as { Deno?: { version?: unknown } }).Deno?.version === 'object';

async function importFlavor(flavor: OrtFlavor): Promise<Ort> {
  // Literal specifiers, so bundlers (deno bundle, Vite) see and include each build.
  switch (flavor) {
    case 'wasm': return (await import('onnxruntime-web/wasm')) as unknown as Ort;
    case 'webgpu': return (await import('onnxruntime-web/webgpu')) as unknown as Ort;
    case 'jsep': return (await import('onnxruntime-web/all')) as unknown as Ort;
  }
}

/** The installed onnxruntime-web's dist folder as a file:// URL (Deno, unbundled), or undefined. */
function defaultDistDir(): URL | undefined {
  try {
    const resolve = (import.meta as ImportMeta & { resolve?: (s: string) => string }).resolve;
    const url = new URL(resolve!('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
    return url.protocol === 'file:' ? new URL('./', url) : undefined;
  } catch {
    return undefined;
  }
}

/** `name` inside `dir` (a local path, or a URL), read; null when it does not exist. */
async function readFrom(dir: string | URL, name: string): Promise<Uint8Array | null> {
  const href = dir instanceof URL ? dir.href : dir;
  if (/^https?:\/\//i.test(href)) {
    const res = await fetch(new URL(name, href.endsWith('/') ? href : href + '/'));
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`onnxruntime-web: fetching ${res.url} failed: HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  }
  const path = /^file:\/\//i.test(href) ? decodeURIComponent(new URL(href).pathname) : href;
  return readLocalFile(joinPath(path, name));
}

async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The bytes of `file` from `dir`: `file`, else `file.gz` decompressed; throws naming both when neither exists. */
export async function readOrtWasm(dir: string | URL, file: string): Promise<Uint8Array> {
  const plain = await readFrom(dir, file);
  if (plain) return plain;
  const gz = await readFrom(dir, file + '.gz');
  if (gz) return gunzip(gz);
  throw new Error(`onnxruntime-web: neither ${file} nor ${file}.gz is in ${String(dir)} ` +
    `(copy it from node_modules/onnxruntime-web/dist/)`);
}

/**
 * Load (once per flavour) and configure onnxruntime-web. The environment (`env.wasm`) is global to the module
 * instance, so the options of the first call for a flavour win.
 */
export function loadOrt(flavor: OrtFlavor = 'wasm', options: LoadOrtOptions = {}): Promise<Ort> {
  let p = loaded.get(flavor);
  if (!p) {
    p = (async () => {
      if (flavor === 'jsep' && isDeno() && (options.denoSharedMemoryShim ?? true)) patchWriteBufferForSharedMemory();
      const ort = await importFlavor(flavor);
      ort.env.logLevel = options.logLevel ?? 'error';
      ort.env.wasm.numThreads = options.numThreads ?? 1;
      const dir = options.distDir ?? (isDeno() ? defaultDistDir() : undefined);
      if (dir !== undefined) {
        const bytes = await readOrtWasm(dir, ORT_WASM_FILES[flavor]);
        ort.env.wasm.wasmBinary = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.byteLength
          ? bytes.buffer as ArrayBuffer
          : bytes.slice().buffer;
      }
      return ort;
    })();
    p.catch(() => loaded.delete(flavor));
    loaded.set(flavor, p);
  }
  return p;
}

/**
 * Session options for an execution provider: graph optimisations on, onnxruntime's own log at errors only (its
 * warning that shape ops run on the CPU is expected). On WebGPU, `outputOnGpu` keeps outputs in GPU buffers.
 */
export function sessionOptions(executionProvider: 'wasm' | 'webgpu', outputOnGpu = false): OrtModule.InferenceSession.SessionOptions {
  return {
    executionProviders: [executionProvider],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    ...(outputOnGpu && executionProvider === 'webgpu' ? { preferredOutputLocation: 'gpu-buffer' as const } : {}),
  };
}

/**
 * Logits [B·T, vocab] (row-major, f32) of `batch` (B sequences of T token ids each) through an ONNX session of
 * an exported OPT model.
 */
export async function runOnnxLogits(ort: Ort, session: OrtModule.InferenceSession, batch: readonly (readonly number[])[]): Promise<Float32Array> {
  const B = batch.length, T = batch[0]?.length ?? 0;
  if (B === 0 || T === 0 || batch.some((s) => s.length !== T)) throw new Error('runOnnxLogits: B sequences of one length T >= 1');
  const ids = new BigInt64Array(B * T);
  batch.forEach((s, b) => s.forEach((t, i) => { ids[b * T + i] = BigInt(t); }));
  const input = new ort.Tensor('int64', ids, [B, T]);
  const out = await session.run({ [session.inputNames[0]]: input });
  const logits = out[session.outputNames[0]];
  try {
    const data = logits.location === 'cpu' ? logits.data : await logits.getData();
    if (!(data instanceof Float32Array)) throw new Error(`runOnnxLogits: output is ${logits.type}, expected float32`);
    return data;
  } finally {
    input.dispose();
  }
}
