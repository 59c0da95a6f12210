/**
 * The colocate scenario: vLLM's `rlhf_colocate.py` on Tandem (Deno or a browser, real Web Workers):
 *   1. 4 virtual GPUs; a placement group of 4 `{GPU: 1, CPU: 0}` bundles;
 *   2. 4 training actors at numGpus 0.4 on bundles 0..3; each loads the model, then zeroes its parameters
 *      (or trains `trainSteps` steps, every actor on the same batch, so all four stay identical as data-parallel
 *      replicas would) and reports its virtual GPU;
 *   3. 2 engines with tensorParallelSize 2 on bundles [0, 1] and [2, 3], gpuMemoryUtilization 0.4, the colocate
 *      extension; `collectiveRpc('reportDeviceId')`; check that training actors 0-1 share engine 0's GPUs and
 *      2-3 engine 1's;
 *   4. generate (before); gather every actor's handles into one `{uuid: handles}` map; each engine's ranks open
 *      the handles of their own GPU and copy them into their shards; `checkWeightsChanged`; generate (after).
 * Used by `npm start`, `tandem colocate`, the tests and the browser test page.
 */
import { PlacementError } from '../errors.ts';
import { Cluster } from '../cluster/cluster.ts';
import type { HostControl } from './device_host.ts';
import { DeviceHost } from './device_host.ts';
import { COLOCATE_EXTENSION_URL } from './colocate_extension.ts';
import { InferenceEngine } from './inference_engine.ts';
import { type PlacedTrainingActor, spawnTrainingActor, type WeightHandles } from './training_actor.ts';
import { OptTokenizer } from '../model/tokenizer/index.ts';
import { expectedTensors, OPT_125M_CONFIG_JSON, parseOptConfig } from '../model/config.ts';
import { openModelSource, parseSyntheticSpec, readModelFile } from '../model/weights/sources.ts';

export interface ColocateOptions {
  /** Checkpoint spec (default `synthetic:opt-125m:1`, offline). */
  model?: string;
  /** 0 (default): the training actors zero their weights, as the reference; N: they train N SGD steps instead. */
  trainSteps?: number;
  /** Export one handle per actor (its parameter arena, plus an index) instead of one handle per tensor. */
  packed?: boolean;
  /** Memory of each virtual GPU (default: sized from the model, see gpuMemoryFor). */
  gpuMemoryBytes?: number;
  /** Tensor-parallel ranks per engine (default 2, as the reference); bundles are split among the engines. */
  tensorParallelSize?: number;
  prompts?: string[];
  /** Tokens generated per prompt before and after the sync (greedy). Default 8. */
  maxTokens?: number;
  /** A device host to use (default: one created in this thread). */
  host?: HostControl & { destroy?: () => void };
  /** Worker modules, for bundled builds (defaults: the .ts modules next to this file). */
  workerUrls?: { training?: string | URL; engine?: string | URL; extension?: string };
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /**
   * Called as each step of the scenario finishes (after the cluster exists), with the cluster, the host and
   * what is known so far: a progress view (the demo's placement and colocate panels) draws from it. Awaited.
   */
  onStage?: (stage: ColocateStage) => void | Promise<void>;
}

/** A finished step of the scenario (ColocateOptions.onStage). */
export interface ColocateStage {
  /** The step, as named in timingsMs: 'cluster', 'trainersLoaded', 'enginesLoaded', 'deviceIds', ... */
  name: string;
  /** How long it took. */
  ms: number;
  cluster: Cluster;
  host: HostControl;
  /** The result's fields known by now (device ids after 'deviceIds', generations.before after 'generateBefore', ...). */
  partial: Partial<ColocateResult>;
}

export interface ColocateGeneration {
  prompt: string;
  text: string;
  tokenIds: number[];
}

export interface ColocateResult {
  model: string;
  trainingActorDeviceIds: string[];
  engineDeviceIds: string[][];
  colocated: boolean;
  weightsChanged: boolean;
  /** Export of every actor's handles to both engines' ranks having copied them (ms). */
  syncMs: number;
  /** Bytes copied into each engine (summed over its ranks) by the sync. */
  syncBytes: number[];
  packed: boolean;
  trainSteps: number;
  /** Each actor's losses (trainSteps > 0). */
  trainLosses?: number[][];
  generations: { before: ColocateGeneration[][]; after: ColocateGeneration[][] };
  timingsMs: Record<string, number>;
}

const DEFAULT_PROMPTS = ['Hello, my name is', 'The capital of France is'];
const GPUS = 4;
const FRACTION = 0.4;

/**
 * Virtual GPU memory that fits one training actor at 0.4 (parameters + gradients + activations; a packed export
 * is zero-copy, it needs nothing more) and leaves an engine rank at 0.4 a modest KV cache: the cluster's budgets
 * are real limits, and on a CPU WebGPU every reserved byte is host memory.
 */
