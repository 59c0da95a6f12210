/**
 * A placement group: bundles of resources reserved together (gang scheduling) by Cluster.placementGroup().
 * The cluster decides and commits placement; this class holds the result and the ready() promise.
 */
import { PlacementError } from '../errors.ts';
import type { ActorPlacement } from './actor.ts';
import type { ActorRequest } from './cluster.ts';
import type { Demand, Grant, ResourcePool } from './resources.ts';
import { fromUnits } from './resources.ts';
import type { PlacementStrategy } from './strategy.ts';
import type { Bundle, BundlePlacement, GpuShare, ResourceView } from './types.ts';

/** What a placement group needs from its cluster. */
export interface GroupHost {
  removePlacementGroup(pg: PlacementGroup): void;
  actorsOf(pg: PlacementGroup): ActorPlacement[];
  scheduleActor(request: ActorRequest): Promise<ActorPlacement>;
}

export type PlacementGroupState = 'pending' | 'created' | 'removed';

export class PlacementGroup {
  readonly id: string;
  readonly name: string | undefined;
  readonly strategy: PlacementStrategy;
  /** The bundles as asked for (frozen copies). */
  readonly bundleSpecs: readonly Readonly<Bundle>[];
  /** @internal The bundles in units. */
  readonly demands: readonly Demand[];
  /** @internal Each bundle's pool (what its actors allocate from) once created. */
  pools: ResourcePool[] | null = null;
  /** @internal Each bundle's node index once created. */
  nodeIndices: number[] | null = null;
  /** @internal What each bundle took from its node's pool (given back exactly on removal). */
  grants: Grant[] | null = null;
  /** @internal Node ids by node index (for views). */
  readonly nodeIds: readonly string[];

  readonly #host: GroupHost;
  #state: PlacementGroupState = 'pending';
  readonly #ready: Promise<void>;
  #resolve!: () => void;
  #reject!: (e: Error) => void;

  constructor(host: GroupHost, a: { id: string; name?: string; strategy: PlacementStrategy; bundles: readonly Bundle[]; demands: readonly Demand[]; nodeIds: readonly string[] }) {
    this.#host = host;
    this.id = a.id;
    this.name = a.name;
    this.strategy = a.strategy;
    this.bundleSpecs = Object.freeze(a.bundles.map((b) => Object.freeze({ ...b })));
    this.demands = a.demands;
    this.nodeIds = a.nodeIds;
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // ready() may never be called (fire-and-forget groups); a removal while pending must not surface as an
    // unhandled rejection. Callers who await ready() still see the rejection.
    this.#ready.catch(() => {});
  }

  get state(): PlacementGroupState {
    return this.#state;
  }

  get bundleCount(): number {
    return this.bundleSpecs.length;
  }

  /** Resolves once every bundle is reserved; rejects with PlacementError if the group is removed first. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /**
   * Releases the bundles and kills the group's actors (their onKill callbacks run with reason
   * 'placement_group_removed'); a pending group leaves the queue. Idempotent.
   */
  remove(): void {
    this.#host.removePlacementGroup(this);
  }

  /** Where each bundle was reserved; empty while pending or after removal. */
  get bundles(): BundlePlacement[] {
    if (this.#state !== 'created' || !this.pools || !this.nodeIndices) return [];
    return this.pools.map((pool, index) => ({
      index,
      nodeId: this.nodeIds[this.nodeIndices![index]],
      gpus: pool.slots.map((s): GpuShare => ({
        uuid: s.gpu.uuid, index: s.gpu.index, nodeId: s.gpu.nodeId,
        fraction: fromUnits(s.capacityUnits), memoryBytes: s.capacityMemory,
      })),
      cpus: fromUnits(pool.cpuCapacity),
      memoryBytes: pool.hostMemoryCapacity,
    }));
  }

  /** The GPU share(s) bundle `index` holds (throws PlacementError for an index out of range or a group not created). */
  bundleGpus(index: number): GpuShare[] {
    this.checkBundleIndex(index, false);
    if (this.#state !== 'created') {
      throw new PlacementError(`placement group ${this.label} is ${this.#state}: its bundles have no GPUs ${this.#state === 'pending' ? 'yet (await ready())' : 'any more'}`);
    }
    return [...this.bundles[index].gpus];
  }

  /** What each bundle still has free for actors (empty while pending or removed). */
  availableResources(): ResourceView[] {
    if (this.#state !== 'created' || !this.pools) return [];
    return this.pools.map((pool) => ({
      GPU: fromUnits(pool.slots.reduce((s, x) => s + x.freeUnits, 0)),
      CPU: fromUnits(pool.cpuFree),
      memory: pool.hostMemoryFree,
      gpuMemoryBytes: pool.slots.reduce((s, x) => s + x.freeMemory, 0),
      gpus: pool.slots.map((s) => ({ uuid: s.gpu.uuid, index: s.gpu.index, nodeId: s.gpu.nodeId, fraction: fromUnits(s.freeUnits), memoryBytes: s.freeMemory })),
    }));
  }

  /** The group's live actors. */
  actors(): ActorPlacement[] {
    return this.#host.actorsOf(this);
  }

  /** Schedules an actor on this group (shorthand for cluster.scheduleActor({...request, placementGroup: this})). */
  scheduleActor(request: Omit<ActorRequest, 'placementGroup'>): Promise<ActorPlacement> {
    return this.#host.scheduleActor({ ...request, placementGroup: this });
  }

  /** "pg-3" or "pg-3 (\"train\")", for messages. */
  get label(): string {
    return this.name ? `${this.id} ("${this.name}")` : this.id;
  }

  /** @internal Throws PlacementError unless `index` names a bundle (or is -1 = any bundle, where `allowAny`). */
  checkBundleIndex(index: number, allowAny: boolean): void {
    const ok = Number.isInteger(index) && (index >= 0 ? index < this.bundleCount : allowAny && index === -1);
    if (!ok) {
      throw new PlacementError(
        `bundleIndex ${String(index)} is out of range: placement group ${this.label} has ${this.bundleCount} ` +
          `bundle${this.bundleCount === 1 ? '' : 's'} (0..${this.bundleCount - 1}${allowAny ? ', or -1 for any' : ''})`,
      );
    }
  }

  /** @internal The cluster committed the reservation. */
  markCreated(pools: ResourcePool[], nodeIndices: number[], grants: Grant[]): void {
    this.pools = pools;
    this.nodeIndices = nodeIndices;
    this.grants = grants;
    this.#state = 'created';
    this.#resolve();
  }

  /** @internal The cluster released the reservation (or dropped the pending request). */
  markRemoved(): void {
    const wasPending = this.#state === 'pending';
    this.#state = 'removed';
    this.pools = null;
    this.nodeIndices = null;
    this.grants = null;
    if (wasPending) this.#reject(new PlacementError(`placement group ${this.label} was removed before it was placed`));
  }
}
