/**
 * A training actor: the Trainer (src/train) on a RemoteGpu, the body of a training worker (training_worker.ts).
 * It is what the training actors of vLLM's RLHF colocate example are: load the model onto its (virtual) GPU,
 * train or zero the weights, report the GPU's uuid, and hand its parameters over as handles
 * (`{gpu_uuid: {name: reduce_tensor(param)}}` there, `{virtualGpuUuid: ExportedTensors}` here).
 *
 * The handles it exports are views of its live parameters, zero-copy: per tensor, or packed (one handle to its
 * parameter arena plus an index). A later step changes what they show in place. The parameters never move, so
 * the handles stay valid (and are exported once) for the actor's life.
 */
import { InvalidInputError } from '../errors.ts';
import { RemoteGpu } from '../gpu/remote.ts';
import type { GpuBuffer } from '../gpu/gpu.ts';
import type { ModelSpec } from '../model/weights/sources.ts';
import type { Checkpoint } from '../model/weights/types.ts';
import type { OptimizerConfig } from '../train/optimizer.ts';
import { type BatchInput, type StepResult, Trainer } from '../train/trainer.ts';
import type { TrainBatch } from '../train/types.ts';
import { exportHandles, type ExportedTensors, type TensorRef } from './handles.ts';
import * as Comlink from 'comlink';
import type { Cluster } from '../cluster/cluster.ts';
import type { ActorPlacement } from '../cluster/actor.ts';
import type { PlacementGroup } from '../cluster/placement_group.ts';
import type { HostControl } from './device_host.ts';
import { spawnActorWorker } from './spawn.ts';
import { withTypedErrors } from './inference_engine.ts';

/** Exported weights keyed by the virtual GPU they live on (merge several actors' with Object.assign). */
export type WeightHandles = Record<string, ExportedTensors>;

export interface TrainingActorOptions {
  /** A checkpoint spec (directory, URL, `synthetic:CONFIG:SEED`) or a loaded checkpoint. */
  model: ModelSpec | Checkpoint;
  /** Default: SGD with lr 1e-3 (no optimizer state: the least memory). */
  optimizer?: OptimizerConfig;
  /** Most tokens one forward/backward takes (default 256); larger batches are accumulated. */
  maxBatchTokens?: number;
  maxGradNorm?: number;
}

export interface TrainingActorInfo {
  actorId: string;
  virtualGpuUuid: string;
  memoryBudgetBytes: number;
}

export class TrainingActor {
  gpu: RemoteGpu | null = null;
  trainer: Trainer | null = null;
  /** The handles exported so far, per form, for the trainer they belong to. */
  private exports: { trainer: Trainer; packed?: WeightHandles; tensors?: WeightHandles } | null = null;
  private scratch: GpuBuffer[] = [];
  /** Borrowed memory: a connection with a borrowed budget, and its buffers opened here as views. */
  private pool: RemoteGpu | null = null;
  private borrowed: Array<{ owned: GpuBuffer; view: GpuBuffer }> = [];
  private busy: Promise<unknown> | null = null;

  /** Connect to the device host over the port its attach() gave (transferred into this worker). */
  async connect(port: MessagePort): Promise<TrainingActorInfo> {
    const gpu = await RemoteGpu.connect(port);
    this.gpu = gpu;
    return { actorId: gpu.actorId, virtualGpuUuid: gpu.virtualGpuUuid, memoryBudgetBytes: gpu.memoryBudgetBytes };
  }

  /** In-process use (tests, benchmarks): a RemoteGpu connected here. */
  useGpu(gpu: RemoteGpu): void {
    this.gpu = gpu;
  }

  private need<T>(x: T | null, what: string): T {
    if (!x) throw new InvalidInputError(`training actor: ${what} first`);
    return x;
  }

  private get t(): Trainer {
    return this.need(this.trainer, 'createTrainer');
  }

  /** Load the model onto this actor's GPU as a Trainer. Returns the parameter count and bytes. */
  async createTrainer(opts: TrainingActorOptions): Promise<{ parameters: number; parameterBytes: number; bytesInUse: number }> {
    const gpu = this.need(this.gpu, 'connect');
    if (this.trainer) throw new InvalidInputError('training actor: a trainer is already loaded');
    this.trainer = await Trainer.create({
      model: opts.model, gpu, optimizer: opts.optimizer ?? { type: 'sgd', lr: 1e-3 },
      maxBatchTokens: opts.maxBatchTokens ?? 256, maxGradNorm: opts.maxGradNorm,
    });
    let parameterBytes = 0;
    for (const p of this.trainer.parameters().values()) parameterBytes += p.buffer.size;
    return { parameters: this.trainer.parameters().size, parameterBytes, bytesInUse: gpu.stats().bytesAllocated };
  }

  /** vLLM's `report_device_id`: the uuid of the virtual GPU this actor runs on. */
  reportDeviceId(): string {
    return this.need(this.gpu, 'connect').virtualGpuUuid;
  }

