/**
 * The device host: the one owner of the GPUDevice (DESIGN.md, "The constraint that shapes everything"). Actors
 * (RemoteGpu, in workers or in-process) connect over MessagePorts and send command lists; the host executes
 * them on its LocalGpu, in weighted-fair order across actors, and answers reads.
 *
 * It keeps:
 * - the buffer registry, which is also the handle table: every buffer has an owner and a generation; other
 *   actors on the same virtual GPU may open exported byte ranges as views (zero-copy), refcounted per opener;
 * - per-actor memory accounting, enforced at allocation against each actor's budget;
 * - pipelines compiled once across actors (LocalGpu caches them by KernelSource key) and bind groups cached;
 * - each actor's kernels and recordings by the actor's own ids, so a command list never needs an answer.
 * - a weighted fair queue (src/cluster/fair_share.ts) that orders queued command lists across actors, and a
 *   bounded window of work in flight on the GPU, so that under contention the queue's order is the GPU's order
 *   and each actor gets GPU time in proportion to its weight (see "GPU time sharing" below);
 * - liveness: every actor's RemoteGpu says it is alive every `heartbeatMs` when it has nothing else to send;
 *   an actor silent for `livenessTimeoutMs` is detached as if terminated (a worker killed without its spawner
 *   noticing: MessagePorts have no close event in Deno). Judged from its first message on (RemoteGpu says it
 *   is alive as it connects): a worker still loading its modules is its spawner's to wait for.
 *
 * GPU time sharing. Command lists are executed in batches (a run of one actor's lists, consecutive in the fair
 * queue's order); each batch is a timed span on the LocalGpu (timestamp queries around its compute passes,
 * where the device has them) and, once the GPU has finished it, its actor is charged the measured GPU time via
 * FairShareQueue.complete, so an actor whose lists are long pays for them. Fallback without timestamps: the
 * wall time from the batch's start (or the previous batch's completion, if later) to its completion.
 * Estimates (for queue tags and the window) are the list's command count times the actor's measured
 * milliseconds per command (a moving average). Under contention (work queued or in flight for two or more
 * parties: an actor, or all ranks of one tensor-parallel group together) the host dequeues only while the
 * predicted GPU time in flight is under `gpuWindowMs`; the rest waits in the fair queue. The window must
 * exceed the time the runtime takes to notice completed GPU work (~11 ms in Deno, DESIGN.md), or the GPU
 * idles. A lone party is never held back. Tensor-parallel ranks: the window only waits for GPU work, which
 * always finishes, and the fair queue serves every backlogged rank in turn, so a rank waiting at an all-reduce
 * for a peer's queued list is never blocked indefinitely; what a rank leaves queued at an all-reduce runs (and
 * is charged) in the peer's batch that completes it: the group as a whole is charged correctly.
 *
 * Errors in fire-and-forget commands (a dispatch on a stale handle, say) are kept and surface, typed, at the
 * actor's next awaited call (read, sync, createBuffer...), as WebGPU's own errors do; the rest of that command
 * list is skipped. Visibility across actors: what one actor wrote is seen by another once the writer's sync()
 * (or read) has resolved, as CUDA-IPC users synchronise a stream before handing a handle over.
 */
import {
  ActorDisconnectedError,
  ActorOutOfMemoryError,
  GpuValidationError,
  HandleDeviceMismatchError,
  InvalidInputError,
  StaleHandleError,
} from '../errors.ts';
import type { BufferBinding, Gpu, GpuBuffer, Kernel, Recording } from '../gpu/gpu.ts';
import { LocalGpu } from '../gpu/local.ts';
import { TensorParallelGroup } from '../gpu/tensor_parallel_group.ts';
import type { AcquireOptions } from '../gpu/device.ts';
import { type FairShareEntry, FairShareQueue } from '../cluster/fair_share.ts';
import {
  type BufferHandle,
  type ClientMessage,
  type CommandMessage,
  type ExportRequest,
  type HostMessage,
  ALL_REDUCE_KERNEL,
  NONE,
  Op,
  type OpenedView,
  serializeError,
  WordReader,
} from '../gpu/remote_protocol.ts';

export interface AttachOptions {
  /** Names the actor in errors and stats. */
  actorId: string;
  /** The virtual GPU the actor is placed on; handles open only between actors of the same one. */
  virtualGpuUuid: string;
  /** Device memory the actor may allocate (default: unlimited). */
  memoryBudgetBytes?: number;
  /** Its share of GPU time under contention (its GPU fraction; default 1). */
  weight?: number;
  /**
   * A rank of a tensor-parallel engine: the actors attached with the same `group` get all-reduce collectives
   * across them (RemoteGpu.allReduce), run here as NCCL would run them across GPUs. If one rank detaches,
   * the others are detached too: the group cannot go on without it.
   */
  tensorParallel?: { group: string; rank: number; size: number };
}

/** Scheduling and liveness settings of a device host (DeviceHost.create's second argument). */
export interface DeviceHostOptions {
  /**
   * Under contention, the GPU time (ms, predicted) the host lets run ahead of the GPU; more waits in the fair
   * queue. Default 30: above Deno's ~11 ms to notice finished work, so the GPU never runs dry. Infinity turns the
   * window off (submit everything at once: the GPU's FIFO then decides, not the weights).
   */
  gpuWindowMs?: number;
  /** How often an idle actor tells the host it is alive (ms; default 5000). */
  heartbeatMs?: number;
  /** Detach an actor the host has not heard from for this long (ms; default 60000; Infinity: never). */
  livenessTimeoutMs?: number;
  /**
   * Time batches with timestamp queries and charge what they took (default true). false: the fair queue charges
   * each list its command count at a fixed estimate — the order then depends on the weights and the lists alone,
   * not on measurement noise (tests of the ordering use it; GPU-time sharing needs the measurements).
   */
  measureGpuTime?: boolean;
}

