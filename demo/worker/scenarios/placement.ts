/**
 * Placement only: the colocate scenario's layout (4 virtual GPUs, a placement group of 4 {GPU: 1} bundles,
 * 4 training actors at 0.4 and 2 engines of 2 ranks at 0.4) placed and loaded on opt-tiny, then taken down
 * once both engines are up. The panel shows the GPUs, the actors as the fractions they hold, and each actor's
 * bytes on the device host against its budget.
 *
 * It runs runColocate itself and stops it at 'enginesLoaded' (by throwing from its onStage observer, which
 * runColocate lets through after tearing everything down), so the layout shown is the scenario's own.
 */
import type { ScenarioEvent } from '../../protocol.ts';
import type { ScenarioModule } from '../scenarios.ts';
import { placementSnapshot } from './snapshot.ts';
import { colocateParams, runDemoColocate } from './colocate.ts';

class PlacementShown extends Error {
  constructor(readonly snapshot: ScenarioEvent & { kind: 'placement' }) {
    super('placement shown');
  }
}

export const run: ScenarioModule['run'] = async (_params, emit) => {
  let snapshot: (ScenarioEvent & { kind: 'placement' }) | null = null;
  try {
    await runDemoColocate(colocateParams({}), emit, (stage, host) => {
      if (stage.name !== 'enginesLoaded') return;
      throw new PlacementShown(placementSnapshot(stage.cluster, host.stats(), 'engines loaded') as ScenarioEvent & { kind: 'placement' });
    });
  } catch (e) {
    if (!(e instanceof PlacementShown)) throw e;
    snapshot = e.snapshot;
  }
  if (!snapshot) throw new Error('the colocate scenario ended before its engines were loaded');
  emit({ kind: 'log', text: 'Actors taken down again: run the colocate scenario to see them work.' });
  const checks: { name: string; ok: boolean; detail: string }[] = [];
  const pairs = snapshot.gpus.map((g) => g.actors.map((a) => a.role).sort().join(' + '));
  checks.push({
    name: 'one trainer and one engine rank per GPU', ok: pairs.every((p) => p === 'engine rank + trainer'),
    detail: snapshot.gpus.map((g) => `${g.id}: ${g.actors.map((a) => `${a.name} ${a.fraction}`).join(', ')}`).join('; '),
  });
  const fractions = snapshot.gpus.map((g) => g.actors.reduce((s, a) => s + a.fraction, 0));
  checks.push({ name: 'fractions fit', ok: fractions.every((f) => f <= 1 + 1e-9), detail: `each GPU ${fractions.map((f) => f.toFixed(1)).join(' / ')} of its bundle used` });
  const actors = snapshot.gpus.flatMap((g) => g.actors);
  checks.push({
    name: 'within memory budgets', ok: actors.every((a) => a.usedBytes > 0 && a.usedBytes <= a.budgetBytes),
    detail: `${actors.length} actors hold memory, none beyond floor(0.4 × GPU memory)`,
  });
  for (const c of checks) emit({ kind: 'check', ...c });
  return checks.every((c) => c.ok);
};
