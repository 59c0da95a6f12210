/**
 * Where a checkpoint comes from, and how its files are found.
 *
 * A source is anything that can read a file by name (ModelFileReader): a local directory (Deno / Node),
 * an http(s) base URL laid out like the Hugging Face hub (`https://huggingface.co/facebook/opt-125m/resolve/main/`),
 * or File/Blob objects the user picked in a browser. One piece of code then finds the weights the way
 * transformers does: model.safetensors, else model.safetensors.index.json + shards, else pytorch_model.bin
 * (else its index + shards). `synthetic:CONFIG:SEED` skips files altogether.
 * Whatever the source, the result is validated against config.json before it is returned.
 */
import { CheckpointFormatError, ConfigError, ModelSourceError } from '../../errors.ts';
import { OPT_125M_CONFIG_JSON, parseOptConfig } from '../config.ts';
import { hasLocalFileSystem, joinPath, listLocalDirectory, readLocalFile } from './localfs.ts';
import { parsePytorchCheckpoint } from './pytorch.ts';
import { parseSafetensors } from './safetensors.ts';
import { syntheticTensors } from './synthetic.ts';
import type { Checkpoint, ProgressCallback, TensorMap } from './types.ts';
import { validateCheckpoint } from './validate.ts';

export interface ReadOptions {
  onProgress?: ProgressCallback;
  /** When true a missing file gives null; otherwise it throws ModelSourceError naming where it looked. */
  optional?: boolean;
}

/** Read access to the files of one model, by plain file name (`config.json`, `model.safetensors`, ...). */
export interface ModelFileReader {
  /** The source, for messages (a directory path, a base URL, "selected files"). */
  readonly description: string;
  /** Where `name` would be read from, for messages (a path or URL). */
  locate(name: string): string;
  /** The file's bytes; null only when it does not exist and `optional` is set. Failures throw ModelSourceError. */
  read(name: string, options?: ReadOptions): Promise<Uint8Array | null>;
  /** The available file names, where the source can list them (directories, picked files; not URLs). */
  list?(): Promise<string[]>;
}

/** A named Blob: a browser `File`, or any Blob given a name. */
export type NamedBlob = Blob & { readonly name: string };

export interface LoadCheckpointOptions {
  onProgress?: ProgressCallback;
  /** fetch implementation for URL sources (default: globalThis.fetch). */
  fetch?: typeof fetch;
  signal?: AbortSignal;
}

/**
 * A checkpoint source: a directory path, an http(s) base URL, `synthetic:CONFIG:SEED` (CONFIG is a
 * config.json path or URL, a directory holding one, or `opt-125m`), picked files, or a custom reader.
 */
export type CheckpointSpec = string | URL | readonly NamedBlob[] | ModelFileReader;
/** Alias of CheckpointSpec (the name model code uses). */
export type ModelSpec = CheckpointSpec;

/** Read a required file from any source; throws ModelSourceError when it is missing or unreadable. */
export async function readModelFile(reader: ModelFileReader, name: string, onProgress?: ProgressCallback): Promise<Uint8Array> {
  const bytes = await reader.read(name, { onProgress });
  if (!bytes) throw new ModelSourceError(`${reader.locate(name)} not found`);
  return bytes;
}

// ---------------------------------------------------------------------------------------------- readers

/** Files of a local directory (Deno or Node). */
export function directoryReader(dir: string): ModelFileReader {
  return {
    description: `directory "${dir}"`,
    locate: (name) => joinPath(dir, name),
    async read(name, options = {}) {
      const path = joinPath(dir, name);
      const bytes = await readLocalFile(path, options.onProgress, name);
      if (!bytes && !options.optional) throw new ModelSourceError(`${path} not found`);
      return bytes;
    },
    async list() {
      const names = await listLocalDirectory(dir);
      if (!names) throw new ModelSourceError(`directory "${dir}" does not exist`);
      return names;
    },
  };
}