export interface Attached {
  clientId: number;
  /** The actor's end: hand it (transferred) to RemoteGpu.connect in the actor's worker. */
  port: MessagePort;
}

/** What the main thread needs from a device host, in-process or in a worker (through comlink). */
export interface HostControl {
  attach(opts: AttachOptions): Attached | Promise<Attached>;
  /** Drop an actor (its worker was terminated): free its buffers, invalidate its handles, drop its queued work. */
  detach(clientId: number, reason?: string): void | Promise<void>;
}

export interface ClientStats {
  clientId: number;
  actorId: string;
  virtualGpuUuid: string;
  weight: number;
  memoryBudgetBytes: number;
  bytesInUse: number;
  buffers: number;
  openViews: number;
  /** Scheduling cost executed so far (dispatches, replayed dispatches, copies, writes). */
  servedCost: number;
  /**
   * GPU time (ms) charged to the actor for its completed command lists: measured with timestamp queries where
   * the device has them, else the wall-time fallback (see the module comment).
   */
  gpuTimeMs: number;
  /** Its command lists completed on the GPU (charged). */
  completedLists: number;
  /** Moving average of its measured milliseconds per command (the basis of its estimates). */
  msPerCommand: number;
}

export interface HostStats {
  clients: ClientStats[];
  buffers: number;
  exportedBuffers: number;
  openViews: number;
  kernels: number;
  bindGroups: number;
  /** Command lists received and waiting in the fair queue. */
  queuedLists: number;
}

interface OwnEntry {
  kind: 'own';
  id: number;
  buf: GpuBuffer;
  owner: Client;
  generation: number;
  alignedBytes: number;
  exported: boolean;
  views: Set<ViewEntry>;
}
interface ViewEntry {
  kind: 'view';
  id: number;
  target: OwnEntry;
  client: Client;
  offset: number;
  size: number;
  refs: number;
  /** A sub-buffer the owner cut from its own buffer (Gpu.subBuffer), not an opened handle: it may export it. */
  sub: boolean;
}
type Entry = OwnEntry | ViewEntry;

interface HostRecording {
  rec: Recording | null;
  views: ViewEntry[];
  error: unknown;
}

interface Client {
  id: number;
  actorId: string;
  virtualGpuUuid: string;
  budget: number;
  weight: number;
  port: MessagePort;
  bytesInUse: number;
  entries: Map<number, Entry>;
  kernels: Map<number, Kernel>;
  recordings: Map<number, HostRecording>;
  error: unknown;
  servedCost: number;
  /** Where its commands run: the host's LocalGpu, or its rank's view of a TensorParallelGroup. */
  target: Gpu;
  tp: { group: string; rank: number } | null;
  /** Who it contends with for GPU time as one: itself, or its whole tensor-parallel group. */
  party: string;
  gpuTimeMs: number;
  completedLists: number;
  /** Measured GPU ms per command (moving average; 0 until measured). */
  msPerCommand: number;
  /** performance.now() of its last message (liveness); null until its first (a worker still starting). */
  lastHeard: number | null;
}

/** A queued command list (or goodbye) and its command count. */
interface QueueItem {
  client: Client;
  msg: CommandMessage | 'bye';
  commands: number;
}

/** Command lists of one actor executed together as one timed span, until the GPU has finished them. */
interface Batch {
  client: Client;
  entries: FairShareEntry<QueueItem>[];
  commands: number;
  predictedMs: number;
  startedAt: number;
}

interface Tombstone {
  owner: string;
  label: string;
  generation: number;
  reason: string;
}

/** Where a command's buffer id resolves to on the host's LocalGpu. */
interface Resolved {
  buf: GpuBuffer;
  base: number;
  size: number;
  /** The view when the id is an opened handle (null for the actor's own buffers). */
  view: ViewEntry | null;
}

/** Whether a command list has dispatches (lists from older senders without the count are assumed to). */
const hasDispatches = (msg: CommandMessage) => (msg.dispatches ?? 1) > 0;

const alignedSize = (size: number) => Math.max(16, Math.ceil(size / 16) * 16);
const MAX_TOMBSTONES = 10_000;
/** Weight of a new measurement in an actor's ms-per-command average. */
const EWMA_ALPHA = 0.3;
/**
 * Estimated GPU ms per command before anything was measured. Any positive guess keeps queued lists' tags
 * apart (with 0 they would tie, and the first client served would run all its queued lists before the others);
 * measurements correct it within a few batches.
 */
const DEFAULT_MS_PER_COMMAND = 0.02;
/** Batches in flight under contention at most, whatever the predictions say (they are 0 until measured). */
const MAX_BATCHES_IN_FLIGHT = 32;

/** Keep a timer from holding a Deno process open (browsers have no such notion). */
function unrefTimer(id: ReturnType<typeof setInterval>): void {
  (globalThis as { Deno?: { unrefTimer?(id: number): void } }).Deno?.unrefTimer?.(id as unknown as number);
}

