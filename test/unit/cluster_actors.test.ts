// Cluster actors: fractional GPUs (1e-4, Ray's best-fit packing), memory budgets, the colocate layout, bundle
// indices, captureChildTasks, kills on group removal, pending actors.
import { describe, expect, it } from 'vitest';
import { Cluster, type ActorPlacement, type KillReason } from '../../src/cluster/index.ts';
import { InfeasibleResourceError, PlacementError } from '../../src/errors.ts';

const GiB = 1024 ** 3;

/** Cluster GPU index of each actor's (single) GPU. */
const gpuIndex = (a: ActorPlacement) => a.gpus.map((g) => g.index);

async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  await new Promise((r) => setTimeout(r, 0));
  return done;
}

describe('fractional GPUs', () => {
  it('keeps 1e-4 precision: three actors at 1/3 share one GPU, 0.4 + 0.6 fill it exactly', async () => {
    const c = Cluster.create({ gpus: 2, gpuMemoryBytes: GiB });
    const thirds = await Promise.all([0, 1, 2].map(() => c.scheduleActor({ numGpus: 1 / 3 })));
    expect(thirds.map((a) => a.gpus[0].fraction)).toEqual([0.3333, 0.3333, 0.3333]);
    expect(thirds.map(gpuIndex)).toEqual([[0], [0], [0]]);
    expect(c.availableResources().gpus[0].fraction).toBeCloseTo(0.0001, 12);
    const a = await c.scheduleActor({ numGpus: 0.4 });
    const b = await c.scheduleActor({ numGpus: 0.6 });
    expect([gpuIndex(a), gpuIndex(b)]).toEqual([[1], [1]]);
    expect(c.availableResources().gpus[1].fraction).toBe(0);
  });

  it('fills a partly used GPU before an empty one (best fit, as Ray\'s NodeResourceInstanceSet)', async () => {
    const c = Cluster.create({ gpus: 4, gpuMemoryBytes: GiB });
    const place = async (numGpus: number) => gpuIndex(await c.scheduleActor({ numGpus }));
    expect(await place(0.4)).toEqual([0]);
    expect(await place(0.4)).toEqual([0]);
    expect(await place(0.4)).toEqual([1]); // GPU 0 has 0.2 left
    expect(await place(0.2)).toEqual([0]); // exactly fills GPU 0
    expect(await place(0.5)).toEqual([1]);
    expect(await place(1)).toEqual([2]); // a whole GPU: the first entirely free one
    // GPU 1 has 0.1 left, GPU 3 is empty. Best fit chooses the tightest GPU that fits, not the first one:
    expect(await place(0.1)).toEqual([1]);
    expect(await place(0.3)).toEqual([3]);
  });

  it('prefers the tighter GPU over the first one with room', async () => {
    const c = Cluster.create({ gpus: 2, gpuMemoryBytes: GiB });
    await c.scheduleActor({ numGpus: 0.5 }); // GPU 0: 0.5 left
    await c.scheduleActor({ numGpus: 0.7 }); // GPU 1: 0.3 left
    const a = await c.scheduleActor({ numGpus: 0.3 });
    expect(gpuIndex(a)).toEqual([1]); // first fit would have taken GPU 0
  });

  it('whole numbers take whole GPUs; fractions above 1 and below 1e-4 are refused', async () => {
    const c = Cluster.create({ gpus: 4, gpuMemoryBytes: GiB });
    await c.scheduleActor({ numGpus: 0.5 });
    const two = await c.scheduleActor({ numGpus: 2 });
    expect(two.gpus.map((g) => [g.index, g.fraction, g.memoryBudgetBytes])).toEqual([[1, 1, GiB], [2, 1, GiB]]);
    expect(() => c.scheduleActor({ numGpus: 1.5 })).toThrow(/GPU counts above 1 must be whole numbers/);
    expect(() => c.scheduleActor({ numGpus: 0.00004 })).toThrow(/precision of 1e-4/);
    expect(() => c.scheduleActor({ numGpus: -0.5 })).toThrow(PlacementError);
    expect(() => c.scheduleActor({ numGpus: 5 })).toThrow(InfeasibleResourceError);
    expect(() => c.scheduleActor({ numGpus: 5, name: 'big' })).toThrow(/actor "big" asks for \{GPU: 5\}, which no node can hold even idle/);
  });

  it('numGpus 0 takes no GPU', async () => {
    const c = Cluster.create({ gpus: 1, gpuMemoryBytes: GiB });
    const a = await c.scheduleActor({ name: 'driver' });
    expect(a.gpus).toEqual([]);
    expect(c.availableResources()).toEqual(c.totalResources());
  });
});

