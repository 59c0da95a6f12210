/**
 * The Trainer: an OPT model in training (OptTrainingModel: parameters, gradients, forward + backward) and an
 * Optimizer (AdamW or SGD, optional clipping) on one Gpu. A step is, all on the GPU: zero the gradients,
 * forward + loss + backward per micro-batch (gradient accumulation), grad norm, update; then one readback of
 * the losses and the norm. A NaN/Inf loss or norm stops the update on the GPU itself and surfaces as a
 * NonFiniteLossError naming the step.
 */
import { NonFiniteLossError, TrainingInputError, InvalidInputError } from '../errors.ts';
import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { LocalGpu } from '../gpu/local.ts';
import { parseOptConfig, type OptConfig } from '../model/config.ts';
import { loadCheckpoint, type ModelSpec } from '../model/weights/sources.ts';
import type { Checkpoint, TensorMap } from '../model/weights/types.ts';
import { validateCheckpoint } from '../model/weights/validate.ts';
import { optConfigJson, readParameters, readWeightsSource, saveParameters, writeParameters, type WeightsSource } from './checkpoint.ts';
import { Optimizer, type OptimizerConfig, STATUS_BYTES } from './optimizer.ts';
import { fillZero } from './kernels/fill.ts';
import { OptTrainingModel } from './training_model.ts';
import type { ParamTensor, TrainBatch } from './types.ts';
import { splitMicroBatches, type MicroBatch } from './trainer_micro_batches.ts';

/** A model given as tensors: an OptConfig or a config.json object, and HF-named tensors. */
export interface InlineModel {
  config: OptConfig | Record<string, unknown>;
  tensors: TensorMap;
}

export interface TrainerOptions {
  /** A checkpoint spec (directory, URL, `synthetic:CONFIG:SEED`), a loaded Checkpoint, or {config, tensors}. */
  model: ModelSpec | Checkpoint | InlineModel;
  /** The device to train on; default: a LocalGpu the trainer creates (and destroys on release). */
  gpu?: Gpu;
  optimizer: OptimizerConfig;
  /** Most tokens (B x L, padding included) one forward/backward takes; larger batches are accumulated in micro-batches. */
  maxBatchTokens: number;
  /** Clip the global gradient norm to this (torch.nn.utils.clip_grad_norm_). */
  maxGradNorm?: number;
  /** Cap on one chunk of logits in bytes (see TrainingModelOptions). */
  maxLogitBytes?: number;
  /** Cap on the bytes of saved attention probabilities (see TrainingModelOptions). */
  maxSavedAttentionBytes?: number;
  /** The longest sequence a batch may hold (see TrainingModelOptions); default max_position_embeddings. */
  maxSequenceLength?: number;
}

export interface StepResult {
  /** The loss of this step's forward, before the update (over the whole batch, micro-batches combined). */
  loss: number;
  /** Global L2 norm of the gradients before clipping. */
  gradNorm: number;
  /** The 1-based number of this step. */
  step: number;
}

/** A batch as ids alone (equal-length rows) or a TrainBatch; `opts` may carry weights / mask instead. */
export type BatchInput = TrainBatch | ReadonlyArray<readonly number[]>;

function isInline(x: unknown): x is InlineModel {
  return typeof x === 'object' && x !== null && 'config' in x && 'tensors' in x;
}
function isCheckpoint(x: unknown): x is Checkpoint {
  return typeof x === 'object' && x !== null && 'configJson' in x && 'tensors' in x;
}
function isOptConfig(x: unknown): x is OptConfig {
  return typeof x === 'object' && x !== null && 'vocabSize' in x && 'hiddenSize' in x;
}

async function resolveModel(model: TrainerOptions['model']): Promise<{ config: OptConfig; configJson: Record<string, unknown>; tensors: TensorMap }> {
  if (isInline(model)) {
    const config = isOptConfig(model.config) ? model.config : parseOptConfig(model.config);
    const configJson = isOptConfig(model.config) ? optConfigJson(config) : model.config;
    return { config, configJson, tensors: validateCheckpoint(config, model.tensors) };
  }
  const ckpt = isCheckpoint(model) ? model : await loadCheckpoint(model);
  const config = parseOptConfig(ckpt.configJson);
  return { config, configJson: ckpt.configJson, tensors: validateCheckpoint(config, ckpt.tensors) };
}

export class Trainer {
  readonly gpu: Gpu;
  readonly config: OptConfig;
  /** config.json of the model (what a saved checkpoint is served with). */
  readonly configJson: Record<string, unknown>;
  readonly model: OptTrainingModel;
  readonly optimizer: Optimizer;
  private readonly ownsGpu: boolean;
  /** One f32 per micro-batch: each forward's loss is copied here so one readback returns them all. */
  private lossSlots: GpuBuffer;
  private released = false;