export class DeviceHost implements HostControl {
  readonly gpu: LocalGpu;
  private clients = new Map<number, Client>();
  private registry = new Map<number, OwnEntry>();
  private tombstones = new Map<number, Tombstone>();
  /** Weighted fair order across actors (weight = GPU fraction, cost = predicted then measured GPU ms of a list). */
  private queue = new FairShareQueue<QueueItem>();
  /** Batches submitted to the GPU and not yet seen finished. */
  private inFlight = new Set<Batch>();
  /** Their predicted GPU ms. */
  private inFlightMs = 0;
  /** When the last batch was seen finished (the wall-time fallback's start for the next). */
  private lastDoneAt = 0;
  /** Under contention, predicted GPU ms allowed in flight (DeviceHostOptions.gpuWindowMs). */
  gpuWindowMs: number;
  /** Told to each actor at attach (DeviceHostOptions.heartbeatMs). */
  readonly heartbeatMs: number;
  /** DeviceHostOptions.livenessTimeoutMs. */
  readonly livenessTimeoutMs: number;
  private livenessTimer: ReturnType<typeof setInterval> | null = null;
  private lastLivenessCheck = 0;
  private nextClientId = 1;
  private nextViewId = 0x40000000;
  private generationCounter = 0;
  /** Tensor-parallel groups by name: the group and its members' client ids by rank. */
  private tpGroups = new Map<string, { group: TensorParallelGroup; members: Array<number | undefined> }>();
  /** An allocation is in progress: WebGPU error scopes are device-wide, so nothing else runs meanwhile. */
  private allocating = false;
  private paused = false;
  private destroyed = false;
  private drainScheduled = false;
  /** A message to ourselves schedules a drain behind the messages already queued (setTimeout(0) costs ~2 ms in Deno). */
  private tick: MessageChannel | null = null;
  /** How long one drain may run before yielding to let other actors' lists arrive. */
  quantumMs = 4;
  private readonly measureGpuTime: boolean;
  /** Every executed command list's actor, in order, when set (fair-queue tests). */
  executionLog: number[] | null = null;

  constructor(gpu: LocalGpu, opts: DeviceHostOptions = {}) {
    this.gpu = gpu;
    this.gpuWindowMs = opts.gpuWindowMs ?? 30;
    this.measureGpuTime = opts.measureGpuTime ?? true;
    this.heartbeatMs = opts.heartbeatMs ?? 5000;
    this.livenessTimeoutMs = opts.livenessTimeoutMs ?? 60_000;
    if (!(this.gpuWindowMs > 0)) throw new InvalidInputError(`DeviceHost: gpuWindowMs must be > 0, got ${this.gpuWindowMs}`);
    if (!(this.heartbeatMs > 0 && Number.isFinite(this.heartbeatMs))) throw new InvalidInputError(`DeviceHost: heartbeatMs must be a finite number > 0, got ${this.heartbeatMs}`);
    if (!(this.livenessTimeoutMs > this.heartbeatMs)) {
      throw new InvalidInputError(`DeviceHost: livenessTimeoutMs (${this.livenessTimeoutMs}) must exceed heartbeatMs (${this.heartbeatMs})`);
    }
  }

  static async create(opts: AcquireOptions = {}, hostOpts: DeviceHostOptions = {}): Promise<DeviceHost> {
    return new DeviceHost(await LocalGpu.create(opts), hostOpts);
  }

  attach(opts: AttachOptions): Attached {
    if (!opts.actorId) throw new InvalidInputError('attach: actorId is required');
    if (!opts.virtualGpuUuid) throw new InvalidInputError(`attach "${opts.actorId}": virtualGpuUuid is required`);
    const budget = opts.memoryBudgetBytes ?? Infinity;
    if (!(budget >= 0)) throw new InvalidInputError(`attach "${opts.actorId}": memoryBudgetBytes must be >= 0, got ${budget}`);
    const weight = opts.weight ?? 1;
    if (!(weight > 0 && Number.isFinite(weight))) throw new InvalidInputError(`attach "${opts.actorId}": weight must be > 0, got ${weight}`);
    let target: Gpu = this.gpu;
    let tpEntry: { group: TensorParallelGroup; members: Array<number | undefined> } | undefined;
    const tp = opts.tensorParallel;
    if (tp) {
      if (!(Number.isInteger(tp.size) && tp.size >= 1 && tp.size <= 4 && Number.isInteger(tp.rank) && tp.rank >= 0 && tp.rank < tp.size)) {
        throw new InvalidInputError(`attach "${opts.actorId}": tensorParallel rank ${tp.rank} of size ${tp.size} is invalid (size 1 to 4, 0 <= rank < size)`);
      }
      tpEntry = this.tpGroups.get(tp.group);
      if (!tpEntry) {
        tpEntry = { group: new TensorParallelGroup(this.gpu, tp.size), members: new Array(tp.size) };
        this.tpGroups.set(tp.group, tpEntry);
      }
      if (tpEntry.group.size !== tp.size) {
        throw new InvalidInputError(`attach "${opts.actorId}": tensor-parallel group "${tp.group}" has ${tpEntry.group.size} ranks, not ${tp.size}`);
      }
      if (tpEntry.members[tp.rank] !== undefined) {
        throw new InvalidInputError(`attach "${opts.actorId}": rank ${tp.rank} of tensor-parallel group "${tp.group}" is already attached`);
      }
      target = tpEntry.group.ranks[tp.rank];
    }
    const channel = new MessageChannel();
    const c: Client = {
      id: this.nextClientId++, actorId: opts.actorId, virtualGpuUuid: opts.virtualGpuUuid, budget, weight,
      port: channel.port1, bytesInUse: 0, entries: new Map(), kernels: new Map(), recordings: new Map(), error: null, servedCost: 0,
      target, tp: tp ? { group: tp.group, rank: tp.rank } : null,
      party: tp ? `tp:${tp.group}` : `actor:${this.nextClientId - 1}`, gpuTimeMs: 0, completedLists: 0, msPerCommand: 0,
      lastHeard: null,
    };
    if (tpEntry && tp) tpEntry.members[tp.rank] = c.id;
    this.clients.set(c.id, c);
    c.port.onmessage = (ev: MessageEvent<ClientMessage>) => this.receive(c, ev.data);
    this.post(c, {
      t: 'welcome', clientId: c.id, actorId: c.actorId, virtualGpuUuid: c.virtualGpuUuid,
      memoryBudgetBytes: Number.isFinite(budget) ? budget : Number.MAX_SAFE_INTEGER, caps: this.gpu.caps,
      heartbeatMs: this.heartbeatMs,
    });
    this.startLivenessChecks();
    return { clientId: c.id, port: channel.port2 };
  }

