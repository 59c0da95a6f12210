/**
 * Worker extensions, vLLM's `worker_extension_cls`: a module URL whose exported class's methods are mixed into
 * every rank of an engine, so `collectiveRpc(method, args)` can run them there. Inside a method, `this` is the
 * rank (an EngineRank): its index, its RemoteGpu connection (on its own virtual GPU), its weight shards and the
 * engine, as vLLM's extension methods see `self.device`, `self.model_runner`, ...
 *
 *   // my_extension.ts
 *   export class MyExtension { sumFirstWeight(this: EngineRank) { ... } }
 *   await InferenceEngine.create({ ..., workerExtension: new URL('./my_extension.ts', import.meta.url) });
 *   await engine.collectiveRpc('sumFirstWeight', []);   // one result per rank
 *
 * A spec `URL#Name` picks the export `Name`; without `#`, the default export if it is a class, else the module's
 * only exported class. A method whose name the rank already has (built-ins, another extension) is refused.
 */
import { InvalidInputError } from '../errors.ts';
import type { RemoteGpu } from '../gpu/remote.ts';
import type { LLM } from '../engine/llm.ts';
import type { OptGpuWeights } from '../model/gpu_weights.ts';
import type { TensorParallel } from '../model/tensor_parallel.ts';

/** One tensor-parallel rank of an engine, as extension methods see it (`this`). */
export class EngineRank {
  constructor(
    readonly rank: number,
    readonly tensorParallelSize: number,
    /** This rank's connection to the device host, attached on its virtual GPU with its budget. */
    readonly gpu: RemoteGpu,
    private readonly getLlm: () => LLM,
  ) {}

  /** The virtual GPU this rank runs on. */
  get virtualGpuUuid(): string {
    return this.gpu.virtualGpuUuid;
  }

  get tensorParallel(): TensorParallel {
    return { rank: this.rank, size: this.tensorParallelSize };
  }

  /** The engine (the LLM every rank of this worker drives in lockstep). */
  get llm(): LLM {
    return this.getLlm();
  }

  /** This rank's weight shards (looked up each time: wakeUp after a sleep replaces them). */
  get weights(): OptGpuWeights {
    const ranks = this.llm.engine.ranks;
    if (ranks.length !== this.tensorParallelSize) {
      throw new InvalidInputError(`engine has ${ranks.length} ranks, expected ${this.tensorParallelSize}`);
    }
    return ranks[this.rank].weights;
  }

  /** Built-in RPC: where this rank runs and what it holds. */
  rankInfo(): { rank: number; size: number; actorId: string; virtualGpuUuid: string; bytesInUse: number; memoryBudgetBytes: number } {
    return {
      rank: this.rank, size: this.tensorParallelSize, actorId: this.gpu.actorId, virtualGpuUuid: this.gpu.virtualGpuUuid,
      bytesInUse: this.gpu.stats().bytesAllocated, memoryBudgetBytes: this.gpu.memoryBudgetBytes,
    };
  }
}

/** Any class with a no-argument constructor; its prototype's methods are what get mixed in. */
export type WorkerExtensionClass = new () => object;

/** Import a worker extension module and pick its class (see the module comment for `URL#Name`). */
export async function loadWorkerExtension(spec: string): Promise<WorkerExtensionClass> {
  const hash = spec.lastIndexOf('#');
  const url = hash >= 0 ? spec.slice(0, hash) : spec;
  const name = hash >= 0 ? spec.slice(hash + 1) : null;
  let mod: Record<string, unknown>;
  try {
    mod = await import(/* @vite-ignore */ url);
  } catch (e) {
    throw new InvalidInputError(`worker extension ${url} could not be imported: ${(e as Error).message}`, { cause: e });
  }
  const isClass = (x: unknown): x is WorkerExtensionClass => typeof x === 'function' && /^class\b/.test(Function.prototype.toString.call(x));
  if (name !== null) {
    if (!isClass(mod[name])) throw new InvalidInputError(`worker extension ${url} has no exported class "${name}"`);
    return mod[name];
  }
  if (isClass(mod.default)) return mod.default;
  const classes = Object.entries(mod).filter(([, v]) => isClass(v));
  if (classes.length !== 1) {
    throw new InvalidInputError(
      `worker extension ${url} exports ${classes.length} classes (${classes.map(([k]) => k).join(', ') || 'none'}): name one as ${url}#ClassName`,
    );
  }
  return classes[0][1] as WorkerExtensionClass;
}

/** Every method of the class and its ancestors (not Object's), nearest definition first. */
function methodsOf(cls: WorkerExtensionClass): Map<string, (...args: unknown[]) => unknown> {
  const out = new Map<string, (...args: unknown[]) => unknown>();
  for (let p = cls.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const key of Object.getOwnPropertyNames(p)) {
      const d = Object.getOwnPropertyDescriptor(p, key)!;
      if (key !== 'constructor' && typeof d.value === 'function' && !out.has(key)) out.set(key, d.value);
    }
  }
  return out;
}

/**
 * Mix the class's methods into a rank, and run the class's field initialisers on it (an instance's own fields
 * are copied over), so the extension keeps per-rank state in `this`. Returns the method names added.
 */
export function mixIntoRank(rank: EngineRank, cls: WorkerExtensionClass): string[] {
  const methods = methodsOf(cls);
  const target = rank as unknown as Record<string, unknown>;
  for (const key of methods.keys()) {
    if (key in target) throw new InvalidInputError(`worker extension ${cls.name}: method "${key}" would shadow the rank's own "${key}"`);
  }
  for (const [key, fn] of methods) Object.defineProperty(target, key, { value: fn, writable: true, configurable: true });
  Object.assign(target, new cls());
  return [...methods.keys()];
}

/** Built-in methods collectiveRpc may call on any rank (besides the mixed-in extension methods). */
export const BUILTIN_RANK_METHODS: readonly string[] = ['rankInfo'];
