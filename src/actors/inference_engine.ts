/**
 * InferenceEngine: a serving engine (LLM) with `tensorParallelSize` ranks placed on bundles of a placement group,
 * as vLLM's engines in the RLHF colocate example (`distributed_executor_backend="ray"`, VLLM_RAY_BUNDLE_INDICES,
 * VLLM_RAY_PER_WORKER_GPUS, worker_extension_cls).
 *
 *   const engine = await InferenceEngine.create({
 *     cluster, host, placementGroup: pg, bundleIndices: [0, 1], tensorParallelSize: 2,
 *     gpuMemoryUtilization: 0.4, model: 'synthetic:opt-125m:1', workerExtension: COLOCATE_EXTENSION_URL,
 *   });
 *   await engine.collectiveRpc('reportDeviceId');   // one virtual GPU uuid per rank
 *
 * Rank r is a cluster actor of `numGpusPerWorker` (default 0.4) on bundle `bundleIndices[r]`, and a client of the
 * device host attached on that bundle's virtual GPU with the placement's memory budget and fair-queue weight.
 * All ranks' connections are driven by one engine worker (engine_worker.ts says why: one LLMEngine steps the
 * ranks in lockstep; the device host runs the collectives), so the engine costs one Web Worker, not N.
 *
 * Faults: a worker that dies (uncaught error, terminate()) has every rank detached from the host (buffers
 * freed, handles invalidated) and every placement released; calls in flight reject. A rank whose placement the
 * cluster kills (kill(), its placement group removed) is detached alone; collectiveRpc then rejects with a
 * CollectiveRpcError naming that rank (the others answer, or fail too, as they may).
 */
import * as Comlink from 'comlink';
import * as Errors from '../errors.ts';
import { ActorDisconnectedError, CollectiveRpcError, InvalidInputError } from '../errors.ts';
import type { ActorPlacement } from '../cluster/actor.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { PlacementGroup } from '../cluster/placement_group.ts';
import type { CompletionOutput, GenerateSamplingParams, LLMOptions, Prompt } from '../engine/llm.ts';
import type { AttachOptions, HostControl } from './device_host.ts';
import type { EngineWorker, RankConnection, RankOutcome } from './engine_worker.ts';

export interface InferenceEngineOptions {
  cluster: Cluster;
  /** The device host (in-process DeviceHost, or a host worker's comlink control). */
  host: HostControl;
  placementGroup: PlacementGroup;
  /** One bundle per rank (VLLM_RAY_BUNDLE_INDICES). */
  bundleIndices: readonly number[];
  /** Default: bundleIndices.length. */
  tensorParallelSize?: number;
  /** Each rank's share of its bundle's GPU (VLLM_RAY_PER_WORKER_GPUS). Default 0.4. */
  numGpusPerWorker?: number;
  /** Share of each rank's virtual GPU memory the engine sizes itself to (weights + activations + KV cache). */
  gpuMemoryUtilization?: number;
  /** A checkpoint spec the worker loads: a directory, an http(s) URL, or `synthetic:CONFIG:SEED`. */
  model: string;
  /** A worker-extension module URL (`#ClassName` optional) mixed into every rank (worker_extension_cls). */
  workerExtension?: string | URL;
  /** Names the engine's actors ("engine-0" gives "engine-0.rank0", ...). */
  name?: string;
  /** The engine worker's module (default engine_worker.ts next to this file; bundles pass their own). */
  workerUrl?: string | URL;
  /** More LLM options (dtype, blockSize, maxNumSeqs, maxModelLen, enablePrefixCaching, numLookaheadTokens). */
  engineOptions?: Omit<LLMOptions, 'model' | 'gpu' | 'tensorParallelSize' | 'gpuMemoryUtilization' | 'gpuMemoryBytes'>;
}

/**
 * The utilization the engine sizes itself with: the one asked for, less a little headroom. The rank's budget is
 * enforced at allocation by the device host, which rounds every buffer up to 16 bytes; LLM.create's accounting is
 * otherwise exact (ModelRunner.bytesWithoutKvCache). A utilization beyond the rank's budget can never fit:
 * refused here, by name, instead of failing on some allocation.
 */
function engineUtilization(util: number, gpuMemoryBytes: number, budgetBytes: number): number {
  if (!(util > 0 && util <= 1)) throw new InvalidInputError(`gpuMemoryUtilization must be in (0, 1], got ${util}`);
  const wanted = util * gpuMemoryBytes;
  if (wanted > budgetBytes + 1) {
    throw new InvalidInputError(
      `gpuMemoryUtilization ${util} of a ${gpuMemoryBytes}-byte virtual GPU is ${Math.floor(wanted)} bytes, more than a rank's budget of ` +
        `${budgetBytes} bytes (its numGpusPerWorker share): lower gpuMemoryUtilization or raise numGpusPerWorker`,
    );
  }
  const headroom = 64 * 1024;
  return Math.max(1e-6, (wanted - headroom) / gpuMemoryBytes);
}

