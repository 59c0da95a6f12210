/**
 * The cluster: virtual GPUs in simulated nodes, placement groups and actor placement with Ray's semantics, and
 * one difference on purpose: a request that can never fit fails at once with InfeasibleResourceError instead of
 * pending forever. See index.ts for the model in prose.
 */
import { InfeasibleResourceError, InvalidInputError, PlacementError } from '../errors.ts';
import { ActorPlacement, type ActorHost } from './actor.ts';
import { gpuUuidSource } from './ids.ts';
import { PlacementGroup, type GroupHost } from './placement_group.ts';
import {
  describeCapacity, describeDemand, fromUnits, ResourcePool, toBytes, toGpuUnits, toUnits, UNITS_PER_WHOLE,
  type Demand, type GpuRef, type Grant,
} from './resources.ts';
import { explainInfeasible, PLACEMENT_STRATEGIES, planBundles, type PlacementStrategy } from './strategy.ts';
import type {
  ActorGpu, Bundle, ClusterNode, ClusterOptions, KillReason, NodeSpec, PlacementGroupOptions, ResourceView, VirtualGpu,
} from './types.ts';

const DEFAULT_GPU_MEMORY_BYTES = 8 * 1024 ** 3;

/** What an actor asks for. Quantities use Ray's names and meanings. */
export interface ActorRequest {
  /** For messages and listings; ids are assigned ("actor-1", ...). */
  name?: string;
  /** GPUs: a fraction of one GPU (0 < n <= 1, precision 1e-4) or a whole number. Default 0. */
  numGpus?: number;
  /** Logical CPUs. Default 0 (so actors fit bundles like {GPU: 1, CPU: 0}, as in vLLM's colocate example). */
  numCpus?: number;
  /** GPU memory budget per GPU in bytes; default floor(fraction x the GPU's memory). Needs numGpus > 0. */
  memoryBytes?: number;
  /** Host memory (Ray's `memory`) in bytes. Default 0. */
  hostMemoryBytes?: number;
  /** Schedule inside this group's bundles. `null` opts out of a parent's captureChildTasks. */
  placementGroup?: PlacementGroup | null;
  /** Bundle to use; -1 or absent: the first bundle with room. */
  bundleIndex?: number;
  /** Children scheduled from this actor (scheduleChild / parent) go into its placement group. Default false. */
  captureChildTasks?: boolean;
  /** The owner: the new actor dies with it, and inherits its group when the owner captures child tasks. */
  parent?: ActorPlacement;
  /** Cancels the request while it is pending (the promise rejects with PlacementError). No effect once placed. */
  signal?: AbortSignal;
}

/** A request after validation and inheritance, in units. */
interface ResolvedRequest {
  readonly name?: string;
  readonly demand: Demand;
  readonly numGpus: number;
  readonly numCpus: number;
  readonly pg: PlacementGroup | null;
  /** -1 = any bundle. */
  readonly bundleIndex: number;
  readonly captureChildTasks: boolean;
  readonly parent: ActorPlacement | null;
}

type PendingItem =
  | { readonly kind: 'group'; readonly pg: PlacementGroup }
  | {
    readonly kind: 'actor';
    readonly request: ResolvedRequest;
    readonly resolve: (actor: ActorPlacement) => void;
    readonly reject: (error: Error) => void;
  };

export class Cluster implements GroupHost, ActorHost {
  readonly nodes: readonly ClusterNode[];
  /** Every virtual GPU, node 0's first. */
  readonly gpus: readonly VirtualGpu[];

  readonly #nodePools: ResourcePool[];
  readonly #groups = new Map<string, PlacementGroup>();
  readonly #actors = new Map<string, ActorPlacement>();
  #pending: PendingItem[] = [];
  #nextGroupId = 1;
  #nextActorId = 1;

  private constructor(nodes: ClusterNode[]) {
    this.nodes = Object.freeze(nodes);
    this.gpus = Object.freeze(nodes.flatMap((n) => n.gpus));
    this.#nodePools = nodes.map((n) => ResourcePool.ofGpus(n.gpus, toUnitsOrInfinite(n.cpus), n.memoryBytes));
  }

