/**
 * The RL loop (src/actors/rl_loop.ts, the same loop as examples/rl_loop.ts) in the scenario worker on opt-tiny:
 * a trainer and an engine at 0.4 each on one virtual GPU; per iteration the engine samples 8 completions for each
 * of 4 prompts, the even-token reward scores them, the trainer takes an advantage-weighted AdamW step, and the
 * weights go back by handle. Reward and loss stream out as 'metric' events, one point per iteration.
 */
import { DeviceHost } from '../../../src/actors/device_host.ts';
import { DEFAULT_RL_PROMPTS, runRlLoop } from '../../../src/actors/rl_loop.ts';
import type { ScenarioModule } from '../scenarios.ts';
import { actorWorkerUrls, optTinySpec } from '../actor_workers.ts';
import { placementSnapshot } from './snapshot.ts';

export const MAX_ITERATIONS = 40;

/** Mean of the first and the last `k` values, k a third of them (at least 1). */
export function headTail(values: number[]): { k: number; head: number; tail: number } {
  const k = Math.max(1, Math.floor(values.length / 3));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return { k, head: mean(values.slice(0, k)), tail: mean(values.slice(-k)) };
}

export const run: ScenarioModule['run'] = async (params, emit) => {
  const iterations = Math.max(2, Math.min(MAX_ITERATIONS, Math.floor(Number(params.iterations ?? 12)) || 12));
  const samplesPerPrompt = Math.max(2, Math.min(16, Math.floor(Number(params.samplesPerPrompt ?? 8)) || 8));
  const host = await DeviceHost.create();
  const rewards: number[] = [];
  try {
    emit({ kind: 'log', text: `opt-tiny (synthetic, seed 1) · ${iterations} iterations · ${DEFAULT_RL_PROMPTS.length} prompts × ${samplesPerPrompt} samples × 8 tokens · reward: share of even token ids` });
    const r = await runRlLoop({
      model: optTinySpec(), prompts: DEFAULT_RL_PROMPTS, iterations, samplesPerPrompt, host, workerUrls: actorWorkerUrls(),
      gpuMemoryBytes: 256 * 2 ** 20,
      onReady: ({ cluster }) => emit(placementSnapshot(cluster, host.stats(), 'RL loop: trainer and engine loaded')),
      onIteration: (it, { cluster }) => {
        rewards.push(it.meanReward);
        emit({ kind: 'metric', series: 'mean reward', iteration: it.iteration + 1, value: it.meanReward });
        emit({ kind: 'metric', series: 'loss', iteration: it.iteration + 1, value: it.loss });
        emit({ kind: 'timing', name: 'sample', ms: it.generateMs });
        emit({ kind: 'timing', name: 'train step', ms: it.trainMs });
        emit({ kind: 'timing', name: 'weight sync', ms: it.syncMs });
        if (it.iteration === 0) emit(placementSnapshot(cluster, host.stats(), 'RL loop: after the first step'));
      },
    });
    const { k, head, tail } = headTail(r.iterations.map((i) => i.meanReward));
    const ok = tail > head;
    emit({
      kind: 'check', name: 'mean reward rose', ok,
      detail: `mean of the first ${k} iterations ${head.toFixed(3)} → last ${k} ${tail.toFixed(3)}`,
    });
    return ok;
  } finally {
    host.destroy();
  }
};