  detach(clientId: number, reason = 'was detached'): void {
    const c = this.clients.get(clientId);
    if (!c) return;
    this.clients.delete(clientId);
    this.queue.removeClient(String(clientId));
    for (const e of c.entries.values()) {
      if (e.kind === 'own') this.free(e, `its owner actor "${c.actorId}" ${reason}`);
      else e.target.views.delete(e);
    }
    c.entries.clear();
    for (const r of c.recordings.values()) if (r.rec) c.target.releaseRecording(r.rec);
    c.recordings.clear();
    if (c.tp) {
      // The other ranks would wait for this one at their next all-reduce forever: the group ends with it.
      const entry = this.tpGroups.get(c.tp.group);
      this.tpGroups.delete(c.tp.group);
      if (entry) {
        entry.group.fail(new ActorDisconnectedError(`rank ${c.tp.rank} ("${c.actorId}") of tensor-parallel group "${c.tp.group}" ${reason}`));
        for (const id of entry.members) {
          if (id !== undefined && id !== c.id) this.detach(id, `lost rank ${c.tp.rank} ("${c.actorId}") of its tensor-parallel group "${c.tp.group}"`);
        }
      }
    }
    try {
      this.post(c, { t: 'closed', reason: `actor "${c.actorId}" ${reason}` });
    } catch { /* the worker is gone */ }
    c.port.onmessage = null;
    c.port.close();
  }

  /** Stop executing queued command lists until resume() (tests of the fair queue). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.scheduleDrain();
  }

  stats(): HostStats {
    let exported = 0, views = 0;
    for (const e of this.registry.values()) {
      if (e.exported) exported++;
      for (const v of e.views) if (!v.sub) views++;
    }
    const g = this.gpu.stats();
    return {
      clients: [...this.clients.values()].map((c) => ({
        clientId: c.id, actorId: c.actorId, virtualGpuUuid: c.virtualGpuUuid, weight: c.weight,
        memoryBudgetBytes: c.budget, bytesInUse: c.bytesInUse,
        buffers: [...c.entries.values()].filter((e) => e.kind === 'own').length,
        openViews: [...c.entries.values()].filter((e) => e.kind === 'view' && !e.sub).length,
        servedCost: c.servedCost, gpuTimeMs: c.gpuTimeMs, completedLists: c.completedLists, msPerCommand: c.msPerCommand,
      })),
      buffers: this.registry.size, exportedBuffers: exported, openViews: views, kernels: g.kernels, bindGroups: g.bindGroups,
      queuedLists: this.queue.size,
    };
  }

  /** Detach every actor and destroy the device. */
  destroy(): void {
    this.destroyed = true;
    for (const id of [...this.clients.keys()]) this.detach(id, 'lost its device host (the host shut down)');
    if (this.livenessTimer !== null) clearInterval(this.livenessTimer);
    this.livenessTimer = null;
    this.tick?.port1.close();
    this.tick?.port2.close();
    this.tick = null;
    this.gpu.destroy();
  }

  // ---- message handling and scheduling ----

  private post(c: Client, msg: HostMessage, transfer: Transferable[] = []): void {
    c.port.postMessage(msg, transfer);
  }

  private receive(c: Client, msg: ClientMessage): void {
    if (!this.clients.has(c.id)) return;
    c.lastHeard = performance.now();
    if (msg.t === 'alive') return;
    const commands = msg.t === 'bye' ? 0 : msg.cost;
    this.queue.enqueue(String(c.id), c.weight, commands * this.msPerCommand(c), { client: c, msg: msg.t === 'bye' ? 'bye' : msg, commands });
    this.scheduleDrain();
  }

  /** The actor's measured ms per command, or (before its first measurement) the average over the others. */
  private msPerCommand(c: Client): number {
    if (c.msPerCommand > 0) return c.msPerCommand;
    let sum = 0, n = 0;
    for (const o of this.clients.values()) {
      if (o.msPerCommand > 0) {
        sum += o.msPerCommand;
        n++;
      }
    }
    return n ? sum / n : DEFAULT_MS_PER_COMMAND;
  }

  // ---- liveness ----

  private startLivenessChecks(): void {
    if (this.livenessTimer !== null || !Number.isFinite(this.livenessTimeoutMs)) return;
    const every = Math.max(10, Math.min(this.heartbeatMs, this.livenessTimeoutMs / 4));
    this.lastLivenessCheck = performance.now();
    this.livenessTimer = setInterval(() => this.checkLiveness(every), every);
    unrefTimer(this.livenessTimer);
  }

  private checkLiveness(every: number): void {
    const now = performance.now();
    const late = now - this.lastLivenessCheck > 2 * every;
    this.lastLivenessCheck = now;
    // This thread was stalled: messages that arrived meanwhile may not have been handled yet. Judge next time.
    if (late) return;
    for (const c of [...this.clients.values()]) {
      if (c.lastHeard === null) continue; // not connected yet: the spawner waits for that
      const silent = now - c.lastHeard;
      if (silent > this.livenessTimeoutMs && this.clients.has(c.id)) {
        this.detach(c.id, `stopped responding: no message for ${(silent / 1000).toFixed(1)} s (livenessTimeoutMs ${this.livenessTimeoutMs}); its worker was probably terminated`);
      }
    }
  }

  private scheduleDrain(): void {
    if (this.drainScheduled || this.paused || this.destroyed) return;
    this.drainScheduled = true;
    if (!this.tick) {
      this.tick = new MessageChannel();
      this.tick.port2.onmessage = () => {
        this.drainScheduled = false;
        this.drain();
      };
    }
    this.tick.port1.postMessage(0);
  }