/** Typed errors by class name (comlink carries an error's name, message and stack, not its class). */
const ERROR_CLASSES: Record<string, unknown> = Errors;
const ERROR_CODES: Record<string, string> = { NonFiniteLossError: 'non_finite_loss', ActorOutOfMemoryError: 'gpu_out_of_memory', CollectiveRpcError: 'collective_rpc_failed', TrainingInputError: 'invalid_input' };

/**
 * An error that crossed from a worker, as the typed error it was (TandemError subclasses by name: a test or a
 * caller can still catch StaleHandleError, InvalidInputError...); anything else is returned as is.
 */
export function reviveError(e: unknown): unknown {
  if (!(e instanceof Error) || e instanceof Errors.TandemError) return e;
  const cls = ERROR_CLASSES[e.name];
  if (typeof cls !== 'function' || !(cls.prototype instanceof Errors.TandemError)) return e;
  // Built without running the constructor (some take structured info the message already carries).
  const err = Object.create(cls.prototype) as Errors.TandemError;
  const code = ERROR_CODES[e.name] ?? (new (cls as new (m: string) => Errors.TandemError)('')).code;
  Object.defineProperties(err, {
    name: { value: e.name, writable: true, configurable: true },
    message: { value: e.message, writable: true, configurable: true },
    stack: { value: e.stack, writable: true, configurable: true },
    code: { value: code, writable: true, configurable: true },
  });
  return err;
}

/** A comlink proxy whose calls reject with revived (typed) errors. */
export function withTypedErrors<T extends object>(api: T): T {
  return new Proxy(api, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver);
      if (typeof v !== 'function' || typeof key === 'symbol') return v;
      return (...args: unknown[]) => {
        const r = Reflect.apply(v as (...a: unknown[]) => unknown, target, args);
        return r instanceof Promise || (r && typeof (r as Promise<unknown>).then === 'function')
          ? (r as Promise<unknown>).then((x) => x, (err) => { throw reviveError(err); })
          : r;
      };
    },
  });
}

interface RankSlot {
  placement: ActorPlacement;
  clientId: number;
  /** Why it is gone, once detached. */
  failed: string | null;
}

let nextEngine = 0;

export class InferenceEngine {
  readonly name: string;
  readonly tensorParallelSize: number;
  /** Each rank's connection (actor id, virtual GPU uuid, budget), rank order. */
  readonly connections: readonly RankConnection[];
  /** The engine's per-rank memory (weights, KV cache) and the extension's methods. */
  readonly memory: { weights: number; kvCache: number; kvPerBlock: number; numBlocks: number; extensionMethods: string[] };
  /** Resolves with the message when the worker dies; its ranks are detached and placements released by then. */
  readonly crashed: Promise<string>;
  private readonly api: Comlink.Remote<EngineWorker>;
  private readonly worker: Worker;
  private readonly host: HostControl;
  private readonly slots: RankSlot[];
  private dead: string | null = null;
  private asleep = false;
  /** Places rank r again on its bundle (after a sleep released it). */
  private readonly replace: (rank: number) => Promise<ActorPlacement>;

  private constructor(
    a: {
      name: string; api: Comlink.Remote<EngineWorker>; worker: Worker; host: HostControl; slots: RankSlot[]; connections: RankConnection[];
      memory: InferenceEngine['memory']; crashed: Promise<string>; replace: (rank: number) => Promise<ActorPlacement>;
    },
  ) {
    this.name = a.name;
    this.api = a.api;
    this.worker = a.worker;
    this.host = a.host;
    this.slots = a.slots;
    this.connections = a.connections;
    this.tensorParallelSize = a.slots.length;
    this.memory = a.memory;
    this.crashed = a.crashed;
    this.replace = a.replace;
  }

