import type { GpuBuffer } from '../gpu/gpu.ts';

/**
 * One training batch: B sequences of token ids. Without a mask every sequence must have the same length L;
 * with a mask, rows may be ragged (shorter rows are padded internally to the longest) and `mask[b][t] = 0`
 * marks a padding token.
 */
export interface TrainBatch {
  ids: readonly (readonly number[] | Int32Array)[];
  /**
   * Per-target weights, B x (L-1): `weights[b][t]` multiplies the negative log-likelihood of predicting token
   * t+1 of row b (the policy-gradient loss `sum w_t * nll_t / count`). Omitted: every weight is 1.
   */
  weights?: readonly (readonly number[] | Float32Array)[];
  /** B x L (each row as long as its ids row): 1 = real token, 0 = padding. Ragged batches need it. */
  mask?: readonly (readonly number[] | Uint8Array)[];
}

/** A named f32 GPU tensor: a parameter or its gradient, one buffer per HF tensor. */
export interface ParamTensor {
  /** HF name, e.g. `model.decoder.layers.0.fc1.weight`. */
  name: string;
  /** HF shape (Linear weights [out, in]). */
  shape: number[];
  /** f32, row-major, exactly product(shape) * 4 bytes (rounded up to a multiple of 4 bytes). */
  buffer: GpuBuffer;
}

export interface TrainingModelOptions {
  /** The most tokens (B * L, padding included) one forwardBackward may take; sizes every activation buffer. */
  maxBatchTokens: number;
  /**
   * Cap on the bytes of one chunk of logits (rows x vocab x 4); the loss is computed chunk by chunk so the full
   * [B*L, vocab] matrix never exists. Default 512 MiB (also capped by the device's per-binding limit).
   */
  maxLogitBytes?: number;
  /**
   * The longest sequence a batch may hold (default: the model's max_position_embeddings), like vLLM's
   * max_model_len: attention memory is sized for it, so a shorter bound can let the probabilities be saved.
   */
  maxSequenceLength?: number;
  /**
   * Most bytes to spend on saving every layer's attention probabilities for the backward (instead of recomputing
   * them: ~3 ms of OPT-125m's 8 x 512 step on an H100, 1.2 GB). Default 1.5 GiB; 0 always recomputes.
   */
  maxSavedAttentionBytes?: number;
}

export interface ForwardBackwardOptions {
  /** Multiplies the loss before differentiation: gradients of `scale * loss` are added (e.g. 1/accumulationSteps). */
  scale?: number;
}
