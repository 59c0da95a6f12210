/**
 * AdamW as torch.optim.AdamW computes it (decoupled weight decay, bias correction), fused into one kernel per
 * window: shaders/optim_adamw.wgsl. State (exp_avg, exp_avg_sq) in f32 on the GPU, one pair per parameter.
 * Parameters that live in an arena (src/model/weight_arena.ts) whose gradients sit at the same offsets of a
 * gradient arena get their state in arenas of the same layout, and the whole arena is updated at once (as
 * llm.c's single update over params_memory): one dispatch per binding window instead of one per tensor. The
 * padding between tensors is zero in all four and stays zero (an element-wise update of zeros).
 */
import { InvalidInputError } from '../errors.ts';
import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { packParams, rootOf } from '../gpu/gpu.ts';
import { grid1d, shaderSource } from '../kernels/shader.ts';
import { numElements } from './optimizer_grad_norm.ts';
import type { AdamWConfig, NamedGpuTensor, UpdateRule } from './optimizer_types.ts';
import { elementWindows, windowRange } from './optimizer_windows.ts';
import { fillZero } from './kernels/fill.ts';

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export function adamwHyper(c: AdamWConfig): AdamWHyper {
  const [beta1, beta2] = c.betas ?? [0.9, 0.999];
  const h = { lr: c.lr, beta1, beta2, eps: c.eps ?? 1e-8, weightDecay: c.weightDecay ?? 0.01 };
  checkHyper(h);
  return h;
}

function checkHyper(h: AdamWHyper): void {
  const bad = (what: string, v: number) => new InvalidInputError(`AdamW: ${what}, got ${v}`);
  if (!(Number.isFinite(h.lr) && h.lr >= 0)) throw bad('lr must be a finite number >= 0', h.lr);
  if (!(h.beta1 >= 0 && h.beta1 < 1)) throw bad('beta1 must be in [0, 1)', h.beta1);
  if (!(h.beta2 >= 0 && h.beta2 < 1)) throw bad('beta2 must be in [0, 1)', h.beta2);
  if (!(Number.isFinite(h.eps) && h.eps >= 0)) throw bad('eps must be a finite number >= 0', h.eps);
  if (!(Number.isFinite(h.weightDecay) && h.weightDecay >= 0)) throw bad('weight decay must be a finite number >= 0', h.weightDecay);
}

/** Step-dependent constants for 1-based step t, in float64 then rounded once (PyTorch's Python scalars). */
export function adamwScalars(h: AdamWHyper, t: number): Float32Array {
  const bc1 = 1 - h.beta1 ** t;
  const bc2 = 1 - h.beta2 ** t;
  return Float32Array.of(1 - h.lr * h.weightDecay, h.lr / bc1, Math.sqrt(bc2), 1 - h.beta1, h.beta2, 1 - h.beta2, h.eps);
}

/** Four f32 buffers updated together: parameters, gradients, exp_avg, exp_avg_sq (whole arenas or one tensor each). */
interface UpdateUnit {
  p: GpuBuffer;
  g: GpuBuffer;
  m: GpuBuffer;
  v: GpuBuffer;
  elements: number;
}

export class AdamWRule implements UpdateRule {
  private readonly gpu: Gpu;
  private readonly params: readonly NamedGpuTensor[];
  private readonly expAvg: GpuBuffer[];
  private readonly expAvgSq: GpuBuffer[];
  /** What record() updates: whole arenas where the layout allows, single tensors otherwise. */
  private readonly units: UpdateUnit[];
  /** The buffers this rule allocated (state arenas, or per-tensor state). */
  private readonly owned: GpuBuffer[];
  private readonly maxWindow: number;
  private readonly hyper: AdamWHyper;

  private constructor(
    gpu: Gpu, params: readonly NamedGpuTensor[], m: GpuBuffer[], v: GpuBuffer[], units: UpdateUnit[], owned: GpuBuffer[], maxWindow: number, h: AdamWHyper,
  ) {
    this.gpu = gpu;
    this.params = params;
    this.expAvg = m;
    this.expAvgSq = v;
    this.units = units;
    this.owned = owned;
    this.maxWindow = maxWindow;
    this.hyper = h;
  }