  /**
   * A cluster of virtual GPUs: `{gpus: 4, gpuMemoryBytes}` for one node, or `{nodes: [...]}` for several.
   * Throws InvalidInputError for a malformed spec.
   */
  static create(options: ClusterOptions = {}): Cluster {
    const specs: NodeSpec[] = options.nodes ?? [{
      gpus: options.gpus ?? 1,
      gpuMemoryBytes: options.gpuMemoryBytes ?? DEFAULT_GPU_MEMORY_BYTES,
      cpus: options.cpus,
      memoryBytes: options.memoryBytes,
    }];
    if (!Array.isArray(specs) || specs.length === 0) throw new InvalidInputError('a cluster needs at least one node');
    const nextUuid = gpuUuidSource(options.seed);
    let gpuIndex = 0;
    const nodes = specs.map((spec, n): ClusterNode => {
      const where = `cluster node ${n}`;
      if (!Number.isSafeInteger(spec.gpus) || spec.gpus < 0) throw new InvalidInputError(`${where}: gpus must be a whole number >= 0, got ${String(spec.gpus)}`);
      if (!Number.isSafeInteger(spec.gpuMemoryBytes) || spec.gpuMemoryBytes <= 0) {
        throw new InvalidInputError(`${where}: gpuMemoryBytes must be a whole number of bytes > 0, got ${String(spec.gpuMemoryBytes)}`);
      }
      const cpus = spec.cpus ?? Infinity;
      if (cpus !== Infinity && (!Number.isFinite(cpus) || cpus < 0)) throw new InvalidInputError(`${where}: cpus must be a number >= 0, got ${String(cpus)}`);
      const memoryBytes = spec.memoryBytes ?? Infinity;
      if (memoryBytes !== Infinity && (!Number.isSafeInteger(memoryBytes) || memoryBytes < 0)) {
        throw new InvalidInputError(`${where}: memoryBytes must be a whole number of bytes >= 0, got ${String(memoryBytes)}`);
      }
      const nodeId = `node-${n}`;
      const gpus = Array.from({ length: spec.gpus }, (_, localIndex): VirtualGpu => Object.freeze({
        uuid: nextUuid(), index: gpuIndex++, localIndex, nodeId, memoryBytes: spec.gpuMemoryBytes,
      }));
      return Object.freeze({ id: nodeId, index: n, gpus: Object.freeze(gpus), cpus, memoryBytes });
    });
    return new Cluster(nodes);
  }

  /** The virtual GPU with this uuid, if it is one of this cluster's. */
  gpu(uuid: string): VirtualGpu | undefined {
    return this.gpus.find((g) => g.uuid === uuid);
  }

  /** What is free outside every placement-group reservation and actor (as Ray's available_resources). */
  availableResources(): ResourceView {
    return this.#view(false);
  }

  /** Everything the cluster has. */
  totalResources(): ResourceView {
    return this.#view(true);
  }

  // ---------------------------------------------------------------------------------------------- placement groups