  private drain(): void {
    const deadline = performance.now() + this.quantumMs;
    let yielded = false;
    while (!this.allocating && !this.paused && this.windowOpen()) {
      const head = this.queue.peek();
      if (!head || this.holdFor(head)) return;
      const entry = this.queue.dequeue()!;
      const c = entry.item.client;
      if (!this.clients.has(c.id)) continue;
      if (entry.item.msg === 'bye') {
        this.detach(c.id, 'disconnected');
        continue;
      }
      // A batch: this list and the ones the fair queue would serve right after it, while they are the same actor's.
      const batch: Batch = { client: c, entries: [], commands: 0, predictedMs: 0, startedAt: performance.now() };
      // Timing a batch costs two submits and a timestamp readback: only worth it while another party could
      // contend for the GPU (a lone actor is neither held back nor charged; its estimates stand), and only for
      // dispatches (the timestamps bracket compute passes: copies and writes between them are not measured).
      // Not timing a copy-only batch (a weight sync) also spares the actor a wait: the readback's mapAsync blocks
      // Deno's thread until the GPU is idle, so the host would answer it only once its copies had finished.
      const timed = this.shouldTime(entry.item.msg);
      if (timed) this.gpu.beginTimedSpan();
      for (let e: FairShareEntry<QueueItem> | undefined = entry; e; ) {
        this.run(batch, e);
        if (performance.now() > deadline) {
          yielded = true;
          break;
        }
        const next = this.queue.peek();
        if (!next || next.item.client !== c || next.item.msg === 'bye' || this.allocating || !this.clients.has(c.id)) break;
        if (timed !== this.shouldTime(next.item.msg)) break;
        if (this.contended() && this.inFlightMs + batch.predictedMs + next.costEstimate >= this.gpuWindowMs) break;
        if (this.holdFor(next)) break;
        e = this.queue.dequeue();
      }
      if (timed) this.submit(batch);
      if (yielded) break;
    }
    if (this.queue.size > 0 && (yielded || this.windowOpen())) this.scheduleDrain();
  }

  private run(batch: Batch, e: FairShareEntry<QueueItem>): void {
    const c = batch.client;
    const msg = e.item.msg as CommandMessage;
    batch.entries.push(e);
    batch.commands += e.item.commands;
    batch.predictedMs += e.costEstimate;
    this.executionLog?.push(c.id);
    c.servedCost += msg.cost;
    this.execute(c, msg);
  }

  /** Close the batch's span; once the GPU has finished it, charge its actor and let more work in. */
  private submit(batch: Batch): void {
    this.inFlight.add(batch);
    this.inFlightMs += batch.predictedMs;
    this.gpu.endTimedSpan().then(
      (t) => this.finished(batch, t.gpuMs, t.doneAt),
      () => this.finished(batch, null, performance.now()),
    );
  }

  private finished(batch: Batch, gpuMs: number | null, doneAt: number): void {
    this.inFlight.delete(batch);
    this.inFlightMs -= batch.predictedMs;
    if (this.inFlight.size === 0) this.inFlightMs = 0; // no drift from float sums
    // Without timestamps: the GPU ran this batch from when it was started (or the previous finished) until now.
    const measured = gpuMs ?? Math.max(0, doneAt - Math.max(batch.startedAt, this.lastDoneAt));
    this.lastDoneAt = Math.max(this.lastDoneAt, doneAt);
    const c = batch.client;
    c.gpuTimeMs += measured;
    c.completedLists += batch.entries.length;
    if (batch.commands > 0) {
      const rate = measured / batch.commands;
      c.msPerCommand = c.msPerCommand > 0 ? (1 - EWMA_ALPHA) * c.msPerCommand + EWMA_ALPHA * rate : rate;
    }
    // Split the measurement over the batch's lists by their command counts.
    for (const e of batch.entries) {
      const share = batch.commands > 0 ? e.item.commands / batch.commands : 1 / batch.entries.length;
      this.queue.complete(e, measured * share);
    }
    if (this.queue.size > 0) this.scheduleDrain();
  }

  /**
   * Hold `next` back for an actor that is ahead of it in the fair order but has nothing queued at this moment
   * while its previous lists run on the GPU: it is about to send its next list (a backlogged actor's next list
   * arrives a message after the host took its last one), and giving its turn away would cost it its share.
   * Only while enough work is in flight to keep the GPU busy until the host looks again (half the window), and
   * only as long as that actor has work in flight: an actor that went idle holds nothing back (no deadlock,
   * e.g. for tensor-parallel ranks, since GPU work always finishes).
   */
  private holdFor(next: FairShareEntry<QueueItem>): boolean {
    if (this.inFlightMs < this.gpuWindowMs / 2 || !Number.isFinite(this.gpuWindowMs)) return false;
    const party = next.item.client.party;
    for (const b of this.inFlight) {
      const y = b.client;
      if (y.party === party || !this.clients.has(y.id) || this.queue.pendingOf(String(y.id)) > 0) continue;
      if (this.queue.nextStartOf(String(y.id)) < next.startTag) return true;
    }
    return false;
  }

  /** Whether a batch starting with (or continuing into) this list is timed: see drain(). */
  private shouldTime(msg: CommandMessage | 'bye'): boolean {
    return this.measureGpuTime && msg !== 'bye' && hasDispatches(msg) && this.partiesAttached() > 1;
  }

  /** How many parties (an actor, or a whole tensor-parallel group) are attached. */
  private partiesAttached(): number {
    const parties = new Set<string>();
    for (const c of this.clients.values()) {
      parties.add(c.party);
      if (parties.size > 1) break;
    }
    return parties.size;
  }

  /** Whether two or more parties (an actor, or a whole tensor-parallel group) have work queued or in flight. */
  private contended(): boolean {
    let party: string | null = null;
    for (const b of this.inFlight) {
      if (party === null) party = b.client.party;
      else if (b.client.party !== party) return true;
    }
    for (const c of this.clients.values()) {
      if (this.queue.pendingOf(String(c.id)) === 0) continue;
      if (party === null) party = c.party;
      else if (c.party !== party) return true;
    }
    return false;
  }

  /** May the host submit more work now? Always when nothing is in flight or no one contends; else within the window. */
  private windowOpen(): boolean {
    if (this.inFlight.size === 0 || !this.contended()) return true;
    return this.inFlight.size < MAX_BATCHES_IN_FLIGHT && this.inFlightMs < this.gpuWindowMs;
  }

