/**
 * The global L2 norm of all gradients, deterministically: optim_sumsq writes the sum of squares of every fixed
 * 4096-element chunk of every gradient (pass 1), then one workgroup of optim_norm_finalize reduces each tensor's
 * chunks and sums the tensors in parameter order (pass 2). No atomics, so the same gradients give the same bits
 * every run. Pass 2 also writes the clip coefficient and the step's finiteness flag into the step scalars.
 */
import type { BufferBinding, Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { packParams, rootOf } from '../gpu/gpu.ts';
import { grid1d, shaderSource } from '../kernels/shader.ts';
import { NORM_CHUNK } from './optimizer_windows.ts';
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
  /** The sum-of-squares pass: one dispatch per binding window of a gradient buffer, over a chunk table. */
  private readonly sumsq: { table: GpuBuffer; batches: SumSqBatch[] };
  /** Bound as the loss when no loss is checked (WebGPU needs every binding). */
  private readonly dummy: GpuBuffer;

  private constructor(
    gpu: Gpu, grads: readonly NamedGpuTensor[], maxWindow: number, partials: GpuBuffer, ranges: GpuBuffer, sumsq: GpuBuffer,
    pass1: { table: GpuBuffer; batches: SumSqBatch[] }, dummy: GpuBuffer,
  ) {
    this.gpu = gpu;
    this.grads = grads;
    this.names = grads.map((g) => g.name);
    this.maxWindow = maxWindow;
    this.partials = partials;
    this.ranges = ranges;
    this.tensorSumSq = sumsq;
    this.sumsq = pass1;
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
    const plan = sumSqPlan(grads, partialBase, maxWindow);
    const table = await gpu.createBuffer(Math.max(16, plan.table.byteLength), 'optim.norm.chunks');
    gpu.write(table, plan.table);
    return new GlobalGradNorm(gpu, grads, maxWindow, partials, rangesBuf, sumsq, { table, batches: plan.batches }, dummy);
  }

  /**
   * Record both passes. Writes scalars[0..2] = norm, clip coefficient (1 when maxNorm is 0/undefined),
   * finiteness flag (norm finite and, when `loss` is given, loss finite).
   */
  record(scalars: GpuBuffer, opts: { maxNorm?: number; loss?: LossLocation } = {}): void {
    const g = this.gpu;
    const pass1 = g.kernel(shaderSource('optim_sumsq'));
    for (const b of this.sumsq.batches) {
      g.dispatch(pass1, [this.sumsq.table, b.window, this.partials], packParams([b.first, b.chunks]), grid1d(b.chunks));
    }
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
    return [this.partials, this.ranges, this.tensorSumSq, this.dummy, this.sumsq.table];
  }
}

/** One dispatch of the sum-of-squares pass: a window of one buffer and its entries of the chunk table. */
interface SumSqBatch {
  window: BufferBinding;
  first: number;
  chunks: number;
}

/**
 * The chunk table of the sum-of-squares pass: every tensor's NORM_CHUNK-element chunks (partial slot
 * partialBase[i] + k), grouped by the buffer they live in (a sub-buffer counts as its root's range) and cut into
 * binding windows of at most maxWindow elements that never split a chunk. Entries: (offset in the window,
 * elements, slot), as u32 triples.
 */
function sumSqPlan(grads: readonly NamedGpuTensor[], partialBase: readonly number[], maxWindow: number): { table: Uint32Array; batches: SumSqBatch[] } {
  const byRoot = new Map<GpuBuffer, Array<{ start: number; count: number; slot: number }>>();
  grads.forEach((t, i) => {
    const { root, offset } = rootOf(t.buffer);
    const base = offset / 4, n = numElements(t.shape);
    const list = byRoot.get(root) ?? [];
    for (let k = 0; k * NORM_CHUNK < n; k++) {
      list.push({ start: base + k * NORM_CHUNK, count: Math.min(NORM_CHUNK, n - k * NORM_CHUNK), slot: partialBase[i] + k });
    }
    byRoot.set(root, list);
  });
  const words: number[] = [];
  const batches: SumSqBatch[] = [];
  for (const [root, chunks] of byRoot) {
    chunks.sort((a, b) => a.start - b.start);
    let i = 0;
    while (i < chunks.length) {
      // A window starts 64 elements (256 bytes, the binding alignment) at or below its first chunk.
      const w0 = Math.floor(chunks[i].start / 64) * 64;
      const first = words.length / 3;
      let end = w0;
      while (i < chunks.length && chunks[i].start + chunks[i].count - w0 <= maxWindow) {
        const c = chunks[i++];
        words.push(c.start - w0, c.count, c.slot);
        end = c.start + c.count;
      }
      if (end === w0) throw new RangeError(`a gradient chunk does not fit a binding window of ${maxWindow} elements`);
      batches.push({ window: { buffer: root, offset: 4 * w0, size: 4 * (end - w0) }, first, chunks: words.length / 3 - first });
    }
  }
  return { table: Uint32Array.from(words), batches };
}

export function numElements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
