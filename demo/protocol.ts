/**
 * What the page and the demo's workers say to each other. Everything here is plain, structured-cloneable data
 * (Comlink carries it), so the page never holds a GPU object and never blocks on GPU work.
 *
 * Two workers:
 *   - the engine worker (worker/engine.worker.ts) owns one LLM: model loading, streaming, batches, the KV map;
 *   - the scenario worker (worker/scenario.worker.ts) runs the colocation scenarios (placement, colocate, RL
 *     loop; worker/scenarios.ts): it holds their device host, their actors are its nested workers, and each
 *     reports what it does as ScenarioEvents, which the page's panels draw.
 */

// ───────────────────────────── WebGPU ─────────────────────────────

export interface GpuReport {
  available: true;
  adapter: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter: boolean };
  /** Every feature the adapter offers, sorted. */
  features: string[];
  /** The optional features Tandem asks for, and whether the device got them. */
  tandemFeatures: { name: string; enabled: boolean; why: string }[];
  /** The limits Tandem raises and uses (src/gpu/device.ts GpuCaps), by name. */
  limitsInUse: Record<string, number>;
}

export interface GpuUnavailable {
  available: false;
  /** What is missing, in one sentence. */
  reason: string;
  /** What to do about it. */
  advice: string[];
}

export type GpuStatus = GpuReport | GpuUnavailable;

// ───────────────────────────── model sources ─────────────────────────────

export type SyntheticPreset = 'opt-tiny' | 'opt-125m';

export type ModelSource =
  /** A base URL laid out like the Hugging Face hub (.../resolve/main/). Files are cached in the Cache API. */
  | { kind: 'url'; baseUrl: string }
  /** Files picked or dropped by the user: config.json + model.safetensors (or shards, or pytorch_model.bin). */
  | { kind: 'files'; files: File[] }
  /** Weights from the fixtures' formula, offline. */
  | { kind: 'synthetic'; preset: SyntheticPreset; seed: number };

export interface LoadOptions {
  /** KV-cache blocks to aim for (the engine sizes its cache from a memory budget; see worker/sizing.ts). */
  kvBlocks: number;
  blockSize: 8 | 16 | 32;
  maxNumSeqs: number;
  /** f16 needs the shader-f16 feature (the WebGPU panel says whether the device has it). */
  dtype: 'f32' | 'f16';
}

export type LoadPhase = 'download' | 'cache' | 'synthesize' | 'upload' | 'ready';

export interface LoadProgressEvent {
  phase: LoadPhase;
  /** The file being read (download/cache phases). */
  file?: string;
  loadedBytes: number;
  /** Unknown while the server has not said. */
  totalBytes?: number;
}

export interface ModelSummary {
  /** Where it came from, for the status line. */
  label: string;
  /** Every weight file came from the Cache API (nothing downloaded). */
  fromCache: boolean;
  /** Bytes downloaded over the network by this load (0 when everything came from the cache). */
  downloadedBytes: number;
  config: { hiddenSize: number; numLayers: number; numHeads: number; vocabSize: number; maxPositions: number; ffnDim: number };
  memory: { weights: number; kvCache: number; kvPerBlock: number; numBlocks: number; blockSize: number };
  dtype: 'f32' | 'f16';
  maxModelLen: number;
  loadMs: number;
}

// ───────────────────────────── generation ─────────────────────────────

export interface SamplingSettings {
  maxTokens: number;
  /** 0 = greedy. */
  temperature: number;
  topP: number;
  /** 0 = off. */
  topK: number;
  seed: number;
}

export interface StreamUpdate {
  requestId: string;
  /** New text since the last update. */
  text: string;
  /** Tokens generated so far. */
  numTokens: number;
  /** ms since the request was sent, at first token (null until then). */
  ttftMs: number | null;
  /** Decode rate after the first token, tokens/s (null with fewer than 2 tokens). */
  tokensPerSecond: number | null;
  finishReason: 'stop' | 'length' | 'abort' | null;
  /** Set when the request failed mid-way (the update then also has finishReason 'abort'). */
  error?: string;
}

// ───────────────────────────── KV cache ─────────────────────────────

/**
 * The paged KV cache at one instant: what `llm.kvCacheSnapshot()` would return if the engine had it. Today
 * worker/kv_snapshot.ts computes it from what the engine exposes (the block pool, the scheduler's requests and
 * the KV-cache manager's block tables).
 */