  static async create(opts: InferenceEngineOptions): Promise<InferenceEngine> {
    const size = opts.tensorParallelSize ?? opts.bundleIndices.length;
    if (!(Number.isInteger(size) && size >= 1)) throw new InvalidInputError(`tensorParallelSize must be a positive integer, got ${size}`);
    if (opts.bundleIndices.length !== size) {
      throw new InvalidInputError(`bundleIndices names ${opts.bundleIndices.length} bundles (${opts.bundleIndices.join(',')}) for tensorParallelSize ${size}: give one per rank`);
    }
    const name = opts.name ?? `engine-${nextEngine++}`;
    const numGpus = opts.numGpusPerWorker ?? 0.4;
    await opts.placementGroup.ready();
    // Ranks are actors of their own on their bundles; they are placed (or refused) before any worker starts.
    const placements: ActorPlacement[] = [];
    const place = (r: number) =>
      opts.cluster.scheduleActor({ name: `${name}.rank${r}`, numGpus, placementGroup: opts.placementGroup, bundleIndex: opts.bundleIndices[r] });
    try {
      for (let r = 0; r < size; r++) placements.push(await place(r));
    } catch (e) {
      for (const p of placements) p.release();
      throw e;
    }
    const url = opts.workerUrl ?? new URL('./engine_worker.ts', import.meta.url);
    const worker = new Worker(url, { type: 'module', name });
    const api = Comlink.wrap<EngineWorker>(worker);
    const slots: RankSlot[] = [];
    let engine: InferenceEngine | null = null;
    let onCrash: (m: string) => void = () => {};
    const crashed = new Promise<string>((resolve) => (onCrash = resolve));
    let tornDown = false;
    const teardown = async (reason: string) => {
      if (tornDown) return;
      tornDown = true;
      worker.terminate();
      for (const s of slots) if (s.failed === null) { s.failed = reason; await opts.host.detach(s.clientId, reason); }
      for (const p of placements) p.release();
    };
    worker.addEventListener('error', (ev) => {
      // Keep the error from taking the parent down (Deno's default); clean up after the worker.
      ev.preventDefault();
      if (engine?.dead) return;
      if (engine) engine.dead = `its worker crashed: ${ev.message}`;
      void teardown(`crashed: ${ev.message}`).then(() => onCrash(ev.message));
    });
    const starting = <T>(p: Promise<T>) => Promise.race([p, crashed.then((m): never => { throw new ActorDisconnectedError(`engine "${name}" crashed while starting: ${m}`); })]);
    try {
      const ports: MessagePort[] = [];
      for (const [r, p] of placements.entries()) {
        const gpu = p.gpus[0];
        const attach: AttachOptions = {
          actorId: `${name}.rank${r}`, virtualGpuUuid: gpu.uuid, memoryBudgetBytes: gpu.memoryBudgetBytes, weight: gpu.fraction,
          tensorParallel: { group: name, rank: r, size },
        };
        const a = await opts.host.attach(attach);
        slots.push({ placement: p, clientId: a.clientId, failed: null });
        ports.push(a.port);
      }
      const connections = await starting(api.connectRanks(Comlink.transfer(ports, ports)));
      const gpuMemoryBytes = opts.cluster.gpu(placements[0].gpus[0].uuid)!.memoryBytes;
      const memory = await starting(api.createEngine({
        ...opts.engineOptions, model: opts.model, gpuMemoryBytes,
        gpuMemoryUtilization: engineUtilization(opts.gpuMemoryUtilization ?? 0.9, gpuMemoryBytes, Math.min(...placements.map((p) => p.gpus[0].memoryBudgetBytes))),
        workerExtension: opts.workerExtension === undefined ? undefined : String(opts.workerExtension),
      }));
      engine = new InferenceEngine({ name, api, worker, host: opts.host, slots, connections, memory, crashed, replace: place });
      const e = engine;
      for (const [r, s] of slots.entries()) {
        const placed = s.placement;
        placed.onKill((why) => { if (s.placement === placed) void e.failRank(r, `was killed by the cluster (${why.kind})`); });
      }
      return engine;
    } catch (e) {
      await teardown('failed to start');
      throw e;
    }
  }

  /** The bundles' virtual GPUs, rank order (what reportDeviceId should answer). */
  get placedDeviceIds(): string[] {
    return this.slots.map((s) => s.placement.gpus[0].uuid);
  }

  /** Each rank's cluster placement. */
  get placements(): ActorPlacement[] {
    return this.slots.map((s) => s.placement);
  }

  private checkAlive(): void {
    if (this.dead) throw new ActorDisconnectedError(`engine "${this.name}" is gone: ${this.dead}`);
  }

  /** Race a worker call with the worker's death (a call in flight to a dead worker never answers). */
  private async call<T>(p: Promise<T>): Promise<T> {
    return await Promise.race([p.catch((e) => { throw reviveError(e); }), this.crashed.then((m) => { throw new ActorDisconnectedError(`engine "${this.name}": its worker crashed: ${m}`); })]);
  }

