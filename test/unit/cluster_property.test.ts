// Property: any sequence of group creations/removals and actor schedules/releases/kills on any cluster never
// over-commits a GPU (fractions <= 1 + 1e-4, memory budgets <= the GPU's memory), keeps the books balanced
// (free + held = total, exactly), and returns everything once all is released, with no request left hanging.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Cluster, PLACEMENT_STRATEGIES, type ActorPlacement, type NodeSpec } from '../../src/cluster/index.ts';
import { InfeasibleResourceError, PlacementError } from '../../src/errors.ts';

type Op =
  | { t: 'group'; bundles: { GPU: number; CPU: number }[]; strategy: (typeof PLACEMENT_STRATEGIES)[number] }
  | { t: 'removeGroup'; i: number }
  | { t: 'actor'; numGpus: number; numCpus: number; memory?: number; group?: number; bundleIndex: number; parent?: number; capture: boolean }
  | { t: 'release'; i: number; kill: boolean };

const nodeArb: fc.Arbitrary<NodeSpec> = fc.record({
  gpus: fc.integer({ min: 0, max: 3 }),
  gpuMemoryBytes: fc.integer({ min: 500, max: 2000 }),
  cpus: fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }),
});

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({
    t: fc.constant('group' as const),
    bundles: fc.array(fc.record({ GPU: fc.constantFrom(0.1, 0.25, 0.4, 0.5, 1, 2), CPU: fc.constantFrom(0, 0, 1, 2) }), { minLength: 1, maxLength: 4 }),
    strategy: fc.constantFrom(...PLACEMENT_STRATEGIES),
  }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('removeGroup' as const), i: fc.nat() }) },
  { weight: 6, arbitrary: fc.record({
    t: fc.constant('actor' as const),
    numGpus: fc.constantFrom(0, 0.0001, 0.1, 0.25, 1 / 3, 0.4, 0.5, 0.6, 0.75, 1, 2),
    numCpus: fc.constantFrom(0, 0, 1),
    memory: fc.option(fc.integer({ min: 0, max: 1200 }), { nil: undefined, freq: 2 }),
    group: fc.option(fc.nat(), { nil: undefined, freq: 3 }),
    bundleIndex: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 3 })),
    parent: fc.option(fc.nat(), { nil: undefined }),
    capture: fc.boolean(),
  }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('release' as const), i: fc.nat(), kill: fc.boolean() }) },
);

const EPS = 1e-9;

function apply(c: Cluster, op: Op, requests: { settled: boolean }[]): void {
  const groups = c.placementGroups();
  const actors = c.actors();
  try {
    switch (op.t) {
      case 'group':
        c.placementGroup(op.bundles, { strategy: op.strategy });
        break;
      case 'removeGroup':
        if (groups.length) groups[op.i % groups.length].remove();
        break;
      case 'actor': {
        const pg = op.group !== undefined && groups.length ? groups[op.group % groups.length] : undefined;
        const parent = op.parent !== undefined && actors.length ? actors[op.parent % actors.length] : undefined;
        const needsGpu = op.numGpus > 0;
        const p = c.scheduleActor({
          numGpus: op.numGpus, numCpus: op.numCpus, memoryBytes: needsGpu ? op.memory : undefined,
          placementGroup: pg, bundleIndex: pg ? op.bundleIndex : undefined, parent, captureChildTasks: op.capture,
        });
        const tracked = { settled: false };
        requests.push(tracked);
        p.then(() => { tracked.settled = true; }, () => { tracked.settled = true; });
        break;
      }
      case 'release':
        if (actors.length) {
          const a = actors[op.i % actors.length];
          if (op.kill) a.kill();
          else a.release();
        }
        break;
    }
  } catch (e) {
    // Refusals are part of the contract; anything else is a bug.
    if (!(e instanceof PlacementError || e instanceof InfeasibleResourceError)) throw e;
  }
}

