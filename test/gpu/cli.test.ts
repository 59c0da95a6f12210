// The CLI (src/cli/main.ts) as a user runs it: a Deno subprocess from the repository root. With --json, stdout
// holds exactly one JSON document (results or {"error": {...}}), logs go to stderr; outputs are checked
// against the HF fixtures with the tolerances of ../shared/fixtures/README.md.
import { generate } from '../../src/model/generate.ts';
import { OptModel } from '../../src/model/opt.ts';
import { OptTokenizer } from '../../src/model/tokenizer/index.ts';
import { assert, assertEquals, FIXTURES, greedyStepsToCompare, maxAbsDiff, readReference, testGpu } from './helpers.ts';
import { type CliRun, runCli, singleJson } from './cli_helpers.ts';





/** Run with --json; expect exit 0 and a single JSON result (no "error"). */
async function runJson(args: string[]): Promise<{ result: Record<string, unknown>; run: CliRun }> {
  const run = await runCli([...args, '--json']);
  const what = `tandem ${args.join(' ')} --json`;
  assertEquals(run.code, 0, `${what} exited ${run.code}:\n${run.stderr}`);
  const result = singleJson(run, what);
  assert(!('error' in result), `${what}: ${JSON.stringify(result)}`);
  return { result, run };
}

function report(what: string, err: number, tol: number): void {
  console.log(`  ${what}: max |diff| ${err.toExponential(2)} (tolerance ${tol})`);
  assert(err <= tol, `${what}: max |diff| ${err} exceeds ${tol}`);
}

const flat = (xs: number[][]): number[] => xs.flat();

Deno.test('cli tokenize --json gives the ids of the OPT tokenizer', async () => {
  const { cases } = JSON.parse(await Deno.readTextFile(`${FIXTURES}tokenizer_opt_encodings.json`)) as {
    cases: Array<{ text: string; ids: number[] }>;
  };
  const hello = cases.find((c) => c.text === 'Hello, my dog is cute');
  assert(hello, 'the fixture has "Hello, my dog is cute"');
  const { result, run } = await runJson(['tokenize', '--prompt', hello.text]);
  assertEquals(result, { ids: hello.ids });
  assertEquals(run.stderr.trim(), '', 'tokenize logs nothing');
  // The harder texts too (unicode, whitespace, newlines, the empty text), passed through argv.
  for (const c of cases) {
    if (c === hello) continue;
    const { result } = await runJson(['tokenize', '--prompt', c.text]);
    assertEquals(result.ids, c.ids, `tokenize ${JSON.stringify(c.text)}`);
  }
  // Without --json: the ids comma-separated.
  const plain = await runCli(['tokenize', '--prompt', hello.text]);
  assertEquals(plain.code, 0);
  assertEquals(plain.stdout, `${hello.ids.join(',')}\n`);
});

Deno.test('cli logits --json on opt-tiny matches HF (logsumexp, top-5, last logits)', async () => {
  const { ref, tensors } = await readReference('opt-tiny');
  const tokens = ref.prompts[1];
  const want = ref.prompt_results[1];
  const { result, run } = await runJson(['logits', '--model', `${FIXTURES}opt-tiny`, '--tokens', tokens.join(',')]);
  assertEquals(Object.keys(result).sort(), ['last_logits', 'logsumexp', 'tokens', 'top5_ids', 'top5_logits']);
  assertEquals(result.tokens, tokens);
  const lse = result.logsumexp as number[];
  assertEquals(lse.length, tokens.length);
  report('cli logits logsumexp', maxAbsDiff(lse, want.logsumexp), 1e-4);
  assertEquals(result.top5_ids, want.top5_ids, 'top-5 ids at every position');
  report('cli logits top5_logits', maxAbsDiff(flat(result.top5_logits as number[][]), flat(want.top5_logits)), 1e-4);
  const last = result.last_logits as number[];
  assertEquals(last.length, 512);
  report('cli logits last_logits', maxAbsDiff(last, tensors('p1.last_logits')!), 1e-4);
  // The logs went to stderr.
  assert(run.stderr.includes('tandem: WebGPU adapter'), run.stderr);
  assert(run.stderr.includes('model ready'), run.stderr);
});

