/**
 * An RL loop on Tandem, in Deno: an engine samples several completions per prompt, a plain JS reward function
 * scores them, the trainer takes an advantage-weighted policy-gradient step, and the new weights go back to the
 * engine by handle. Trainer and engine are Web Workers on the same virtual GPU. The loop lives in
 * src/actors/rl_loop.ts; the browser version is the demo's RL loop panel (demo/worker/scenarios/rl_loop.ts),
 * the same loop in a Web Worker, drawing reward and loss as it goes.
 *
 *   deno run -A --unstable-webgpu examples/rl_loop.ts [--model DIR] [--iterations 12] [--json]
 */
import { DEFAULT_RL_PROMPTS, runRlLoop } from '../src/actors/rl_loop.ts';

export { advantageWeights, DEFAULT_RL_PROMPTS, evenTokenReward, runRlLoop } from '../src/actors/rl_loop.ts';
export type { RewardFn, RlIteration, RlLoopOptions, RlLoopResult, RlLoopView } from '../src/actors/rl_loop.ts';

if (import.meta.main) {
  const args = (globalThis as unknown as { Deno: { args: string[]; exit(c: number): never } }).Deno;
  const arg = (name: string, d: string) => { const i = args.args.indexOf(`--${name}`); return i >= 0 ? args.args[i + 1] : d; };
  const model = arg('model', new URL('../../shared/fixtures/opt-tiny', import.meta.url).pathname);
  const r = await runRlLoop({ model, prompts: DEFAULT_RL_PROMPTS, iterations: Number(arg('iterations', '12')), log: (l) => console.error(l) });
  if (args.args.includes('--json')) console.log(JSON.stringify(r));
  else console.log(`mean reward: ${r.first.toFixed(3)} -> ${r.last.toFixed(3)} over ${r.iterations.length} iterations`);
  args.exit(0);
}