/** The books balance and nothing is over-committed, computed from the public views only. */
function checkInvariants(c: Cluster): void {
  const total = c.totalResources();
  const avail = c.availableResources();
  const actors = c.actors();
  const groups = c.placementGroups().filter((g) => g.state === 'created');
  const onGpu = (list: readonly ActorPlacement[], uuid: string) =>
    list.flatMap((a) => a.gpus.filter((g) => g.uuid === uuid));
  const outside = actors.filter((a) => a.placementGroup === null);

  c.gpus.forEach((gpu, k) => {
    const free = avail.gpus[k];
    expect(free.uuid).toBe(gpu.uuid);
    expect(free.fraction).toBeGreaterThanOrEqual(0);
    expect(free.memoryBytes).toBeGreaterThanOrEqual(0);
    const held = onGpu(outside, gpu.uuid);
    const reserved = groups.flatMap((g) => g.bundles.flatMap((b) => b.gpus.filter((s) => s.uuid === gpu.uuid)));
    const units = free.fraction + held.reduce((s, x) => s + x.fraction, 0) + reserved.reduce((s, x) => s + x.fraction, 0);
    expect(Math.abs(units - 1)).toBeLessThan(EPS);
    const bytes = free.memoryBytes + held.reduce((s, x) => s + x.memoryBudgetBytes, 0) + reserved.reduce((s, x) => s + x.memoryBytes, 0);
    expect(bytes).toBe(gpu.memoryBytes);
    // Physically: everyone on the GPU, in groups or not, fits in it.
    const all = onGpu(actors, gpu.uuid);
    expect(all.reduce((s, x) => s + x.fraction, 0)).toBeLessThanOrEqual(1 + 1e-4);
    expect(all.reduce((s, x) => s + x.memoryBudgetBytes, 0)).toBeLessThanOrEqual(gpu.memoryBytes);
  });

  for (const g of groups) {
    const free = g.availableResources();
    g.bundles.forEach((bundle, b) => {
      const inBundle = actors.filter((a) => a.placementGroup === g && a.bundleIndex === b);
      for (const a of inBundle) for (const x of a.gpus) expect(bundle.gpus.map((s) => s.uuid)).toContain(x.uuid);
      bundle.gpus.forEach((share, j) => {
        const used = onGpu(inBundle, share.uuid);
        expect(Math.abs(free[b].gpus[j].fraction + used.reduce((s, x) => s + x.fraction, 0) - share.fraction)).toBeLessThan(EPS);
        expect(free[b].gpus[j].memoryBytes + used.reduce((s, x) => s + x.memoryBudgetBytes, 0)).toBe(share.memoryBytes);
        expect(free[b].gpus[j].fraction).toBeGreaterThanOrEqual(0);
      });
      expect(Math.abs(free[b].CPU + inBundle.reduce((s, a) => s + a.numCpus, 0) - bundle.cpus)).toBeLessThan(EPS);
    });
  }

  if (Number.isFinite(total.CPU)) {
    const cpus = avail.CPU + outside.reduce((s, a) => s + a.numCpus, 0) +
      groups.reduce((s, g) => s + g.bundles.reduce((t, b) => t + b.cpus, 0), 0);
    expect(Math.abs(cpus - total.CPU)).toBeLessThan(EPS);
    expect(avail.CPU).toBeGreaterThanOrEqual(0);
  }
}

describe('cluster property', () => {
  it('never over-commits a GPU and returns resources exactly', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(nodeArb, { minLength: 1, maxLength: 3 }), fc.array(opArb, { maxLength: 40 }), async (nodes, ops) => {
        const c = Cluster.create({ nodes, seed: 1 });
        const requests: { settled: boolean }[] = [];
        for (const op of ops) {
          apply(c, op, requests);
          checkInvariants(c);
        }
        // Tear everything down, repeatedly: what was pending gets placed as room appears, then goes too.
        for (let round = 0; round < 1000; round++) {
          for (const g of c.placementGroups()) g.remove();
          for (const a of c.actors()) a.release();
          checkInvariants(c);
          const pending = c.pendingCounts();
          if (c.actors().length === 0 && c.placementGroups().length === 0 && pending.actors === 0 && pending.placementGroups === 0) break;
        }
        expect(c.actors()).toEqual([]);
        expect(c.placementGroups()).toEqual([]);
        expect(c.pendingCounts()).toEqual({ placementGroups: 0, actors: 0 });
        expect(c.availableResources()).toEqual(c.totalResources());
        await new Promise((r) => setTimeout(r, 0));
        expect(requests.every((r) => r.settled)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