  /** One optimizer step (Trainer.step): `weights` are per-target advantages for a policy-gradient loss. */
  step(batch: BatchInput, opts: { weights?: TrainBatch['weights']; mask?: TrainBatch['mask'] } = {}): Promise<StepResult> {
    return this.t.step(batch, opts);
  }

  /** The loss of a batch under the current weights (no update). */
  loss(batch: BatchInput, opts: { weights?: TrainBatch['weights']; mask?: TrainBatch['mask'] } = {}): Promise<number> {
    return this.t.loss(batch, opts);
  }

  /** Set every parameter to zero (the colocate example's training actors do this before the handover). */
  async zeroWeights(): Promise<void> {
    this.t.zeroWeights();
    await this.t.gpu.sync();
  }

  /**
   * The parameters as handles, keyed by this actor's virtual GPU: one per tensor, or packed (one per parameter
   * arena plus an index); both are views of the live parameters. HF names, f32, HF shapes; the tied head is the
   * embedding (no lm_head entry), as the engine's weights name it. Exported once per form and trainer: later
   * calls return the same handles without asking the device host.
   */
  async exportWeights(opts: { packed?: boolean } = {}): Promise<WeightHandles> {
    const gpu = this.need(this.gpu, 'connect');
    const trainer = this.t;
    const form = opts.packed ? 'packed' : 'tensors';
    if (this.exports?.trainer === trainer && this.exports[form]) return this.exports[form]!;
    const tensors: Record<string, TensorRef> = {};
    for (const [name, p] of trainer.parameters()) {
      tensors[name] = { buffer: p.buffer, byteOffset: 0, byteLength: 4 * p.shape.reduce((a, b) => a * b, 1), dtype: 'f32', shape: [...p.shape] };
    }
    const handles = { [gpu.virtualGpuUuid]: await exportHandles(gpu, tensors, opts) };
    if (this.exports?.trainer !== trainer) this.exports = { trainer };
    this.exports[form] = handles;
    return handles;
  }

  /** The parameters as safetensors bytes (Trainer.saveWeights). */
  saveWeights(): Promise<Uint8Array> {
    return this.t.saveWeights();
  }

  /** Device memory this actor holds (bytes, as the host charges it) and its budget. */
  memory(): { bytesInUse: number; budgetBytes: number } {
    const gpu = this.need(this.gpu, 'connect');
    return { bytesInUse: gpu.stats().bytesAllocated, budgetBytes: gpu.memoryBudgetBytes };
  }

  /**
   * Allocate `bytes` more device memory in one buffer (kept until freeScratch): within this actor's own budget,
   * else from a borrowed pool (addBorrowedPool), allocated there and opened here by handle so this actor's
   * kernels bind it like its own. Rejects with ActorOutOfMemoryError when neither has room. Returns where it went.
   */
  async allocateScratch(bytes: number): Promise<{ pool: 'own' | 'borrowed'; buffer: GpuBuffer }> {
    const gpu = this.need(this.gpu, 'connect');
    const pool = this.pool;
    if (!pool || gpu.stats().bytesAllocated + bytes <= gpu.memoryBudgetBytes) {
      const buffer = await gpu.createBuffer(bytes, 'training_actor.scratch');
      this.scratch.push(buffer);
      return { pool: 'own', buffer };
    }
    const owned = await pool.createBuffer(bytes, 'training_actor.borrowed');
    const [handle] = await pool.exportRanges([{ bufferId: owned.id, byteOffset: 0, byteLength: bytes, dtype: 'u8', shape: [bytes] }]);
    const view = await gpu.openRange(handle);
    this.borrowed.push({ owned, view });
    return { pool: 'borrowed', buffer: view };
  }

  /** Write then read back `data` through a scratch buffer (tests: the memory is usable by this actor). */
  async roundTrip(buffer: GpuBuffer, data: Uint8Array): Promise<Uint8Array> {
    const gpu = this.need(this.gpu, 'connect');
    gpu.write(buffer, data);
    return new Uint8Array(await gpu.read(buffer, 0, data.byteLength));
  }

  freeScratch(): void {
    const gpu = this.need(this.gpu, 'connect');
    for (const b of this.scratch) gpu.destroyBuffer(b);
    this.scratch = [];
  }

  /**
   * A second connection to the device host, attached on this actor's virtual GPU with the budget of a borrowed
   * share (PlacedTrainingActor.borrow): memory an engine freed by sleeping, for allocateScratch.
   */
  async addBorrowedPool(port: MessagePort): Promise<{ memoryBudgetBytes: number }> {
    if (this.pool) throw new InvalidInputError('training actor: it already holds a borrowed pool');
    this.pool = await RemoteGpu.connect(port);
    return { memoryBudgetBytes: this.pool.memoryBudgetBytes };
  }

