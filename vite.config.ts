/// <reference types="node" />
/**
 * One Vite config, three jobs:
 *   vite build            the library: src/index.ts (+ the Deno CLI, src/cli/main.ts) as ES modules in dist/.
 *                         Type declarations come from tsc (tsconfig.build.json), run after this by `npm run build`.
 *   vite                  the demo: a dev server rooted at demo/ (npm run demo).
 *   vite build --mode demo   the demo's production build, in dist-demo/ (npm run build:demo);
 *   vite preview --mode demo serves it (npm run preview:demo; Playwright's demo specs run against this).
 *   vite --mode e2e       the browser-test server used by Playwright: rooted at the repository, so pages under
 *                         test/e2e/pages/ import /src/... directly, and /fixtures/... serves ../shared/fixtures.
 * WGSL is embedded into TS by scripts/gen-shaders.mjs, so no loader is needed here.
 */
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { builtinModules } from 'node:module';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin, type UserConfig } from 'vite';

const repoRoot = dirname(fileURLToPath(import.meta.url));
const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
};
const runtimeDeps = [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})];

/** The reference fixtures live beside the repository (../shared/fixtures); TANDEM_FIXTURES overrides. */
export const fixturesDir = resolve(process.env.TANDEM_FIXTURES ?? join(repoRoot, '..', 'shared', 'fixtures'));

const CONTENT_TYPES: Record<string, string> = {
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
};

/**
 * Serves `dir` at `urlPrefix` (GET/HEAD, single byte ranges so weight loaders can read a safetensors header
 * first). Files outside `dir` are never served.
 */
export function serveDirectory(urlPrefix: string, dir: string): Plugin {
  const handler = (req: IncomingMessage, res: ServerResponse, next: () => void) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    let rel: string;
    try {
      rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      res.statusCode = 400;
      return res.end('bad path');
    }
    const file = resolve(dir, `.${rel}`);
    if (file !== dir && !file.startsWith(dir + sep)) {
      res.statusCode = 403;
      return res.end('outside the served folder');
    }
    let size: number;
    try {
      const st = statSync(file);
      if (!st.isFile()) throw new Error('not a file');
      size = st.size;
    } catch {
      res.statusCode = 404;
      return res.end(`not found: ${urlPrefix}${rel}`);
    }
    res.setHeader('Content-Type', CONTENT_TYPES[extname(file)] ?? 'application/octet-stream');
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('Cache-Control', 'no-store');
    let start = 0;
    let end = size - 1;
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && (range[1] || range[2])) {
      if (range[1]) {
        start = Number(range[1]);
        if (range[2]) end = Math.min(Number(range[2]), size - 1);
      } else {
        start = Math.max(size - Number(range[2]), 0); // suffix range: the last N bytes
      }
      if (start > end || start >= size) {
        res.statusCode = 416;
        res.setHeader('Content-Range', `bytes */${size}`);
        return res.end();
      }
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
    }
    res.setHeader('Content-Length', String(size === 0 ? 0 : end - start + 1));
    if (req.method === 'HEAD' || size === 0) return res.end();
    createReadStream(file, { start, end }).pipe(res);
  };
  return {
    name: `tandem:serve${urlPrefix.replace(/\W+/g, '-')}`,
    configureServer(server) {
      server.middlewares.use(urlPrefix, handler);
    },
    configurePreviewServer(server) {
      server.middlewares.use(urlPrefix, handler);
    },
  };
}

const isExternal = (id: string) =>
  id.startsWith('node:') ||
  id.startsWith('npm:') ||
  id.startsWith('jsr:') ||
  builtinModules.includes(id) ||
  runtimeDeps.some((dep) => id === dep || id.startsWith(`${dep}/`));

function libraryConfig(): UserConfig {
  // The CLI is built too: Deno refuses to run TypeScript from inside node_modules
  // (ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING), so an installed Tandem runs dist/cli.js (see bin/tandem.js).
  const entries: Record<string, string> = {};
  for (const [name, file] of [['index', 'src/index.ts'], ['cli', 'src/cli/main.ts']] as const) {
    if (existsSync(join(repoRoot, file))) entries[name] = join(repoRoot, file);
  }
  if (!entries.index) throw new Error('vite build: src/index.ts (the library entry) does not exist yet');
  return {
    root: repoRoot,
    publicDir: false,
    build: {
      outDir: join(repoRoot, 'dist'),
      emptyOutDir: true,
      target: 'es2022',
      sourcemap: true,
      minify: false,
      lib: { entry: entries, formats: ['es'], fileName: (_format, name) => `${name}.js` },
      rolldownOptions: {
        external: isExternal,
        // index.js and cli.js share the library: put it in one chunk named for what it is (not after whichever
        // module the bundler picks), and keep the 1.8 MB tokenizer table in its own chunk, loaded on demand.
        // src/cli stays in cli.js: its `if (import.meta.main)` must be in the file Deno runs.
        output: {
          chunkFileNames: 'chunks/[name]-[hash].js',
          codeSplitting: { groups: [{ name: 'tandem', test: /[\\/]src[\\/](?!cli[\\/]|.*opt-tokenizer)/ }] },
        },
      },
    },
    worker: { format: 'es' },
  };
}

function devServerConfig(root: string, port: number | undefined): UserConfig {
  return {
    root,
    publicDir: false,
    // Never serve stale tokenizer/weights; and keep Vite from reloading a page mid-test when it discovers a
    // dependency: pre-bundle the runtime dependencies up front instead.
    optimizeDeps: { include: runtimeDeps.filter((d) => d !== 'deno'), noDiscovery: true },
    server: {
      host: 'localhost', // a secure context: navigator.gpu exists only on https or http://localhost
      port,
      strictPort: port !== undefined,
      fs: { allow: [repoRoot] },
    },
    plugins: [serveDirectory('/fixtures', fixturesDir)],
    worker: { format: 'es' },
  };
}

/** Where the demo's production build goes (examples/browser builds into its examples/browser/ folder). */
export const demoOutDir = join(repoRoot, 'dist-demo');

/**
 * The demo as a static site: relative base (it works from any folder of any host), workers as ES modules.
 * The page needs no SharedArrayBuffer (workers talk by messages), so no COOP/COEP headers are required.
 */
function demoBuildConfig(port: number | undefined): UserConfig {
  return {
    root: join(repoRoot, 'demo'),
    base: './',
    publicDir: false,
    build: { outDir: demoOutDir, emptyOutDir: true, target: 'es2022', sourcemap: true, chunkSizeWarningLimit: 2500 },
    worker: { format: 'es' },
    preview: { host: 'localhost', port, strictPort: port !== undefined },
  };
}

export default defineConfig(({ command, mode, isPreview }) => {
  if (mode === 'demo' && (command === 'build' || isPreview)) {
    return demoBuildConfig(process.env.TANDEM_DEMO_PORT ? Number(process.env.TANDEM_DEMO_PORT) : undefined);
  }
  if (command === 'build') return libraryConfig();
  if (mode === 'e2e') return devServerConfig(repoRoot, Number(process.env.TANDEM_E2E_PORT ?? 5174));
  return devServerConfig(join(repoRoot, 'demo'), undefined);
});