  private constructor(gpu: Gpu, ownsGpu: boolean, config: OptConfig, configJson: Record<string, unknown>, model: OptTrainingModel, optimizer: Optimizer, lossSlots: GpuBuffer) {
    this.gpu = gpu;
    this.ownsGpu = ownsGpu;
    this.config = config;
    this.configJson = configJson;
    this.model = model;
    this.optimizer = optimizer;
    this.lossSlots = lossSlots;
  }

  static async create(opts: TrainerOptions): Promise<Trainer> {
    if (!(Number.isInteger(opts.maxBatchTokens) && opts.maxBatchTokens > 0)) {
      throw new InvalidInputError(`maxBatchTokens must be a positive integer, got ${opts.maxBatchTokens}`);
    }
    const { config, configJson, tensors } = await resolveModel(opts.model);
    const gpu = opts.gpu ?? await LocalGpu.create();
    const model = await OptTrainingModel.create(gpu, config, tensors, { maxBatchTokens: opts.maxBatchTokens, maxLogitBytes: opts.maxLogitBytes, maxSavedAttentionBytes: opts.maxSavedAttentionBytes, maxSequenceLength: opts.maxSequenceLength });
    let optimizer: Optimizer;
    try {
      optimizer = await Optimizer.create(gpu, model.params, model.grads, opts.optimizer, { maxGradNorm: opts.maxGradNorm });
    } catch (e) {
      model.release();
      if (!opts.gpu) gpu.destroy();
      throw e;
    }
    const lossSlots = await gpu.createBuffer(4 * 16, 'trainer.losses');
    return new Trainer(gpu, !opts.gpu, config, configJson, model, optimizer, lossSlots);
  }

  /** Steps applied so far. */
  get stepCount(): number {
    return this.optimizer.step;
  }

  get lr(): number { return this.optimizer.lr; }
  set lr(lr: number) { this.optimizer.lr = lr; }

  /**
   * One optimizer step on `batch`: the loss before the update and the gradient norm. Batches over maxBatchTokens
   * are split by rows into micro-batches whose gradients accumulate (each scaled by its share of the targets, so
   * the result is the gradient of the whole batch's loss). Throws TrainingInputError for a malformed batch
   * (nothing recorded) and NonFiniteLossError when the loss or norm is NaN/Inf (nothing updated).
   */
  async step(batch: BatchInput, opts: { weights?: TrainBatch['weights']; mask?: TrainBatch['mask'] } = {}): Promise<StepResult> {
    this.checkAlive();
    const [result] = await this.run([this.split(batch, opts)]);
    return result;
  }

  /**
   * Several optimizer steps, one per batch, queued back to back with one readback after the last: what a
   * PyTorch loop that never calls `.item()` does. The GPU runs them without waiting for the host in between, and
   * the host encodes step i + 1 while the GPU runs step i. Every batch is validated before anything is recorded
   * (TrainingInputError names the batch). A non-finite step stops the updates of every step queued behind it, on
   * the GPU itself; NonFiniteLossError then names it, and carries the results of the steps before it in
   * `completed` (the steps after it ran their forward and backward but changed nothing).
   */
  async steps(batches: ReadonlyArray<BatchInput>): Promise<StepResult[]> {
    this.checkAlive();
    const all = batches.map((b, i) => {
      try {
        return this.split(b, {});
      } catch (e) {
        if (e instanceof TrainingInputError && batches.length > 1) throw new TrainingInputError(`batch ${i}: ${e.message}`);
        throw e;
      }
    });
    return all.length === 0 ? [] : this.run(all);
  }

  /** Record one step per entry (its micro-batches), read every loss and status back at once, finish them in order. */
  private async run(all: MicroBatch[][]): Promise<StepResult[]> {
    // Per step: the optimizer's status words, then one loss per micro-batch.
    const W = STATUS_BYTES / 4;
    const offsets: number[] = [];
    let words = 0;
    for (const micro of all) {
      offsets.push(words);
      words += W + micro.length;
    }
    const slots = await this.slotsFor(words);
    all.forEach((micro, i) => {
      const lossAt = offsets[i] + W;
      this.model.zeroGrads();
      micro.forEach((mb, k) => {
        this.model.forwardBackward(mb.batch, { scale: mb.share });
        this.gpu.copy(this.model.lossBuffer, 0, slots, 4 * (lossAt + k), 4);
      });
      this.optimizer.record({ loss: { buffer: slots, index: lossAt, count: micro.length } });
      this.gpu.copy(this.optimizer.statusBuffer, 0, slots, 4 * offsets[i], STATUS_BYTES);
    });
    const read = new Float32Array(await this.gpu.read(slots, 0, 4 * words));
    const results: StepResult[] = [];
    let failure: { step: number; loss: number; gradNorm: number } | null = null;
    for (let i = 0; i < all.length; i++) {
      const status = this.optimizer.finishWith(read.subarray(offsets[i], offsets[i] + W));
      const loss = combine(all[i], read.subarray(offsets[i] + W, offsets[i] + W + all[i].length));
      if (status.applied) results.push({ loss, gradNorm: status.gradNorm, step: this.optimizer.step });
      else failure ??= { step: this.optimizer.step + 1, loss, gradNorm: status.gradNorm };
    }
    if (failure) throw new NonFiniteLossError({ ...failure, completed: results, notApplied: all.length - results.length });
    return results;
  }

