/**
 * Resource arithmetic for the cluster: fixed-point quantities and resource pools with Ray's per-GPU allocation.
 *
 * Quantities are integers in units of 1e-4 (Ray's FixedPoint resolution), so sums of fractions never drift:
 * 0.4 + 0.6 is exactly one GPU, and three actors at 1/3 (rounded to 0.3333) fit on one.
 *
 * A pool is what one request is allocated from: a node (its whole GPUs, CPUs and host memory) or a placement
 * group bundle (the GPU shares, CPUs and memory the bundle reserved on its node). Each pool holds one slot per GPU
 * it has a share of. GPU allocation follows Ray's NodeResourceInstanceSet::TryAllocate:
 *   - a fractional demand (0 < n < 1) goes to the best-fit slot: the one left with the least room, lowest index
 *     on ties. A GPU that is already partly used and has room is therefore always filled before an empty one;
 *   - a whole demand (n >= 1, must be an integer) takes the first n slots that are entirely free.
 * Beyond Ray, every slot also carries GPU memory: a share of n GPU reserves floor(n x the GPU's memory) bytes
 * (or an explicit number of bytes) and must find that much free too, so memory can never be over-committed.
 */
import { PlacementError } from '../errors.ts';

/** Units per whole resource: Ray's precision for fractional resources is 1e-4. */
export const UNITS_PER_WHOLE = 10_000;

/**
 * `value` (GPUs or CPUs, a user-facing number) in units of 1e-4, rounded to the nearest unit as Ray does.
 * Throws a PlacementError naming `what` for negative, non-finite values and for positive values that round to 0.
 */
export function toUnits(value: number, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new PlacementError(`${what} must be a finite number >= 0, got ${String(value)}`);
  }
  const units = Math.round(value * UNITS_PER_WHOLE);
  if (value > 0 && units === 0) {
    throw new PlacementError(`${what} = ${value} is below the resource precision of 1e-4 (it would round to 0)`);
  }
  return units;
}

/**
 * GPU units: as toUnits, plus Ray's rule that a GPU count above 1 must be a whole number (a GPU is a unit
 * resource: 1.5 GPUs would be one GPU and half of another, which Ray refuses).
 */
export function toGpuUnits(value: number, what: string): number {
  const units = toUnits(value, what);
  if (units > UNITS_PER_WHOLE && units % UNITS_PER_WHOLE !== 0) {
    throw new PlacementError(`${what} = ${value}: GPU counts above 1 must be whole numbers (fractions are for sharing one GPU)`);
  }
  return units;
}

/** Bytes: a non-negative safe integer (Infinity allowed where `allowInfinite`, meaning "not tracked"). */
export function toBytes(value: number, what: string, allowInfinite = false): number {
  if (allowInfinite && value === Infinity) return value;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new PlacementError(`${what} must be a whole number of bytes >= 0, got ${String(value)}`);
  }
  return value;
}

/** Units back to the user-facing number (0.4, 1, 2). */
export function fromUnits(units: number): number {
  return units / UNITS_PER_WHOLE;
}

/** The facts about one virtual GPU a pool needs (the cluster's VirtualGpu satisfies it). */
export interface GpuRef {
  readonly uuid: string;
  /** Index in the whole cluster (0..N-1). */
  readonly index: number;
  readonly nodeId: string;
  readonly memoryBytes: number;
}

/** A pool's share of one GPU. */
export interface Slot {
  readonly gpu: GpuRef;
  readonly capacityUnits: number;
  readonly capacityMemory: number;
  freeUnits: number;
  freeMemory: number;
}

/** One request, in units. */
export interface Demand {
  /** GPU units in total (a whole demand spreads 1.0 per GPU over several slots). */
  readonly gpuUnits: number;
  /** GPU memory per GPU, explicit; when absent each GPU's share of memory is floor(units x its memory). */
  readonly gpuMemoryBytes?: number;
  readonly cpuUnits: number;
  readonly hostMemoryBytes: number;
}