  // ---- command execution ----

  private execute(c: Client, msg: CommandMessage): void {
    try {
      for (const k of msg.kernels ?? []) {
        c.kernels.set(k.id, this.gpu.kernel({ key: k.key, code: k.code, entryPoint: k.entryPoint }));
      }
    } catch (e) {
      c.error ??= e;
    }
    const r = new WordReader(new Uint32Array(msg.words, 0, msg.length));
    // After a failure the rest of the list is parsed but not run; its requests are answered with the error.
    let live = c.error === null;
    while (!r.done()) {
      try {
        this.op(c, r, msg, live);
      } catch (e) {
        c.error ??= e;
        live = false;
      }
    }
  }

  private op(c: Client, r: WordReader, msg: CommandMessage, live: boolean): void {
    const op = r.u32();
    switch (op) {
      case Op.Write: {
        const id = r.u32(), off = r.big(), len = r.big(), n = r.u32();
        let data: Uint8Array;
        if (n === NONE) data = new Uint8Array(msg.blobs![r.u32()], 0, len);
        else {
          data = new Uint8Array(r.words.buffer, r.words.byteOffset + r.pos * 4, len);
          r.pos += n;
        }
        if (!live) return;
        const t = this.resolve(c, id);
        this.checkRange(t, off, len, 'write');
        c.target.write(t.buf, data, t.base + off);
        return;
      }
      case Op.Dispatch:
        this.dispatchBody(c, r, live, null);
        return;
      case Op.Copy: {
        const srcId = r.u32(), srcOff = r.big(), dstId = r.u32(), dstOff = r.big(), size = r.big();
        if (!live) return;
        const s = this.resolve(c, srcId), d = this.resolve(c, dstId);
        this.checkRange(s, srcOff, size, 'copy from');
        this.checkRange(d, dstOff, size, 'copy to');
        c.target.copy(s.buf, s.base + srcOff, d.buf, d.base + dstOff, size);
        return;
      }
      case Op.Replay: {
        const id = r.u32();
        if (!live) return;
        const hr = c.recordings.get(id);
        if (!hr) throw new GpuValidationError(`recording ${id} of actor "${c.actorId}" was released`);
        if (hr.error) throw hr.error;
        for (const v of hr.views) this.checkView(v);
        c.target.replay(hr.rec!);
        return;
      }
      case Op.Flush:
        if (live) c.target.flush();
        return;
      case Op.Destroy: {
        const id = r.u32();
        const e = c.entries.get(id);
        if (!e) return;
        if (e.kind === 'own') {
          c.entries.delete(id);
          this.free(e, `its owner actor "${c.actorId}" freed it`);
        } else if (--e.refs === 0) {
          c.entries.delete(id);
          e.target.views.delete(e);
        }
        return;
      }
      case Op.ReleaseRecording: {
        const id = r.u32();
        const hr = c.recordings.get(id);
        c.recordings.delete(id);
        if (hr?.rec) c.target.releaseRecording(hr.rec);
        return;
      }
      case Op.DefineRecording: {
        const id = r.u32(), n = r.u32();
        const hr: HostRecording = { rec: null, views: [], error: null };
        c.recordings.set(id, hr);
        if (!live) {
          for (let i = 0; i < n; i++) this.dispatchBody(c, r, false, null);
          hr.error = new GpuValidationError(`recording ${id} of actor "${c.actorId}" was never captured: an earlier command failed`);
          return;
        }
        let i = 0;
        try {
          hr.rec = c.target.capture(() => {
            for (; i < n; i++) this.dispatchBody(c, r, true, hr.views);
          });
        } catch (e) {
          for (i++; i < n; i++) this.dispatchBody(c, r, false, null);
          hr.error = e;
          throw e;
        }
        return;
      }
      case Op.Read: {
        const req = r.u32(), id = r.u32(), off = r.big(), len = r.big();
        if (!this.failRequest(c, req, live)) {
          this.request(c, req, () => {
            const t = this.resolve(c, id);
            this.checkRange(t, off, len, 'read');
            return c.target.read(t.buf, t.base + off, len).then((bytes) => {
              if (t.view) this.checkView(t.view); // freed while the read was in flight: not its data any more
              return bytes;
            });
          }, true);
        }
        return;
      }
      case Op.Sync: {
        const req = r.u32();
        if (!this.failRequest(c, req, live)) this.request(c, req, () => c.target.sync());
        return;
      }
      case Op.CreateBuffer: {
        const req = r.u32(), size = r.big(), label = String(msg.extras![r.u32()]);
        if (!this.failRequest(c, req, live)) this.request(c, req, () => this.allocate(c, size, label));
        return;
      }
      case Op.Export: {
        const req = r.u32(), items = msg.extras![r.u32()] as ExportRequest[];
        if (!this.failRequest(c, req, live)) this.request(c, req, () => items.map((it) => this.exportRange(c, it)));
        return;
      }
      case Op.Open: {
        const req = r.u32(), handles = msg.extras![r.u32()] as BufferHandle[];
        if (!this.failRequest(c, req, live)) this.request(c, req, () => this.openAll(c, handles));
        return;
      }
      case Op.Ping: {
        const req = r.u32();
        if (!this.failRequest(c, req, live)) this.request(c, req, () => undefined);
        return;
      }
      case Op.SubBuffer: {
        const req = r.u32(), parent = r.u32(), off = r.big(), len = r.big(), label = String(msg.extras![r.u32()]);
        if (!this.failRequest(c, req, live)) this.request(c, req, () => this.subBuffer(c, parent, off, len, label));
        return;
      }
      default:
        throw new GpuValidationError(`actor "${c.actorId}" sent an unknown command ${op}: the command list is corrupt`);
    }
  }