  /** The loss of `batch` under the current weights (forward only; gradients untouched). */
  async loss(batch: BatchInput, opts: { weights?: TrainBatch['weights']; mask?: TrainBatch['mask'] } = {}): Promise<number> {
    this.checkAlive();
    const micro = this.split(batch, opts);
    const slots = await this.slotsFor(micro.length);
    micro.forEach((mb, k) => {
      this.model.forwardLoss(mb.batch);
      this.gpu.copy(this.model.lossBuffer, 0, slots, 4 * k, 4);
    });
    return combine(micro, new Float32Array(await this.gpu.read(slots, 0, 4 * micro.length)));
  }

  /** Per-parameter L2 norms of the last step's gradients (HF names; the tied embedding includes the head's part). */
  gradNorms(): Promise<Map<string, number>> {
    return this.optimizer.readGradNorms();
  }

  /** The parameters as named GPU tensors (HF names and shapes, f32), updated in place by each step. */
  parameters(): ReadonlyMap<string, ParamTensor> {
    return this.model.params;
  }

  /** Zero every parameter (what the training actors of vLLM's colocate example do before handing weights over). */
  zeroWeights(): void {
    this.checkAlive();
    for (const p of this.model.params.values()) fillZero(this.gpu, p.buffer);
  }

  /**
   * Overwrite the parameters from a checkpoint (spec, safetensors bytes, tensors). Every tensor must be present
   * with this model's shape, or WeightMismatchError lists what is wrong and nothing is written. The optimizer
   * state is kept (as loading a state_dict into a model leaves its torch optimizer alone).
   */
  async loadWeights(source: WeightsSource): Promise<void> {
    this.checkAlive();
    const tensors = await readWeightsSource(source, this.config);
    writeParameters(this.gpu, this.model.params, tensors);
  }

  /** The parameters as safetensors bytes: HF names, F32, tied head omitted; OptModel / LLM / transformers load them. */
  saveWeights(): Promise<Uint8Array> {
    this.checkAlive();
    return saveParameters(this.gpu, this.model.params);
  }

  /** The parameters as a loaded Checkpoint (config.json + tensors), e.g. for OptModel.load. */
  async checkpoint(): Promise<Checkpoint> {
    this.checkAlive();
    return { configJson: structuredClone(this.configJson), tensors: await readParameters(this.gpu, this.model.params) };
  }

  /** Free every buffer (and the Gpu, when the trainer created it). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.optimizer.release();
    this.model.release();
    this.gpu.destroyBuffer(this.lossSlots);
    if (this.ownsGpu) this.gpu.destroy();
  }

  private checkAlive(): void {
    if (this.released) throw new InvalidInputError('this Trainer was released');
  }

  private split(batch: BatchInput, opts: { weights?: TrainBatch['weights']; mask?: TrainBatch['mask'] }): MicroBatch[] {
    const b: TrainBatch = Array.isArray(batch) ? { ids: batch as ReadonlyArray<readonly number[]> } : { ...(batch as TrainBatch) };
    if (opts.weights) {
      if (b.weights) throw new TrainingInputError('weights given twice: in the batch and in the step options');
      b.weights = opts.weights;
    }
    if (opts.mask) {
      if (b.mask) throw new TrainingInputError('mask given twice: in the batch and in the step options');
      b.mask = opts.mask;
    }
    return splitMicroBatches(b, this.model.maxBatchTokens);
  }

  /** The read-back buffer, grown to hold `n` f32 words. */
  private async slotsFor(n: number): Promise<GpuBuffer> {
    if (4 * n > this.lossSlots.size) {
      this.gpu.destroyBuffer(this.lossSlots);
      this.lossSlots = await this.gpu.createBuffer(4 * Math.max(n, 2 * this.lossSlots.size / 4), 'trainer.losses');
    }
    return this.lossSlots;
  }
}

/** The whole batch's loss from the micro-batches' (each a mean over its own targets). */
function combine(micro: readonly MicroBatch[], losses: Float32Array): number {
  if (micro.length === 1) return losses[0];
  let s = 0;
  micro.forEach((mb, k) => { s += mb.share * losses[k]; });
  return s;
}
