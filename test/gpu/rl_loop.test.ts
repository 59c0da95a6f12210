// The RL loop example (examples/rl_loop.ts) on opt-tiny with real Deno Web Workers: the engine samples 8
// completions per prompt, the even-token reward scores them, the trainer takes advantage-weighted steps, the
// weights go back by handle. The mean reward must rise measurably within 16 iterations, and must not when the
// weights are never handed back (the control: the rise is the loop learning, not sampling noise).
import { advantageWeights, evenTokenReward, runRlLoop } from '../../examples/rl_loop.ts';
import { assert, assertEquals, FIXTURES } from './helpers.ts';

const opts = { sanitizeResources: false, sanitizeOps: false };
const PROMPTS = [[2, 45, 99], [2, 133, 7], [2, 300, 41], [2, 12, 250]];
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

Deno.test('rl loop pieces: advantages weigh only completion targets; the reward counts even ids', () => {
  // 3 prompt tokens + 2 completion tokens: 4 targets, of which the last 2 predict completion tokens.
  assertEquals(advantageWeights(3, 2, 0.25), [0, 0, 0.25, 0.25]);
  assertEquals(evenTokenReward([2, 3, 4, 5]), 0.5);
  assertEquals(evenTokenReward([]), 0);
});

Deno.test('rl loop on opt-tiny: the mean reward rises within 16 iterations (and not without the weight sync)', opts, async () => {
  const run = (syncWeights: boolean) => runRlLoop({ model: `${FIXTURES}opt-tiny`, prompts: PROMPTS, iterations: 16, syncWeights });
  const learned = await run(true);
  const r = learned.iterations.map((i) => i.meanReward);
  const [head, tail] = [mean(r.slice(0, 4)), mean(r.slice(-4))];
  console.log(`  with sync: rewards ${r.map((x) => x.toFixed(2)).join(' ')}; first 4 ${head.toFixed(3)} -> last 4 ${tail.toFixed(3)}; ` +
    `sync ${mean(learned.iterations.map((i) => i.syncMs)).toFixed(1)} ms/iteration`);
  assert(tail - head >= 0.15, `mean reward did not rise: ${head} -> ${tail}`);
  const control = (await run(false)).iterations.map((i) => i.meanReward);
  const [ch, ct] = [mean(control.slice(0, 4)), mean(control.slice(-4))];
  console.log(`  control (no sync): first 4 ${ch.toFixed(3)} -> last 4 ${ct.toFixed(3)}`);
  assert(Math.abs(ct - ch) < 0.1, `without the sync the engine cannot learn: ${ch} -> ${ct}`);
});
