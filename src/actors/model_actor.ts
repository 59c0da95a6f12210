/**
 * An actor that holds an OPT model (single-sequence OptModel and/or the serving LLM) on a RemoteGpu: the body
 * of an engine worker. The model code is the same as in-process; only the Gpu differs. Exposed over comlink by
 * model_worker.ts, or used directly in-process (benchmarks compare the two).
 */
import { InvalidInputError } from '../errors.ts';
import type { Gpu } from '../gpu/gpu.ts';
import { RemoteGpu } from '../gpu/remote.ts';
import { type CompletionOutput, type GenerateSamplingParams, LLM, type LLMOptions, type Prompt } from '../engine/llm.ts';
import { generate, type GenerateParams, type GenerateResult } from '../model/generate.ts';
import { OptModel, type OptModelOptions } from '../model/opt.ts';
import { copyIntoWeights, exportHandles, type ExportedTensors, openTensors, weightTensors, closeTensors } from './handles.ts';

export class ModelActor {
  gpu: Gpu | null = null;
  model: OptModel | null = null;
  llm: LLM | null = null;
  private busy: Promise<unknown> | null = null;

  /** Connect to the device host over the port its attach() gave (transferred into this worker). */
  async connect(port: MessagePort): Promise<{ actorId: string; virtualGpuUuid: string; adapter: string }> {
    const gpu = await RemoteGpu.connect(port);
    this.gpu = gpu;
    return { actorId: gpu.actorId, virtualGpuUuid: gpu.virtualGpuUuid, adapter: gpu.caps.adapterDescription };
  }

  /** In-process use: any Gpu. */
  useGpu(gpu: Gpu): void {
    this.gpu = gpu;
  }

  private need<T>(x: T | null, what: string): T {
    if (!x) throw new InvalidInputError(`model actor: ${what} first`);
    return x;
  }

  private remote(): RemoteGpu {
    const g = this.need(this.gpu, 'connect');
    if (!(g instanceof RemoteGpu)) throw new InvalidInputError('model actor: handles need a RemoteGpu (connect to a device host)');
    return g;
  }

  async loadModel(spec: string, opts: Omit<OptModelOptions, 'onProgress'> = {}): Promise<{ vocabSize: number; weightBytes: number }> {
    this.model = await OptModel.load(this.need(this.gpu, 'connect'), spec, opts);
    return { vocabSize: this.model.config.vocabSize, weightBytes: this.model.weights.totalBytes };
  }

  /** Logits [tokens.length, vocab] of a fresh sequence. */
  logits(tokens: number[]): Promise<Float32Array> {
    return this.need(this.model, 'loadModel').logits(tokens);
  }

  generate(tokens: number[], params: Omit<GenerateParams, 'onTokens'>): Promise<GenerateResult> {
    return generate(this.need(this.model, 'loadModel'), tokens, params);
  }

  async createEngine(opts: Omit<LLMOptions, 'gpu'>): Promise<LLM['memory']> {
    this.llm = await LLM.create({ ...opts, gpu: this.need(this.gpu, 'connect') });
    return this.llm.memory;
  }

  engineGenerate(prompts: Prompt[], params: GenerateSamplingParams | GenerateSamplingParams[]): Promise<CompletionOutput[]> {
    return this.need(this.llm, 'createEngine').generate(prompts, params);
  }

  /** Export the loaded weights (the OptModel's, else the engine's) as handles. */
  async exportWeights(opts: { packed?: boolean } = {}): Promise<ExportedTensors> {
    const weights = this.model?.weights ?? this.llm?.engine.weights;
    return await exportHandles(this.remote(), weightTensors(this.need(weights ?? null, 'loadModel or createEngine')), opts);
  }

  /** Open exported weights and copy them into the engine's (or model's) weights on the GPU; returns bytes copied. */
  async loadWeightsFromHandles(exported: ExportedTensors): Promise<number> {
    const gpu = this.remote();
    const opened = await openTensors(gpu, exported);
    try {
      const weights = this.llm?.engine.weights ?? this.need(this.model, 'loadModel or createEngine').weights;
      const { bytes } = copyIntoWeights(gpu, opened, weights);
      this.llm?.engine.kv.resetPrefixCache(); // cached blocks were computed with the old weights
      await gpu.sync();
      return bytes;
    } finally {
      closeTensors(gpu, opened);
    }
  }

  /** Start generating over and over in the background (fault tests terminate the worker mid-work). */
  startBusyLoop(tokens: number[]): void {
    const model = this.need(this.model, 'loadModel');
    this.busy = (async () => {
      for (;;) await generate(model, tokens, { maxTokens: 8, ignoreEos: true });
    })().catch(() => {});
  }

  gpuStats(): ReturnType<Gpu['stats']> {
    return this.need(this.gpu, 'connect').stats();
  }

  disconnect(): void {
    this.gpu?.destroy();
    this.gpu = null;
  }
}
