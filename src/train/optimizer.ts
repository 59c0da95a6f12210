/**
 * The optimizer step on the GPU: global gradient norm (deterministic two-pass reduction), optional clipping to
 * `maxGradNorm`, then the update rule (AdamW or SGD) on every parameter, one dispatch per tensor window.
 * f32 master weights and f32 state live on the GPU; the host only writes a few step constants and reads back
 * four floats (norm, clip coefficient, whether the update ran).
 *
 * A step whose gradient norm (or loss, when its GPU location is given) is NaN/Inf does not run: the update
 * kernels read a flag the norm pass writes, so weights and state are untouched, and the step is not counted.
 *
 * The dispatch sequence is the same every step (only the host scalars change), so it is captured once and
 * replayed: hundreds of dispatches for OPT-125m cost one replay.
 */
import { InvalidInputError, WeightMismatchError } from '../errors.ts';
import type { Gpu, GpuBuffer, Recording } from '../gpu/gpu.ts';
import { AdamWRule } from './optimizer_adamw.ts';
import { GlobalGradNorm, type LossLocation } from './optimizer_grad_norm.ts';
import { SgdRule } from './optimizer_sgd.ts';
import {
  HOST_SCALARS_OFFSET, type NamedGpuTensor, type OptimizerConfig, SCALAR_CLIP, SCALAR_HALTED, SCALAR_NORM, SCALAR_OK, SCALAR_SLOTS,
  type UpdateRule,
} from './optimizer_types.ts';
import { windowElements } from './optimizer_windows.ts';

export type { AdamWConfig, NamedGpuTensor, OptimizerConfig, SgdConfig } from './optimizer_types.ts';
export type { LossLocation } from './optimizer_grad_norm.ts';

/** Bytes of step status at the start of statusBuffer: norm, clip coefficient, applied flag, spare. */
export const STATUS_BYTES = 16;

export interface OptimizerOptions {
  /** Clip the global gradient L2 norm to this (torch.nn.utils.clip_grad_norm_). Default: no clipping. */
  maxGradNorm?: number;
  /** Largest storage binding to use (default: the device's limit). Smaller values force windowing (tests). */
  maxBindingBytes?: number;
}

/** What one recorded step did, as read back. */
export interface StepStatus {
  /** Global L2 norm of the gradients before clipping. */
  gradNorm: number;
  /** The factor the gradients were scaled by (1 without clipping or under the limit). */
  clipCoef: number;
  /** False when the norm (or the checked loss) was not finite: nothing was updated. */
  applied: boolean;
}

export class Optimizer {
  readonly gpu: Gpu;
  readonly config: OptimizerConfig;
  readonly maxGradNorm: number | undefined;
  private readonly norm: GlobalGradNorm;
  private readonly rule: UpdateRule;
  private readonly scalars: GpuBuffer;
  private completed = 0;
  /** Steps recorded and not yet finished, oldest first (their step numbers). */
  private pending: number[] = [];
  private recordings = new Map<string, Recording>();

  private constructor(gpu: Gpu, config: OptimizerConfig, maxGradNorm: number | undefined, norm: GlobalGradNorm, rule: UpdateRule, scalars: GpuBuffer) {
    this.gpu = gpu;
    this.config = config;
    this.maxGradNorm = maxGradNorm;
    this.norm = norm;
    this.rule = rule;
    this.scalars = scalars;
  }

  /**
   * An optimizer over `params` (updated in place) driven by `grads` (same names and shapes). Parameters are
   * visited in the map's order, which fixes the order of the norm's reduction.
   */
  static async create(
    gpu: Gpu, params: ReadonlyMap<string, NamedGpuTensor>, grads: ReadonlyMap<string, NamedGpuTensor>,
    config: OptimizerConfig, opts: OptimizerOptions = {},
  ): Promise<Optimizer> {
    const maxGradNorm = opts.maxGradNorm;
    if (maxGradNorm !== undefined && !(Number.isFinite(maxGradNorm) && maxGradNorm > 0)) {
      throw new InvalidInputError(`maxGradNorm must be a finite number > 0, got ${maxGradNorm}`);
    }
    const ps = [...params.values()];
    const gs = ps.map((p) => {
      const g = grads.get(p.name);
      if (!g) throw new WeightMismatchError(`parameter ${p.name} has no gradient tensor`);
      if (g.shape.length !== p.shape.length || g.shape.some((d, i) => d !== p.shape[i])) {
        throw new WeightMismatchError(`gradient of ${p.name} has shape [${g.shape}], the parameter [${p.shape}]`);
      }
      return g;
    });
    const maxWindow = windowElements(Math.min(opts.maxBindingBytes ?? Infinity, gpu.caps.maxStorageBindingSize));
    const norm = await GlobalGradNorm.create(gpu, gs, maxWindow);
    let rule: UpdateRule;
    if (config.type === 'adamw') rule = await AdamWRule.create(gpu, ps, gs, config, maxWindow);
    else if (config.type === 'sgd') rule = await SgdRule.create(gpu, ps, gs, config, maxWindow);
    else throw new InvalidInputError(`unknown optimizer type ${JSON.stringify((config as { type: unknown }).type)}: use "adamw" or "sgd"`);
    const scalars = await gpu.createBuffer(4 * SCALAR_SLOTS, 'optim.scalars');
    return new Optimizer(gpu, config, maxGradNorm, norm, rule, scalars);
  }