/** Files under an http(s) base URL (a trailing slash is added when missing). 404 = absent. */
export function urlReader(baseUrl: string | URL, options: { fetch?: typeof fetch; signal?: AbortSignal } = {}): ModelFileReader {
  let base = String(baseUrl);
  if (!base.endsWith('/')) base += '/';
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const locate = (name: string): string => new URL(name, base).href;
  return {
    description: base,
    locate,
    async read(name, readOptions = {}) {
      const url = locate(name);
      let res: Response;
      try {
        res = await fetchImpl(url, { signal: options.signal });
      } catch (e) {
        if (options.signal?.aborted) throw e;
        throw new ModelSourceError(`could not fetch ${url}: network error: ${(e as Error).message}`, { cause: e });
      }
      if (res.status === 404 && readOptions.optional) {
        await res.body?.cancel().catch(() => {});
        return null;
      }
      if (!res.ok) {
        await res.body?.cancel().catch(() => {});
        throw new ModelSourceError(`fetching ${url} failed: HTTP ${res.status}${res.statusText ? ' ' + res.statusText : ''}`);
      }
      return readResponseBody(res, url, name, readOptions.onProgress, options.signal);
    },
  };
}

/**
 * A response body read as it streams in, with progress. When the server declared a Content-Length (and no
 * content encoding, which would make it the compressed size) the body is read into one buffer of that size
 * and a shorter body is an error: a dropped connection must never look like a smaller file.
 */
async function readResponseBody(
  res: Response, url: string, name: string, onProgress?: ProgressCallback, signal?: AbortSignal,
): Promise<Uint8Array> {
  const encoding = res.headers.get('content-encoding');
  const lengthHeader = res.headers.get('content-length');
  const declared = lengthHeader !== null && /^\d+$/.test(lengthHeader) && (!encoding || encoding === 'identity')
    ? Number(lengthHeader)
    : undefined;
  if (!res.body) {
    const bytes = new Uint8Array(await res.arrayBuffer());
    onProgress?.({ file: name, loadedBytes: bytes.byteLength, totalBytes: bytes.byteLength });
    return bytes;
  }
  let buf: Uint8Array;
  try {
    buf = new Uint8Array(declared ?? 1 << 20);
  } catch (e) {
    await res.body.cancel().catch(() => {});
    throw new ModelSourceError(`cannot allocate ${declared} bytes for ${url}: ${(e as Error).message}`, { cause: e });
  }
  const reader = res.body.getReader();
  let loaded = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (loaded + value.byteLength > buf.byteLength) {
        // Unknown length (or the server sent more than it declared): grow geometrically.
        const grown = new Uint8Array(Math.max(buf.byteLength * 2, loaded + value.byteLength));
        grown.set(buf.subarray(0, loaded));
        buf = grown;
      }
      buf.set(value, loaded);
      loaded += value.byteLength;
      onProgress?.({ file: name, loadedBytes: loaded, totalBytes: declared });
    }
  } catch (e) {
    if (signal?.aborted) throw e; // the caller cancelled: not a broken download
    const of = declared !== undefined ? ` of ${declared}` : '';
    throw new ModelSourceError(
      `download of ${url} was cut off after ${loaded}${of} bytes (truncated): ${(e as Error).message}`,
      { cause: e },
    );
  }
  if (declared !== undefined && loaded < declared) {
    throw new ModelSourceError(`download of ${url} is truncated: got ${loaded} of ${declared} bytes (Content-Length)`);
  }
  return loaded === buf.byteLength ? buf : buf.subarray(0, loaded);
}

/** Files the user picked (browser File objects, or named Blobs), by their base name. */
export function blobReader(files: readonly NamedBlob[]): ModelFileReader {
  const byName = new Map<string, NamedBlob>();
  for (const f of files) {
    const base = f.name.split(/[\\/]/).pop() ?? f.name;
    if (byName.has(base)) throw new ModelSourceError(`two selected files are named "${base}"`);
    byName.set(base, f);
  }
  return {
    description: 'the selected files',
    locate: (name) => `selected file "${name}"`,
    async read(name, options = {}) {
      const blob = byName.get(name);
      if (!blob) {
        if (options.optional) return null;
        throw new ModelSourceError(`no selected file is named "${name}" (selected: ${[...byName.keys()].join(', ') || 'none'})`);
      }
      return readBlob(blob, name, options.onProgress);
    },
    list: () => Promise.resolve([...byName.keys()].sort()),
  };
}

