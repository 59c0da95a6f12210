/**
 * # src/cluster: virtual GPUs, placement groups, actor placement, fair GPU time
 *
 * Tandem's stand-in for the part of Ray that vLLM's RLHF-colocate example relies on. Pure bookkeeping (no GPU,
 * no workers): the device host (src/actors) asks it where an actor goes and what it may use, then enforces that.
 *
 * ## Model
 * - **Cluster** = simulated nodes; a node = N virtual GPUs (each a uuid like "GPU-1f0c3a7e-...", a cluster-wide
 *   index, a node-local index, a memory size), logical CPUs and host memory (both unlimited unless given). All
 *   virtual GPUs map onto the one physical WebGPU device; the cluster only accounts for them.
 *       const cluster = Cluster.create({ gpus: 4, gpuMemoryBytes: 2 ** 30, seed: 'colocate' });
 *       const cluster = Cluster.create({ nodes: [{ gpus: 2, gpuMemoryBytes }, { gpus: 2, gpuMemoryBytes }] });
 * - **Quantities** are fixed point at 1e-4 (Ray's precision), kept as integers: no drift. A GPU request is a
 *   fraction of one GPU (0 < n <= 1) or a whole number (1.5 is refused, as Ray does). A fraction goes to the
 *   best-fit GPU (least room left, lowest index on ties: Ray's NodeResourceInstanceSet), so a partly used GPU
 *   with room is always filled before an empty one; whole GPUs are the first entirely free ones.
 * - **GPU memory** is a resource too (beyond Ray, which only counts fractions): a share n of a GPU reserves
 *   floor(n x its memory), or an explicit `memoryBytes`; the sum on a GPU never exceeds its size. An actor's
 *   `gpus[i].memoryBudgetBytes` is what the device host lets it allocate there (ActorOutOfMemoryError beyond).
 * - **Placement groups** (`cluster.placementGroup(bundles, {strategy})`) reserve bundles atomically:
 *   STRICT_PACK one node; PACK one node if possible, else few; STRICT_SPREAD one node per bundle; SPREAD as
 *   many nodes as possible. Reserved resources leave `availableResources()`; actors in the group draw from
 *   their bundle instead. A group that does not fit now is **pending** and is placed when resources free up
 *   (`ready()` resolves then); one that could never fit, even on the idle cluster, throws
 *   **InfeasibleResourceError** at once, saying which bundle or strategy rule cannot be met (Ray would wait
 *   forever in silence). `remove()` kills the group's actors (onKill callbacks, reason
 *   'placement_group_removed') and returns everything, exactly.
 * - **Actors** (`cluster.scheduleActor({numGpus, placementGroup, bundleIndex, ...})` → Promise<ActorPlacement>):
 *   `bundleIndex` -1/absent = the first bundle with room; an index out of range or a request larger than its
 *   bundle(s) can ever hold throws at once (PlacementError / InfeasibleResourceError, synchronously); a request
 *   that only lacks free resources now waits (cancel with `signal`). In the colocate layout, 4 bundles of
 *   {GPU: 1}, trainers at 0.4 on bundles 0..3 and engine ranks at 0.4 on bundles [0, 1] and [2, 3] put
 *   trainers 0-1 on the GPUs of engine 0's ranks: `cluster.actorsOnGpu(uuid)` lists who shares a device.
 * - **Ownership**: an actor scheduled with `parent` (or `actor.scheduleChild`) dies with its parent; with the
 *   parent's `captureChildTasks` it also lands in the parent's placement group (any bundle) unless it names a
 *   group itself (`placementGroup: null` opts out), as Ray's placement_group_capture_child_tasks.
 *   `release()` is a normal exit (no callbacks for the actor itself); `kill()` and group removal are kills.
 * - **Fair GPU time** (fair_share.ts): a start-time fair queue the device host feeds with command lists,
 *   weight = the actor's GPU fraction, cost = estimated then measured GPU time. Backlogged clients get GPU time in
 *   proportion to their weights; idle clients bank no credit.
 * - Not modelled: node failures, autoscaling, custom resources, detached lifetimes, bundle label selectors.
 */
export { Cluster, type ActorRequest } from './cluster.ts';
export { ActorPlacement, type ActorState } from './actor.ts';
export { PlacementGroup, type PlacementGroupState } from './placement_group.ts';
export { FairShareQueue, type FairShareEntry } from './fair_share.ts';
export { GPU_UUID_PATTERN } from './ids.ts';
export { UNITS_PER_WHOLE } from './resources.ts';
export { PLACEMENT_STRATEGIES, type PlacementStrategy } from './strategy.ts';
export type {
  ActorGpu, Bundle, BundlePlacement, ClusterNode, ClusterOptions, GpuShare, KillReason, NodeSpec, PlacementGroupOptions,
  ResourceView, VirtualGpu,
} from './types.ts';
