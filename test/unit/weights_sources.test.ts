/**
 * Checkpoint sources: an http server laid out like the Hugging Face hub (fallback order, progress, 404,
 * truncated bodies), local directories, picked File objects and synthetic specs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ModelSourceError } from '../../src/errors.ts';
import { parseSafetensors } from '../../src/model/weights/safetensors.ts';
import { loadCheckpoint, parseSyntheticSpec, readModelFile, urlReader } from '../../src/model/weights/sources.ts';
import type { LoadProgress, TensorMap } from '../../src/model/weights/types.ts';
import { FIXTURES, fsp, readFixture, startServer, tempDir, type ServerResponse } from './helpers/node.ts';

const reference = parseSafetensors(await readFixture('opt-tiny/model.safetensors'), 'model.safetensors');

function expectReference(tensors: TensorMap): void {
  expect([...tensors.keys()].sort()).toEqual([...reference.keys()].sort());
  for (const [name, ref] of reference) {
    const t = tensors.get(name)!;
    expect(t.dtype, name).toBe(ref.dtype);
    expect(t.bytes.byteLength === ref.bytes.byteLength && t.bytes.every((b, i) => b === ref.bytes[i]), name).toBe(true);
  }
}

/** Hub-like repositories: /<org>/<repo>/resolve/main/<file> -> a fixture file (anything else is 404). */
const REPOS: Record<string, Record<string, string>> = {
  'facebook/opt-tiny': { 'config.json': 'opt-tiny/config.json', 'model.safetensors': 'opt-tiny/model.safetensors' },
  'test/opt-tiny-sharded': Object.fromEntries(
    ['config.json', 'model.safetensors.index.json', 'model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors'].map((f) => [f, `opt-tiny/formats/sharded/${f}`]),
  ),
  'test/opt-tiny-pt': { 'config.json': 'opt-tiny/config.json', 'pytorch_model.bin': 'opt-tiny/formats/pytorch_model.bin' },
  'test/truncated': { 'config.json': 'opt-tiny/config.json', 'model.safetensors': 'opt-tiny/model.safetensors' },
  'test/no-weights': { 'config.json': 'opt-tiny/config.json' },
};

let server: { url: string; close: () => Promise<void> };
const requests: string[] = [];

async function serve(url: string, res: ServerResponse): Promise<void> {
  requests.push(url);
  if (url.startsWith('/broken/')) { res.writeHead(500); res.end('oops'); return; }
  const m = /^\/([^/]+\/[^/]+)\/resolve\/main\/([^/?]+)$/.exec(url);
  const fixture = m ? REPOS[m[1]]?.[m[2]] : undefined;
  if (!m || !fixture) { res.writeHead(404, { 'Content-Type': 'text/plain' }); res.end('Entry not found'); return; }
  const body = await readFixture(fixture);
  res.writeHead(200, { 'Content-Length': body.byteLength, 'Content-Type': 'application/octet-stream' });
  if (m[1] === 'test/truncated' && m[2] === 'model.safetensors') {
    // Declare the full length, send half, then drop the connection.
    res.write(body.subarray(0, body.byteLength >> 1));
    setTimeout(() => res.destroy(), 20);
    return;
  }
  // Several chunks, so that progress is reported more than once.
  const chunk = 1 << 16;
  for (let i = 0; i < body.byteLength; i += chunk) res.write(body.subarray(i, i + chunk));
  res.end();
}

beforeAll(async () => {
  server = await startServer((req, res) => {
    serve(req.url ?? '/', res).catch(() => res.destroy());
  });
});
afterAll(async () => { await server.close(); });

async function sourceError(p: Promise<unknown>, ...fragments: (string | RegExp)[]): Promise<void> {
  let err: unknown;
  try { await p; } catch (e) { err = e; }
  expect(err, 'expected a ModelSourceError').toBeInstanceOf(ModelSourceError);
  for (const f of fragments) expect((err as Error).message).toMatch(f);
}

