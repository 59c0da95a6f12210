#!/usr/bin/env node
// The `tandem` command: runs the Deno CLI with the Deno binary that the npm package `deno` installed, so
// `npm install` is all a user needs. Works from a checkout and when Tandem is a dependency of another project
// (the binary is resolved from this package's location, as Node resolves any dependency).
//
// Which CLI file: from a checkout, the TypeScript source src/cli/main.ts. Inside node_modules, Deno refuses to
// run TypeScript (ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING, as Node does), so there it runs the bundle
// dist/cli.js that `npm run build` (run by `npm pack`/`npm publish` through prepack) makes.
//
// Environment: DENO_BIN=/path/to/deno overrides the binary; TANDEM_DENO_FLAGS adds flags before the script;
// TANDEM_CLI_ENTRY=/path/to/main.ts|cli.js overrides the CLI file.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageRoot = join(dirname(realpathSync(fileURLToPath(import.meta.url))), '..');
const exe = process.platform === 'win32' ? 'deno.exe' : 'deno';

/** Where the `deno` npm package put (or can put) its binary; undefined if it is not installed. */
function findDeno() {
  if (process.env.DENO_BIN) return process.env.DENO_BIN;
  const require = createRequire(join(packageRoot, 'package.json'));
  let denoPkgDir;
  try {
    denoPkgDir = dirname(require.resolve('deno/package.json'));
  } catch {
    return undefined;
  }
  // 1. The postinstall step normally links the binary into the package folder.
  const linked = join(denoPkgDir, exe);
  if (existsSync(linked)) return linked;
  // 2. Otherwise ask the package's own installer, which finds the platform package (@deno/linux-x64-glibc, ...).
  try {
    const resolved = createRequire(join(denoPkgDir, 'package.json'))('./install_api.cjs').runInstall();
    if (resolved && existsSync(resolved)) return resolved;
  } catch {
    // fall through
  }
  // 3. Look for the platform package ourselves (install scripts disabled, read-only node_modules).
  const arch = process.arch === 'arm64' ? 'arm64' : 'x64';
  const candidates = process.platform === 'linux'
    ? [`@deno/linux-${arch}-glibc`]
    : [`@deno/${process.platform}-${arch}`];
  for (const name of candidates) {
    for (const base of [denoPkgDir, packageRoot]) {
      try {
        const dir = dirname(createRequire(join(base, 'package.json')).resolve(`${name}/package.json`));
        if (existsSync(join(dir, exe))) return join(dir, exe);
      } catch {
        // try the next one
      }
    }
  }
  return undefined;
}

const deno = findDeno();
if (!deno) {
  console.error(
    'tandem: the Deno binary was not found. It comes with the npm package "deno" (a dependency of Tandem):\n' +
      '  run `npm install` in the project, or set DENO_BIN=/path/to/deno.',
  );
  process.exit(1);
}

function findCliEntry() {
  if (process.env.TANDEM_CLI_ENTRY) return process.env.TANDEM_CLI_ENTRY;
  const source = join(packageRoot, 'src', 'cli', 'main.ts');
  const bundle = join(packageRoot, 'dist', 'cli.js');
  const installed = packageRoot.split(sep).includes('node_modules');
  if (!installed && existsSync(source)) return source;
  if (existsSync(bundle)) return bundle;
  console.error(
    installed
      ? `tandem: ${bundle} is missing: this copy of Tandem was packed without a build (run \`npm run build\` in it).`
      : `tandem: ${source} is missing (an incomplete checkout?).`,
  );
  process.exit(1);
}
const cliEntry = findCliEntry();

const extraFlags = (process.env.TANDEM_DENO_FLAGS ?? '').split(/\s+/).filter(Boolean);
const args = ['run', '-A', '--unstable-webgpu', ...extraFlags, cliEntry, ...process.argv.slice(2)];
const env = { ...process.env };
// Without XDG_RUNTIME_DIR (containers, CI) the Vulkan loader prints a harmless but alarming error; give it
// a private temporary folder.
if (!env.XDG_RUNTIME_DIR && process.platform === 'linux') {
  const dir = join(tmpdir(), `tandem-runtime-${process.getuid?.() ?? 'user'}`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    env.XDG_RUNTIME_DIR = dir;
  } catch {
    // leave it unset: only a warning
  }
}

const child = spawn(deno, args, { stdio: 'inherit', env });
// Let the child handle Ctrl-C; we only pass its outcome through.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
child.on('error', (err) => {
  console.error(`tandem: could not start ${deno}: ${err.message}`);
  process.exit(1);
});
child.on('exit', (code, signal) => {
  if (signal) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  } else {
    process.exit(code ?? 1);
  }
});
