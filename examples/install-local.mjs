#!/usr/bin/env node
/**
 * Install this checkout's package into the examples exactly as npm would install a published version:
 * `npm pack` (what `npm publish` would upload: package.json "files" and "exports" decide what is in it), then
 * the tarball unpacked into examples/{browser,deno}/node_modules/tandem-webgpu. The package's own dependencies
 * resolve from the repository's node_modules (Node's and Deno's lookup walks up the folders).
 *
 *   npm run build && node examples/install-local.mjs
 *   node examples/install-local.mjs --build     builds first (vite build + tsc declarations; the embedded shaders
 *                                               are taken as they are, as `npm run gen:shaders` left them)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const examples = dirname(fileURLToPath(import.meta.url));
const repo = dirname(examples);
if (process.argv.includes('--build')) {
  const run = (args) => execFileSync(process.execPath, args, { cwd: repo, stdio: ['ignore', 'ignore', 'inherit'] });
  run([join(repo, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--logLevel', 'warn']);
  run([join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json']);
}
if (!existsSync(join(repo, 'dist', 'index.js')) || !existsSync(join(repo, 'dist', 'index.d.ts'))) {
  console.error('dist/ has no build (index.js and index.d.ts): run `npm run build` first');
  process.exit(1);
}
const out = mkdtempSync(join(tmpdir(), 'tandem-pack-'));
// --ignore-scripts: prepack would rebuild; the caller built already.
const [info] = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out], { cwd: repo, encoding: 'utf8' }));
const tarball = join(out, info.filename);
for (const app of ['browser', 'deno']) {
  const target = join(examples, app, 'node_modules', 'tandem-webgpu');
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', target, '--strip-components=1']);
  console.log(`installed ${info.name}@${info.version} (${info.entryCount} files) into ${target}`);
}
rmSync(out, { recursive: true, force: true });