  /** Close the views of borrowed memory and disconnect the pool (the host frees what it held). */
  async returnBorrowed(): Promise<void> {
    const gpu = this.need(this.gpu, 'connect');
    for (const b of this.borrowed) gpu.destroyBuffer(b.view);
    this.borrowed = [];
    await gpu.executed();
    this.pool?.destroy();
    this.pool = null;
  }

  /** Train on `batch` over and over in the background (fault tests terminate the worker mid-step). */
  startBusyLoop(batch: BatchInput): void {
    const t = this.t;
    this.busy = (async () => {
      for (;;) await t.step(batch);
    })().catch(() => {});
  }

  /** Free the trainer and disconnect (the host frees anything left and invalidates this actor's handles). */
  disconnect(): void {
    this.trainer?.release();
    this.trainer = null;
    this.gpu?.destroy();
    this.gpu = null;
  }
}

/** A training actor in its own worker, placed by the cluster and attached to the device host. */
export interface PlacedTrainingActor {
  api: Comlink.Remote<TrainingActor>;
  placement: ActorPlacement;
  info: TrainingActorInfo;
  /** Resolves with the message when the worker dies of an error (detached and placement released by then). */
  crashed: Promise<string>;
  /** Kill the worker (mid-step or not): the host frees its buffers and invalidates its handles; the placement is returned. */
  terminate(): Promise<void>;
  /**
   * Borrow a further share of this actor's bundle (a child placement, pending until the share is free, e.g.
   * until a colocated engine sleeps) and hand its budget to the worker as a pool for allocateScratch. Memory
   * budgets are fixed at placement: borrowing is a placement of its own, not a budget that grows.
   */
  borrow(numGpus: number): Promise<{ memoryBudgetBytes: number }>;
  /** Give the borrowed share back: the worker closes its views, the pool is detached, the placement released. */
  giveBack(): Promise<void>;
}

export interface SpawnTrainingActorOptions {
  cluster: Cluster;
  host: HostControl;
  /** Its share of a GPU (Ray's num_gpus), e.g. 0.4. */
  numGpus: number;
  placementGroup?: PlacementGroup;
  bundleIndex?: number;
  captureChildTasks?: boolean;
  name: string;
  /** The worker module (default training_worker.ts next to this file; bundles pass their own). */
  workerUrl?: string | URL;
}

/**
 * Place a training actor (cluster.scheduleActor) and start its worker on the placement's virtual GPU with its
 * memory budget and GPU-time weight. A cluster kill (placement group removed, owner gone) terminates it.
 */
export async function spawnTrainingActor(opts: SpawnTrainingActorOptions): Promise<PlacedTrainingActor> {
  const placement = await opts.cluster.scheduleActor({
    name: opts.name, numGpus: opts.numGpus, placementGroup: opts.placementGroup, bundleIndex: opts.bundleIndex,
    captureChildTasks: opts.captureChildTasks,
  });
  const gpu = placement.gpus[0];
  if (!gpu) {
    placement.release();
    throw new InvalidInputError(`training actor "${opts.name}" needs a GPU share (numGpus > 0), got ${opts.numGpus}`);
  }
  let w;
  try {
    w = await spawnActorWorker<TrainingActor>(opts.workerUrl ?? new URL('./training_worker.ts', import.meta.url), opts.host, {
      actorId: opts.name, virtualGpuUuid: gpu.uuid, memoryBudgetBytes: gpu.memoryBudgetBytes, weight: gpu.fraction,
    });
  } catch (e) {
    placement.release();
    throw e;
  }
  const worker = w;
  let loan: { placement: ActorPlacement; clientId: number } | null = null;
  const endLoan = async () => {
    if (!loan) return;
    const l = loan;
    loan = null;
    await opts.host.detach(l.clientId, 'returned its borrowed share');
    l.placement.release();
  };
  const crashed = worker.crashed.then(async (m) => { await endLoan(); placement.release(); return m; });
  placement.onKill(() => void worker.terminate().then(endLoan));
  const api = withTypedErrors(worker.api);
  return {
    api, placement, info: worker.info as TrainingActorInfo, crashed,
    async terminate() {
      await worker.terminate();
      await endLoan();
      placement.release();
    },
    async borrow(numGpus: number) {
      if (loan) throw new InvalidInputError(`training actor "${opts.name}" already borrows a share`);
      const p = await placement.scheduleChild({
        name: `${opts.name}.borrowed`, numGpus, placementGroup: placement.placementGroup, bundleIndex: placement.bundleIndex,
      });
      const g = p.gpus[0];
      const a = await opts.host.attach({ actorId: `${opts.name}.borrowed`, virtualGpuUuid: g.uuid, memoryBudgetBytes: g.memoryBudgetBytes, weight: g.fraction });
      loan = { placement: p, clientId: a.clientId };
      return await api.addBorrowedPool(Comlink.transfer(a.port, [a.port]));
    },
    async giveBack() {
      await api.returnBorrowed();
      await endLoan();
    },
  };
}
