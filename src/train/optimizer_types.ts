/** Types shared by the optimizer modules. */
import type { GpuBuffer } from '../gpu/gpu.ts';

/** A named f32 tensor on the GPU (a parameter or its gradient), HF name and shape. */
export interface NamedGpuTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly buffer: GpuBuffer;
}

/** torch.optim.AdamW. Defaults as PyTorch's: betas (0.9, 0.999), eps 1e-8, weight decay 0.01. */
export interface AdamWConfig {
  type: 'adamw';
  lr: number;
  betas?: readonly [number, number];
  eps?: number;
  weightDecay?: number;
}

/** torch.optim.SGD. Defaults as PyTorch's: no momentum, dampening 0, no weight decay, not Nesterov. */
export interface SgdConfig {
  type: 'sgd';
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

export type OptimizerConfig = AdamWConfig | SgdConfig;

/**
 * Step scalars, one small f32 buffer: slots 0..3 are written on the GPU by the grad-norm pass (norm, clip
 * coefficient, may-update flag, sticky halt), slots 4.. by the host each step (the update rule's step-dependent constants).
 */
export const SCALAR_NORM = 0;
export const SCALAR_CLIP = 1;
export const SCALAR_OK = 2;
/** Set by the grad-norm pass when a step is not finite; steps recorded after it do not update until cleared. */
export const SCALAR_HALTED = 3;
export const HOST_SCALARS_OFFSET = 4;
export const SCALAR_SLOTS = 16;

/** An element-wise update rule (AdamW, SGD) over every parameter, given the step scalars. */
export interface UpdateRule {
  /** Host-written scalars for 1-based step `t`, placed at slot HOST_SCALARS_OFFSET. */
  hostScalars(t: number): Float32Array;
  /** Record the update of every parameter (reads the step scalars). */
  record(scalars: GpuBuffer): void;
  /** Zero the optimizer state (moments, momentum buffers). */
  resetState(): void;
  /** State buffers, freed by release. */
  buffers(): GpuBuffer[];
  /** State tensors by name, e.g. `NAME.exp_avg`, for inspection and tests. */
  state(): Map<string, NamedGpuTensor>;
  lr: number;
}