  /**
   * Run `method(...args)` on every rank (worker-extension methods, or the built-in rankInfo) and gather the
   * results in rank order. Rejects with CollectiveRpcError naming every rank that failed (its error, or its
   * detachment), or every rank when the worker crashed.
   */
  async collectiveRpc<T = unknown>(method: string, args: unknown[] = []): Promise<T[]> {
    let outcomes: RankOutcome[];
    if (this.dead) {
      outcomes = this.slots.map((_, rank) => ({ rank, ok: false, name: 'ActorDisconnectedError', message: this.dead! }));
    } else {
      try {
        outcomes = await this.call(this.api.collectiveRpc(method, args));
      } catch (e) {
        if (e instanceof ActorDisconnectedError) {
          outcomes = this.slots.map((_, rank) => ({ rank, ok: false, name: e.name, message: e.message }));
        } else throw e; // e.g. an unknown method: nothing ran
      }
    }
    // A rank the cluster took away fails even if its method happened not to touch the device.
    outcomes = outcomes.map((o) => o.ok && this.slots[o.rank].failed
      ? { rank: o.rank, ok: false, name: 'ActorDisconnectedError', message: `rank ${o.rank} ${this.slots[o.rank].failed}` }
      : o);
    const failures = outcomes.filter((o): o is Extract<RankOutcome, { ok: false }> => !o.ok).map(({ rank, name, message }) => ({ rank, name, message }));
    if (failures.length) throw new CollectiveRpcError({ engine: this.name, method, failures });
    return outcomes.map((o) => (o as Extract<RankOutcome, { ok: true }>).value as T);
  }

  /** Serve prompts (the LLM's generate, in the worker): completions in input order, n samples each. */
  generate(prompts: Prompt[], params: GenerateSamplingParams | GenerateSamplingParams[] = {}): Promise<CompletionOutput[]> {
    this.checkAlive();
    return this.call(this.api.generate(prompts, params));
  }

  /** vLLM's sleep (1: KV cache freed, weights to the host; 2: both dropped). Returns device bytes freed over all ranks. */
  /**
   * vLLM's sleep (1: KV cache freed, weights to the host; 2: both dropped). Returns the device bytes freed over
   * all ranks. The budgets the cluster reserved for the ranks are fixed at placement, so the memory becomes
   * usable by others only if the reservation goes too: the ranks' placements are released (their bundles get
   * their share back: a colocated trainer may place a borrowed share there, PlacedTrainingActor.borrow), and
   * wakeUp() places them again first, waiting (pending, as Ray does) until the borrower has given it back.
   * While asleep the ranks stay attached to the device host but allocate nothing.
   */
  async sleep(level: 1 | 2 = 1): Promise<number> {
    this.checkAlive();
    if (this.asleep) throw new InvalidInputError(`engine "${this.name}" is already asleep`);
    const freed = await this.call(this.api.sleep(level));
    this.asleep = true;
    for (const s of this.slots) s.placement.release();
    return freed;
  }

  /** Place the ranks again (waiting for their shares to be free), then wake the engine ('weights', 'kv_cache'). */
  async wakeUp(tags?: Array<'weights' | 'kv_cache'>): Promise<void> {
    this.checkAlive();
    if (this.asleep) {
      for (const [r, s] of this.slots.entries()) {
        s.placement = await this.replace(r);
        const placed = s.placement;
        placed.onKill((why) => { if (s.placement === placed) void this.failRank(r, `was killed by the cluster (${why.kind})`); });
      }
      this.asleep = false;
    }
    await this.call(this.api.wakeUp(tags));
  }

  /** Generate forever in the background (fault tests). */
  startBusyLoop(prompt: Prompt, maxTokens = 8): Promise<void> {
    return this.call(this.api.startBusyLoop(prompt, maxTokens));
  }

  /**
   * Detach one rank from the device host (its buffers freed, its handles invalidated) and return its placement:
   * what happens when the cluster kills the rank's actor. The engine cannot step without it; collectiveRpc
   * reports it by rank.
   */
  async failRank(rank: number, reason = 'was detached'): Promise<void> {
    const s = this.slots[rank];
    if (!s) throw new InvalidInputError(`engine "${this.name}" has no rank ${rank}`);
    if (s.failed !== null) return;
    s.failed = reason;
    await this.host.detach(s.clientId, `(engine "${this.name}" rank ${rank}) ${reason}`);
    s.placement.release();
  }

  /** Terminate the worker, detach every rank, release every placement. Idempotent. */
  async terminate(): Promise<void> {
    if (this.dead) return;
    this.dead = 'it was terminated';
    try {
      this.api[Comlink.releaseProxy]();
    } catch { /* already released */ }
    this.worker.terminate();
    for (const s of this.slots) {
      if (s.failed === null) {
        s.failed = 'was terminated';
        await this.host.detach(s.clientId, 'was terminated');
      }
      s.placement.release();
    }
  }
}