  /** Parse one dispatch body; when `live`, run it (or capture it, recording the views it binds in `views`). */
  private dispatchBody(c: Client, r: WordReader, live: boolean, views: ViewEntry[] | null): void {
    const kernelId = r.u32(), x = r.u32(), y = r.u32(), z = r.u32(), np = r.u32();
    if (kernelId === ALL_REDUCE_KERNEL) {
      // A collective in dispatch form: x = buffer id, y = elements, z = dtype (0 f32, 1 f16).
      const nb = r.u32(); // 0: no bindings (read first: `r.pos += 3 * r.u32()` would lose the read's advance)
      r.pos += 3 * nb;
      if (!live) return;
      if (!c.target.allReduce) throw new GpuValidationError(`actor "${c.actorId}" asked for an all-reduce but is not a rank of a tensor-parallel group`);
      const t = this.resolve(c, x);
      if (t.view || t.base !== 0) throw new GpuValidationError(`actor "${c.actorId}": all-reduce needs one of its own buffers, not an opened handle`);
      if ((z === 1 ? 2 : 4) * y > t.size) throw new GpuValidationError(`actor "${c.actorId}": all-reduce of ${y} elements overflows buffer ${x} (${t.size} bytes)`);
      c.target.allReduce(t.buf, y, z === 1 ? 'f16' : 'f32');
      return;
    }
    let params: Uint32Array | null = null;
    if (np !== NONE) {
      params = r.words.subarray(r.pos, r.pos + np);
      r.pos += np;
    }
    const nb = r.u32();
    if (!live) {
      r.pos += 3 * nb;
      return;
    }
    const bindings: BufferBinding[] = [];
    for (let i = 0; i < nb; i++) {
      const id = r.u32(), off = r.u32(), size = r.u32();
      const t = this.resolve(c, id);
      if (!t.view) {
        bindings.push({ buffer: t.buf, offset: off, size: size === NONE ? undefined : size });
        continue;
      }
      if (off > t.size) throw new GpuValidationError(`binding offset ${off} is past the end of handle view ${id} (${t.size} bytes)`);
      // A view's default size is the rest of its byte range (rounded up to a word, within the buffer).
      const sz = size === NONE ? Math.min(Math.ceil((t.size - off) / 4) * 4, t.buf.size - t.base - off) : size;
      if (off + sz > Math.ceil(t.size / 4) * 4) throw new GpuValidationError(`binding [${off}, ${off + sz}) overflows handle view ${id} (${t.size} bytes)`);
      bindings.push({ buffer: t.buf, offset: t.base + off, size: sz });
      views?.push(t.view);
    }
    const kernel = c.kernels.get(kernelId);
    if (!kernel) throw new GpuValidationError(`actor "${c.actorId}" dispatched unknown kernel ${kernelId}`);
    c.target.dispatch(kernel, bindings, params, [x, y, z]);
  }

  /** When the actor has a pending error (or this list failed), answer request `req` with it. */
  private failRequest(c: Client, req: number, live: boolean): boolean {
    if (live && c.error === null) return false;
    const err = c.error ?? new GpuValidationError('an earlier command of this list failed');
    c.error = null;
    this.post(c, { t: 'reply', id: req, ok: false, error: serializeError(err) });
    return true;
  }

  private request(c: Client, req: number, run: () => unknown, transferResult = false): void {
    const ok = (value: unknown) => {
      if (!this.clients.has(c.id)) return;
      this.post(c, { t: 'reply', id: req, ok: true, value }, transferResult ? [value as ArrayBuffer] : []);
    };
    const fail = (e: unknown) => {
      if (this.clients.has(c.id)) this.post(c, { t: 'reply', id: req, ok: false, error: serializeError(e) });
    };
    let result: unknown;
    try {
      result = run();
    } catch (e) {
      fail(e);
      return;
    }
    if (result instanceof Promise) result.then(ok, fail);
    else ok(result);
  }

  // ---- buffers, budgets, handles ----

  private async allocate(c: Client, size: number, label: string): Promise<OpenedView> {
    const bytes = alignedSize(size);
    if (c.bytesInUse + bytes > c.budget) {
      throw new ActorOutOfMemoryError({ actorId: c.actorId, budgetBytes: c.budget, inUseBytes: c.bytesInUse, requestedBytes: bytes, label });
    }
    // Reserve now so allocations in flight count; nothing else runs until this one is done (error scopes).
    c.bytesInUse += bytes;
    this.allocating = true;
    try {
      const buf = await this.gpu.createBuffer(size, label);
      if (!this.clients.has(c.id)) {
        this.gpu.destroyBuffer(buf);
        throw new ActorDisconnectedError(`actor "${c.actorId}" detached while allocating "${label}"`);
      }
      const e: OwnEntry = { kind: 'own', id: buf.id, buf, owner: c, generation: ++this.generationCounter, alignedBytes: bytes, exported: false, views: new Set() };
      c.entries.set(buf.id, e);
      this.registry.set(buf.id, e);
      return { id: buf.id, size, label };
    } catch (err) {
      c.bytesInUse -= bytes;
      throw err;
    } finally {
      this.allocating = false;
      this.scheduleDrain();
    }
  }

  private free(e: OwnEntry, reason: string): void {
    this.registry.delete(e.id);
    e.owner.bytesInUse -= e.alignedBytes;
    if (e.exported) {
      this.tombstones.set(e.id, { owner: e.owner.actorId, label: e.buf.label, generation: e.generation, reason });
      if (this.tombstones.size > MAX_TOMBSTONES) this.tombstones.delete(this.tombstones.keys().next().value!);
    }
    // Openers keep their view entries until they close them; every use now fails as stale. Through the owner's
    // target: a tensor-parallel rank may still have queued work using it.
    e.owner.target.destroyBuffer(e.buf);
  }

