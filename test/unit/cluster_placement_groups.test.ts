// Cluster: virtual GPUs, placement-group strategies, pending -> placed, infeasible groups with clear errors.
import { describe, expect, it } from 'vitest';
import { Cluster, GPU_UUID_PATTERN, type PlacementGroup } from '../../src/cluster/index.ts';
import { InfeasibleResourceError, InvalidInputError, PlacementError } from '../../src/errors.ts';

const GiB = 1024 ** 3;

/** Three nodes of two 1 GiB GPUs and 4 CPUs. */
function threeNodes(): Cluster {
  return Cluster.create({ nodes: [0, 1, 2].map(() => ({ gpus: 2, gpuMemoryBytes: GiB, cpus: 4 })), seed: 7 });
}

/** node id and cluster GPU indices per bundle. */
function layout(pg: PlacementGroup): [string, number[]][] {
  return pg.bundles.map((b) => [b.nodeId, b.gpus.map((g) => g.index)]);
}

/** Whether a promise has settled, after letting microtasks run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  await new Promise((r) => setTimeout(r, 0));
  return done;
}

describe('Cluster.create', () => {
  it('makes virtual GPUs with uuids, cluster and node indices, memory, and nodes', () => {
    const c = Cluster.create({ nodes: [{ gpus: 2, gpuMemoryBytes: GiB }, { gpus: 1, gpuMemoryBytes: 2 * GiB, cpus: 3 }], seed: 'x' });
    expect(c.gpus.map((g) => [g.index, g.localIndex, g.nodeId, g.memoryBytes])).toEqual([
      [0, 0, 'node-0', GiB], [1, 1, 'node-0', GiB], [2, 0, 'node-1', 2 * GiB],
    ]);
    for (const g of c.gpus) expect(g.uuid).toMatch(GPU_UUID_PATTERN);
    expect(new Set(c.gpus.map((g) => g.uuid)).size).toBe(3);
    expect(c.nodes.map((n) => [n.id, n.gpus.length, n.cpus])).toEqual([['node-0', 2, Infinity], ['node-1', 1, 3]]);
    expect(c.totalResources()).toMatchObject({ GPU: 3, CPU: Infinity, gpuMemoryBytes: 4 * GiB });
    expect(c.availableResources()).toEqual(c.totalResources());
    expect(c.gpu(c.gpus[2].uuid)).toBe(c.gpus[2]);
    expect(c.gpu('GPU-00000000-0000-4000-8000-000000000000')).toBeUndefined();
  });

  it('is deterministic with a seed and unique without one', () => {
    const a = Cluster.create({ gpus: 4, gpuMemoryBytes: GiB, seed: 42 }).gpus.map((g) => g.uuid);
    const b = Cluster.create({ gpus: 4, gpuMemoryBytes: GiB, seed: 42 }).gpus.map((g) => g.uuid);
    const c = Cluster.create({ gpus: 4, gpuMemoryBytes: GiB, seed: 43 }).gpus.map((g) => g.uuid);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    const r1 = Cluster.create({ gpus: 4, gpuMemoryBytes: GiB }).gpus.map((g) => g.uuid);
    const r2 = Cluster.create({ gpus: 4, gpuMemoryBytes: GiB }).gpus.map((g) => g.uuid);
    expect(new Set([...r1, ...r2]).size).toBe(8);
  });

  it('refuses malformed specs with InvalidInputError', () => {
    expect(() => Cluster.create({ gpus: 1.5, gpuMemoryBytes: GiB })).toThrow(InvalidInputError);
    expect(() => Cluster.create({ gpus: 2, gpuMemoryBytes: 0 })).toThrow(/gpuMemoryBytes/);
    expect(() => Cluster.create({ nodes: [] })).toThrow(/at least one node/);
    expect(() => Cluster.create({ nodes: [{ gpus: 1, gpuMemoryBytes: GiB, cpus: -1 }] })).toThrow(/cpus/);
  });
});

describe('placement strategies', () => {
  it('STRICT_PACK puts every bundle on one node, the next group on the next node', () => {
    const c = threeNodes();
    const a = c.placementGroup([{ GPU: 1 }, { GPU: 1 }], { strategy: 'STRICT_PACK' });
    const b = c.placementGroup([{ GPU: 1, CPU: 2 }, { GPU: 1, CPU: 2 }], { strategy: 'STRICT_PACK' });
    expect(a.state).toBe('created');
    expect(layout(a)).toEqual([['node-0', [0]], ['node-0', [1]]]);
    expect(layout(b)).toEqual([['node-1', [2]], ['node-1', [3]]]);
    // Node 2 has 2 GPUs but node 0 and 1 have CPUs left: a STRICT_PACK of 2 GPUs + 6 CPUs fits nowhere now and
    // never could (4 CPUs per node): infeasible, not pending.
    expect(() => c.placementGroup([{ GPU: 1, CPU: 3 }, { GPU: 1, CPU: 3 }], { strategy: 'STRICT_PACK' }))
      .toThrow(/STRICT_PACK puts all 2 bundles on one node, which needs \{GPU: 2, CPU: 6\}/);
  });

  it('PACK uses one node when it can, otherwise as few nodes as possible', () => {
    const c = threeNodes();
    expect(layout(c.placementGroup([{ GPU: 0.5 }, { GPU: 0.5 }, { GPU: 0.5 }, { GPU: 0.5 }]))).toEqual([
      ['node-0', [0]], ['node-0', [0]], ['node-0', [1]], ['node-0', [1]],
    ]);
    // Nodes 1 and 2 are free; 3 whole GPUs cannot share one node, so PACK spans two, filling node 1 first.
    expect(layout(c.placementGroup([{ GPU: 1 }, { GPU: 1 }, { GPU: 1 }], { strategy: 'PACK' }))).toEqual([
      ['node-1', [2]], ['node-1', [3]], ['node-2', [4]],
    ]);
  });

  it('SPREAD uses distinct nodes while it can, then shares', () => {
    const c = threeNodes();
    expect(layout(c.placementGroup([{ GPU: 1 }, { GPU: 1 }, { GPU: 1 }, { GPU: 1 }], { strategy: 'SPREAD' }))).toEqual([
      ['node-0', [0]], ['node-1', [2]], ['node-2', [4]], ['node-0', [1]],
    ]);
  });

  it('STRICT_SPREAD puts each bundle on its own node, matching exactly on uneven nodes', () => {
    const c = threeNodes();
    expect(layout(c.placementGroup([{ CPU: 1 }, { CPU: 1 }, { CPU: 1 }], { strategy: 'STRICT_SPREAD' })).map(([n]) => n))
      .toEqual(['node-0', 'node-1', 'node-2']);
    expect(() => c.placementGroup([{ CPU: 1 }, { CPU: 1 }, { CPU: 1 }, { CPU: 1 }], { strategy: 'STRICT_SPREAD' }))
      .toThrow(/STRICT_SPREAD puts every bundle on its own node: 4 bundles but the cluster has 3 nodes/);
    // Node 0 has 2 GPUs, node 1 one: bundle 0 {GPU: 1} must go to node 1 so bundle 1 {GPU: 2} can have node 0.
    const uneven = Cluster.create({ nodes: [{ gpus: 2, gpuMemoryBytes: GiB }, { gpus: 1, gpuMemoryBytes: GiB }] });
    expect(layout(uneven.placementGroup([{ GPU: 1 }, { GPU: 2 }], { strategy: 'STRICT_SPREAD' }))).toEqual([
      ['node-1', [2]], ['node-0', [0, 1]],
    ]);
  });

  it('reserves bundles out of availableResources and gives them back exactly on remove()', () => {
    const c = threeNodes();
    const total = c.totalResources();
    const pg = c.placementGroup([{ GPU: 1, CPU: 1 }, { GPU: 0.25, CPU: 0.5 }], { strategy: 'STRICT_PACK' });
    const avail = c.availableResources();
    expect(avail.GPU).toBeCloseTo(6 - 1.25, 10);
    expect(avail.CPU).toBeCloseTo(12 - 1.5, 10);
    expect(avail.gpus[0]).toMatchObject({ fraction: 0, memoryBytes: 0 });
    expect(avail.gpus[1]).toMatchObject({ fraction: 0.75, memoryBytes: GiB - Math.floor(0.25 * GiB) });
    expect(pg.bundleGpus(1)).toEqual([{ uuid: c.gpus[1].uuid, index: 1, nodeId: 'node-0', fraction: 0.25, memoryBytes: Math.floor(0.25 * GiB) }]);
    expect(c.totalResources()).toEqual(total);
    pg.remove();
    expect(pg.state).toBe('removed');
    expect(pg.bundles).toEqual([]);
    expect(c.availableResources()).toEqual(total);
    pg.remove(); // idempotent
    expect(c.availableResources()).toEqual(total);
  });

  it('places groups atomically: one that does not fit whole reserves nothing', () => {
    const c = Cluster.create({ gpus: 2, gpuMemoryBytes: GiB });
    c.placementGroup([{ GPU: 1 }]);
    const before = c.availableResources();
    const pg = c.placementGroup([{ GPU: 1 }, { GPU: 1 }]);
    expect(pg.state).toBe('pending');
    expect(c.availableResources()).toEqual(before);
    expect(() => pg.bundleGpus(0)).toThrow(/pending/);
  });

  it('names groups uniquely among live ones', () => {
    const c = threeNodes();
    const pg = c.placementGroup([{ GPU: 1 }], { name: 'train' });
    expect(c.getPlacementGroup('train')).toBe(pg);
    expect(() => c.placementGroup([{ GPU: 1 }], { name: 'train' })).toThrow(/already named "train"/);
    pg.remove();
    expect(c.getPlacementGroup('train')).toBeUndefined();
    expect(c.placementGroup([{ GPU: 1 }], { name: 'train' }).state).toBe('created');
  });
});

describe('pending groups', () => {
  it('stay pending while resources are short and are placed when a group is removed', async () => {
    const c = Cluster.create({ gpus: 4, gpuMemoryBytes: GiB });
    const first = c.placementGroup([{ GPU: 1 }, { GPU: 1 }, { GPU: 1 }, { GPU: 1 }]);
    await first.ready();
    const second = c.placementGroup([{ GPU: 1 }, { GPU: 1 }], { strategy: 'STRICT_PACK' });
    expect(second.state).toBe('pending');
    expect(await settled(second.ready())).toBe(false);
    expect(c.pendingCounts()).toEqual({ placementGroups: 1, actors: 0 });
    first.remove();
    expect(second.state).toBe('created');
    await second.ready();
    expect(layout(second)).toEqual([['node-0', [0]], ['node-0', [1]]]);
    expect(c.pendingCounts()).toEqual({ placementGroups: 0, actors: 0 });
  });

  it('a pending STRICT_SPREAD group is placed once each node has room', async () => {
    const c = Cluster.create({ nodes: [{ gpus: 1, gpuMemoryBytes: GiB }, { gpus: 1, gpuMemoryBytes: GiB }] });
    const blocker = c.placementGroup([{ GPU: 1 }]);
    const spread = c.placementGroup([{ GPU: 0.5 }, { GPU: 0.5 }], { strategy: 'STRICT_SPREAD' });
    expect(spread.state).toBe('pending');
    blocker.remove();
    await spread.ready();
    expect(layout(spread)).toEqual([['node-0', [0]], ['node-1', [1]]]);
  });

  it('a later group that fits is not held up by an earlier one that does not', () => {
    const c = Cluster.create({ gpus: 2, gpuMemoryBytes: GiB });
    const a = c.placementGroup([{ GPU: 1 }]);
    const big = c.placementGroup([{ GPU: 2 }]);
    const small = c.placementGroup([{ GPU: 1 }]);
    expect([a.state, big.state, small.state]).toEqual(['created', 'pending', 'created']);
    a.remove();
    expect(big.state).toBe('pending');
    small.remove();
    expect(big.state).toBe('created');
  });

  it('removing a pending group rejects ready() with PlacementError', async () => {
    const c = Cluster.create({ gpus: 1, gpuMemoryBytes: GiB });
    c.placementGroup([{ GPU: 1 }]);
    const pg = c.placementGroup([{ GPU: 1 }]);
    pg.remove();
    await expect(pg.ready()).rejects.toThrow(PlacementError);
    await expect(pg.ready()).rejects.toThrow(/removed before it was placed/);
    expect(c.pendingCounts().placementGroups).toBe(0);
  });
});

describe('infeasible and malformed groups fail at once', () => {
  it('a bundle larger than every node', () => {
    const c = threeNodes();
    let err: unknown;
    try {
      c.placementGroup([{ GPU: 1 }, { GPU: 3 }], { name: 'big' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InfeasibleResourceError);
    expect((err as InfeasibleResourceError).code).toBe('infeasible_resource');
    expect(String((err as Error).message)).toMatch(/placement group "big" \(PACK, 2 bundles\) can never be placed: bundle 1 \{GPU: 3\} does not fit on any node/);
    expect(() => c.placementGroup([{ CPU: 5 }])).toThrow(/bundle 0 \{GPU: 0, CPU: 5\} does not fit on any node/);
    expect(c.placementGroups()).toEqual([]);
  });

  it('more in total than the cluster has (PACK / SPREAD), even though each bundle fits', () => {
    const c = Cluster.create({ gpus: 4, gpuMemoryBytes: GiB });
    expect(() => c.placementGroup(Array.from({ length: 5 }, () => ({ GPU: 1 })), { strategy: 'SPREAD' }))
      .toThrow(/ask for GPU 5 in total but the cluster has 4/);
    expect(() => c.placementGroup([{ GPU: 0.6 }, { GPU: 0.6 }], { strategy: 'STRICT_PACK' })).not.toThrow();
    expect(() => Cluster.create({ gpus: 1, gpuMemoryBytes: GiB }).placementGroup([{ GPU: 0.6 }, { GPU: 0.6 }]))
      .toThrow(InfeasibleResourceError);
  });

  it('malformed bundles and strategies are PlacementErrors naming the problem', () => {
    const c = threeNodes();
    expect(() => c.placementGroup([])).toThrow(/at least one bundle/);
    expect(() => c.placementGroup([{ GPU: 1.5 }])).toThrow(/GPU counts above 1 must be whole numbers/);
    expect(() => c.placementGroup([{ GPU: -1 }])).toThrow(/bundle 0: GPU must be a finite number >= 0/);
    expect(() => c.placementGroup([{ GPU: 1 }, {}])).toThrow(/bundle 1 asks for nothing/);
    expect(() => c.placementGroup([{ GPU: 1, CPU: 0 }, { TPU: 1 } as never])).toThrow(/bundle 1 asks for "TPU"/);
    expect(() => c.placementGroup([{ GPU: 0.00001 }])).toThrow(/precision of 1e-4/);
    expect(() => c.placementGroup([{ GPU: 1 }], { strategy: 'BEST' as never })).toThrow(PlacementError);
  });
});
