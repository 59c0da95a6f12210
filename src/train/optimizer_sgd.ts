/**
 * SGD as torch.optim.SGD computes it (coupled weight decay, optional momentum with dampening, Nesterov):
 * shaders/optim_sgd.wgsl, one dispatch per tensor window. A momentum buffer per parameter exists only when
 * momentum > 0.
 */
import { InvalidInputError } from '../errors.ts';
import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { packParams } from '../gpu/gpu.ts';
import { grid1d, shaderSource } from '../kernels/shader.ts';
import { numElements } from './optimizer_grad_norm.ts';
import type { NamedGpuTensor, SgdConfig, UpdateRule } from './optimizer_types.ts';
import { elementWindows, windowRange } from './optimizer_windows.ts';
import { fillZero } from './kernels/fill.ts';

export interface SgdHyper {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

export function sgdHyper(c: SgdConfig): SgdHyper {
  const h = { lr: c.lr, momentum: c.momentum ?? 0, dampening: c.dampening ?? 0, weightDecay: c.weightDecay ?? 0, nesterov: c.nesterov ?? false };
  checkHyper(h);
  return h;
}

function checkHyper(h: SgdHyper): void {
  const bad = (what: string, v: unknown) => new InvalidInputError(`SGD: ${what}, got ${v}`);
  if (!(Number.isFinite(h.lr) && h.lr >= 0)) throw bad('lr must be a finite number >= 0', h.lr);
  if (!(Number.isFinite(h.momentum) && h.momentum >= 0)) throw bad('momentum must be a finite number >= 0', h.momentum);
  if (!(Number.isFinite(h.dampening) && h.dampening >= 0 && h.dampening <= 1)) throw bad('dampening must be in [0, 1]', h.dampening);
  if (!(Number.isFinite(h.weightDecay) && h.weightDecay >= 0)) throw bad('weight decay must be a finite number >= 0', h.weightDecay);
  if (h.nesterov && (h.momentum <= 0 || h.dampening !== 0)) throw bad('Nesterov momentum needs momentum > 0 and dampening 0', `momentum ${h.momentum}, dampening ${h.dampening}`);
}

export class SgdRule implements UpdateRule {
  private readonly gpu: Gpu;
  private readonly params: readonly NamedGpuTensor[];
  private readonly grads: readonly NamedGpuTensor[];
  private readonly momentumBufs: GpuBuffer[];
  private readonly dummy: GpuBuffer;
  private readonly maxWindow: number;
  private readonly hyper: SgdHyper;

  private constructor(gpu: Gpu, params: readonly NamedGpuTensor[], grads: readonly NamedGpuTensor[], bufs: GpuBuffer[], dummy: GpuBuffer, maxWindow: number, h: SgdHyper) {
    this.gpu = gpu;
    this.params = params;
    this.grads = grads;
    this.momentumBufs = bufs;
    this.dummy = dummy;
    this.maxWindow = maxWindow;
    this.hyper = h;
  }

  static async create(gpu: Gpu, params: readonly NamedGpuTensor[], grads: readonly NamedGpuTensor[], config: SgdConfig, maxWindow: number): Promise<SgdRule> {
    const h = sgdHyper(config);
    const bufs: GpuBuffer[] = [];
    if (h.momentum > 0) for (const p of params) bufs.push(await gpu.createBuffer(4 * numElements(p.shape), `${p.name}.momentum_buffer`));
    const dummy = await gpu.createBuffer(4 * 256, 'optim.sgd.noMomentum');
    return new SgdRule(gpu, params, grads, bufs, dummy, maxWindow, h);
  }

  get lr(): number { return this.hyper.lr; }
  set lr(lr: number) { checkHyper({ ...this.hyper, lr }); this.hyper.lr = lr; }

  hostScalars(t: number): Float32Array {
    const h = this.hyper;
    return Float32Array.of(h.lr, h.weightDecay, h.momentum, 1 - h.dampening, t === 1 ? 1 : 0, h.nesterov ? 1 : 0);
  }

  record(scalars: GpuBuffer): void {
    const withMomentum = this.momentumBufs.length > 0;
    const k = this.gpu.kernel(shaderSource('optim_sgd'));
    this.params.forEach((p, i) => {
      for (const w of elementWindows(numElements(p.shape), this.maxWindow)) {
        const r = windowRange(w);
        const buf = withMomentum ? { buffer: this.momentumBufs[i], ...r } : this.dummy;
        this.gpu.dispatch(
          k, [scalars, { buffer: p.buffer, ...r }, { buffer: this.grads[i].buffer, ...r }, buf],
          packParams([w.count]), grid1d(Math.ceil(w.count / 256)),
        );
      }
    });
  }

  resetState(): void {
    for (const b of this.momentumBufs) fillZero(this.gpu, b);
  }

  buffers(): GpuBuffer[] {
    return [...this.momentumBufs, this.dummy];
  }

  state(): Map<string, NamedGpuTensor> {
    const out = new Map<string, NamedGpuTensor>();
    this.momentumBufs.forEach((b, i) => {
      const name = `${this.params[i].name}.momentum_buffer`;
      out.set(name, { name, shape: this.params[i].shape, buffer: b });
    });
    return out;
  }
}

/** CPU reference (float64), torch.optim.SGD's order; `buf` is updated in place when momentum > 0. */
export function sgdReference(p: Float64Array, g: ArrayLike<number>, buf: Float64Array, h: SgdHyper, t: number, clip = 1): void {
  for (let i = 0; i < p.length; i++) {
    let gi = g[i] * clip;
    if (h.weightDecay !== 0) gi += h.weightDecay * p[i];
    let d = gi;
    if (h.momentum !== 0) {
      buf[i] = t === 1 ? gi : buf[i] * h.momentum + (1 - h.dampening) * gi;
      d = h.nesterov ? gi + h.momentum * buf[i] : buf[i];
    }
    p[i] -= h.lr * d;
  }
}