export interface KvSnapshot {
  numBlocks: number;
  blockSize: number;
  /** Per block: index into `requests` of its first owner, -1 when free. */
  owner: Int16Array;
  /** Per block: how many block tables hold it (0 = free; > 1 = shared by prefix caching or n > 1 forks). */
  refCount: Uint8Array;
  /** Per block: 1 when it holds a prefix-cache entry (in use, or free but still reusable). */
  cached: Uint8Array;
  requests: { requestId: string; status: 'waiting' | 'running' | 'preempted'; numTokens: number; numBlocks: number; numPreemptions: number }[];
  numFree: number;
  numCachedFree: number;
  numShared: number;
  preemptions: number;
  prefixCacheHitRate: number;
  /** Increases with every snapshot the worker takes. */
  version: number;
}

// ───────────────────────────── colocation scenarios ─────────────────────────────

export type ScenarioName = 'placement' | 'colocate' | 'rl-loop';

/** One virtual GPU of a placement snapshot: its memory, the placement-group bundles and the actors on it. */
export interface PlacementGpu {
  /** "GPU 0": its index in the cluster. */
  id: string;
  /** Its device id (what reportDeviceId answers). */
  uuid?: string;
  memoryBytes: number;
  /** Share of the GPU reserved by placement-group bundles (1 for a {GPU: 1} bundle). */
  reservedFraction?: number;
  actors: PlacementActor[];
}

export interface PlacementActor {
  name: string;
  /** 'trainer' or 'engine rank' (what the panels colour by). */
  role: string;
  /** Its share of the GPU (numGpus), e.g. 0.4. */
  fraction: number;
  /** Bytes it holds on the device host now (0 before its worker attached). */
  usedBytes: number;
  /** What the device host lets it allocate: floor(fraction x GPU memory). */
  budgetBytes: number;
  /** The bundle it was placed in (-1 outside placement groups). */
  bundleIndex?: number;
}

/**
 * What a scenario reports, as it runs. Each panel draws the kinds it knows:
 *   placement (any scenario; the placement panel shows the latest): 'placement';
 *   colocate: 'device-table', 'check', 'timing', 'generations'; RL loop: 'metric'. 'log' goes anywhere.
 */
export type ScenarioEvent =
  | {
    kind: 'placement';
    /** Virtual GPUs and the actors placed on them, each with the fraction of the GPU it holds. */
    gpus: PlacementGpu[];
    /** When in the scenario this was taken ("engines loaded"). */
    stage?: string;
  }
  | { kind: 'device-table'; columns: string[]; rows: (string | number)[][] }
  | { kind: 'check'; name: string; ok: boolean; detail: string }
  | { kind: 'timing'; name: string; ms: number }
  | { kind: 'metric'; series: string; iteration: number; value: number }
  | { kind: 'generations'; label: string; rows: { engine: string; prompt: string; text: string; tokenIds: number[] }[] }
  | { kind: 'log'; text: string };

export interface ScenarioInfo {
  name: ScenarioName;
  title: string;
  /** False until the colocation work registers it (the panel then says so). */
  available: boolean;
}

/** The scenario worker's API. */
export interface ScenarioApi {
  list(): ScenarioInfo[];
  run(name: ScenarioName, params: Record<string, string | number | boolean>, onEvent: (e: ScenarioEvent) => void): Promise<{ ok: boolean }>;
}

// ───────────────────────────── the engine worker's API ─────────────────────────────

export interface EngineApi {
  gpuStatus(): Promise<GpuStatus>;
  load(source: ModelSource, options: LoadOptions, onProgress: (e: LoadProgressEvent) => void): Promise<ModelSummary>;
  /** Start one streamed request; updates arrive through onUpdate (the last one has finishReason). Resolves with its id. */
  stream(prompt: string, sampling: SamplingSettings, onUpdate: (u: StreamUpdate) => void): Promise<string>;
  /** Many requests at once (continuous batching); each request's updates carry its id. Resolves with the ids, in order. */
  batch(prompts: string[], sampling: SamplingSettings, onUpdate: (u: StreamUpdate) => void): Promise<string[]>;
  abort(requestId: string): Promise<boolean>;
  kvSnapshot(): Promise<KvSnapshot | null>;
  cacheInfo(): Promise<CacheInfo>;
  clearCache(): Promise<void>;
}

export interface CacheInfo {
  available: boolean;
  files: number;
  bytes: number;
}

/** An error as it crosses from a worker: the typed error's class name and code, and its message. */
export interface WorkerErrorInfo {
  name: string;
  code: string | null;
  message: string;
}
