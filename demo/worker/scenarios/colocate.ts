/**
 * The colocate scenario (src/actors/colocate.ts, runColocate) in the scenario worker, on opt-tiny: a device host
 * in this worker, 4 training actors and 2 engines of 2 tensor-parallel ranks as nested workers, 4 virtual GPUs.
 * Reports each step as it finishes (placement snapshots, timings), then the device-id table, the handle sync
 * time, the generations before and after, and its checks.
 */
import { runColocate, type ColocateGeneration, type ColocateResult, type ColocateStage } from '../../../src/actors/colocate.ts';
import { DeviceHost } from '../../../src/actors/device_host.ts';
import type { ScenarioEvent } from '../../protocol.ts';
import { actorWorkerUrls, optTinySpec } from '../actor_workers.ts';
import type { ScenarioModule } from '../scenarios.ts';
import { placementSnapshot } from './snapshot.ts';

/** Readable names of runColocate's steps (its timingsMs keys). */
export const STAGE_LABELS: Record<string, string> = {
  cluster: 'cluster and placement group', trainersLoaded: 'training actors loaded', enginesLoaded: 'engines loaded',
  deviceIds: 'device ids gathered', generateBefore: 'generate (before)', zeroWeights: 'trainers zero their weights',
  train: 'trainers train', sync: 'weight sync by handles', checkWeightsChanged: 'weights-changed check', generateAfter: 'generate (after)',
};

const PROMPTS = ['Hello, my name is', 'The capital of France is'];

export interface ColocateParams {
  trainSteps: number;
  packed: boolean;
  maxTokens: number;
}

export function colocateParams(params: Record<string, string | number | boolean>): ColocateParams {
  const trainSteps = Math.max(0, Math.min(20, Math.floor(Number(params.trainSteps ?? 0)) || 0));
  const maxTokens = Math.max(1, Math.min(16, Math.floor(Number(params.maxTokens ?? 6)) || 6));
  return { trainSteps, packed: params.packed === true || params.packed === 'true', maxTokens };
}

/** Run runColocate on opt-tiny with this worker's device host; `onStage` sees each step (placement snapshots). */
export async function runDemoColocate(
  p: ColocateParams, emit: (e: ScenarioEvent) => void, onStage?: (stage: ColocateStage, host: DeviceHost) => void | Promise<void>,
): Promise<{ result: ColocateResult; host: DeviceHost; lastStats: ReturnType<DeviceHost['stats']> }> {
  const host = await DeviceHost.create();
  let lastStats = host.stats();
  try {
    const result = await runColocate({
      model: optTinySpec(), host, trainSteps: p.trainSteps, packed: p.packed, maxTokens: p.maxTokens, prompts: PROMPTS,
      workerUrls: actorWorkerUrls(),
      log: (text) => emit({ kind: 'log', text }),
      onStage: async (stage) => {
        lastStats = host.stats();
        emit(placementSnapshot(stage.cluster, lastStats, STAGE_LABELS[stage.name] ?? stage.name));
        await onStage?.(stage, host);
      },
    });
    return { result, host, lastStats };
  } finally {
    host.destroy();
  }
}

const short = (uuid: string) => uuid.slice(0, 12);
const sameTokens = (a: ColocateGeneration[], b: ColocateGeneration[]) =>
  a.length === b.length && a.every((g, i) => g.tokenIds.length === b[i].tokenIds.length && g.tokenIds.every((t, j) => t === b[i].tokenIds[j]));