export function gpuMemoryFor(parameterBytes: number): number {
  const trainer = parameterBytes * 2 * 1.25 + 32 * 2 ** 20;
  const mib = 2 ** 20;
  return Math.ceil(trainer / FRACTION / (64 * mib)) * 64 * mib;
}

/** A small batch every actor trains on (tokens of the prompts, cut to the shortest). */
function trainBatch(tok: OptTokenizer, prompts: string[], vocab: number): number[][] {
  const rows = prompts.map((p) => tok.encode(p).map((id) => id % vocab));
  const L = Math.min(...rows.map((r) => r.length));
  return rows.map((r) => r.slice(0, L));
}

export async function runColocate(opts: ColocateOptions = {}): Promise<ColocateResult> {
  const log = opts.log ?? (() => {});
  const model = opts.model ?? 'synthetic:opt-125m:1';
  const trainSteps = opts.trainSteps ?? 0;
  const packed = opts.packed ?? false;
  const tp = opts.tensorParallelSize ?? 2;
  const prompts = opts.prompts ?? DEFAULT_PROMPTS;
  const maxTokens = opts.maxTokens ?? 8;
  if (GPUS % tp !== 0) throw new PlacementError(`tensorParallelSize ${tp} does not divide the scenario's ${GPUS} GPUs`);
  const timings: Record<string, number> = {};
  const t0 = performance.now();
  let mark = t0;
  const lap = (name: string) => {
    const now = performance.now();
    timings[name] = Math.round(now - mark);
    mark = now;
    log(`${name}: ${timings[name]} ms`);
  };

  const ownHost = opts.host ? null : await DeviceHost.create();
  const host: HostControl = opts.host ?? ownHost!;
  const trainers: PlacedTrainingActor[] = [];
  const engines: InferenceEngine[] = [];
  let cluster: Cluster | null = null;
  const partial: Partial<ColocateResult> = { model, packed, trainSteps };
  const reached = async (name: string) => {
    lap(name);
    if (cluster && opts.onStage) {
      await opts.onStage({ name, ms: timings[name], cluster, host, partial: { ...partial, timingsMs: { ...timings } } });
      mark = performance.now(); // the observer's time is not the next step's
    }
  };
  try {
    lap('device');
    const parameterBytes = await parameterBytesOf(model);
    const theCluster = Cluster.create({ gpus: GPUS, gpuMemoryBytes: opts.gpuMemoryBytes ?? gpuMemoryFor(parameterBytes), seed: 'colocate' });
    const thePg = theCluster.placementGroup(Array.from({ length: GPUS }, () => ({ GPU: 1, CPU: 0 })), { strategy: 'PACK' });
    await thePg.ready();
    cluster = theCluster;
    const gpuMemoryBytes = theCluster.gpus[0].memoryBytes;
    log(`cluster: ${GPUS} virtual GPUs of ${(gpuMemoryBytes / 2 ** 20).toFixed(0)} MiB; placement group of ${GPUS} {GPU: 1} bundles`);
    await reached('cluster');

    for (let i = 0; i < GPUS; i++) {
      trainers.push(await spawnTrainingActor({
        cluster: theCluster, host, numGpus: FRACTION, placementGroup: thePg, bundleIndex: i, captureChildTasks: true,
        name: `trainer-${i}`, workerUrl: opts.workerUrls?.training,
      }));
    }
    await Promise.all(trainers.map((t) => t.api.createTrainer({ model, optimizer: { type: 'sgd', lr: 1e-3 }, maxBatchTokens: 64 })));
    await reached('trainersLoaded');

    for (let e = 0; e < GPUS / tp; e++) {
      engines.push(await InferenceEngine.create({
        cluster: theCluster, host, placementGroup: thePg, bundleIndices: Array.from({ length: tp }, (_, r) => e * tp + r),
        tensorParallelSize: tp, gpuMemoryUtilization: FRACTION, model, name: `engine-${e}`,
        workerExtension: opts.workerUrls?.extension ?? COLOCATE_EXTENSION_URL, workerUrl: opts.workerUrls?.engine,
        engineOptions: { maxNumSeqs: 8, maxNumBatchedTokens: 128 },
      }));
    }
    await reached('enginesLoaded');

    const trainingActorDeviceIds = await Promise.all(trainers.map((t) => t.api.reportDeviceId()));
    const engineDeviceIds = await Promise.all(engines.map((e) => e.collectiveRpc<string>('reportDeviceId')));
    // The reference's assertion: actors 0-1 on engine 0's GPUs, 2-3 on engine 1's (in general, a block of tp).
    const colocated = engines.every((_, e) => {
      const mine = trainingActorDeviceIds.slice(e * tp, (e + 1) * tp);
      return mine.length === engineDeviceIds[e].length && mine.every((id, r) => id === engineDeviceIds[e][r]);
    });
    if (!colocated) {
      throw new PlacementError(
        `training actors are not on their engines' GPUs: actors ${JSON.stringify(trainingActorDeviceIds)}, engines ${JSON.stringify(engineDeviceIds)}`,
      );
    }
    Object.assign(partial, { trainingActorDeviceIds, engineDeviceIds, colocated });
    log(`colocated: training actors ${trainingActorDeviceIds.map((u) => u.slice(0, 12)).join(', ')}; engines ${engineDeviceIds.map((d) => `[${d.map((u) => u.slice(0, 12)).join(', ')}]`).join(' ')}`);
    await reached('deviceIds');

    // Token prompts: a small test model's vocabulary does not hold the OPT tokenizer's ids, so they are folded
    // into it (id mod vocab); for OPT-sized vocabularies nothing changes.
    const tok = await OptTokenizer.load();
    const vocab = parseOptConfig(await configJsonOf(model)).vocabSize;
    const promptTokens = prompts.map((p) => ({ tokens: tok.encode(p).map((id) => id % vocab) }));
    const generateAll = async () => {
      const outs = await Promise.all(engines.map((e) => e.generate(promptTokens, { maxTokens, ignoreEos: true })));
      return outs.map((o) => o.map((c, i) => ({ prompt: prompts[i], text: c.text, tokenIds: c.tokenIds })));
    };
    const before = await generateAll();
    partial.generations = { before, after: [] };
    await reached('generateBefore');

    let trainLosses: number[][] | undefined;
    if (trainSteps > 0) {
      const batch = trainBatch(tok, prompts, vocab);
      trainLosses = await Promise.all(trainers.map(async (t) => {
        const losses: number[] = [];
        for (let s = 0; s < trainSteps; s++) losses.push((await t.api.step(batch)).loss);
        return losses;
      }));
      partial.trainLosses = trainLosses;
      await reached('train');
    } else {
      await Promise.all(trainers.map((t) => t.api.zeroWeights()));
      await reached('zeroWeights');
    }

    const s0 = performance.now();
    const handles: WeightHandles = Object.assign({}, ...await Promise.all(trainers.map((t) => t.api.exportWeights({ packed }))));
    const synced = await Promise.all(engines.map((e) => e.collectiveRpc<{ tensors: number; bytes: number }>('updateWeightsFromIpcHandles', [handles])));
    const syncMs = performance.now() - s0;
    const syncBytes = synced.map((ranks) => ranks.reduce((s, r) => s + r.bytes, 0));
    Object.assign(partial, { syncMs: +syncMs.toFixed(2), syncBytes });
    await reached('sync');

    const checks = await Promise.all(engines.map((e) => e.collectiveRpc<boolean>('checkWeightsChanged', trainSteps > 0 ? [handles] : [])));
    const weightsChanged = checks.every((ranks) => ranks.every(Boolean));
    partial.weightsChanged = weightsChanged;
    await reached('checkWeightsChanged');
    const after = await generateAll();
    partial.generations = { before, after };
    await reached('generateAfter');
    timings.total = Math.round(performance.now() - t0);
    return {
      model, trainingActorDeviceIds, engineDeviceIds, colocated, weightsChanged, syncMs: +syncMs.toFixed(2), syncBytes, packed, trainSteps,
      ...(trainLosses ? { trainLosses } : {}), generations: { before, after }, timingsMs: timings,
    };
  } finally {
    for (const e of engines) await e.terminate();
    for (const t of trainers) await t.terminate();
    ownHost?.destroy();
  }
}

/** f32 parameter bytes of a model (from its config; no weights are generated or read). */
async function parameterBytesOf(spec: string): Promise<number> {
  let n = 0;
  for (const shape of expectedTensors(parseOptConfig(await configJsonOf(spec))).values()) n += shape.reduce((a, b) => a * b, 1);
  return 4 * n;
}

async function configJsonOf(spec: string): Promise<Record<string, unknown>> {
  const synthetic = parseSyntheticSpec(spec);
  if (synthetic?.config === 'opt-125m') return structuredClone(OPT_125M_CONFIG_JSON) as Record<string, unknown>;
  let dir = synthetic ? synthetic.config : spec;
  let file = 'config.json';
  if (dir.endsWith('.json')) {
    const cut = dir.lastIndexOf('/');
    file = dir.slice(cut + 1);
    dir = cut >= 0 ? dir.slice(0, cut + 1) : './';
  }
  return JSON.parse(new TextDecoder().decode(await readModelFile(openModelSource(dir), file)));
}