async function readBlob(blob: Blob, name: string, onProgress?: ProgressCallback): Promise<Uint8Array> {
  const size = blob.size;
  const buf = new Uint8Array(size);
  let loaded = 0;
  try {
    const reader = blob.stream().getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (loaded + value.byteLength > size) throw new Error('file grew while being read');
      buf.set(value, loaded);
      loaded += value.byteLength;
      onProgress?.({ file: name, loadedBytes: loaded, totalBytes: size });
    }
  } catch (e) {
    throw new ModelSourceError(`cannot read selected file "${name}": ${(e as Error).message}`, { cause: e });
  }
  if (loaded !== size) throw new ModelSourceError(`selected file "${name}" gave ${loaded} of ${size} bytes (truncated)`);
  if (size === 0) onProgress?.({ file: name, loadedBytes: 0, totalBytes: 0 });
  return buf;
}

function isReader(spec: unknown): spec is ModelFileReader {
  return typeof spec === 'object' && spec !== null && typeof (spec as ModelFileReader).read === 'function' &&
    typeof (spec as ModelFileReader).locate === 'function';
}

/** The reader for a (non-synthetic) spec. */
export function openModelSource(spec: CheckpointSpec, options: LoadCheckpointOptions = {}): ModelFileReader {
  if (isReader(spec)) return spec;
  if (Array.isArray(spec)) return blobReader(spec as readonly NamedBlob[]);
  const s = String(spec);
  if (/^https?:\/\//i.test(s)) return urlReader(s, options);
  if (/^file:\/\//i.test(s)) return directoryReader(decodeURIComponent(new URL(s).pathname));
  if (s.startsWith('synthetic:')) throw new ModelSourceError(`"${s}" is a synthetic spec, not a file source`);
  return directoryReader(s);
}

// ---------------------------------------------------------------------------------------------- loading

function parseJsonFile(bytes: Uint8Array, where: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new ConfigError(`${where} is not valid JSON: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${where} is not a JSON object`);
  return v as Record<string, unknown>;
}

type WeightParser = (bytes: Uint8Array, fileName: string) => TensorMap | Promise<TensorMap>;

/** Sharded weights: an index mapping each tensor to its shard file, as transformers writes it. */
async function readSharded(
  reader: ModelFileReader, indexName: string, index: Uint8Array, parse: WeightParser, onProgress?: ProgressCallback,
): Promise<TensorMap> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(index));
  } catch (e) {
    throw new CheckpointFormatError(`${reader.locate(indexName)} is not valid JSON: ${(e as Error).message}`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    throw new CheckpointFormatError(`${reader.locate(indexName)} has no "weight_map" object`);
  }
  const byShard = new Map<string, string[]>();
  for (const [tensor, shard] of Object.entries(map as Record<string, unknown>)) {
    // Shards are siblings of the index: a path would let an index reach outside the model's folder.
    if (typeof shard !== 'string' || shard === '' || /[\\/]/.test(shard) || shard.startsWith('.')) {
      throw new CheckpointFormatError(`${reader.locate(indexName)}: tensor "${tensor}" maps to an invalid shard name ${JSON.stringify(shard)}`);
    }
    const list = byShard.get(shard) ?? [];
    list.push(tensor);
    byShard.set(shard, list);
  }
  const tensors: TensorMap = new Map();
  for (const [shard, names] of byShard) {
    const shardTensors = await parse(await readModelFile(reader, shard, onProgress), shard);
    for (const name of names) {
      const t = shardTensors.get(name);
      if (!t) throw new CheckpointFormatError(`${shard} does not contain "${name}", which ${indexName} places there`);
      tensors.set(name, t);
    }
  }
  return tensors;
}

const parsePytorch: WeightParser = (bytes, name) => parsePytorchCheckpoint(bytes, name);