describe('URL source (hub layout)', () => {
  it('loads config.json + model.safetensors with progress callbacks', async () => {
    const progress: LoadProgress[] = [];
    const base = `${server.url}/facebook/opt-tiny/resolve/main/`;
    const ckpt = await loadCheckpoint(base, { onProgress: (p) => progress.push({ ...p }) });
    expectReference(ckpt.tensors);
    expect(ckpt.configJson.model_type).toBe('opt');
    const st = progress.filter((p) => p.file === 'model.safetensors');
    expect(st.length).toBeGreaterThan(1);
    const size = (await readFixture('opt-tiny/model.safetensors')).byteLength;
    expect(st.every((p) => p.totalBytes === size)).toBe(true);
    expect(st.at(-1)!.loadedBytes).toBe(size);
    expect(st.every((p, i) => i === 0 || p.loadedBytes > st[i - 1].loadedBytes)).toBe(true);
    expect(progress.some((p) => p.file === 'config.json')).toBe(true);
  });

  it('falls back to the sharded index, then to pytorch_model.bin, in that order', async () => {
    requests.length = 0;
    const sharded = await loadCheckpoint(`${server.url}/test/opt-tiny-sharded/resolve/main`); // no trailing slash
    expectReference(sharded.tensors);
    expect(requests.slice(0, 3)).toEqual([
      '/test/opt-tiny-sharded/resolve/main/config.json',
      '/test/opt-tiny-sharded/resolve/main/model.safetensors',
      '/test/opt-tiny-sharded/resolve/main/model.safetensors.index.json',
    ]);
    requests.length = 0;
    const pt = await loadCheckpoint(`${server.url}/test/opt-tiny-pt/resolve/main/`);
    expect(requests.map((r) => r.split('/').pop())).toEqual(
      ['config.json', 'model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin'],
    );
    expect(pt.tensors.get('model.decoder.embed_tokens.weight')!.dtype).toBe('F16');
    expect(pt.tensors.size).toBe(reference.size);
  });

  it('404 on config.json -> ModelSourceError naming the URL and status', async () => {
    const base = `${server.url}/facebook/nope/resolve/main/`;
    await sourceError(loadCheckpoint(base), `${base}config.json`, /404/);
  });

  it('no weights at all -> ModelSourceError listing what was tried', async () => {
    await sourceError(loadCheckpoint(`${server.url}/test/no-weights/resolve/main/`), /no weights found/, /pytorch_model\.bin/);
  });

  it('HTTP 500 -> ModelSourceError with the status', async () => {
    await sourceError(loadCheckpoint(`${server.url}/broken/repo/resolve/main/`), /HTTP 500/, '/broken/repo/resolve/main/config.json');
  });

  it('a body shorter than its Content-Length (connection dropped) -> ModelSourceError saying truncated', async () => {
    await sourceError(loadCheckpoint(`${server.url}/test/truncated/resolve/main/`), /truncated/, 'model.safetensors');
  });

  it('a stream that ends cleanly before Content-Length -> ModelSourceError saying truncated', async () => {
    const fakeFetch = (async () => {
      const stream = new ReadableStream<Uint8Array>({
        start(c) { c.enqueue(new Uint8Array(10)); c.close(); },
      });
      return new Response(stream, { status: 200, headers: { 'content-length': '100' } });
    }) as typeof fetch;
    const reader = urlReader('https://example.invalid/m/', { fetch: fakeFetch });
    await sourceError(readModelFile(reader, 'model.safetensors'), /truncated/, /10 of 100 bytes/, 'https://example.invalid/m/model.safetensors');
  });

  it('a network error -> ModelSourceError naming the URL', async () => {
    const closed = await startServer((_req, res) => res.end());
    const url = closed.url;
    await closed.close();
    await sourceError(loadCheckpoint(`${url}/a/b/resolve/main/`), `${url}/a/b/resolve/main/config.json`, /network error/);
  });
});

describe('directory, File and synthetic sources', () => {
  it('a directory with a non-standard single weights file (model.bf16.safetensors)', async () => {
    const tmp = await tempDir();
    try {
      const fs = await fsp();
      await fs.writeFile(`${tmp.path}/config.json`, await readFixture('opt-tiny/config.json'));
      await expect(loadCheckpoint(tmp.path)).rejects.toThrow(/no weights found/);
      await fs.writeFile(`${tmp.path}/model.bf16.safetensors`, await readFixture('opt-tiny/formats/model.bf16.safetensors'));
      const ckpt = await loadCheckpoint(`${tmp.path}/`);
      expect(ckpt.tensors.get('model.decoder.embed_tokens.weight')!.dtype).toBe('BF16');
      expect(ckpt.tensors.has('lm_head.weight')).toBe(false);
      await fs.writeFile(`${tmp.path}/config.json`, '{"model_type": "opt", ');
      await expect(loadCheckpoint(tmp.path)).rejects.toThrow(ConfigError);
    } finally {
      await tmp.cleanup();
    }
  });

  it('a missing directory -> ModelSourceError', async () => {
    await sourceError(loadCheckpoint('/nonexistent/tandem/model'), '/nonexistent/tandem/model/config.json', /not found/);
  });

  it('picked File objects (config.json + pytorch_model.bin), with progress', async () => {
    const files = [
      new File([await readFixture('opt-tiny/config.json')], 'config.json'),
      new File([await readFixture('opt-tiny/formats/pytorch_model.bin')], 'pytorch_model.bin'),
    ];
    const seen = new Set<string>();
    const ckpt = await loadCheckpoint(files, { onProgress: (p) => seen.add(p.file) });
    expect(ckpt.tensors.size).toBe(reference.size);
    expect(ckpt.tensors.get('model.decoder.layers.0.fc1.weight')!.dtype).toBe('F16');
    expect(seen).toEqual(new Set(['config.json', 'pytorch_model.bin']));
    await sourceError(loadCheckpoint([files[1]]), /config\.json/);
  });

  it('synthetic:CONFIG:SEED with a config path, a directory, a URL, and opt-125m', async () => {
    const byPath = await loadCheckpoint(`synthetic:${FIXTURES}opt-tiny/config.json:1`);
    expectReference(byPath.tensors);
    const byDir = await loadCheckpoint(`synthetic:${FIXTURES}opt-tiny:1`);
    expectReference(byDir.tensors);
    const byUrl = await loadCheckpoint(`synthetic:${server.url}/facebook/opt-tiny/resolve/main/config.json:1`);
    expectReference(byUrl.tensors);
    const big = await loadCheckpoint('synthetic:opt-125m:1');
    expect(big.configJson.hidden_size).toBe(768);
    expect(big.tensors.size).toBe(4 + 12 * 16);
  }, 60_000);

  it('parses synthetic specs and rejects malformed ones', async () => {
    expect(parseSyntheticSpec('synthetic:opt-125m:7')).toEqual({ config: 'opt-125m', seed: 7 });
    expect(parseSyntheticSpec('synthetic:http://h:8/c.json:3')).toEqual({ config: 'http://h:8/c.json', seed: 3 });
    expect(parseSyntheticSpec('/some/dir')).toBeUndefined();
    await sourceError(loadCheckpoint('synthetic:opt-125m'), /synthetic:CONFIG:SEED/);
    await sourceError(loadCheckpoint('synthetic:opt-125m:x'), /synthetic:CONFIG:SEED/);
  });
});
