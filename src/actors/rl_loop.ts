/**
 * An RL loop on Tandem, the use the colocate setup exists for: an engine samples several completions per
 * prompt, a plain JS reward function scores them, the trainer takes a policy-gradient step whose per-token
 * weights are the advantages (reward minus the mean reward of the prompt's group, as GRPO does), and the new
 * weights go back to the engine by handle. Trainer and engine are Web Workers on the same virtual GPU.
 *
 * The loop itself, shared by the Deno example (examples/rl_loop.ts) and the browser (the demo's RL loop panel,
 * demo/worker/scenarios/rl_loop.ts): they differ only in where the worker modules come from and what they do
 * with each iteration (print it, or draw it).
 *
 * The default reward asks for even token ids: easy to score, about half the tokens of an untrained model earn
 * it, and nothing in the model prefers it, so a rising mean reward is the loop learning.
 */
import { InvalidInputError } from '../errors.ts';
import { COLOCATE_EXTENSION_URL } from './colocate_extension.ts';
import { DeviceHost } from './device_host.ts';
import { InferenceEngine } from './inference_engine.ts';
import { spawnTrainingActor } from './training_actor.ts';
import { Cluster } from '../cluster/cluster.ts';
import type { HostControl } from './device_host.ts';
import type { OptimizerConfig } from '../train/optimizer.ts';

/** Scores one completion (its generated token ids) in [0, 1]. */
export type RewardFn = (tokenIds: readonly number[]) => number;

/** The share of even token ids. */
export const evenTokenReward: RewardFn = (ids) => ids.length === 0 ? 0 : ids.filter((t) => t % 2 === 0).length / ids.length;

/**
 * Four prompts of three token ids (</s> and two ids under 512, so they fit opt-tiny's vocabulary): what the
 * examples and the demo start from.
 */
export const DEFAULT_RL_PROMPTS: readonly (readonly number[])[] = [[2, 45, 99], [2, 133, 7], [2, 300, 41], [2, 12, 250]];

/** The loop's cluster and device host, for a progress view (placement, memory per budget). */
export interface RlLoopView {
  cluster: Cluster;
  host: HostControl;
}

export interface RlLoopOptions {
  /** A checkpoint spec (a directory or URL, or `synthetic:CONFIG:SEED`; opt-tiny in the tests). */
  model: string;
  /** Prompts as token ids, all of one length (rows of a batch without padding). */
  prompts: readonly (readonly number[])[];
  iterations?: number;
  /** Completions sampled per prompt (the group whose mean is the baseline). Default 8. */
  samplesPerPrompt?: number;
  maxTokens?: number;
  temperature?: number;
  reward?: RewardFn;
  optimizer?: OptimizerConfig;
  /** Memory of the one virtual GPU (default 512 MiB). */
  gpuMemoryBytes?: number;
  /** A device host to use (default: one in this thread). */
  host?: HostControl & { destroy?: () => void };
  workerUrls?: { training?: string | URL; engine?: string | URL; extension?: string };
  log?: (line: string) => void;
  /** Hand the weights to the engine after each step (default true; false is the control: the engine never learns). */
  syncWeights?: boolean;
  /** Called once trainer and engine are loaded, before the first iteration. Awaited. */
  onReady?: (view: RlLoopView) => void | Promise<void>;
  /** Called after each iteration (its reward, loss and times). Awaited. */
  onIteration?: (iteration: RlIteration, view: RlLoopView) => void | Promise<void>;
}

export interface RlIteration {
  iteration: number;
  meanReward: number;
  loss: number;
  syncMs: number;
  /** Sampling every completion of the iteration (ms). */
  generateMs: number;
  /** The trainer's step (ms). */
  trainMs: number;
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
  if (opts.prompts.some((p) => p.length !== L) || L === 0) {
    throw new InvalidInputError(`rl loop: prompts must be non-empty and of one length (got lengths ${opts.prompts.map((p) => p.length).join(', ') || 'none'})`);
  }
  const ownHost = opts.host ? null : await DeviceHost.create();
  const host: HostControl = opts.host ?? ownHost!;
  const cluster = Cluster.create({ gpus: 1, gpuMemoryBytes: opts.gpuMemoryBytes ?? 512 * 2 ** 20, seed: 'rl-loop' });
  const view: RlLoopView = { cluster, host };
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
    await opts.onReady?.(view);
    const out: RlIteration[] = [];
    for (let it = 0; it < iterations; it++) {
      const g0 = performance.now();
      const completions = await engine.generate(opts.prompts.map((tokens) => ({ tokens })), {
        n, maxTokens, ignoreEos: true, temperature: opts.temperature ?? 1, seed: 1000 + it,
      });
      const generateMs = performance.now() - g0;
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
      const t0 = performance.now();
      const { loss } = await trainer.api.step(ids, { weights });
      const trainMs = performance.now() - t0;
      const s0 = performance.now();
      if (opts.syncWeights ?? true) {
        const handles = await trainer.api.exportWeights();
        await engine.collectiveRpc('updateWeightsFromIpcHandles', [handles]);
      }
      const syncMs = performance.now() - s0;
      const result: RlIteration = {
        iteration: it, meanReward: total / count, loss, syncMs: +syncMs.toFixed(2), generateMs: +generateMs.toFixed(1), trainMs: +trainMs.toFixed(1),
      };
      out.push(result);
      log(`iteration ${it}: mean reward ${(total / count).toFixed(3)}, loss ${loss.toFixed(5)}, weight sync ${syncMs.toFixed(1)} ms`);
      await opts.onIteration?.(result, view);
    }
    return { iterations: out, first: out[0]?.meanReward ?? 0, last: out.at(-1)?.meanReward ?? 0 };
  } finally {
    await engine?.terminate();
    await trainer.terminate();
    ownHost?.destroy();
  }
}
