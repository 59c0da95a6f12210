/**
 * The global L2 norm of all gradients, deterministically: optim_sumsq writes the sum of squares of every fixed
 * 4096-element chunk of every gradient (pass 1), then one workgroup of optim_norm_finalize reduces each tensor's
 * chunks and sums the tensors in parameter order (pass 2). No atomics, so the same gradients give the same bits
 * every run. Pass 2 also writes the clip coefficient and the step's finiteness flag into the step scalars.
 */
import type { BufferBinding, Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { packParams } from '../gpu/gpu.ts';
import { grid1d, shaderSource } from '../kernels/shader.ts';
import { elementWindows, NORM_CHUNK, windowRange } from './optimizer_windows.ts';
import type { NamedGpuTensor } from './optimizer_types.ts';

/** Where the loss is on the GPU (`count` floats, default 1, from `index` of `buffer`), for the finiteness check. */
export interface LossLocation {
  buffer: GpuBuffer;
  index: number;
  count?: number;
}

export class GlobalGradNorm {
  readonly names: readonly string[];
  private readonly gpu: Gpu;
  private readonly grads: readonly NamedGpuTensor[];
  private readonly maxWindow: number;
  private readonly partials: GpuBuffer;
  private readonly ranges: GpuBuffer;
  /** Per-tensor sums of squares, in `names` order. */
  readonly tensorSumSq: GpuBuffer;
  /** First chunk-sum slot of each tensor. */
  private readonly partialBase: number[];
  /** Bound as the loss when no loss is checked (WebGPU needs every binding). */
  private readonly dummy: GpuBuffer;

  private constructor(
    gpu: Gpu, grads: readonly NamedGpuTensor[], maxWindow: number, partials: GpuBuffer, ranges: GpuBuffer, sumsq: GpuBuffer,
    partialBase: number[], dummy: GpuBuffer,
  ) {
    this.gpu = gpu;
    this.grads = grads;
    this.names = grads.map((g) => g.name);
    this.maxWindow = maxWindow;
    this.partials = partials;
    this.ranges = ranges;
    this.tensorSumSq = sumsq;
    this.partialBase = partialBase;
    this.dummy = dummy;
  }

  static async create(gpu: Gpu, grads: readonly NamedGpuTensor[], maxWindow: number): Promise<GlobalGradNorm> {
    const partialBase: number[] = [];
    const ranges = new Uint32Array(2 * grads.length);
    let total = 0;
    grads.forEach((g, i) => {
      const chunks = Math.ceil(numElements(g.shape) / NORM_CHUNK);
      partialBase.push(total);
      ranges[2 * i] = total;
      ranges[2 * i + 1] = chunks;
      total += chunks;
    });
    const partials = await gpu.createBuffer(4 * Math.max(1, total), 'optim.norm.partials');
    const rangesBuf = await gpu.createBuffer(ranges.byteLength || 8, 'optim.norm.ranges');
    gpu.write(rangesBuf, ranges);
    const sumsq = await gpu.createBuffer(4 * Math.max(1, grads.length), 'optim.norm.tensorSumSq');
    const dummy = await gpu.createBuffer(16, 'optim.norm.noLoss');
    return new GlobalGradNorm(gpu, grads, maxWindow, partials, rangesBuf, sumsq, partialBase, dummy);
  }

  /**
   * Record both passes. Writes scalars[0..2] = norm, clip coefficient (1 when maxNorm is 0/undefined),
   * finiteness flag (norm finite and, when `loss` is given, loss finite).
   */
  record(scalars: GpuBuffer, opts: { maxNorm?: number; loss?: LossLocation } = {}): void {
    const g = this.gpu;
    const pass1 = g.kernel(shaderSource('optim_sumsq'));
    this.grads.forEach((t, i) => {
      for (const w of elementWindows(numElements(t.shape), this.maxWindow)) {
        const binding: BufferBinding = { buffer: t.buffer, ...windowRange(w) };
        const params = packParams([w.count, this.partialBase[i] + w.start / NORM_CHUNK]);
        g.dispatch(pass1, [binding, this.partials], params, grid1d(Math.ceil(w.count / NORM_CHUNK)));
      }
    });
    const finalize = shaderSource('optim_norm_finalize');
    const loss = opts.loss;
    const params = packParams([this.grads.length, { f: opts.maxNorm ?? 0 }, loss ? loss.count ?? 1 : 0, loss?.index ?? 0]);
    const bindings = [this.partials, this.ranges, this.tensorSumSq, scalars, loss?.buffer ?? this.dummy];
    // Per tensor in parallel, then one thread adds the tensors up in order and writes the step's scalars.
    g.dispatch(g.kernel({ ...finalize, entryPoint: 'tensors' }), bindings, params, [this.grads.length]);
    g.dispatch(g.kernel(finalize), bindings, params, [1]);
  }

  /** Per-tensor L2 norms of the gradients as of the last recorded pass (one readback). */
  async readTensorNorms(): Promise<Map<string, number>> {
    const s = new Float32Array(await this.gpu.read(this.tensorSumSq, 0, 4 * this.grads.length));
    return new Map(this.names.map((n, i) => [n, Math.sqrt(s[i])]));
  }

  buffers(): GpuBuffer[] {
    return [this.partials, this.ranges, this.tensorSumSq, this.dummy];
  }
}

export function numElements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
