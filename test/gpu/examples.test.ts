// The Deno example (examples/deno/main.ts) run as a user runs it: the package packed by `npm pack` and installed
// into examples/deno/node_modules (examples/install-local.mjs --build), imported as 'tandem-webgpu'. Its greedy
// tokens on opt-tiny must be the fixtures' (Hugging Face transformers) up to the first near-tie.
import { assert, assertEquals, FIXTURES, greedyStepsToCompare, readReference } from './helpers.ts';
import { REPO_ROOT } from './cli_helpers.ts';

async function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, {
    args, cwd, stdin: 'null', stdout: 'piped', stderr: 'piped',
    env: { XDG_RUNTIME_DIR: Deno.env.get('XDG_RUNTIME_DIR') ?? '/tmp', NO_COLOR: '1' },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test('the Deno example imports the packed package and generates the reference greedy tokens', async () => {
  const install = await run('node', ['examples/install-local.mjs', '--build'], REPO_ROOT);
  assertEquals(install.code, 0, `install-local failed:\n${install.stdout}\n${install.stderr}`);
  // What a user's import resolves to: the packed copy, not the checkout.
  const installed = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}examples/deno/node_modules/tandem-webgpu/package.json`));
  assertEquals(installed.name, 'tandem-webgpu');

  const { ref } = await readReference('opt-tiny');
  const i = ref.prompts.findIndex((p) => p.length > 1);
  const want = ref.prompt_results[i].greedy;
  const n = Math.min(8, greedyStepsToCompare(ref.prompt_results[i].greedy_margins));
  assert(n > 0, 'the reference has no greedy step above the near-tie margin');
  const r = await run(Deno.execPath(), [
    'run', '-A', 'main.ts', `${FIXTURES}opt-tiny`, '--tokens', ref.prompts[i].join(','), '--max-tokens', String(n),
    '--gpu-memory-mb', '64', '--json',
  ], `${REPO_ROOT}examples/deno`);
  assertEquals(r.code, 0, `the example failed:\n${r.stdout}\n${r.stderr}`);
  const out = JSON.parse(r.stdout.trim()) as { tokens: number[]; text: string; finishReason: string };
  assertEquals(out.tokens, want.slice(0, n));
  assertEquals(out.finishReason, 'length');
  assert(typeof out.text === 'string' && out.text.length > 0, 'no text');
});