/** What a pool handed out for one demand: exactly what give() must return. */
export interface Grant {
  readonly slots: readonly { readonly slot: number; readonly units: number; readonly memory: number }[];
  readonly cpuUnits: number;
  readonly hostMemoryBytes: number;
}

/** GPU memory a share of `units` on `gpu` reserves. */
export function gpuMemoryFor(demand: Demand, gpu: GpuRef, units: number): number {
  return demand.gpuMemoryBytes ?? Math.floor((units * gpu.memoryBytes) / UNITS_PER_WHOLE);
}

export class ResourcePool {
  readonly slots: Slot[];
  readonly cpuCapacity: number;
  cpuFree: number;
  readonly hostMemoryCapacity: number;
  hostMemoryFree: number;

  constructor(slots: Slot[], cpuCapacity: number, hostMemoryCapacity: number) {
    this.slots = slots;
    this.cpuCapacity = cpuCapacity;
    this.cpuFree = cpuCapacity;
    this.hostMemoryCapacity = hostMemoryCapacity;
    this.hostMemoryFree = hostMemoryCapacity;
  }

  /** A pool over whole GPUs (a node). */
  static ofGpus(gpus: readonly GpuRef[], cpuUnits: number, hostMemoryBytes: number): ResourcePool {
    const slots = gpus.map((gpu) => ({
      gpu,
      capacityUnits: UNITS_PER_WHOLE,
      capacityMemory: gpu.memoryBytes,
      freeUnits: UNITS_PER_WHOLE,
      freeMemory: gpu.memoryBytes,
    }));
    return new ResourcePool(slots, cpuUnits, hostMemoryBytes);
  }

  /** The pool a grant from `parent` forms (a bundle reserved on a node), with nothing of it used yet. */
  static ofGrant(parent: ResourcePool, grant: Grant): ResourcePool {
    const slots = grant.slots.map((g) => ({
      gpu: parent.slots[g.slot].gpu,
      capacityUnits: g.units,
      capacityMemory: g.memory,
      freeUnits: g.units,
      freeMemory: g.memory,
    }));
    return new ResourcePool(slots, grant.cpuUnits, grant.hostMemoryBytes);
  }

  /** An independent copy (for trying a placement without committing it). */
  clone(): ResourcePool {
    const copy = new ResourcePool(this.slots.map((s) => ({ ...s })), this.cpuCapacity, this.hostMemoryCapacity);
    copy.cpuFree = this.cpuFree;
    copy.hostMemoryFree = this.hostMemoryFree;
    return copy;
  }

  /** True when nothing of the pool is handed out. */
  isIdle(): boolean {
    return this.cpuFree === this.cpuCapacity && this.hostMemoryFree === this.hostMemoryCapacity &&
      this.slots.every((s) => s.freeUnits === s.capacityUnits && s.freeMemory === s.capacityMemory);
  }