  private resolve(c: Client, id: number): Resolved {
    const e = c.entries.get(id);
    if (!e) throw new GpuValidationError(`buffer ${id} was destroyed or does not belong to actor "${c.actorId}"`);
    if (e.kind === 'own') return { buf: e.buf, base: 0, size: e.buf.size, view: null };
    this.checkView(e);
    return { buf: e.target.buf, base: e.offset, size: e.size, view: e };
  }

  private checkView(v: ViewEntry): void {
    if (this.registry.get(v.target.id) === v.target) return;
    const t = this.tombstones.get(v.target.id);
    throw new StaleHandleError(
      `handle to buffer ${v.target.id} ("${v.target.buf.label}", generation ${v.target.generation}) of actor "${v.target.owner.actorId}" ` +
        `used by actor "${v.client.actorId}" after the buffer was released: ${t?.reason ?? 'its owner freed it'}`,
    );
  }

  private checkRange(t: Resolved, off: number, len: number, what: string): void {
    if (off + len > t.size) {
      throw new GpuValidationError(`${what} [${off}, ${off + len}) overflows "${t.buf.label}"${t.view ? ' (handle view)' : ''} of ${t.size} bytes`);
    }
  }

  /** A range of the actor's own buffer (or of its own sub-buffer) as a view entry it owns: no allocation. */
  private subBuffer(c: Client, parentId: number, off: number, len: number, label: string): OpenedView {
    const p = c.entries.get(parentId);
    if (!p || (p.kind === 'view' && !p.sub)) {
      throw new InvalidInputError(`actor "${c.actorId}" can only cut sub-buffers from buffers it owns; buffer ${parentId} is ${p ? 'an opened handle' : 'not one of them'}`);
    }
    const target = p.kind === 'own' ? p : p.target;
    const base = p.kind === 'own' ? 0 : p.offset;
    const parentSize = p.kind === 'own' ? p.buf.size : p.size;
    if (off + len > parentSize) throw new InvalidInputError(`sub-buffer "${label}" [${off}, ${off + len}) overflows buffer ${parentId} (${parentSize} bytes)`);
    if (p.kind === 'view') this.checkView(p);
    const v: ViewEntry = { kind: 'view', id: this.nextViewId++, target, client: c, offset: base + off, size: len, refs: 1, sub: true };
    target.views.add(v);
    c.entries.set(v.id, v);
    return { id: v.id, size: len, label };
  }

  private exportRange(c: Client, it: ExportRequest): BufferHandle {
    const sub = c.entries.get(it.bufferId);
    if (sub?.kind === 'view' && sub.sub) {
      // A sub-buffer exports as the range of its root buffer.
      this.checkView(sub);
      if (!(it.byteOffset >= 0 && it.byteLength >= 0 && it.byteOffset + it.byteLength <= sub.size)) {
        throw new InvalidInputError(`export of [${it.byteOffset}, ${it.byteOffset + it.byteLength}) overflows sub-buffer ${sub.id} (${sub.size} bytes)`);
      }
      return this.exportRange(c, { ...it, bufferId: sub.target.id, byteOffset: sub.offset + it.byteOffset });
    }
    const e = c.entries.get(it.bufferId);
    if (!e || e.kind !== 'own') {
      throw new InvalidInputError(`actor "${c.actorId}" can only export buffers it owns; buffer ${it.bufferId} is ${e ? 'an opened handle' : 'not one of them'}`);
    }
    if (!(it.byteOffset >= 0 && it.byteLength >= 0 && it.byteOffset + it.byteLength <= e.buf.size)) {
      throw new InvalidInputError(`export of [${it.byteOffset}, ${it.byteOffset + it.byteLength}) overflows "${e.buf.label}" (${e.buf.size} bytes)`);
    }
    e.exported = true;
    return {
      virtualGpuUuid: c.virtualGpuUuid, bufferId: e.id, byteOffset: it.byteOffset, byteLength: it.byteLength,
      dtype: it.dtype, shape: [...it.shape], generation: e.generation, owner: c.actorId,
    };
  }

  /** Open every handle or none: a failure closes what this request had opened. */
  private openAll(c: Client, handles: BufferHandle[]): OpenedView[] {
    const opened: OpenedView[] = [];
    try {
      for (const h of handles) opened.push(this.open(c, h));
    } catch (e) {
      for (const v of opened) {
        const entry = c.entries.get(v.id);
        if (entry?.kind === 'view' && --entry.refs === 0) {
          c.entries.delete(v.id);
          entry.target.views.delete(entry);
        }
      }
      throw e;
    }
    return opened;
  }

  private open(c: Client, h: BufferHandle): OpenedView {
    if (h.virtualGpuUuid !== c.virtualGpuUuid) {
      throw new HandleDeviceMismatchError(
        `actor "${c.actorId}" on virtual GPU ${c.virtualGpuUuid} cannot open a handle of actor "${h.owner}" from virtual GPU ` +
          `${h.virtualGpuUuid}: handles are valid only on the GPU they were exported from (as CUDA-IPC)`,
      );
    }
    const e = this.registry.get(h.bufferId);
    if (!e || e.generation !== h.generation || !e.exported) {
      const t = this.tombstones.get(h.bufferId);
      const why = t && t.generation === h.generation ? t.reason : 'its owner freed it';
      throw new StaleHandleError(
        `actor "${c.actorId}" cannot open the handle to buffer ${h.bufferId} (generation ${h.generation}) of actor "${h.owner}": ${why}`,
      );
    }
    for (const v of e.views) {
      if (v.client === c && !v.sub && v.offset === h.byteOffset && v.size === h.byteLength) {
        v.refs++;
        return { id: v.id, size: v.size, label: `handle:${h.owner}/${e.buf.label}` };
      }
    }
    const v: ViewEntry = { kind: 'view', id: this.nextViewId++, target: e, client: c, offset: h.byteOffset, size: h.byteLength, refs: 1, sub: false };
    e.views.add(v);
    c.entries.set(v.id, v);
    return { id: v.id, size: v.size, label: `handle:${h.owner}/${e.buf.label}` };
  }
}