describe('GPU memory budgets', () => {
  it('a share of n GPU gets floor(n x memory); an explicit memoryBytes overrides it', async () => {
    const c = Cluster.create({ gpus: 2, gpuMemoryBytes: GiB });
    const a = await c.scheduleActor({ numGpus: 0.4 });
    expect(a.gpus[0].memoryBudgetBytes).toBe(Math.floor(0.4 * GiB));
    const b = await c.scheduleActor({ numGpus: 0.1, memoryBytes: 100 });
    expect(b.gpus[0]).toMatchObject({ index: 0, fraction: 0.1, memoryBudgetBytes: 100 });
    expect(c.availableResources().gpus[0].memoryBytes).toBe(GiB - Math.floor(0.4 * GiB) - 100);
  });

  it('memory is allocated like the fraction: no GPU is promised more bytes than it has', async () => {
    const c = Cluster.create({ gpus: 2, gpuMemoryBytes: 1000 });
    const greedy = await c.scheduleActor({ numGpus: 0.1, memoryBytes: 900 });
    expect(gpuIndex(greedy)).toEqual([0]);
    // GPU 0 has 0.9 of its fraction free but only 100 bytes: a 0.5 share (500 bytes) goes to GPU 1.
    expect(gpuIndex(await c.scheduleActor({ numGpus: 0.5 }))).toEqual([1]);
    expect(c.availableResources().gpus[0]).toMatchObject({ fraction: 0.9, memoryBytes: 100 });
    expect(() => c.scheduleActor({ numGpus: 0.5, memoryBytes: 1001 })).toThrow(InfeasibleResourceError);
    expect(() => c.scheduleActor({ memoryBytes: 10 })).toThrow(/memoryBytes is a GPU memory budget, but the actor asks for no GPU/);
  });
});

describe('the colocate layout (vLLM rlhf_colocate)', () => {
  it('trainers 0-1 share their GPUs with engine 0\'s ranks, trainers 2-3 with engine 1\'s', async () => {
    const c = Cluster.create({ gpus: 4, gpuMemoryBytes: GiB, seed: 'colocate' });
    const pg = c.placementGroup([{ GPU: 1, CPU: 0 }, { GPU: 1, CPU: 0 }, { GPU: 1, CPU: 0 }, { GPU: 1, CPU: 0 }]);
    await pg.ready();
    const trainers = await Promise.all([0, 1, 2, 3].map((i) =>
      c.scheduleActor({ name: `trainer-${i}`, numGpus: 0.4, placementGroup: pg, bundleIndex: i, captureChildTasks: true })));
    // An engine: a driver actor with no GPU that captures its rank workers into the group; ranks at 0.4 on the
    // bundles listed for it (VLLM_RAY_BUNDLE_INDICES).
    const engine = async (e: number, bundles: number[]) => {
      const driver = await c.scheduleActor({ name: `engine-${e}`, placementGroup: pg, captureChildTasks: true });
      return Promise.all(bundles.map((b, rank) => driver.scheduleChild({ name: `engine-${e}-rank-${rank}`, numGpus: 0.4, bundleIndex: b })));
    };
    const engine0 = await engine(0, [0, 1]);
    const engine1 = await engine(1, [2, 3]);

    const uuid = (a: ActorPlacement) => a.gpus[0].uuid;
    const trainerIds = trainers.map(uuid);
    expect(trainerIds).toEqual(c.gpus.map((g) => g.uuid));
    expect(engine0.map(uuid)).toEqual(trainerIds.slice(0, 2));
    expect(engine1.map(uuid)).toEqual(trainerIds.slice(2, 4));
    for (const r of [...engine0, ...engine1]) expect(r.placementGroup).toBe(pg);
    expect(c.actorsOnGpu(trainerIds[0]).map((a) => a.name)).toEqual(['trainer-0', 'engine-0-rank-0']);
    expect(c.actorsOnGpu(trainerIds[3]).map((a) => a.name)).toEqual(['trainer-3', 'engine-1-rank-1']);
    expect(c.actorsOnGpu(trainerIds[1]).map((a) => a.name)).not.toContain('engine-1-rank-0');
    // Each bundle has 0.2 of its GPU left; the group holds all 4 GPUs, so nothing is free outside it.
    for (const b of pg.availableResources()) expect(b.GPU).toBeCloseTo(0.2, 12);
    expect(c.availableResources().GPU).toBe(0);
    expect(engine0[0].gpus[0].memoryBudgetBytes).toBe(Math.floor(0.4 * GiB));
  });
});