for (const set of ['opt-tiny', 'opt-tiny-postln']) {
  Deno.test(`cli generate --greedy --json on ${set} matches the HF greedy tokens`, async () => {
    const { ref } = await readReference(set);
    const tokenizer = await OptTokenizer.load();
    const model = await OptModel.load(await testGpu(), `${FIXTURES}${set}`, { dtype: 'f32' });
    for (let i = 0; i < ref.prompts.length; i++) {
      const r = ref.prompt_results[i];
      const N = r.greedy.length;
      const { result, run } = await runJson([
        'generate', '--model', `${FIXTURES}${set}`, '--tokens', ref.prompts[i].join(','),
        '--max-tokens', String(N), '--greedy', '--ignore-eos',
      ]);
      const got = result.tokens as number[];
      const n = greedyStepsToCompare(r.greedy_margins);
      console.log(`  ${set} prompt ${i}: ${n} of ${N} greedy steps compared${n < N ? ' (then a near-tie)' : ''}`);
      assertEquals(got.length, N, `${set} prompt ${i}: ${N} tokens`);
      assertEquals(got.slice(0, n), r.greedy.slice(0, n), `${set} prompt ${i}: greedy tokens (first ${n} steps)`);
      assertEquals(result.finishReason, 'length');
      assertEquals(typeof result.text, 'string');
      assertEquals(result.text, tokenizer.decode(got, { skipSpecialTokens: true }), 'text is the decoded tokens');
      assert(/tokens in .* s/.test(run.stderr), run.stderr);
      // Past a near-tie HF cannot judge the path; the CLI must still give exactly what the library gives.
      const lib = await generate(model, ref.prompts[i], { maxTokens: N, ignoreEos: true });
      assertEquals(got, lib.tokens, `${set} prompt ${i}: CLI and library generate agree`);
    }
    model.release();
  });
}

Deno.test('cli generate with sampling flags: same seed same tokens, another seed a valid result', async () => {
  const { ref } = await readReference('opt-tiny');
  const V = 512, N = 20;
  const args = (seed: number) => [
    'generate', '--model', `${FIXTURES}opt-tiny`, '--tokens', ref.prompts[2].join(','), '--max-tokens', String(N),
    '--temperature', '0.8', '--top-k', '20', '--top-p', '0.9', '--seed', String(seed), '--ignore-eos',
  ];
  const a = (await runJson(args(5))).result;
  const b = (await runJson(args(5))).result;
  const c = (await runJson(args(6))).result;
  assertEquals(a.tokens, b.tokens, 'seed 5 twice');
  assertEquals(a.text, b.text);
  for (const r of [a, c]) {
    const t = r.tokens as number[];
    assertEquals(t.length, N);
    assert(t.every((x) => Number.isInteger(x) && x >= 0 && x < V), `token ids in [0, ${V}): ${t}`);
    assertEquals(typeof r.text, 'string');
    assertEquals(r.finishReason, 'length');
  }
  console.log(`  seed 5: ${(a.tokens as number[]).join(',')}\n  seed 6: ${(c.tokens as number[]).join(',')}`);
  // Sampling is not greedy: at temperature 0.8 over 20 steps the tokens should leave the greedy path somewhere.
  const greedy = ref.prompt_results[2].greedy.slice(0, N);
  assert(
    JSON.stringify(a.tokens) !== JSON.stringify(greedy) || JSON.stringify(c.tokens) !== JSON.stringify(greedy),
    'sampling with temperature 0.8 reproduced the greedy path for both seeds',
  );
});

Deno.test('cli --dtype f16: logits within 5e-2 of HF and greedy generate works', async () => {
  const { ref, tensors } = await readReference('opt-tiny');
  const tokens = ref.prompts[1];
  const { result } = await runJson(['logits', '--model', `${FIXTURES}opt-tiny`, '--tokens', tokens.join(','), '--dtype', 'f16']);
  report('cli f16 last_logits', maxAbsDiff(result.last_logits as number[], tensors('p1.last_logits')!), 5e-2);
  report('cli f16 logsumexp', maxAbsDiff(result.logsumexp as number[], ref.prompt_results[1].logsumexp), 5e-2);
  const wantTop5 = ref.prompt_results[1].top5_logits;
  const gotTop1 = (result.top5_ids as number[][]).map((ids) => ids[0]);
  for (let t = 0; t < tokens.length; t++) {
    if (wantTop5[t][0] - wantTop5[t][1] > 0.1) assertEquals(gotTop1[t], ref.prompt_results[1].top5_ids[t][0], `top-1 at ${t}`);
  }
  const N = 8;
  const gen = (await runJson([
    'generate', '--model', `${FIXTURES}opt-tiny`, '--tokens', tokens.join(','), '--max-tokens', String(N), '--greedy',
    '--ignore-eos', '--dtype', 'f16',
  ])).result;
  const got = gen.tokens as number[];
  assertEquals(got.length, N);
  assert(got.every((x) => Number.isInteger(x) && x >= 0 && x < 512), String(got));
  // Top-1 agreement at every step up to the first whose reference margin is 0.1 or less.
  const margins = ref.prompt_results[1].greedy_margins, greedy = ref.prompt_results[1].greedy;
  const firstNarrow = margins.findIndex((m) => m <= 0.1);
  const sure = firstNarrow < 0 ? N : Math.min(N, firstNarrow);
  assertEquals(got.slice(0, sure), greedy.slice(0, sure), `f16 greedy agrees up to the first margin <= 0.1 (step ${sure})`);
});

