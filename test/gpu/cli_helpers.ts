// Running the CLI (src/cli/main.ts) as a user does: a Deno subprocess from the repository root.
import { assert } from './helpers.ts';

export const REPO_ROOT = new URL('../../', import.meta.url).pathname;

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCli(args: string[]): Promise<CliRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ['run', '-A', '--unstable-webgpu', 'src/cli/main.ts', ...args],
    cwd: REPO_ROOT,
    env: { XDG_RUNTIME_DIR: Deno.env.get('XDG_RUNTIME_DIR') ?? '/tmp', NO_COLOR: '1' },
    stdin: 'null',
    stdout: 'piped',
    stderr: 'piped',
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** stdout must be exactly one JSON object on one line: nothing else (no logs) may reach it. */
export function singleJson(r: CliRun, what: string): Record<string, unknown> {
  const ctx = `${what}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
  assert(r.stdout.endsWith('\n') && r.stdout.indexOf('\n') === r.stdout.length - 1, `stdout is not one line: ${ctx}`);
  let v: unknown;
  try {
    v = JSON.parse(r.stdout);
  } catch (e) {
    throw new Error(`stdout is not a JSON document (${(e as Error).message}): ${ctx}`);
  }
  assert(v !== null && typeof v === 'object' && !Array.isArray(v), `stdout is not a JSON object: ${ctx}`);
  return v as Record<string, unknown>;
}
