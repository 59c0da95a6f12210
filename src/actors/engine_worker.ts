/// <reference lib="webworker" />
/**
 * Worker entry of an InferenceEngine (inference_engine.ts): the engine's driver and every tensor-parallel
 * rank's connection to the device host. Exposed over comlink; EngineWorker is also usable in-process.
 *
 * Why all ranks' connections live in this one worker: one LLMEngine steps every rank's model runner in lockstep
 * (each step is recorded on every rank before any result is awaited, as their all-reduces require), and a
 * RemoteGpu can only be driven from the thread that holds its port. Each rank is still its own actor to the
 * device host (its own virtual GPU, memory budget, fair-queue weight, buffers and handles) and to the cluster
 * (its own placement on its bundle); what it does not get is a thread of its own, which would only add a
 * message hop per rank per step: the device host, not the workers, runs the collectives.
 */
import * as Comlink from 'comlink';
import { InvalidInputError } from '../errors.ts';
import { type CompletionOutput, type GenerateSamplingParams, LLM, type LLMOptions, type Prompt } from '../engine/llm.ts';
import { RemoteGpu } from '../gpu/remote.ts';
import { BUILTIN_RANK_METHODS, EngineRank, loadWorkerExtension, mixIntoRank } from './extensions.ts';

/** What one rank's RPC gave: its value, or its error by name and message (typed errors do not cross comlink). */
export type RankOutcome = { rank: number; ok: true; value: unknown } | { rank: number; ok: false; name: string; message: string };

export interface EngineWorkerOptions extends Omit<LLMOptions, 'gpu' | 'tensorParallelSize'> {
  /** A worker-extension module (`URL` or `URL#ClassName`) mixed into every rank. */
  workerExtension?: string;
}

export interface RankConnection {
  rank: number;
  actorId: string;
  virtualGpuUuid: string;
  memoryBudgetBytes: number;
}

export class EngineWorker {
  ranks: EngineRank[] = [];
  llm: LLM | null = null;
  private callable = new Set<string>(BUILTIN_RANK_METHODS);
  private busy: Promise<unknown> | null = null;

  /** Connect every rank over the ports the device host's attach() gave (rank order). */
  async connectRanks(ports: MessagePort[]): Promise<RankConnection[]> {
    if (this.ranks.length) throw new InvalidInputError('engine worker: ranks are already connected');
    const gpus = await Promise.all(ports.map((p) => RemoteGpu.connect(p)));
    this.ranks = gpus.map((g, r) => new EngineRank(r, gpus.length, g, () => this.engine()));
    return gpus.map((g, rank) => ({ rank, actorId: g.actorId, virtualGpuUuid: g.virtualGpuUuid, memoryBudgetBytes: g.memoryBudgetBytes }));
  }

  private engine(): LLM {
    if (!this.llm) throw new InvalidInputError('engine worker: createEngine first');
    return this.llm;
  }

  /** Create the LLM over the ranks (rank r on its own connection) and mix the worker extension into each rank. */
  async createEngine(opts: EngineWorkerOptions): Promise<LLM['memory'] & { extensionMethods: string[] }> {
    if (!this.ranks.length) throw new InvalidInputError('engine worker: connectRanks first');
    const { workerExtension, ...llmOpts } = opts;
    const gpus = this.ranks.map((r) => r.gpu);
    this.llm = await LLM.create({ ...llmOpts, tensorParallelGpus: gpus });
    let extensionMethods: string[] = [];
    if (workerExtension) {
      const cls = await loadWorkerExtension(workerExtension);
      for (const rank of this.ranks) extensionMethods = mixIntoRank(rank, cls);
      for (const m of extensionMethods) this.callable.add(m);
    }
    return { ...this.llm.memory, extensionMethods };
  }

  /**
   * Run `method(...args)` on every rank at once and gather each rank's outcome (rank order). A rank that throws
   * does not stop the others; the caller decides (InferenceEngine.collectiveRpc rejects naming the ranks).
   */
  async collectiveRpc(method: string, args: unknown[] = []): Promise<RankOutcome[]> {
    if (!this.callable.has(method)) {
      throw new InvalidInputError(`collectiveRpc: no rank method "${method}" (available: ${[...this.callable].join(', ')})`);
    }
    const settled = await Promise.allSettled(this.ranks.map(async (rank) => {
      const fn = (rank as unknown as Record<string, (...a: unknown[]) => unknown>)[method];
      return await fn.apply(rank, args);
    }));
    return settled.map((s, rank): RankOutcome => s.status === 'fulfilled'
      ? { rank, ok: true, value: s.value }
      : { rank, ok: false, name: (s.reason as Error)?.name ?? 'Error', message: (s.reason as Error)?.message ?? String(s.reason) });
  }

  generate(prompts: Prompt[], params: GenerateSamplingParams | GenerateSamplingParams[] = {}): Promise<CompletionOutput[]> {
    return this.engine().generate(prompts, params);
  }

  /** vLLM's sleep: returns the bytes the ranks freed on their virtual GPUs (as the host charges them). */
  async sleep(level: 1 | 2 = 1): Promise<number> {
    const before = this.ranks.reduce((s, r) => s + r.gpu.stats().bytesAllocated, 0);
    await this.engine().sleep(level);
    await Promise.all(this.ranks.map((r) => r.gpu.executed()));
    return before - this.ranks.reduce((s, r) => s + r.gpu.stats().bytesAllocated, 0);
  }

  wakeUp(tags?: Array<'weights' | 'kv_cache'>): Promise<void> {
    return this.engine().wakeUp(tags);
  }

  /** Generate over and over in the background (fault tests terminate or detach mid-step). */
  startBusyLoop(prompt: Prompt, maxTokens = 8): void {
    const llm = this.engine();
    this.busy = (async () => {
      for (;;) await llm.generate([prompt], { maxTokens, ignoreEos: true });
    })().catch(() => {});
  }

  /** Disconnect every rank (the host frees their buffers). */
  async disconnect(): Promise<void> {
    // Free the engine's buffers while the ranks are connected (a dead rank makes this fail: the host frees them).
    await this.llm?.dispose().catch(() => {});
    for (const r of this.ranks) r.gpu.destroy();
    this.ranks = [];
    this.llm = null;
  }
}

// As a worker entry (not when imported in-process): expose one EngineWorker.
if ('WorkerGlobalScope' in globalThis) {
  Comlink.expose(new EngineWorker());
}