  /**
   * Reserves `bundles` with `strategy` (default PACK). Returns at once: the group is created now if it fits,
   * otherwise pending until resources free up (ready() resolves then). Throws PlacementError for malformed bundles
   * and InfeasibleResourceError for a group that could not be placed even on the idle cluster.
   */
  placementGroup(bundles: readonly Bundle[], options: PlacementGroupOptions = {}): PlacementGroup {
    const strategy = options.strategy ?? 'PACK';
    if (!PLACEMENT_STRATEGIES.includes(strategy)) {
      throw new PlacementError(`unknown placement strategy "${String(strategy)}" (expected one of ${PLACEMENT_STRATEGIES.join(', ')})`);
    }
    if (!Array.isArray(bundles) || bundles.length === 0) throw new PlacementError('a placement group needs at least one bundle');
    if (options.name !== undefined && [...this.#groups.values()].some((g) => g.name === options.name)) {
      throw new PlacementError(`a live placement group is already named "${options.name}"`);
    }
    const demands = bundles.map(bundleDemand);
    const idle = this.#idlePools();
    if (!planBundles(idle, demands, strategy)) {
      const name = options.name ? ` "${options.name}"` : '';
      throw new InfeasibleResourceError(
        `placement group${name} (${strategy}, ${bundles.length} bundle${bundles.length === 1 ? '' : 's'}) can never be placed: ` +
          explainInfeasible(idle, demands, strategy),
      );
    }
    const pg = new PlacementGroup(this, {
      id: `pg-${this.#nextGroupId++}`, name: options.name, strategy, bundles, demands, nodeIds: this.nodes.map((n) => n.id),
    });
    this.#groups.set(pg.id, pg);
    if (!this.#tryPlaceGroup(pg)) this.#pending.push({ kind: 'group', pg });
    return pg;
  }

  /** The live (pending or created) group with this name. */
  getPlacementGroup(name: string): PlacementGroup | undefined {
    return [...this.#groups.values()].find((g) => g.name === name);
  }

  /** Live groups, pending ones included, in creation order. */
  placementGroups(): PlacementGroup[] {
    return [...this.#groups.values()];
  }

  /** Same as pg.remove(): kills its actors, returns its bundles, and places what was waiting. Idempotent. */
  removePlacementGroup(pg: PlacementGroup): void {
    if (pg.state === 'removed' || this.#groups.get(pg.id) !== pg) return;
    this.#groups.delete(pg.id);
    const callbacks: (() => void)[] = [];
    if (pg.state === 'created') {
      const reason: KillReason = { kind: 'placement_group_removed', placementGroupId: pg.id };
      const inGroup = this.actorsOf(pg);
      for (const actor of inGroup) this.#endOne(actor, reason, callbacks);
      for (const actor of inGroup) this.#endDescendants(actor, callbacks);
      pg.grants!.forEach((grant, b) => this.#nodePools[pg.nodeIndices![b]].give(grant));
    } else {
      this.#pending = this.#pending.filter((item) => !(item.kind === 'group' && item.pg === pg));
    }
    pg.markRemoved();
    this.#rejectPending((r) => r.pg === pg, `placement group ${pg.label} was removed before the actor was placed`);
    this.#drain();
    runCallbacks(callbacks);
  }

  // ------------------------------------------------------------------------------------------------------ actors

  /**
   * Places an actor. Throws at once (synchronously) with PlacementError for a malformed request (bad quantity,
   * bundleIndex out of range, removed group) and InfeasibleResourceError when the request can never fit (no node,
   * or no bundle of its group, could hold it even idle). Otherwise returns a promise that resolves with the
   * placement now or, when resources are short, once they free up.
   */
  scheduleActor(request: ActorRequest): Promise<ActorPlacement> {
    const resolved = this.#resolveRequest(request);
    this.#checkFeasible(resolved);
    if (request.signal?.aborted) throw new PlacementError(`actor request ${labelOf(resolved)} was cancelled before it was scheduled`);
    const placed = this.#tryPlaceActor(resolved);
    if (placed) return Promise.resolve(placed);
    return new Promise<ActorPlacement>((resolve, reject) => {
      const signal = request.signal;
      const onAbort = () => {
        const before = this.#pending.length;
        this.#pending = this.#pending.filter((i) => i !== item);
        if (this.#pending.length !== before) reject(new PlacementError(`actor request ${labelOf(resolved)} was cancelled while pending`));
      };
      const item: PendingItem = {
        kind: 'actor',
        request: resolved,
        resolve: (a) => { signal?.removeEventListener('abort', onAbort); resolve(a); },
        reject: (e) => { signal?.removeEventListener('abort', onAbort); reject(e); },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.push(item);
    });
  }

  /** The live actor with this id. */
  actor(actorId: string): ActorPlacement | undefined {
    return this.#actors.get(actorId);
  }

  /** Live actors in placement order. */
  actors(): ActorPlacement[] {
    return [...this.#actors.values()];
  }

  /** Live actors of a placement group. */
  actorsOf(pg: PlacementGroup): ActorPlacement[] {
    return this.actors().filter((a) => a.placementGroup === pg);
  }

  /** Live actors with a share of this GPU (the colocation check: who shares a device with whom). */
  actorsOnGpu(uuid: string): ActorPlacement[] {
    return this.actors().filter((a) => a.gpus.some((g) => g.uuid === uuid));
  }

  /** How many requests wait for resources. */
  pendingCounts(): { placementGroups: number; actors: number } {
    const groups = this.#pending.filter((i) => i.kind === 'group').length;
    return { placementGroups: groups, actors: this.#pending.length - groups };
  }

  /**
   * Same as actor.release() (reason null) or actor.kill() (a reason): returns its resources, ends the actors it
   * owns (reason 'owner_exited'), rejects its pending children, places what was waiting, then runs onKill callbacks.
   */
  terminateActor(actor: ActorPlacement, reason: KillReason | null): void {
    if (!actor.alive || this.#actors.get(actor.actorId) !== actor) return;
    const callbacks: (() => void)[] = [];
    this.#endOne(actor, reason, callbacks);
    this.#endDescendants(actor, callbacks);
    this.#drain();
    runCallbacks(callbacks);
  }

  // ---------------------------------------------------------------------------------------------------- internals

  #view(total: boolean): ResourceView {
    const slots = this.#nodePools.flatMap((p) => p.slots);
    const units = (n: number, free: number) => (total ? n : free);
    return {
      GPU: fromUnits(slots.reduce((s, x) => s + units(x.capacityUnits, x.freeUnits), 0)),
      CPU: fromUnitsOrInfinite(this.#nodePools.reduce((s, p) => s + units(p.cpuCapacity, p.cpuFree), 0)),
      memory: this.#nodePools.reduce((s, p) => s + units(p.hostMemoryCapacity, p.hostMemoryFree), 0),
      gpuMemoryBytes: slots.reduce((s, x) => s + units(x.capacityMemory, x.freeMemory), 0),
      gpus: slots.map((x) => ({
        uuid: x.gpu.uuid, index: x.gpu.index, nodeId: x.gpu.nodeId,
        fraction: fromUnits(units(x.capacityUnits, x.freeUnits)), memoryBytes: units(x.capacityMemory, x.freeMemory),
      })),
    };
  }

  /** Fresh node pools: the cluster with nothing used (the "could it ever fit" question). */
  #idlePools(): ResourcePool[] {
    return this.nodes.map((n) => ResourcePool.ofGpus(n.gpus, toUnitsOrInfinite(n.cpus), n.memoryBytes));
  }

  #tryPlaceGroup(pg: PlacementGroup): boolean {
    const plan = planBundles(this.#nodePools, pg.demands, pg.strategy);
    if (!plan) return false;
    const pools = plan.map(({ node, grant }) => {
      this.#nodePools[node].take(grant);
      return ResourcePool.ofGrant(this.#nodePools[node], grant);
    });
    pg.markCreated(pools, plan.map((p) => p.node), plan.map((p) => p.grant));
    // Actors that waited for this group were checked against its bundle specs; now the GPUs are known, an
    // explicit memoryBytes larger than the bundle's GPU memory share can be refused for good.
    for (const item of this.#pending) {
      if (item.kind !== 'actor' || item.request.pg !== pg) continue;
      const why = this.#infeasibleInGroup(item.request);
      if (why) {
        this.#pending = this.#pending.filter((i) => i !== item);
        item.reject(new InfeasibleResourceError(why));
      }
    }
    return true;
  }

  #resolveRequest(request: ActorRequest): ResolvedRequest {
    const parent = request.parent ?? null;
    const what = `actor ${request.name ? `"${request.name}"` : 'request'}`;
    if (parent && (!parent.alive || this.#actors.get(parent.actorId) !== parent)) {
      throw new PlacementError(`${what}: its parent ${parent.label} is not a live actor of this cluster`);
    }
    // captureChildTasks: a child that does not name a group (undefined; null opts out) joins its owner's group.
    const inherits = request.placementGroup === undefined && parent?.captureChildTasks === true && parent.placementGroup !== null;
    const pg = inherits ? parent!.placementGroup : (request.placementGroup ?? null);
    const captureChildTasks = request.captureChildTasks ?? (inherits ? true : false);
    const bundleIndex = request.bundleIndex ?? -1;
    if (pg) {
      if (pg.state === 'removed' || this.#groups.get(pg.id) !== pg) {
        throw new PlacementError(`${what}: placement group ${pg.label} is ${pg.state === 'removed' ? 'removed' : 'not one of this cluster\'s'}`);
      }
      pg.checkBundleIndex(bundleIndex, true);
    } else if (request.bundleIndex !== undefined && request.bundleIndex !== -1) {
      throw new PlacementError(`${what}: bundleIndex ${request.bundleIndex} needs a placementGroup`);
    }
    const gpuUnits = toGpuUnits(request.numGpus ?? 0, `${what}: numGpus`);
    const cpuUnits = toUnits(request.numCpus ?? 0, `${what}: numCpus`);
    const hostMemoryBytes = toBytes(request.hostMemoryBytes ?? 0, `${what}: hostMemoryBytes`);
    let gpuMemoryBytes: number | undefined;
    if (request.memoryBytes !== undefined) {
      gpuMemoryBytes = toBytes(request.memoryBytes, `${what}: memoryBytes`);
      if (gpuUnits === 0) throw new PlacementError(`${what}: memoryBytes is a GPU memory budget, but the actor asks for no GPU (numGpus 0)`);
    }
    return {
      name: request.name,
      demand: { gpuUnits, gpuMemoryBytes, cpuUnits, hostMemoryBytes },
      numGpus: fromUnits(gpuUnits),
      numCpus: fromUnits(cpuUnits),
      pg,
      bundleIndex,
      captureChildTasks,
      parent,
    };
  }

  /** Throws InfeasibleResourceError when the request could not be placed even on an idle cluster / group. */
  #checkFeasible(r: ResolvedRequest): void {
    if (r.pg) {
      const why = this.#infeasibleInGroup(r);
      if (why) throw new InfeasibleResourceError(why);
      return;
    }
    if (this.#nodePools.some((pool) => pool.fit(r.demand, true))) return;
    throw new InfeasibleResourceError(
      `${labelOf(r)} asks for ${describeDemand(r.demand)}, which no node can hold even idle ` +
        `(nodes: ${this.#idlePools().map(describeCapacity).join('; ')})`,
    );
  }

  /** Why the request can never fit its group's bundle(s), or null. Uses the real bundles once the group is created. */
  #infeasibleInGroup(r: ResolvedRequest): string | null {
    const pg = r.pg!;
    const candidates = r.bundleIndex >= 0 ? [r.bundleIndex] : pg.demands.map((_, b) => b);
    const pools = pg.state === 'created' ? pg.pools! : pg.demands.map((d) => this.#nominalBundlePool(d));
    if (candidates.some((b) => pools[b].fit(r.demand, true))) return null;
    const where = r.bundleIndex >= 0
      ? `bundle ${r.bundleIndex} of placement group ${pg.label} (${JSON.stringify(pg.bundleSpecs[r.bundleIndex])})`
      : `any bundle of placement group ${pg.label} (${JSON.stringify(pg.bundleSpecs)})`;
    const memoryNote = r.demand.gpuMemoryBytes !== undefined
      ? ` (a bundle's share of a GPU holds that share of the GPU's memory: ${pools.flatMap((p) => p.slots).map((s) => `${s.capacityMemory} B on ${s.gpu.uuid}`).join(', ') || 'no GPU'})`
      : '';
    return `${labelOf(r)} asks for ${describeDemand(r.demand)}, more than ${where} can ever hold${memoryNote}`;
  }

  /**
   * A pool shaped like a bundle before the group is placed: its GPU share on a GPU of the largest memory in the
   * cluster (optimistic: the exact check runs again once the group is created).
   */
  #nominalBundlePool(d: Demand): ResourcePool {
    const biggest = this.gpus.reduce<GpuRef | undefined>((best, g) => (!best || g.memoryBytes > best.memoryBytes ? g : best), undefined);
    const slots = [];
    if (biggest && d.gpuUnits > 0) {
      const perGpu = Math.min(d.gpuUnits, UNITS_PER_WHOLE);
      for (let i = 0; i < Math.max(1, d.gpuUnits / UNITS_PER_WHOLE); i++) {
        const memory = Math.floor((perGpu * biggest.memoryBytes) / UNITS_PER_WHOLE);
        slots.push({ gpu: biggest, capacityUnits: perGpu, capacityMemory: memory, freeUnits: perGpu, freeMemory: memory });
      }
    }
    return new ResourcePool(slots, d.cpuUnits, d.hostMemoryBytes);
  }

  /** Places the actor now if it fits (in its group's bundle(s), else on the first node with room), or null. */
  #tryPlaceActor(r: ResolvedRequest): ActorPlacement | null {
    if (r.pg) {
      if (r.pg.state !== 'created') return null;
      const candidates = r.bundleIndex >= 0 ? [r.bundleIndex] : r.pg.demands.map((_, b) => b);
      for (const b of candidates) {
        const pool = r.pg.pools![b];
        const grant = pool.fit(r.demand);
        if (grant) return this.#commitActor(r, pool, grant, this.nodes[r.pg.nodeIndices![b]].id, b);
      }
      return null;
    }
    for (let n = 0; n < this.#nodePools.length; n++) {
      const grant = this.#nodePools[n].fit(r.demand);
      if (grant) return this.#commitActor(r, this.#nodePools[n], grant, this.nodes[n].id, -1);
    }
    return null;
  }

  #commitActor(r: ResolvedRequest, pool: ResourcePool, grant: Grant, nodeId: string, bundleIndex: number): ActorPlacement {
    pool.take(grant);
    const gpus = grant.slots.map(({ slot, units, memory }): ActorGpu => {
      const gpu = pool.slots[slot].gpu;
      return { uuid: gpu.uuid, index: gpu.index, nodeId: gpu.nodeId, fraction: fromUnits(units), memoryBudgetBytes: memory };
    });
    const actor = new ActorPlacement(this, {
      actorId: `actor-${this.#nextActorId++}`, name: r.name, nodeId, gpus, numGpus: r.numGpus, numCpus: r.numCpus,
      placementGroup: r.pg, bundleIndex, captureChildTasks: r.captureChildTasks, parentId: r.parent?.actorId ?? null,
      pool, grant,
    });
    this.#actors.set(actor.actorId, actor);
    return actor;
  }

  /** Ends one actor: returns its grant, marks it, queues its kill callbacks (kills only) into `callbacks`. */
  #endOne(actor: ActorPlacement, reason: KillReason | null, callbacks: (() => void)[]): void {
    if (!actor.alive) return;
    actor.pool.give(actor.grant);
    this.#actors.delete(actor.actorId);
    for (const cb of actor.markEnded(reason !== null)) callbacks.push(() => cb(reason!));
  }

  /** Ends everything `owner` owns, transitively (fate sharing, as Ray's owned actors), and its pending children. */
  #endDescendants(owner: ActorPlacement, callbacks: (() => void)[]): void {
    this.#rejectPending((r) => r.parent === owner, `the owner ${owner.label} exited before the actor was placed`);
    for (const child of this.actors().filter((a) => a.parentId === owner.actorId)) {
      this.#endOne(child, { kind: 'owner_exited', ownerActorId: owner.actorId }, callbacks);
      this.#endDescendants(child, callbacks);
    }
  }

  #rejectPending(match: (r: ResolvedRequest) => boolean, message: string): void {
    const dropped = this.#pending.filter((i) => i.kind === 'actor' && match(i.request));
    if (dropped.length === 0) return;
    this.#pending = this.#pending.filter((i) => !dropped.includes(i));
    for (const item of dropped) if (item.kind === 'actor') item.reject(new PlacementError(`${labelOf(item.request)}: ${message}`));
  }

  /**
   * Places whatever now fits, in submission order. Not strictly FIFO: a later request that fits goes ahead of an
   * earlier one that does not (as Ray); nothing is starved by a big request at the head.
   */
  #drain(): void {
    for (const item of [...this.#pending]) {
      if (!this.#pending.includes(item)) continue; // settled while draining (an actor refused on group creation)
      if (item.kind === 'group') {
        if (this.#tryPlaceGroup(item.pg)) this.#pending = this.#pending.filter((i) => i !== item);
      } else {
        const actor = this.#tryPlaceActor(item.request);
        if (actor) {
          this.#pending = this.#pending.filter((i) => i !== item);
          item.resolve(actor);
        }
      }
    }
  }
}

/** A bundle's demand in units; PlacementError names the bundle and what is wrong with it. */
function bundleDemand(bundle: Bundle, index: number): Demand {
  const where = `bundle ${index}`;
  if (bundle === null || typeof bundle !== 'object') throw new PlacementError(`${where} must be an object like {GPU: 1}, got ${String(bundle)}`);
  for (const key of Object.keys(bundle)) {
    if (key !== 'GPU' && key !== 'CPU' && key !== 'memory') {
      throw new PlacementError(`${where} asks for "${key}": this cluster models GPU, CPU and memory (host bytes) only`);
    }
  }
  const demand: Demand = {
    gpuUnits: toGpuUnits(bundle.GPU ?? 0, `${where}: GPU`),
    cpuUnits: toUnits(bundle.CPU ?? 0, `${where}: CPU`),
    hostMemoryBytes: toBytes(bundle.memory ?? 0, `${where}: memory`),
  };
  if (demand.gpuUnits === 0 && demand.cpuUnits === 0 && demand.hostMemoryBytes === 0) {
    throw new PlacementError(`${where} asks for nothing (${JSON.stringify(bundle)}): a bundle must reserve some GPU, CPU or memory`);
  }
  return demand;
}

function toUnitsOrInfinite(cpus: number): number {
  return cpus === Infinity ? Infinity : toUnits(cpus, 'cpus');
}

function fromUnitsOrInfinite(units: number): number {
  return units === Infinity ? Infinity : fromUnits(units);
}

function labelOf(r: ResolvedRequest): string {
  return r.name ? `actor "${r.name}"` : 'actor';
}

/** Runs kill callbacks after the cluster's state settled; all run even if one throws, then the first error is rethrown. */
function runCallbacks(callbacks: (() => void)[]): void {
  let first: unknown;
  let failed = false;
  for (const cb of callbacks) {
    try {
      cb();
    } catch (e) {
      if (!failed) first = e;
      failed = true;
    }
  }
  if (failed) throw first;
}