  static async create(gpu: Gpu, params: readonly NamedGpuTensor[], grads: readonly NamedGpuTensor[], config: AdamWConfig, maxWindow: number): Promise<AdamWRule> {
    const h = adamwHyper(config);
    const m: GpuBuffer[] = new Array(params.length), v: GpuBuffer[] = new Array(params.length);
    const units: UpdateUnit[] = [], owned: GpuBuffer[] = [];
    // Parameter arenas whose every tensor has its gradient at the same offset of one gradient arena of the same size.
    const arenas = new Map<number, { root: GpuBuffer; gradRoot: GpuBuffer; members: number[] }>();
    const alone: number[] = [];
    params.forEach((p, i) => {
      const pr = rootOf(p.buffer), gr = rootOf(grads[i].buffer);
      if (pr.root === p.buffer || pr.offset !== gr.offset || pr.root.size !== gr.root.size) { alone.push(i); return; }
      const a = arenas.get(pr.root.id) ?? { root: pr.root, gradRoot: gr.root, members: [] };
      if (a.gradRoot.id !== gr.root.id) { alone.push(i); return; }
      a.members.push(i);
      arenas.set(pr.root.id, a);
    });
    for (const a of arenas.values()) {
      const [mRoot, vRoot] = [await gpu.createBuffer(a.root.size, `${a.root.label}.exp_avg`), await gpu.createBuffer(a.root.size, `${a.root.label}.exp_avg_sq`)];
      owned.push(mRoot, vRoot);
      for (const i of a.members) {
        const { offset } = rootOf(params[i].buffer), bytes = params[i].buffer.size;
        m[i] = await gpu.subBuffer(mRoot, offset, bytes, `${params[i].name}.exp_avg`);
        v[i] = await gpu.subBuffer(vRoot, offset, bytes, `${params[i].name}.exp_avg_sq`);
      }
      units.push({ p: a.root, g: a.gradRoot, m: mRoot, v: vRoot, elements: Math.floor(a.root.size / 4) });
    }
    for (const i of alone) {
      const bytes = 4 * numElements(params[i].shape);
      m[i] = await gpu.createBuffer(bytes, `${params[i].name}.exp_avg`);
      v[i] = await gpu.createBuffer(bytes, `${params[i].name}.exp_avg_sq`);
      owned.push(m[i], v[i]);
      units.push({ p: params[i].buffer, g: grads[i].buffer, m: m[i], v: v[i], elements: numElements(params[i].shape) });
    }
    return new AdamWRule(gpu, params, m, v, units, owned, maxWindow, h);
  }

  get lr(): number { return this.hyper.lr; }
  set lr(lr: number) { checkHyper({ ...this.hyper, lr }); this.hyper.lr = lr; }

  hostScalars(t: number): Float32Array {
    return adamwScalars(this.hyper, t);
  }

  record(scalars: GpuBuffer): void {
    const k = this.gpu.kernel(shaderSource('optim_adamw'));
    for (const u of this.units) {
      for (const w of elementWindows(u.elements, this.maxWindow)) {
        const r = windowRange(w);
        const bind = (buffer: GpuBuffer) => ({ buffer, ...r });
        this.gpu.dispatch(k, [scalars, bind(u.p), bind(u.g), bind(u.m), bind(u.v)], packParams([w.count]), grid1d(Math.ceil(w.count / 256)));
      }
    }
  }

  resetState(): void {
    for (const b of this.owned) fillZero(this.gpu, b);
  }

  buffers(): GpuBuffer[] {
    return [...this.owned];
  }

  state(): Map<string, NamedGpuTensor> {
    const out = new Map<string, NamedGpuTensor>();
    this.params.forEach((p, i) => {
      out.set(`${p.name}.exp_avg`, { name: `${p.name}.exp_avg`, shape: p.shape, buffer: this.expAvg[i] });
      out.set(`${p.name}.exp_avg_sq`, { name: `${p.name}.exp_avg_sq`, shape: p.shape, buffer: this.expAvgSq[i] });
    });
    return out;
  }
}

/**
 * CPU reference (float64), the same order of operations: updates p, m, v in place for 1-based step t with the
 * gradient multiplied by `clip` first.
 */
export function adamwReference(
  p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, h: AdamWHyper, t: number, clip = 1,
): void {
  const bc1 = 1 - h.beta1 ** t, bc2 = 1 - h.beta2 ** t;
  const stepSize = h.lr / bc1, bc2Sqrt = Math.sqrt(bc2);
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] * clip;
    p[i] *= 1 - h.lr * h.weightDecay;
    m[i] += (1 - h.beta1) * (gi - m[i]);
    v[i] = v[i] * h.beta2 + (1 - h.beta2) * gi * gi;
    p[i] -= stepSize * (m[i] / (Math.sqrt(v[i]) / bc2Sqrt + h.eps));
  }
}
