/**
 * An RL loop on Tandem, the use the colocate setup exists for: an engine samples several completions per
 * prompt, a plain JS reward function scores them, the trainer takes a policy-gradient step whose per-token
 * weights are the advantages (reward minus the mean reward of the prompt's group, as GRPO does), and the new
 * weights go back to the engine by handle. Trainer and engine are Web Workers on the same virtual GPU.
 *
 *   deno run -A --unstable-webgpu examples/rl_loop.ts [--model DIR] [--iterations 12] [--json]
 *
 * The default reward asks for even token ids: easy to score, about half the tokens of an untrained model earn
 * it, and nothing in the model prefers it, so a rising mean reward is the loop learning.
 */
import { COLOCATE_EXTENSION_URL } from '../src/actors/colocate_extension.ts';
import { DeviceHost } from '../src/actors/device_host.ts';
import { InferenceEngine } from '../src/actors/inference_engine.ts';
import { spawnTrainingActor } from '../src/actors/training_actor.ts';
import { Cluster } from '../src/cluster/cluster.ts';
import type { HostControl } from '../src/actors/device_host.ts';
import type { OptimizerConfig } from '../src/train/optimizer.ts';

/** Scores one completion (its generated token ids) in [0, 1]. */
export type RewardFn = (tokenIds: readonly number[]) => number;

/** The share of even token ids. */
export const evenTokenReward: RewardFn = (ids) => ids.length === 0 ? 0 : ids.filter((t) => t % 2 === 0).length / ids.length;

export interface RlLoopOptions {
  /** A checkpoint spec (a directory or URL; opt-tiny in the tests). */
  model: string;
  /** Prompts as token ids, all of one length (rows of a batch without padding). */
  prompts: number[][];
  iterations?: number;
  /** Completions sampled per prompt (the group whose mean is the baseline). Default 8. */
  samplesPerPrompt?: number;
  maxTokens?: number;
  temperature?: number;
  reward?: RewardFn;
  optimizer?: OptimizerConfig;
  /** A device host to use (default: one in this thread). */
  host?: HostControl & { destroy?: () => void };
  workerUrls?: { training?: string | URL; engine?: string | URL; extension?: string };
  log?: (line: string) => void;
  /** Hand the weights to the engine after each step (default true; false is the control: the engine never learns). */
  syncWeights?: boolean;
}

export interface RlIteration {
  iteration: number;
  meanReward: number;
  loss: number;
  syncMs: number;
}

export interface RlLoopResult {
  iterations: RlIteration[];
  /** Mean reward of the first and the last iteration. */
  first: number;
  last: number;
}

/** Per-target weights of one row: the advantage on every target that is a completion token, 0 on the prompt's. */
export function advantageWeights(promptLength: number, completionLength: number, advantage: number): number[] {
  const targets = promptLength + completionLength - 1;
  return Array.from({ length: targets }, (_, t) => (t >= promptLength - 1 ? advantage : 0));
}

export async function runRlLoop(opts: RlLoopOptions): Promise<RlLoopResult> {
  const log = opts.log ?? (() => {});
  const iterations = opts.iterations ?? 12;
  const n = opts.samplesPerPrompt ?? 8;
  const maxTokens = opts.maxTokens ?? 8;
  const reward = opts.reward ?? evenTokenReward;
  const L = opts.prompts[0]?.length ?? 0;
  if (opts.prompts.some((p) => p.length !== L) || L === 0) throw new Error('rl_loop: prompts must be non-empty and of one length');
  const ownHost = opts.host ? null : await DeviceHost.create();
  const host: HostControl = opts.host ?? ownHost!;
  const cluster = Cluster.create({ gpus: 1, gpuMemoryBytes: 512 * 2 ** 20, seed: 'rl-loop' });
  const pg = cluster.placementGroup([{ GPU: 1 }]);
  await pg.ready();
  const trainer = await spawnTrainingActor({ cluster, host, numGpus: 0.4, placementGroup: pg, bundleIndex: 0, name: 'policy-trainer', workerUrl: opts.workerUrls?.training });
  let engine: InferenceEngine | null = null;
  try {
    await trainer.api.createTrainer({
      model: opts.model, maxBatchTokens: opts.prompts.length * n * (L + maxTokens),
      optimizer: opts.optimizer ?? { type: 'adamw', lr: 1e-2, weightDecay: 0 },
    });
    engine = await InferenceEngine.create({
      cluster, host, placementGroup: pg, bundleIndices: [0], gpuMemoryUtilization: 0.4, model: opts.model, name: 'policy-engine',
      workerExtension: opts.workerUrls?.extension ?? COLOCATE_EXTENSION_URL, workerUrl: opts.workerUrls?.engine,
      engineOptions: { maxNumSeqs: opts.prompts.length * n },
    });
    const out: RlIteration[] = [];
    for (let it = 0; it < iterations; it++) {
      const completions = await engine.generate(opts.prompts.map((tokens) => ({ tokens })), {
        n, maxTokens, ignoreEos: true, temperature: opts.temperature ?? 1, seed: 1000 + it,
      });
      const ids: number[][] = [], weights: number[][] = [];
      let total = 0, count = 0;
      for (const [p, c] of completions.entries()) {
        const rewards = c.outputs.map((o) => reward(o.tokenIds));
        const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
        c.outputs.forEach((o, i) => {
          ids.push([...opts.prompts[p], ...o.tokenIds]);
          weights.push(advantageWeights(L, o.tokenIds.length, rewards[i] - mean));
          total += rewards[i];
          count++;
        });
      }
      const { loss } = await trainer.api.step(ids, { weights });
      const s0 = performance.now();
      if (opts.syncWeights ?? true) {
        const handles = await trainer.api.exportWeights();
        await engine.collectiveRpc('updateWeightsFromIpcHandles', [handles]);
      }
      const syncMs = performance.now() - s0;
      out.push({ iteration: it, meanReward: total / count, loss, syncMs: +syncMs.toFixed(2) });
      log(`iteration ${it}: mean reward ${(total / count).toFixed(3)}, loss ${loss.toFixed(5)}, weight sync ${syncMs.toFixed(1)} ms`);
    }
    return { iterations: out, first: out[0]?.meanReward ?? 0, last: out.at(-1)?.meanReward ?? 0 };
  } finally {
    await engine?.terminate();
    await trainer.terminate();
    ownHost?.destroy();
  }
}

if (import.meta.main) {
  const args = (globalThis as unknown as { Deno: { args: string[]; exit(c: number): never } }).Deno;
  const arg = (name: string, d: string) => { const i = args.args.indexOf(`--${name}`); return i >= 0 ? args.args[i + 1] : d; };
  const model = arg('model', new URL('../../shared/fixtures/opt-tiny', import.meta.url).pathname);
  const prompts = [[2, 45, 99], [2, 133, 7], [2, 300, 41], [2, 12, 250]];
  const r = await runRlLoop({ model, prompts, iterations: Number(arg('iterations', '12')), log: (l) => console.error(l) });
  if (args.args.includes('--json')) console.log(JSON.stringify(r));
  else console.log(`mean reward: ${r.first.toFixed(3)} -> ${r.last.toFixed(3)} over ${r.iterations.length} iterations`);
  args.exit(0);
}
