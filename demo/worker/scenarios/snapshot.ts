/**
 * A placement snapshot for the placement panel: every virtual GPU of a cluster, the share its placement-group
 * bundles reserve, the actors placed on it (cluster placements: name, fraction, budget) and the bytes each holds
 * on the device host right now (DeviceHost.stats(), joined by actor name: actors attach under their names).
 */
import type { Cluster } from '../../../src/cluster/cluster.ts';
import type { HostStats } from '../../../src/actors/device_host.ts';
import type { PlacementGpu, ScenarioEvent } from '../../protocol.ts';

/** 'trainer' or 'engine rank', from the names the scenarios give ("trainer-0", "engine-1.rank0", "policy-engine.rank0"). */
export function roleOf(name: string): string {
  return /\.rank\d+$/.test(name) ? 'engine rank' : /train/.test(name) ? 'trainer' : 'actor';
}

export function placementSnapshot(cluster: Cluster, stats: HostStats | null, stage: string): ScenarioEvent {
  const used = new Map<string, number>();
  for (const c of stats?.clients ?? []) used.set(`${c.virtualGpuUuid} ${c.actorId}`, (used.get(`${c.virtualGpuUuid} ${c.actorId}`) ?? 0) + c.bytesInUse);
  const reserved = new Map<string, number>();
  for (const pg of cluster.placementGroups()) {
    for (const b of pg.bundles) for (const g of b.gpus) reserved.set(g.uuid, (reserved.get(g.uuid) ?? 0) + g.fraction);
  }
  const gpus: PlacementGpu[] = cluster.gpus.map((g) => ({
    id: `GPU ${g.index}`,
    uuid: g.uuid,
    memoryBytes: g.memoryBytes,
    reservedFraction: reserved.get(g.uuid) ?? 0,
    actors: cluster.actorsOnGpu(g.uuid)
      .map((a) => {
        const share = a.gpus.find((s) => s.uuid === g.uuid)!;
        const name = a.name ?? a.actorId;
        return {
          name, role: roleOf(name), fraction: share.fraction, budgetBytes: share.memoryBudgetBytes,
          usedBytes: used.get(`${g.uuid} ${name}`) ?? 0, bundleIndex: a.bundleIndex,
        };
      })
      .sort((x, y) => x.role.localeCompare(y.role) || x.name.localeCompare(y.name)),
  }));
  return { kind: 'placement', gpus, stage };
}
