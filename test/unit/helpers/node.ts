/**
 * Node built-ins for the weights unit tests, typed by hand: the project does not depend on @types/node, so
 * they are imported through a variable specifier (which tsc does not resolve) and given the small
 * interfaces the tests use.
 */

interface NodeFsPromises {
  readFile(path: string): Promise<Uint8Array>;
  mkdtemp(prefix: string): Promise<string>;
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
  rm(path: string, options: { recursive: boolean; force: boolean }): Promise<void>;
}

export interface ServerRequest { url?: string; method?: string }
export interface ServerResponse {
  writeHead(status: number, headers?: Record<string, string | number>): void;
  write(chunk: Uint8Array | string): boolean;
  end(chunk?: Uint8Array | string): void;
  destroy(): void;
  flushHeaders(): void;
}
interface NodeServer {
  listen(port: number, host: string, cb: () => void): void;
  address(): { port: number };
  close(cb: () => void): void;
  closeAllConnections?(): void;
}
interface NodeHttp {
  createServer(handler: (req: ServerRequest, res: ServerResponse) => void): NodeServer;
}

async function nodeImport<T>(name: string): Promise<T> {
  return (await import(/* @vite-ignore */ name)) as T;
}

export const fsp = (): Promise<NodeFsPromises> => nodeImport<NodeFsPromises>('node:fs/promises');

/** Absolute path of ../shared/fixtures (relative to the repository root), with a trailing slash. */
export const FIXTURES = decodeURIComponent(new URL('../../../../shared/fixtures/', import.meta.url).pathname);

/** A fixture file's bytes as a plain Uint8Array (not a pooled Buffer view). */
export async function readFixture(rel: string): Promise<Uint8Array<ArrayBuffer>> {
  const b = await (await fsp()).readFile(FIXTURES + rel);
  const out = new Uint8Array(b.byteLength);
  out.set(b);
  return out;
}

export async function readFixtureJson<T = unknown>(rel: string): Promise<T> {
  return JSON.parse(new TextDecoder().decode(await readFixture(rel))) as T;
}

/** A temporary directory, removed by the returned cleanup function. */
export async function tempDir(): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const fs = await fsp();
  const path = await fs.mkdtemp('/tmp/tandem-weights-');
  return { path, cleanup: () => fs.rm(path, { recursive: true, force: true }) };
}

/** An http server on 127.0.0.1 (random port). */
export async function startServer(
  handler: (req: ServerRequest, res: ServerResponse) => void,
): Promise<{ url: string; close: () => Promise<void> }> {
  const http = await nodeImport<NodeHttp>('node:http');
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}