  /** Steps applied so far (the next one is step + 1, which sets AdamW's bias correction). */
  get step(): number {
    return this.completed;
  }

  get lr(): number { return this.rule.lr; }
  set lr(lr: number) { this.rule.lr = lr; }

  /**
   * Record the update for the next step after the gradients are complete: norm, clip, update. Nothing is read
   * back; finish() / finishWith() learn whether it ran. `loss`: where the step's loss is, to skip the update on
   * NaN/Inf. Several steps may be recorded before any is finished (step numbers follow on, assuming each
   * applies: a non-finite one halts the updates of those queued behind it on the GPU, so none runs with a wrong
   * step number); finish them in order.
   */
  record(opts: { loss?: LossLocation } = {}): void {
    const t = this.completed + this.pending.length + 1;
    const host = this.rule.hostScalars(t);
    if (this.pending.length === 0) {
      // Nothing in flight: clear the sticky halt along with this step's constants (one write).
      const words = new Float32Array(HOST_SCALARS_OFFSET - SCALAR_HALTED + host.length);
      words.set(host, HOST_SCALARS_OFFSET - SCALAR_HALTED);
      this.gpu.write(this.scalars, words, 4 * SCALAR_HALTED);
    } else {
      this.gpu.write(this.scalars, host, 4 * HOST_SCALARS_OFFSET);
    }
    const key = opts.loss ? `${opts.loss.buffer.id}:${opts.loss.index}:${opts.loss.count ?? 1}` : '';
    let rec = this.recordings.get(key);
    if (!rec) {
      rec = this.gpu.capture(() => {
        this.norm.record(this.scalars, { maxNorm: this.maxGradNorm, loss: opts.loss });
        this.rule.record(this.scalars);
      });
      this.recordings.set(key, rec);
    }
    this.gpu.replay(rec);
    this.pending.push(t);
  }

  /** Read back the recorded step's status; the step counts only if it was applied. One step in flight only. */
  async finish(): Promise<StepStatus> {
    if (this.pending.length !== 1) throw new Error(`Optimizer.finish: ${this.pending.length} steps recorded, expected 1 (use finishWith)`);
    return this.finishWith(new Float32Array(await this.gpu.read(this.scalars, 0, STATUS_BYTES)));
  }

  /**
   * The buffer whose first STATUS_BYTES hold the recorded step's status words: a caller may copy them next to
   * its own results and read everything back at once, then call finishWith.
   */
  get statusBuffer(): GpuBuffer {
    return this.scalars;
  }

  /**
   * Complete the oldest recorded step from its status words as read back by the caller (statusBuffer copied
   * after that step's record()).
   */
  finishWith(words: Float32Array): StepStatus {
    const t = this.pending.shift();
    if (t === undefined) throw new Error('Optimizer.finishWith: no step was recorded');
    const status = { gradNorm: words[SCALAR_NORM], clipCoef: words[SCALAR_CLIP], applied: words[SCALAR_OK] !== 0 };
    if (status.applied) this.completed = t;
    return status;
  }

  /** Per-tensor gradient L2 norms of the last recorded step (one readback). */
  readGradNorms(): Promise<Map<string, number>> {
    return this.norm.readTensorNorms();
  }

  /** Optimizer state tensors by name (`NAME.exp_avg`, `NAME.exp_avg_sq`, `NAME.momentum_buffer`). */
  state(): Map<string, NamedGpuTensor> {
    return this.rule.state();
  }

  /** Forget the state: zero moments / momentum, step count back to 0 (as a fresh torch optimizer). */
  reset(): void {
    this.rule.resetState();
    this.completed = 0;
    this.pending = [];
  }

  release(): void {
    for (const r of this.recordings.values()) this.gpu.releaseRecording(r);
    this.recordings.clear();
    for (const b of [...this.norm.buffers(), ...this.rule.buffers(), this.scalars]) this.gpu.destroyBuffer(b);
  }
}
