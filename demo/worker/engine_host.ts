/**
 * The engine worker's API (protocol.ts EngineApi): one LLM at a time, loaded from a URL (through the Cache
 * API), picked files or synthetic weights, with progress; streams and batches with live updates; snapshots of
 * the KV cache for the block map. Runs in a dedicated worker, so GPU work never touches the page's thread.
 */
import { InvalidInputError, TandemError } from '../../src/errors.ts';
import { LocalGpu } from '../../src/gpu/local.ts';
import { LLM, type StreamSamplingParams } from '../../src/engine/llm.ts';
import { expectedTensors, parseOptConfig, type OptConfig } from '../../src/model/config.ts';
import { blobReader, type ModelFileReader, readModelFile, urlReader } from '../../src/model/weights/sources.ts';
import type {
  CacheInfo, EngineApi, GpuStatus, KvSnapshot, LoadOptions, LoadProgressEvent, ModelSource, ModelSummary, SamplingSettings,
  StreamUpdate,
} from '../protocol.ts';
import { cachingUrlReader, type CachingReader, withProgress } from './caching_reader.ts';
import { gpuStatus } from './gpu_report.ts';
import { kvSnapshot } from './kv_snapshot.ts';
import { meteredGpu } from './metered_gpu.ts';
import { demoMaxModelLen } from './sizing.ts';
import { syntheticReader } from './synthetic_reader.ts';
import { clearWeightCache, weightCacheInfo } from './weight_cache.ts';

/** Progress messages cross to the page at most this often (the last one of each file always does). */
const PROGRESS_INTERVAL_MS = 50;

function throttled(report: (e: LoadProgressEvent) => void): (e: LoadProgressEvent) => void {
  let last = 0;
  let lastKey = '';
  return (e) => {
    const now = performance.now();
    const key = `${e.phase}:${e.file ?? ''}`;
    const done = e.totalBytes !== undefined && e.loadedBytes >= e.totalBytes;
    if (done || key !== lastKey || now - last >= PROGRESS_INTERVAL_MS) {
      last = now;
      lastKey = key;
      report(e);
    }
  };
}

/**
 * A typed error's stable code crosses to the page as its name (Comlink keeps name and message; class names do
 * not survive minification, codes do).
 */
function forPage(e: unknown): Error {
  if (e instanceof TandemError) {
    const err = new Error(e.message);
    err.name = e.code;
    return err;
  }
  return e instanceof Error ? e : new Error(String(e));
}

function describeSource(source: ModelSource): string {
  if (source.kind === 'url') return source.baseUrl;
  if (source.kind === 'files') return `${source.files.length} local file${source.files.length === 1 ? '' : 's'}`;
  return `synthetic ${source.preset} (seed ${source.seed})`;
}

export class DemoEngine implements EngineApi {
  private llm: LLM | null = null;
  private config: OptConfig | null = null;
  private gpu: LocalGpu | null = null;
  private status: Promise<GpuStatus> | null = null;
  private loading = false;

  gpuStatus(): Promise<GpuStatus> {
    this.status ??= gpuStatus().then(({ status, gpu }) => {
      this.gpu = gpu;
      return status;
    });
    return this.status;
  }

  async load(source: ModelSource, options: LoadOptions, onProgress: (e: LoadProgressEvent) => void): Promise<ModelSummary> {
    if (this.loading) throw new Error('A model is already loading: wait for it to finish.');
    this.loading = true;
    try {
      return await this.loadModel(source, options, throttled((e) => void Promise.resolve(onProgress(e)).catch(() => {})));
    } catch (e) {
      throw forPage(e);
    } finally {
      this.loading = false;
    }
  }

  private async freshGpu(): Promise<LocalGpu> {
    const status = await this.gpuStatus();
    if (!status.available) throw new Error(status.reason);
    // A new model gets a new device: dropping the old one frees all of the old model's buffers at once.
    if (this.llm) {
      await this.llm.dispose().catch(() => {});
      this.llm = null;
      this.gpu?.destroy();
      this.gpu = null;
    }
    this.gpu ??= await LocalGpu.create();
    return this.gpu;
  }

