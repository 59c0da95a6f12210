/** The cluster's public data shapes (plain, serialisable; the classes live in cluster.ts, placement_group.ts, actor.ts). */
import type { PlacementStrategy } from './strategy.ts';

export type { PlacementStrategy } from './strategy.ts';

/** One simulated node: its GPUs (all of one memory size), CPUs and host memory. */
export interface NodeSpec {
  /** Virtual GPUs on the node (an integer >= 0). */
  gpus: number;
  /** Memory of each GPU in bytes: what fractions of the GPU are budgets of. */
  gpuMemoryBytes: number;
  /** Logical CPUs (Ray's num_cpus); fractional allowed. Unlimited when absent. */
  cpus?: number;
  /** Host memory in bytes (Ray's `memory` resource). Unlimited when absent. */
  memoryBytes?: number;
}

export interface ClusterOptions {
  /** Simulated nodes. Without it, one node of `gpus` GPUs of `gpuMemoryBytes` each. */
  nodes?: NodeSpec[];
  /** GPUs of the single node (default 1); ignored with `nodes`. */
  gpus?: number;
  /** Memory per GPU of the single node (default 8 GiB); ignored with `nodes`. */
  gpuMemoryBytes?: number;
  /** CPUs of the single node (default unlimited); ignored with `nodes`. */
  cpus?: number;
  /** Host memory of the single node (default unlimited); ignored with `nodes`. */
  memoryBytes?: number;
  /** Seed for deterministic GPU uuids; random uuids without it. */
  seed?: number | string;
}

/** A virtual GPU: a share of the one physical device with its own identity and memory size. */
export interface VirtualGpu {
  /** nvidia-smi style: "GPU-xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx". What report_device_id returns. */
  readonly uuid: string;
  /** Index in the whole cluster (node 0's GPUs first). */
  readonly index: number;
  /** Index on its node (what CUDA_VISIBLE_DEVICES would number). */
  readonly localIndex: number;
  readonly nodeId: string;
  readonly memoryBytes: number;
}

export interface ClusterNode {
  readonly id: string;
  readonly index: number;
  readonly gpus: readonly VirtualGpu[];
  /** Logical CPUs (Infinity when not tracked). */
  readonly cpus: number;
  /** Host memory in bytes (Infinity when not tracked). */
  readonly memoryBytes: number;
}

/** A placement-group bundle, Ray's spelling: `{GPU: 1, CPU: 0}`. `memory` is host memory in bytes. */
export interface Bundle {
  GPU?: number;
  CPU?: number;
  memory?: number;
}

export interface PlacementGroupOptions {
  /** Default 'PACK', as Ray. */
  strategy?: PlacementStrategy;
  /** Optional; live groups' names are unique (cluster.getPlacementGroup(name)). */
  name?: string;
}

/** A share of one GPU held by a bundle. */
export interface GpuShare {
  readonly uuid: string;
  readonly index: number;
  readonly nodeId: string;
  /** 1 for a whole GPU, else the fraction (multiples of 1e-4). */
  readonly fraction: number;
  /** GPU memory the share reserves: floor(fraction x GPU memory). */
  readonly memoryBytes: number;
}

/** Where a bundle was reserved. */
export interface BundlePlacement {
  readonly index: number;
  readonly nodeId: string;
  readonly gpus: readonly GpuShare[];
  readonly cpus: number;
  readonly memoryBytes: number;
}

/** A GPU an actor runs on and what it may use of it. */
export interface ActorGpu {
  readonly uuid: string;
  readonly index: number;
  readonly nodeId: string;
  /** The actor's share of this GPU (1 for whole GPUs). Also its weight for GPU time in the fair queue. */
  readonly fraction: number;
  /** Bytes the device host lets the actor allocate on this GPU: floor(fraction x memory), or the explicit memoryBytes. */
  readonly memoryBudgetBytes: number;
}

/** Free or total resources of the cluster (outside placement-group reservations for `available`). */
export interface ResourceView {
  /** GPUs, fractional (e.g. 2.6). */
  readonly GPU: number;
  readonly CPU: number;
  /** Host memory in bytes. */
  readonly memory: number;
  /** GPU memory in bytes, summed over GPUs. */
  readonly gpuMemoryBytes: number;
  readonly gpus: readonly { uuid: string; index: number; nodeId: string; fraction: number; memoryBytes: number }[];
}

/** Why the cluster killed an actor (passed to onKill callbacks). release() by the owner is not a kill. */
export type KillReason =
  | { readonly kind: 'placement_group_removed'; readonly placementGroupId: string }
  | { readonly kind: 'owner_exited'; readonly ownerActorId: string }
  | { readonly kind: 'killed'; readonly message?: string };
