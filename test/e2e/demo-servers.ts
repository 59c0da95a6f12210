/// <reference types="node" />
/**
 * Local HTTP servers for the demo and example specs, started by the spec itself:
 *
 *   fakeHub()      mimics the Hugging Face hub's URL layout over ../shared/fixtures, with CORS, and counts
 *                  requests per path (the cache test checks a second load asks for nothing):
 *                    /facebook/opt-tiny/resolve/main/FILE          the fixture's file (slowed down a little, so a
 *                                                                  progress bar is there to see)
 *                    /truncated/opt-tiny/resolve/main/FILE         JSON whole; weights: the full Content-Length
 *                                                                  is declared, half is sent, the connection drops
 *                    /missing/opt-tiny/resolve/main/FILE           404 for everything
 *   staticServer() serves a built folder (the example app).
 */
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..');
export const fixturesDir = resolve(process.env.TANDEM_FIXTURES ?? join(repoRoot, '..', 'shared', 'fixtures'));

/** The demo's production build, as served by playwright.config.ts's second webServer. */
export const DEMO_URL = `http://localhost:${Number(process.env.TANDEM_DEMO_PORT ?? 5175)}/index.html`;

export interface RunningServer {
  url: string;
  /** GET requests per path since start. */
  hits: Map<string, number>;
  close(): Promise<void>;
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, 'localhost', r));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://localhost:${port}` };
}

function closer(server: Server): () => Promise<void> {
  return () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function fakeHub(options: { chunkBytes?: number; chunkDelayMs?: number } = {}): Promise<RunningServer> {
  const chunk = options.chunkBytes ?? 64 * 1024;
  const delay = options.chunkDelayMs ?? 40;
  const hits = new Map<string, number>();
  const { server, url } = await listen(async (req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*'); // the hub sends CORS headers; the page is another origin
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length');
    if (req.method === 'OPTIONS') { res.statusCode = 204; res.end(); return; }
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const m = /^\/(facebook|truncated|missing)\/opt-tiny\/resolve\/main\/([\w.-]+)$/.exec(path);
    const file = m ? join(fixturesDir, 'opt-tiny', m[2]) : '';
    let size = -1;
    try { if (m && m[1] !== 'missing' && statSync(file).isFile()) size = statSync(file).size; } catch { /* absent */ }
    if (size < 0) {
      res.statusCode = 404;
      res.end('Entry not found');
      return;
    }
    res.setHeader('Content-Type', extname(file) === '.json' ? 'application/json' : 'application/octet-stream');
    res.setHeader('Content-Length', String(size));
    const bytes = readFileSync(file);
    const end = m![1] === 'truncated' && extname(file) !== '.json' ? Math.floor(size / 2) : size;
    for (let at = 0; at < end; at += chunk) {
      res.write(bytes.subarray(at, Math.min(end, at + chunk)));
      await sleep(delay);
    }
    if (end < size) res.destroy(); // the connection drops mid-body
    else res.end();
  });
  return { url, hits, close: closer(server) };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json',
  '.map': 'application/json', '.svg': 'image/svg+xml',
};

/** Serve `dir` at / (index.html for /), nothing outside it. */
export async function staticServer(dir: string): Promise<RunningServer> {
  const root = resolve(dir);
  const hits = new Map<string, number>();
  const { server, url } = await listen((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const file = resolve(root, `.${path.endsWith('/') ? `${path}index.html` : path}`);
    if (!file.startsWith(root + sep)) { res.statusCode = 403; res.end(); return; }
    try {
      if (!statSync(file).isFile()) throw new Error('not a file');
    } catch {
      res.statusCode = 404;
      res.end(`not found: ${path}`);
      return;
    }
    res.setHeader('Content-Type', TYPES[extname(file)] ?? 'application/octet-stream');
    createReadStream(file).pipe(res);
  });
  return { url, hits, close: closer(server) };
}