  private async loadModel(source: ModelSource, options: LoadOptions, report: (e: LoadProgressEvent) => void): Promise<ModelSummary> {
    const t0 = performance.now();
    let reader: ModelFileReader;
    let caching: CachingReader | null = null;
    if (source.kind === 'url') {
      if (!/^https?:\/\//i.test(source.baseUrl)) throw new InvalidInputError(`"${source.baseUrl}" is not an http(s) URL`);
      reader = caching = cachingUrlReader(urlReader(source.baseUrl), report);
    } else if (source.kind === 'files') {
      if (source.files.length === 0) throw new InvalidInputError('no files were given: pick config.json and the weights');
      reader = withProgress(blobReader(source.files), 'download', report);
    } else {
      reader = withProgress(syntheticReader(source.preset, source.seed), 'synthesize', report);
    }
    const gpu = await this.freshGpu();
    if (options.dtype === 'f16' && !gpu.caps.shaderF16) {
      throw new InvalidInputError('f16 needs the shader-f16 WebGPU feature, which this device lacks: choose f32');
    }
    const configBytes = await readModelFile(reader, 'config.json');
    let config: OptConfig;
    try {
      config = parseOptConfig(new TextDecoder().decode(configBytes));
    } catch (e) {
      throw forPage(e);
    }
    const sizes = { kvBlocks: options.kvBlocks, blockSize: options.blockSize, maxNumSeqs: options.maxNumSeqs, maxNumBatchedTokens: 256, dtype: options.dtype };
    const maxModelLen = demoMaxModelLen(config, options.kvBlocks, options.blockSize);
    // Upload progress: the weights are the bulk of what LLM.create writes to the GPU.
    let expectedUpload = 0;
    for (const shape of expectedTensors(config).values()) expectedUpload += shape.reduce((a, b) => a * b, 1) * (options.dtype === 'f16' ? 2 : 4);
    let uploaded = 0;
    let metering = false;
    const metered = meteredGpu(gpu, (n) => {
      if (!metering) return;
      uploaded += n;
      report({ phase: 'upload', loadedBytes: Math.min(uploaded, expectedUpload), totalBytes: expectedUpload });
    });
    // The reader signals the end of reading: whatever is written after the weights file is the upload.
    const uploadAware: ModelFileReader = {
      ...reader,
      read: async (name, o) => {
        const bytes = await reader.read(name, o);
        if (bytes && name !== 'config.json' && !name.endsWith('.json')) metering = true;
        return bytes;
      },
    };
    const llm = await LLM.create({
      model: uploadAware,
      gpu: metered,
      dtype: options.dtype,
      blockSize: options.blockSize,
      maxNumSeqs: options.maxNumSeqs,
      maxNumBatchedTokens: sizes.maxNumBatchedTokens,
      maxModelLen,
      // Exactly the block count the page asked for (vLLM's num_gpu_blocks_override).
      numGpuBlocksOverride: sizes.kvBlocks,
      servedModelName: describeSource(source),
    });
    metering = false;
    report({ phase: 'upload', loadedBytes: expectedUpload, totalBytes: expectedUpload });
    if (caching) await caching.commit();
    this.llm = llm;
    this.config = config;
    report({ phase: 'ready', loadedBytes: 0 });
    return {
      label: describeSource(source),
      fromCache: caching !== null && caching.stats.networkFiles === 0,
      downloadedBytes: caching ? caching.stats.downloadedBytes : 0,
      config: {
        hiddenSize: config.hiddenSize, numLayers: config.numLayers, numHeads: config.numHeads, vocabSize: config.vocabSize,
        maxPositions: config.maxPositions, ffnDim: config.ffnDim,
      },
      memory: { ...llm.memory, blockSize: options.blockSize },
      dtype: options.dtype,
      maxModelLen,
      loadMs: performance.now() - t0,
    };
  }

  private requireModel(): LLM {
    if (!this.llm) throw new Error('No model is loaded yet: load one in the Model panel first.');
    return this.llm;
  }

  /** The prompt's ids, or a readable error when the model's vocabulary is smaller than the tokenizer's. */
  private checkPrompt(llm: LLM, prompt: string): void {
    const vocab = this.config!.vocabSize;
    const ids = llm.tokenizer.encode(prompt);
    const outside = ids.filter((id) => id >= vocab);
    if (outside.length > 0) {
      const words = [...new Set(outside)].slice(0, 4).map((id) => `"${llm.tokenizer.decode([id]).trim()}" (${id})`);
      throw new InvalidInputError(
        `This model knows only the first ${vocab} tokens of OPT's vocabulary (common words and punctuation); ` +
          `${words.join(', ')} ${outside.length === 1 ? 'is' : 'are'} not among them. Try: "The first time I was in the city, it was".`,
      );
    }
    const maxLen = llm.engine.scheduler.maxModelLen;
    if (ids.length >= maxLen) throw new InvalidInputError(`the prompt has ${ids.length} tokens; this engine holds at most ${maxLen} per request`);
  }

  private samplingParams(s: SamplingSettings): StreamSamplingParams {
    const greedy = !(s.temperature > 0);
    return greedy
      ? { maxTokens: s.maxTokens }
      : { maxTokens: s.maxTokens, temperature: s.temperature, topP: s.topP, topK: s.topK, seed: s.seed };
  }

  async stream(prompt: string, sampling: SamplingSettings, onUpdate: (u: StreamUpdate) => void): Promise<string> {
    try {
      const llm = this.requireModel();
      this.checkPrompt(llm, prompt);
      return this.startStream(llm, prompt, this.samplingParams(sampling), onUpdate);
    } catch (e) {
      throw forPage(e);
    }
  }

  async batch(prompts: string[], sampling: SamplingSettings, onUpdate: (u: StreamUpdate) => void): Promise<string[]> {
    try {
      const llm = this.requireModel();
      if (prompts.length === 0) throw new InvalidInputError('the batch is empty: write one prompt per line');
      for (const p of prompts) this.checkPrompt(llm, p);
      const params = this.samplingParams(sampling);
      // Distinct seeds, or every sampled request of a batch with one prompt would say the same thing.
      return prompts.map((p, i) => this.startStream(llm, p, params.seed === undefined ? params : { ...params, seed: params.seed + i }, onUpdate));
    } catch (e) {
      throw forPage(e);
    }
  }

  private startStream(llm: LLM, prompt: string, params: StreamSamplingParams, onUpdate: (u: StreamUpdate) => void): string {
    const sent = performance.now();
    const stream = llm.stream(prompt, params);
    const id = stream.requestId;
    const send = (u: StreamUpdate) => void Promise.resolve(onUpdate(u)).catch(() => {});
    void (async () => {
      let numTokens = 0;
      let firstMs: number | null = null;
      try {
        for await (const d of stream) {
          const now = performance.now();
          if (firstMs === null && d.tokenIds.length > 0) firstMs = now;
          numTokens += d.tokenIds.length;
          const rate = firstMs !== null && numTokens > 1 && now > firstMs ? (numTokens - 1) / ((now - firstMs) / 1000) : null;
          send({ requestId: id, text: d.text, numTokens, ttftMs: firstMs === null ? null : firstMs - sent, tokensPerSecond: rate, finishReason: d.finishReason });
        }
      } catch (e) {
        const err = forPage(e);
        send({ requestId: id, text: '', numTokens, ttftMs: firstMs === null ? null : firstMs - sent, tokensPerSecond: null, finishReason: 'abort', error: err.message });
      }
    })();
    return id;
  }

  abort(requestId: string): Promise<boolean> {
    return Promise.resolve(this.llm?.abort(requestId) ?? false);
  }

  kvSnapshot(): Promise<KvSnapshot | null> {
    return Promise.resolve(this.llm ? kvSnapshot(this.llm) : null);
  }

  cacheInfo(): Promise<CacheInfo> {
    return weightCacheInfo();
  }

  clearCache(): Promise<void> {
    return clearWeightCache();
  }
}