describe('bundle indices', () => {
  it('an index out of range (or not an integer, or without a group) is a PlacementError', () => {
    const c = Cluster.create({ gpus: 4, gpuMemoryBytes: GiB });
    const pg = c.placementGroup([{ GPU: 1 }, { GPU: 1 }, { GPU: 1 }, { GPU: 1 }], { name: 'train' });
    expect(() => c.scheduleActor({ numGpus: 0.4, placementGroup: pg, bundleIndex: 4 }))
      .toThrow(/bundleIndex 4 is out of range: placement group pg-1 \("train"\) has 4 bundles \(0\.\.3, or -1 for any\)/);
    expect(() => c.scheduleActor({ numGpus: 0.4, placementGroup: pg, bundleIndex: -2 })).toThrow(PlacementError);
    expect(() => c.scheduleActor({ numGpus: 0.4, placementGroup: pg, bundleIndex: 0.5 })).toThrow(PlacementError);
    expect(() => c.scheduleActor({ numGpus: 0.4, bundleIndex: 1 })).toThrow(/bundleIndex 1 needs a placementGroup/);
    expect(() => pg.bundleGpus(7)).toThrow(/out of range/);
  });

  it('-1 or absent takes the first bundle with room', async () => {
    const c = Cluster.create({ gpus: 2, gpuMemoryBytes: GiB });
    const pg = c.placementGroup([{ GPU: 0.5 }, { GPU: 1 }]);
    const a = await c.scheduleActor({ numGpus: 0.5, placementGroup: pg });
    const b = await c.scheduleActor({ numGpus: 0.5, placementGroup: pg, bundleIndex: -1 });
    const d = await c.scheduleActor({ numGpus: 0.5, placementGroup: pg });
    expect([a.bundleIndex, b.bundleIndex, d.bundleIndex]).toEqual([0, 1, 1]);
    expect(c.scheduleActor({ numGpus: 0.1, placementGroup: pg }) instanceof Promise).toBe(true); // pending, not an error
  });

  it('asking a bundle for more than it holds fails at once (Ray would wait forever)', () => {
    const c = Cluster.create({ gpus: 2, gpuMemoryBytes: GiB });
    const pg = c.placementGroup([{ GPU: 0.4 }, { GPU: 1, CPU: 0 }]);
    expect(() => c.scheduleActor({ numGpus: 0.5, placementGroup: pg, bundleIndex: 0 }))
      .toThrow(/asks for \{GPU: 0\.5\}, more than bundle 0 of placement group pg-1 \(\{"GPU":0\.4\}\) can ever hold/);
    expect(() => c.scheduleActor({ name: 'cpu', numGpus: 0.4, numCpus: 1, placementGroup: pg }))
      .toThrow(/actor "cpu" asks for \{GPU: 0\.4, CPU: 1\}, more than any bundle of placement group pg-1/);
    expect(() => c.scheduleActor({ numGpus: 1, placementGroup: pg, bundleIndex: 1, memoryBytes: GiB + 1 }))
      .toThrow(InfeasibleResourceError);
  });
});

describe('kills, releases and pending actors', () => {
  it('remove() kills the group\'s actors (onKill), rejects its pending actors and returns everything', async () => {
    const c = Cluster.create({ gpus: 2, gpuMemoryBytes: GiB });
    const total = c.availableResources();
    const pg = c.placementGroup([{ GPU: 1 }, { GPU: 1 }]);
    const actors = await Promise.all([0, 1].map((b) => c.scheduleActor({ numGpus: 0.6, placementGroup: pg, bundleIndex: b })));
    const outside = await c.scheduleActor({ numGpus: 0 });
    const reasons: [string, KillReason][] = [];
    const freeSeenInCallback: number[] = [];
    for (const a of actors) {
      a.onKill((r) => {
        reasons.push([a.actorId, r]);
        freeSeenInCallback.push(c.availableResources().GPU);
      });
    }
    const pending = c.scheduleActor({ numGpus: 0.6, placementGroup: pg, bundleIndex: 0 });
    expect(await settled(pending)).toBe(false);
    pg.remove();
    expect(reasons).toEqual(actors.map((a) => [a.actorId, { kind: 'placement_group_removed', placementGroupId: pg.id }]));
    expect(freeSeenInCallback).toEqual([2, 2]); // callbacks run after the resources are back
    expect(actors.map((a) => a.state)).toEqual(['killed', 'killed']);
    await expect(pending).rejects.toThrow(/placement group pg-1 was removed before the actor was placed/);
    expect(outside.alive).toBe(true);
    expect(c.actors()).toEqual([outside]);
    expect(c.availableResources()).toEqual(total);
    expect(() => c.scheduleActor({ numGpus: 0.1, placementGroup: pg })).toThrow(/placement group pg-1 is removed/);
  });

  it('a pending actor is placed when another releases; release() runs no kill callback', async () => {
    const c = Cluster.create({ gpus: 1, gpuMemoryBytes: GiB });
    const a = await c.scheduleActor({ numGpus: 0.7 });
    let killed = false;
    a.onKill(() => { killed = true; });
    const waiting = c.scheduleActor({ name: 'w', numGpus: 0.5 });
    expect(await settled(waiting)).toBe(false);
    expect(c.pendingCounts()).toEqual({ placementGroups: 0, actors: 1 });
    a.release();
    expect(a.state).toBe('released');
    expect(killed).toBe(false);
    const w = await waiting;
    expect(w.gpus[0].fraction).toBe(0.5);
    a.release(); // idempotent: must not give the share back twice
    expect(c.availableResources().gpus[0].fraction).toBe(0.5);
  });

  it('an actor waits for its pending group and is placed with it', async () => {
    const c = Cluster.create({ gpus: 1, gpuMemoryBytes: GiB });
    const blocker = c.placementGroup([{ GPU: 1 }]);
    const pg = c.placementGroup([{ GPU: 1 }]);
    const actor = c.scheduleActor({ numGpus: 0.4, placementGroup: pg, bundleIndex: 0 });
    expect(await settled(actor)).toBe(false);
    blocker.remove();
    expect((await actor).placementGroup).toBe(pg);
  });

  it('an AbortSignal cancels a pending request', async () => {
    const c = Cluster.create({ gpus: 1, gpuMemoryBytes: GiB });
    await c.scheduleActor({ numGpus: 1 });
    const ctl = new AbortController();
    const p = c.scheduleActor({ numGpus: 0.5, signal: ctl.signal });
    ctl.abort();
    await expect(p).rejects.toThrow(/cancelled while pending/);
    expect(c.pendingCounts().actors).toBe(0);
  });

  it('kill() runs the callbacks with reason "killed"', async () => {
    const c = Cluster.create({ gpus: 1, gpuMemoryBytes: GiB });
    const a = await c.scheduleActor({ numGpus: 1 });
    const seen: KillReason[] = [];
    a.onKill((r) => seen.push(r));
    a.kill('worker terminated');
    expect(seen).toEqual([{ kind: 'killed', message: 'worker terminated' }]);
    expect(c.availableResources().GPU).toBe(1);
  });
});

