/**
 * An actor's placement: where Cluster.scheduleActor() put it and what it may use. The device host reads `gpus`
 * (uuid, fraction, memory budget) to bind the actor's worker to its virtual GPU and enforce the budget, calls
 * release() when the worker exits, and registers onKill() to terminate the worker when the cluster kills it.
 */
import type { ActorRequest } from './cluster.ts';
import type { PlacementGroup } from './placement_group.ts';
import type { Grant, ResourcePool } from './resources.ts';
import type { ActorGpu, KillReason } from './types.ts';

/** What an actor needs from its cluster. */
export interface ActorHost {
  terminateActor(actor: ActorPlacement, reason: KillReason | null): void;
  scheduleActor(request: ActorRequest): Promise<ActorPlacement>;
}

export type ActorState = 'alive' | 'released' | 'killed';

export class ActorPlacement {
  readonly actorId: string;
  readonly name: string | undefined;
  readonly nodeId: string;
  /** The GPUs it runs on (empty for numGpus 0), with its share and memory budget on each. */
  readonly gpus: readonly ActorGpu[];
  readonly numGpus: number;
  readonly numCpus: number;
  readonly placementGroup: PlacementGroup | null;
  /** The bundle it landed in (the chosen one when asked for -1 / any); -1 outside placement groups. */
  readonly bundleIndex: number;
  /** Children scheduled from this actor inherit its placement group (Ray's placement_group_capture_child_tasks). */
  readonly captureChildTasks: boolean;
  /** The actor that scheduled this one (its owner: this one dies with it), or null. */
  readonly parentId: string | null;
  /** @internal The pool it was allocated from and what it holds there. */
  readonly pool: ResourcePool;
  /** @internal */
  readonly grant: Grant;

  readonly #host: ActorHost;
  #state: ActorState = 'alive';
  readonly #onKill = new Set<(reason: KillReason) => void>();

  constructor(host: ActorHost, a: {
    actorId: string; name?: string; nodeId: string; gpus: ActorGpu[]; numGpus: number; numCpus: number;
    placementGroup: PlacementGroup | null; bundleIndex: number; captureChildTasks: boolean; parentId: string | null;
    pool: ResourcePool; grant: Grant;
  }) {
    this.#host = host;
    this.actorId = a.actorId;
    this.name = a.name;
    this.nodeId = a.nodeId;
    this.gpus = Object.freeze(a.gpus.map((g) => Object.freeze({ ...g })));
    this.numGpus = a.numGpus;
    this.numCpus = a.numCpus;
    this.placementGroup = a.placementGroup;
    this.bundleIndex = a.bundleIndex;
    this.captureChildTasks = a.captureChildTasks;
    this.parentId = a.parentId;
    this.pool = a.pool;
    this.grant = a.grant;
  }

  get state(): ActorState {
    return this.#state;
  }

  get alive(): boolean {
    return this.#state === 'alive';
  }

  /** "actor-3" or "actor-3 (\"trainer-0\")", for messages. */
  get label(): string {
    return this.name ? `${this.actorId} ("${this.name}")` : this.actorId;
  }

  /**
   * Calls `callback` if the cluster kills this actor: its placement group removed, its owner gone, or kill().
   * Not called on release(). Returns an unsubscribe function.
   */
  onKill(callback: (reason: KillReason) => void): () => void {
    this.#onKill.add(callback);
    return () => this.#onKill.delete(callback);
  }

  /** The actor exited: returns its resources (exactly) and kills the children it owns. Idempotent. */
  release(): void {
    this.#host.terminateActor(this, null);
  }

  /** Kills the actor: as release(), and its onKill callbacks run with reason 'killed'. Idempotent. */
  kill(message?: string): void {
    this.#host.terminateActor(this, { kind: 'killed', message });
  }

  /**
   * Schedules a child owned by this actor. With captureChildTasks the child goes into this actor's placement
   * group (any bundle) unless the request names its own group, or `placementGroup: null` to opt out.
   */
  scheduleChild(request: Omit<ActorRequest, 'parent'>): Promise<ActorPlacement> {
    return this.#host.scheduleActor({ ...request, parent: this });
  }

  /** @internal The cluster ended the actor; returns the callbacks to run (after the cluster's state settled). */
  markEnded(killed: boolean): ((reason: KillReason) => void)[] {
    this.#state = killed ? 'killed' : 'released';
    const callbacks = killed ? [...this.#onKill] : [];
    this.#onKill.clear();
    return callbacks;
  }
}