export const scenario: ScenarioModule = {
  async run(params, emit) {
    const p = colocateParams(params);
    emit({ kind: 'log', text: `opt-tiny (synthetic, seed 1) · ${p.trainSteps ? `${p.trainSteps} SGD steps` : 'trainers zero their weights'} · ${p.packed ? 'packed handles' : 'one handle per tensor'}` });
    const { result: r, lastStats } = await runDemoColocate(p, emit, (stage) => {
      // The sync step is shown as 'handle sync' (runColocate's syncMs, measured around exactly the handover).
      if (stage.name !== 'sync') emit({ kind: 'timing', name: STAGE_LABELS[stage.name] ?? stage.name, ms: stage.ms });
      const part = stage.partial;
      if (stage.name === 'deviceIds' && part.trainingActorDeviceIds && part.engineDeviceIds) {
        emit(deviceTable(part.trainingActorDeviceIds, part.engineDeviceIds));
      }
      if (stage.name === 'generateBefore' && part.generations) emit(generations('before the sync', part.generations.before));
      if (stage.name === 'sync' && part.syncMs !== undefined) {
        emit({ kind: 'timing', name: 'handle sync', ms: part.syncMs });
        emit({ kind: 'log', text: `weight sync: ${part.syncBytes?.map((b) => `${(b / 1e6).toFixed(2)} MB`).join(' + ')} copied into the engines' shards` });
      }
    });
    emit(generations('after the sync', r.generations.after));
    emit({ kind: 'timing', name: 'total', ms: r.timingsMs.total });

    const checks: { name: string; ok: boolean; detail: string }[] = [];
    const tp = r.engineDeviceIds[0]?.length ?? 0;
    checks.push({
      name: 'colocated', ok: r.colocated,
      detail: r.engineDeviceIds.map((ids, e) => `training actors ${e * tp}–${(e + 1) * tp - 1} on engine ${e}'s GPUs (${ids.map(short).join(', ')})`).join('; '),
    });
    checks.push({
      name: 'weights changed', ok: r.weightsChanged,
      detail: r.trainSteps > 0
        ? `every engine rank's shards equal the trained weights bit for bit (read back from the GPU)`
        : `every engine rank's weights are now zero, as the training actors' are (read back from the GPU)`,
    });
    const [b0, b1] = r.generations.before;
    checks.push({ name: 'engines agreed before the sync', ok: Boolean(b0 && b1 && sameTokens(b0, b1)), detail: 'both engines generated the same greedy tokens from the same weights' });
    const [a0, a1] = r.generations.after;
    checks.push({ name: 'engines agree after the sync', ok: Boolean(a0 && a1 && sameTokens(a0, a1)), detail: 'both engines took the same weights by handle and generate the same greedy tokens' });
    if (r.trainSteps === 0) {
      // All-zero weights: every logit is equal, and greedy decoding takes the lowest id, 0, at every step.
      const zeros = r.generations.after.every((gens) => gens.every((g) => g.tokenIds.every((t) => t === 0)));
      checks.push({ name: 'generation changed', ok: zeros, detail: 'all-zero weights give equal logits, so greedy decoding now picks token 0 every step' });
    } else {
      // A few small SGD steps need not move a greedy argmax: reported, not checked.
      const changed = r.generations.before.some((before, e) => !sameTokens(before, r.generations.after[e]));
      emit({ kind: 'log', text: `after ${r.trainSteps} training steps the greedy tokens ${changed ? 'changed' : 'did not change'}` });
    }
    const over = lastStats.clients.filter((c) => c.bytesInUse > c.memoryBudgetBytes);
    checks.push({
      name: 'within memory budgets', ok: over.length === 0,
      detail: over.length ? `over budget: ${over.map((c) => c.actorId).join(', ')}` : `${lastStats.clients.length} actors, each within its 0.4 share of its GPU's memory`,
    });
    for (const c of checks) emit({ kind: 'check', ...c });
    return checks.every((c) => c.ok);
  },
};

function deviceTable(trainers: string[], engines: string[][]): ScenarioEvent {
  const rows: (string | number)[][] = [];
  trainers.forEach((uuid, i) => {
    const e = engines.findIndex((ids) => ids.includes(uuid));
    const rank = e >= 0 ? engines[e].indexOf(uuid) : -1;
    rows.push([`trainer-${i}`, uuid, e >= 0 ? `engine-${e} · rank ${rank}` : 'none', e >= 0 ? uuid : '—']);
  });
  return { kind: 'device-table', columns: ['Training actor', 'Its device id', 'Engine rank on that GPU', 'Rank\'s device id'], rows };
}

function generations(label: string, perEngine: ColocateGeneration[][]): ScenarioEvent {
  return {
    kind: 'generations', label,
    rows: perEngine.flatMap((gens, e) => gens.map((g) => ({ engine: `engine-${e}`, prompt: g.prompt, text: g.text, tokenIds: g.tokenIds }))),
  };
}

export const run = scenario.run;