describe('captureChildTasks and ownership', () => {
  it('children of a capturing actor land in its group (any bundle); others do not', async () => {
    const c = Cluster.create({ gpus: 3, gpuMemoryBytes: GiB });
    const pg = c.placementGroup([{ GPU: 1 }, { GPU: 1 }]);
    const capturing = await c.scheduleActor({ numGpus: 0.5, placementGroup: pg, bundleIndex: 1, captureChildTasks: true });
    const plain = await c.scheduleActor({ numGpus: 0.5, placementGroup: pg, bundleIndex: 0 });
    const child = await capturing.scheduleChild({ numGpus: 0.5 });
    expect(child.placementGroup).toBe(pg);
    expect(child.captureChildTasks).toBe(true); // inherited: grandchildren are captured too
    expect(child.bundleIndex).toBe(0); // any bundle: the first with room
    const grandchild = await child.scheduleChild({ numGpus: 0.5 });
    expect([grandchild.placementGroup, grandchild.bundleIndex]).toEqual([pg, 1]);
    const notCaptured = await plain.scheduleChild({ numGpus: 0.5 });
    expect([notCaptured.placementGroup, gpuIndex(notCaptured)]).toEqual([null, [2]]);
    const optedOut = await capturing.scheduleChild({ numGpus: 0.5, placementGroup: null });
    expect([optedOut.placementGroup, gpuIndex(optedOut)]).toEqual([null, [2]]);
  });

  it('children die with their owner (reason owner_exited), transitively, and their resources come back', async () => {
    const c = Cluster.create({ gpus: 2, gpuMemoryBytes: GiB });
    const pg = c.placementGroup([{ GPU: 1 }]);
    const parent = await c.scheduleActor({ numGpus: 0.2, placementGroup: pg, captureChildTasks: true });
    const child = await parent.scheduleChild({ numGpus: 0.2 });
    const grandchild = await child.scheduleChild({ numGpus: 0.2, placementGroup: null });
    const reasons: KillReason[] = [];
    child.onKill((r) => reasons.push(r));
    grandchild.onKill((r) => reasons.push(r));
    const pendingChild = parent.scheduleChild({ numGpus: 0.9 });
    parent.release();
    expect(reasons).toEqual([
      { kind: 'owner_exited', ownerActorId: parent.actorId },
      { kind: 'owner_exited', ownerActorId: child.actorId },
    ]);
    await expect(pendingChild).rejects.toThrow(/owner .* exited before the actor was placed/);
    expect(c.actors()).toEqual([]);
    expect(pg.availableResources()[0].GPU).toBe(1);
    expect(c.availableResources().GPU).toBe(1); // the grandchild's 0.2 outside the group came back too
    expect(() => parent.scheduleChild({ numGpus: 0.1 })).toThrow(/not a live actor/);
  });
});