/** Find and parse the weights of a source, in transformers' order of preference. Names as stored. */
export async function readWeights(reader: ModelFileReader, onProgress?: ProgressCallback): Promise<TensorMap> {
  const optional = { onProgress, optional: true };
  const tried: string[] = [];
  const attempt = async (name: string): Promise<Uint8Array | null> => {
    tried.push(name);
    return reader.read(name, optional);
  };
  let bytes: Uint8Array | null;
  if ((bytes = await attempt('model.safetensors'))) return parseSafetensors(bytes, 'model.safetensors');
  if ((bytes = await attempt('model.safetensors.index.json'))) {
    return readSharded(reader, 'model.safetensors.index.json', bytes, parseSafetensors, onProgress);
  }
  if ((bytes = await attempt('pytorch_model.bin'))) return parsePytorchCheckpoint(bytes, 'pytorch_model.bin');
  if ((bytes = await attempt('pytorch_model.bin.index.json'))) {
    return readSharded(reader, 'pytorch_model.bin.index.json', bytes, parsePytorch, onProgress);
  }
  // Sources that can list their files may hold one differently named weights file (model.bf16.safetensors).
  if (reader.list) {
    const names = await reader.list();
    for (const ext of ['.safetensors', '.bin']) {
      const candidates = names.filter((n) => n.endsWith(ext));
      if (candidates.length === 1) {
        const name = candidates[0];
        const data = await readModelFile(reader, name, onProgress);
        return ext === '.bin' ? parsePytorchCheckpoint(data, name) : parseSafetensors(data, name);
      }
      if (candidates.length > 1) {
        throw new ModelSourceError(`${reader.description} holds several ${ext} files (${candidates.join(', ')}) and no index naming the right ones`);
      }
    }
  }
  throw new ModelSourceError(`no weights found in ${reader.description}: tried ${tried.map((n) => reader.locate(n)).join(', ')}, none exists`);
}

/** Load config.json and the weights from a file source, validated against each other. */
export async function loadCheckpointFrom(reader: ModelFileReader, options: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  const configJson = parseJsonFile(await readModelFile(reader, 'config.json', options.onProgress), reader.locate('config.json'));
  const config = parseOptConfig(configJson);
  const tensors = await readWeights(reader, options.onProgress);
  return { configJson, tensors: validateCheckpoint(config, tensors) };
}

/** `synthetic:CONFIG:SEED` -> { config source, seed }, or undefined when `spec` is not synthetic. */
export function parseSyntheticSpec(spec: string): { config: string; seed: number } | undefined {
  if (!spec.startsWith('synthetic:')) return undefined;
  const rest = spec.slice('synthetic:'.length);
  const colon = rest.lastIndexOf(':'); // the config may itself contain ':' (a URL); the seed never does
  const seedText = colon < 0 ? '' : rest.slice(colon + 1);
  const config = colon < 0 ? rest : rest.slice(0, colon);
  if (!/^-?\d+$/.test(seedText) || !Number.isSafeInteger(Number(seedText)) || config === '') {
    throw new ModelSourceError(`"${spec}" is not a synthetic spec: expected synthetic:CONFIG:SEED with an integer SEED, e.g. synthetic:opt-125m:1`);
  }
  return { config, seed: Number(seedText) };
}

async function loadSynthetic(spec: string, options: LoadCheckpointOptions): Promise<Checkpoint> {
  const { config: source, seed } = parseSyntheticSpec(spec)!;
  let configJson: Record<string, unknown>;
  if (source === 'opt-125m') {
    configJson = structuredClone(OPT_125M_CONFIG_JSON);
  } else {
    // A config.json file (path or URL), or a directory / base URL holding one.
    const isFile = source.endsWith('.json');
    const cut = Math.max(source.lastIndexOf('/'), source.lastIndexOf('\\'));
    const dir = isFile ? (cut >= 0 ? source.slice(0, cut + 1) : './') : source;
    const file = isFile ? source.slice(cut + 1) : 'config.json';
    const reader = /^https?:\/\//i.test(dir) ? urlReader(dir, options) : directoryReader(dir);
    configJson = parseJsonFile(await readModelFile(reader, file, options.onProgress), reader.locate(file));
  }
  const config = parseOptConfig(configJson);
  const tensors = syntheticTensors(config, seed);
  let total = 0;
  for (const t of tensors.values()) total += t.bytes.byteLength;
  options.onProgress?.({ file: 'synthetic', loadedBytes: total, totalBytes: total });
  return { configJson, tensors: validateCheckpoint(config, tensors) };
}

/**
 * Load a checkpoint: config.json plus validated tensors with canonical HF names.
 * Throws ModelSourceError (unreachable, missing, truncated), ConfigError, CheckpointFormatError or
 * WeightMismatchError, each naming what was wrong.
 */
export async function loadCheckpoint(spec: CheckpointSpec, options: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  if (typeof spec === 'string' && spec.startsWith('synthetic:')) return loadSynthetic(spec, options);
  if (typeof spec === 'string' && !/^(https?|file):\/\//i.test(spec) && !hasLocalFileSystem()) {
    throw new ModelSourceError(`cannot read the directory "${spec}": this runtime has no file system (pass a URL or File objects)`);
  }
  return loadCheckpointFrom(openModelSource(spec, options), options);
}