  /**
   * Where `demand` would go, or null when it does not fit. `fromCapacity` asks whether it would fit were the
   * pool idle (the "can this ever fit" check); otherwise only free resources count.
   */
  fit(demand: Demand, fromCapacity = false): Grant | null {
    const cpu = fromCapacity ? this.cpuCapacity : this.cpuFree;
    const hostMem = fromCapacity ? this.hostMemoryCapacity : this.hostMemoryFree;
    if (demand.cpuUnits > cpu || demand.hostMemoryBytes > hostMem) return null;
    const units = (s: Slot) => (fromCapacity ? s.capacityUnits : s.freeUnits);
    const memory = (s: Slot) => (fromCapacity ? s.capacityMemory : s.freeMemory);
    const slots: { slot: number; units: number; memory: number }[] = [];
    if (demand.gpuUnits >= UNITS_PER_WHOLE) {
      // Whole GPUs: the first entirely free slots, in order.
      let needed = demand.gpuUnits / UNITS_PER_WHOLE;
      for (let i = 0; i < this.slots.length && needed > 0; i++) {
        const s = this.slots[i];
        const mem = gpuMemoryFor(demand, s.gpu, UNITS_PER_WHOLE);
        if (units(s) >= UNITS_PER_WHOLE && memory(s) >= mem) {
          slots.push({ slot: i, units: UNITS_PER_WHOLE, memory: mem });
          needed--;
        }
      }
      if (needed > 0) return null;
    } else if (demand.gpuUnits > 0) {
      // A fraction of one GPU: best fit (least room left over), lowest index on ties.
      let best = -1;
      let bestLeft = Infinity;
      for (let i = 0; i < this.slots.length; i++) {
        const s = this.slots[i];
        const left = units(s) - demand.gpuUnits;
        if (left >= 0 && memory(s) >= gpuMemoryFor(demand, s.gpu, demand.gpuUnits) && left < bestLeft) {
          best = i;
          bestLeft = left;
        }
      }
      if (best < 0) return null;
      slots.push({ slot: best, units: demand.gpuUnits, memory: gpuMemoryFor(demand, this.slots[best].gpu, demand.gpuUnits) });
    }
    return { slots, cpuUnits: demand.cpuUnits, hostMemoryBytes: demand.hostMemoryBytes };
  }

  /** Hands out a grant that fit() returned for this pool. */
  take(grant: Grant): void {
    for (const g of grant.slots) {
      const s = this.slots[g.slot];
      if (g.units > s.freeUnits || g.memory > s.freeMemory) {
        throw new Error(`internal: grant exceeds slot ${g.slot} of GPU ${s.gpu.uuid}`);
      }
      s.freeUnits -= g.units;
      s.freeMemory -= g.memory;
    }
    this.cpuFree -= grant.cpuUnits;
    this.hostMemoryFree -= grant.hostMemoryBytes;
  }

  /** Returns a grant taken earlier; exact, since everything is integer. */
  give(grant: Grant): void {
    for (const g of grant.slots) {
      const s = this.slots[g.slot];
      s.freeUnits += g.units;
      s.freeMemory += g.memory;
      if (s.freeUnits > s.capacityUnits || s.freeMemory > s.capacityMemory) {
        throw new Error(`internal: slot ${g.slot} of GPU ${s.gpu.uuid} given back more than it holds`);
      }
    }
    this.cpuFree += grant.cpuUnits;
    this.hostMemoryFree += grant.hostMemoryBytes;
  }
}

/** A readable resource set for messages: "{GPU: 0.4, CPU: 1, GPU memory: 1073741824 B}". */
export function describeDemand(d: Demand): string {
  const parts = [`GPU: ${fromUnits(d.gpuUnits)}`];
  if (d.cpuUnits > 0) parts.push(`CPU: ${fromUnits(d.cpuUnits)}`);
  if (d.hostMemoryBytes > 0) parts.push(`memory: ${d.hostMemoryBytes} B`);
  if (d.gpuMemoryBytes !== undefined) parts.push(`GPU memory: ${d.gpuMemoryBytes} B per GPU`);
  return `{${parts.join(', ')}}`;
}

/** A pool's capacity, for messages: "{GPU: 4 (4 GPUs), CPU: 8}". */
export function describeCapacity(pool: ResourcePool): string {
  const gpuUnits = pool.slots.reduce((sum, s) => sum + s.capacityUnits, 0);
  const parts = [`GPU: ${fromUnits(gpuUnits)} over ${pool.slots.length} GPU${pool.slots.length === 1 ? '' : 's'}`];
  parts.push(`CPU: ${pool.cpuCapacity === Infinity ? 'unlimited' : fromUnits(pool.cpuCapacity)}`);
  if (pool.hostMemoryCapacity !== Infinity) parts.push(`memory: ${pool.hostMemoryCapacity} B`);
  const maxMem = Math.max(0, ...pool.slots.map((s) => s.capacityMemory));
  if (pool.slots.length > 0) parts.push(`largest GPU memory share: ${maxMem} B`);
  return `{${parts.join(', ')}}`;
}
