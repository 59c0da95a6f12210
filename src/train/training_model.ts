import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import type { OptConfig } from '../model/config.ts';
import { expectedTensors } from '../model/config.ts';
import { convertTensor, numElements } from '../model/weights/dtype.ts';
import type { TensorMap } from '../model/weights/types.ts';
import { WeightMismatchError } from '../errors.ts';
import type { ForwardBackwardOptions, ParamTensor, TrainBatch, TrainingModelOptions } from './types.ts';

/**
 * OPT for training: f32 parameters and gradients on the GPU (one buffer per HF tensor), a forward that saves
 * what the backward needs, the loss, and the backward. The optimizer (src/train/optimizer*.ts) reads `params`
 * and `grads` by name; nothing here reads back except `readLoss`.
 *
 * Work in progress: the interface is final, the recording of forward/backward lands in the next commits.
 */
export class OptTrainingModel {
  readonly config: OptConfig;
  readonly gpu: Gpu;
  readonly maxBatchTokens: number;
  /** One f32 buffer per HF tensor (HF shapes); the tied head is `model.decoder.embed_tokens.weight` (no lm_head entry). */
  readonly params: ReadonlyMap<string, ParamTensor>;
  /** Same names and shapes as `params`. */
  readonly grads: ReadonlyMap<string, ParamTensor>;

  private constructor(gpu: Gpu, config: OptConfig, params: Map<string, ParamTensor>, grads: Map<string, ParamTensor>, opts: TrainingModelOptions) {
    this.gpu = gpu;
    this.config = config;
    this.params = params;
    this.grads = grads;
    this.maxBatchTokens = opts.maxBatchTokens;
  }

  static async create(gpu: Gpu, config: OptConfig, tensors: TensorMap, opts: TrainingModelOptions): Promise<OptTrainingModel> {
    const params = new Map<string, ParamTensor>();
    const grads = new Map<string, ParamTensor>();
    for (const [name, shape] of expectedTensors(config)) {
      const t = tensors.get(name);
      if (!t) throw new WeightMismatchError(`checkpoint has no tensor ${name}`);
      if (t.shape.join(',') !== shape.join(',')) throw new WeightMismatchError(`${name}: shape [${t.shape}] but the config needs [${shape}]`);
      const bytes = numElements(shape) * 4;
      const p = await gpu.createBuffer(bytes, `param ${name}`);
      gpu.write(p, convertTensor(t, 'F32').bytes);
      params.set(name, { name, shape, buffer: p });
      grads.set(name, { name, shape, buffer: await gpu.createBuffer(bytes, `grad ${name}`) });
    }
    return new OptTrainingModel(gpu, config, params, grads, opts);
  }

  /** Record a GPU clear of every gradient. */
  zeroGrads(): void {
    throw new Error('not yet implemented');
  }

  /**
   * Record forward + loss + backward; ADDS d(scale * loss)/dθ into `grads` (several calls accumulate).
   * Throws TrainingInputError for a malformed batch before recording anything.
   */
  forwardBackward(_batch: TrainBatch, _opts: ForwardBackwardOptions = {}): void {
    throw new Error('not yet implemented');
  }

  /** Record forward + loss only (no gradients touched). */
  forwardLoss(_batch: TrainBatch): void {
    throw new Error('not yet implemented');
  }

  /** The loss of the last recorded forward (unscaled), one f32 read back. */
  readLoss(): Promise<number> {
    throw new Error('not yet implemented');
  }

  /** The GPU buffer holding the last loss (one f32), for callers that read it later or check it on the GPU. */
  get lossBuffer(): GpuBuffer {
    throw new Error('not yet implemented');
  }

  /** Free every buffer this model holds (parameters and gradients included). */
  release(): void {
    for (const t of [...this.params.values(), ...this.grads.values()]) this.gpu.destroyBuffer(t.buffer);
  }
}