Deno.test('cli errors: invalid token gives a JSON error and exit 1; unknown command exits 2', async () => {
  for (const cmd of [['logits'], ['generate', '--max-tokens', '4']]) {
    const run = await runCli([...cmd, '--model', `${FIXTURES}opt-tiny`, '--tokens', '2,999999', '--json']);
    const what = `tandem ${cmd[0]} --tokens 2,999999`;
    assertEquals(run.code, 1, `${what} exit code`);
    const doc = singleJson(run, what);
    assertEquals(Object.keys(doc), ['error']);
    const err = doc.error as { code: string; name: string; message: string };
    assertEquals(err.code, 'invalid_input');
    assertEquals(err.name, 'InvalidInputError');
    assert(err.message.includes('999999') && err.message.includes('token 1'), err.message);
    assert(run.stderr.includes('[invalid_input]'), run.stderr);
  }
  // Errors before any model is loaded, and a missing model directory (a typed error of another kind).
  const noMax = await runCli(['generate', '--model', `${FIXTURES}opt-tiny`, '--tokens', '2,5', '--json']);
  assertEquals(noMax.code, 1);
  assertEquals((singleJson(noMax, 'generate without --max-tokens').error as { code: string }).code, 'invalid_input');
  const missing = await runCli(['logits', '--model', `${FIXTURES}no-such-model`, '--tokens', '2,5', '--json']);
  assertEquals(missing.code, 1);
  const mErr = singleJson(missing, 'missing model').error as { code: string; message: string };
  assertEquals(mErr.code, 'model_source');
  assert(mErr.message.includes('no-such-model'), mErr.message);

  // Usage errors exit 2 with nothing on stdout.
  for (const args of [['frobnicate'], ['frobnicate', '--json'], ['logits', '--no-such-flag']]) {
    const run = await runCli(args);
    assertEquals(run.code, 2, `tandem ${args.join(' ')} exit code`);
    assertEquals(run.stdout, '', `tandem ${args.join(' ')} stdout`);
    assert(run.stderr.includes('usage: tandem'), run.stderr);
  }
});

Deno.test('cli generate --prompts-file serves every fixture prompt through the engine, in input order, matching HF greedy', async () => {
  const { ref } = await readReference('opt-tiny');
  const file = await Deno.makeTempFile({ suffix: '.json' });
  try {
    // Per-request max_tokens; the command line's --ignore-eos is everyone's default.
    await Deno.writeTextFile(file, JSON.stringify(ref.prompts.map((p, i) => ({ tokens: p, max_tokens: ref.prompt_results[i].greedy.length }))));
    const run = await runCli(['generate', '--model', `${FIXTURES}opt-tiny`, '--prompts-file', file, '--ignore-eos', '--greedy', '--gpu-memory-gb', '0.1', '--json']);
    assertEquals(run.code, 0, run.stderr);
    const outs = JSON.parse(run.stdout) as Array<{ tokens: number[]; text: string; finishReason: string }>;
    assertEquals(outs.length, ref.prompts.length);
    outs.forEach((o, i) => {
      const n = greedyStepsToCompare(ref.prompt_results[i].greedy_margins);
      assertEquals(o.tokens.slice(0, n), ref.prompt_results[i].greedy.slice(0, n), `request ${i}`);
      assertEquals(o.finishReason, 'length');
      assertEquals(typeof o.text, 'string');
    });
    await Deno.writeTextFile(file, '[{"text": "no tokens"}]');
    const bad = await runCli(['generate', '--model', `${FIXTURES}opt-tiny`, '--prompts-file', file, '--json']);
    assertEquals(bad.code, 1);
    assertEquals(JSON.parse(bad.stdout).error.code, 'invalid_input');
  } finally {
    await Deno.remove(file);
  }
});
