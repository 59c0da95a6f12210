import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { gatherRows, type RowTable } from '../kernels/embedding.ts';
import { layerNorm } from '../kernels/layernorm.ts';
import { GEMV_MAX_ROWS, linear, SEGMENTED_MAX_ROWS, segmentedScratchBytes } from '../kernels/linear.ts';
import { attentionScratchBytes, pagedAttention, writeKvCache, type AttentionBatch } from '../kernels/paged_attention.ts';
import type { ElementType } from '../kernels/shader.ts';
import type { OptConfig } from './config.ts';
import type { PagedKvCache } from './kv_cache.ts';
import type { OptGpuWeights } from './gpu_weights.ts';
import { windowBinding, windowCount } from '../kernels/embedding.ts';
import { shardDims, type TensorParallel } from './tensor_parallel.ts';

/** One step's flat batch on the GPU: token ids plus the attention metadata. */
export interface StepInputs extends AttentionBatch {
  tokenIds: GpuBuffer;
}

/** Activation buffers for up to `maxTokens` tokens per step and `maxLogitRows` logit rows. */
interface Activations {
  hA: GpuBuffer;
  hB: GpuBuffer;
  normed: GpuBuffer;
  qkv: GpuBuffer;
  attn: GpuBuffer;
  ffn: GpuBuffer;
  embed: GpuBuffer | null;
  final: GpuBuffer | null;
  selected: GpuBuffer;
  scratchStats: GpuBuffer;
  scratchAcc: GpuBuffer;
  /** Partial sums of linear_segments (batched decode). */
  linearScratch: GpuBuffer;
  dummy: GpuBuffer;
}

/**
 * The OPT forward graph over the paged KV cache, recorded as dispatches on a Gpu. It owns its activation
 * buffers (sized once, reused every step) and reads weights and cache it is given.
 */
export class OptForward {
  readonly config: OptConfig;
  readonly weights: OptGpuWeights;
  readonly act: ElementType;
  readonly maxTokens: number;
  readonly maxLogitRows: number;
  readonly maxContext: number;
  private readonly gpu: Gpu;
  private readonly buf: Activations;
  private lastHidden: { buffer: GpuBuffer; rows: number } | null = null;
  /** The final LayerNorm, when it is left to be fused into the head (few rows, all of them needing logits). */
  private pendingFinalLn: { gamma: GpuBuffer; beta: GpuBuffer } | null = null;

  private constructor(gpu: Gpu, config: OptConfig, weights: OptGpuWeights, a: Activations, maxTokens: number, maxLogitRows: number, maxContext: number) {
    this.gpu = gpu;
    this.config = config;
    this.weights = weights;
    this.act = weights.dtype;
    this.buf = a;
    this.maxTokens = maxTokens;
    this.maxLogitRows = maxLogitRows;
    this.maxContext = maxContext;
  }

  /**
   * Bytes of each activation buffer a forward of these sizes holds (what create allocates, so memory budgets can
   * be computed before allocating; null = not needed by this model).
   */
  static bufferSizes(
    config: OptConfig, dtype: ElementType, tp: TensorParallel, a: { maxTokens: number; maxLogitRows: number; maxContext: number },
  ): Record<keyof Activations, number | null> {
    const e = dtype === 'f16' ? 2 : 4;
    const T = a.maxTokens, H = config.hiddenSize, D = config.wordEmbedProjDim;
    const hasProj = D !== H;
    // Under tensor parallelism this rank holds a share of the heads (q, k, v, attention output) and of fc1.
    const { heads, attnWidth: A, ffnWidth: F } = shardDims(config, tp);
    const scratch = attentionScratchBytes(T, heads, config.headDim, a.maxContext);
    const rows = Math.min(T, SEGMENTED_MAX_ROWS);
    return {
      hA: T * H * e, hB: T * H * e, normed: T * H * e, qkv: T * 3 * A * e, attn: T * A * e, ffn: T * F * e,
      embed: hasProj ? T * D * e : null, final: hasProj ? T * D * e : null, selected: a.maxLogitRows * D * e,
      scratchStats: scratch.stats, scratchAcc: scratch.acc,
      linearScratch: Math.max(16, segmentedScratchBytes(rows, 3 * A, H), segmentedScratchBytes(rows, H, A),
        segmentedScratchBytes(rows, F, H), segmentedScratchBytes(rows, H, F)),
      dummy: 16,
    };
  }

  static async create(
    gpu: Gpu, config: OptConfig, weights: OptGpuWeights, a: { maxTokens: number; maxLogitRows: number; maxContext: number },
  ): Promise<OptForward> {
    if (weights.tp.size > 1 && !gpu.allReduce) throw new Error(`tensor-parallel rank ${weights.tp.rank} needs a Gpu with allReduce (a TensorParallelGroup rank)`);
    const sizes = OptForward.bufferSizes(config, weights.dtype, weights.tp, a);
    const buf = {} as Record<keyof Activations, GpuBuffer | null>;
    for (const [name, bytes] of Object.entries(sizes) as Array<[keyof Activations, number | null]>) {
      buf[name] = bytes === null ? null : await gpu.createBuffer(bytes, `act.${name}`);
    }
    return new OptForward(gpu, config, weights, buf as unknown as Activations, a.maxTokens, a.maxLogitRows, a.maxContext);
  }

  /** The activation buffers this forward holds. */
  buffers(): GpuBuffer[] {
    return Object.values(this.buf).filter((b): b is GpuBuffer => b !== null);
  }

  /** Bytes of activation memory this forward holds. */
  activationBytes(): number {
    return this.buffers().reduce((s, b) => s + b.size, 0);
  }

  /**
   * Record the decoder over `inputs` (writing this step's keys and values into `cache`), then the LM head for
   * the rows `logitIndices[0..numLogitRows)` of the batch into `logits` ([numLogitRows, vocab], f32).
   */
  forward(inputs: StepInputs, cache: PagedKvCache, logitIndices: GpuBuffer | 'all', numLogitRows: number, logits: GpuBuffer): void {
    const T = inputs.numTokens;
    if (T > this.maxTokens) throw new RangeError(`step of ${T} tokens exceeds this runner's maxTokens ${this.maxTokens}`);
    if (inputs.maxContext > this.maxContext) throw new RangeError(`context ${inputs.maxContext} exceeds maxContext ${this.maxContext}`);
    const g = this.gpu, c = this.config, w = this.weights, b = this.buf;
    const act = this.act, wt = w.dtype;
    const H = c.hiddenSize, D = c.wordEmbedProjDim;
    const common = { act, weight: wt, dummy: b.dummy, scratch: b.linearScratch };
    // Tensor parallelism: this rank's heads and fc1 rows; out_proj and fc2 give partial sums that an all-reduce
    // adds up. Rank 0 alone adds their bias and the residual, so the sum counts them once.
    const tp = w.tp;
    const { heads, attnWidth: A, ffnWidth: F } = shardDims(c, tp);
    const lead = tp.rank === 0;
    const allReduce = (y: GpuBuffer) => { if (tp.size > 1) g.allReduce!(y, T * H, act); };

    // Embeddings: tokens (optionally projected D -> H), plus learned positions at offset 2.
    const tokOut = b.embed ?? b.hA;
    gatherRows(g, { index: inputs.tokenIds, table: w.embedTokens, out: tokOut, numTokens: T, act, indexOffset: 0, accumulate: false });
    if (w.projectIn) linear(g, { ...common, x: tokOut, w: w.projectIn, y: b.hA, M: T, N: H, K: D });
    gatherRows(g, { index: inputs.positions, table: w.embedPositions, out: b.hA, numTokens: T, act, indexOffset: c.positionOffset, accumulate: true });

    // With few rows (decode) a pre-LN LayerNorm is fused into the GEMV that consumes it.
    const fuseLn = c.layerNormBefore && T <= GEMV_MAX_ROWS;
    for (let l = 0; l < c.numLayers; l++) {
      const L = w.layers[l];
      const ln = (x: GpuBuffer, gamma: GpuBuffer, beta: GpuBuffer, y: GpuBuffer) =>
        layerNorm(g, { x, gamma, beta, y, rows: T, dim: H, act, weight: wt });
      // Self-attention block.
      let attnIn = b.hA;
      let attnLn: { gamma: GpuBuffer; beta: GpuBuffer } | undefined;
      if (c.layerNormBefore) {
        if (fuseLn) attnLn = { gamma: L.attnLnGamma, beta: L.attnLnBeta };
        else { ln(b.hA, L.attnLnGamma, L.attnLnBeta, b.normed); attnIn = b.normed; }
      }
      // A decode step's QKV projection writes the keys and values into the cache itself.
      const kvWrite = { slotMapping: inputs.slotMapping, key: cache.layers[l].key, value: cache.layers[l].value, hidden: A, kv: cache.dtype };
      const kvDone = linear(g, {
        ...common, x: attnIn, lnInput: attnLn, w: L.qkvWeight, bias: L.qkvBias, y: b.qkv, M: T, N: 3 * A, K: H,
        kvWrite: T <= GEMV_MAX_ROWS ? kvWrite : undefined,
      });
      if (!kvDone) writeKvCache(g, { qkv: b.qkv, batch: inputs, cache: cache.layers[l], hidden: A, act, kv: cache.dtype });
      pagedAttention(g, {
        qkv: b.qkv, out: b.attn, batch: inputs, cache: cache.layers[l], numHeads: heads, headDim: c.headDim,
        blockSize: cache.blockSize, act, kv: cache.dtype, scratch: { stats: b.scratchStats, acc: b.scratchAcc },
      });
      linear(g, { ...common, x: b.attn, w: L.outWeight, bias: lead ? L.outBias : undefined, residual: lead ? b.hA : undefined, y: b.hB, M: T, N: H, K: A });
      allReduce(b.hB);
      // Feed-forward block. Pre-LN: normalise its input. Post-LN: normalise the attention block's output.
      if (c.layerNormBefore) {
        let ffnIn = b.normed;
        let ffnLn: { gamma: GpuBuffer; beta: GpuBuffer } | undefined;
        if (fuseLn) { ffnIn = b.hB; ffnLn = { gamma: L.ffnLnGamma, beta: L.ffnLnBeta }; }
        else ln(b.hB, L.ffnLnGamma, L.ffnLnBeta, b.normed);
        linear(g, { ...common, x: ffnIn, lnInput: ffnLn, w: L.fc1Weight, bias: L.fc1Bias, relu: true, y: b.ffn, M: T, N: F, K: H });
        linear(g, { ...common, x: b.ffn, w: L.fc2Weight, bias: lead ? L.fc2Bias : undefined, residual: lead ? b.hB : undefined, y: b.hA, M: T, N: H, K: F });
        allReduce(b.hA);
      } else {
        ln(b.hB, L.attnLnGamma, L.attnLnBeta, b.hA);
        linear(g, { ...common, x: b.hA, w: L.fc1Weight, bias: L.fc1Bias, relu: true, y: b.ffn, M: T, N: F, K: H });
        linear(g, { ...common, x: b.ffn, w: L.fc2Weight, bias: lead ? L.fc2Bias : undefined, residual: lead ? b.hA : undefined, y: b.hB, M: T, N: H, K: F });
        allReduce(b.hB);
        ln(b.hB, L.ffnLnGamma, L.ffnLnBeta, b.hA);
      }
    }

    // Final norm (pre-LN only; fused into the head when the rows go straight to it) and projection back to
    // the embedding width.
    let hidden = b.hA;
    this.pendingFinalLn = null;
    if (w.finalLnGamma && w.finalLnBeta) {
      // Fused into the head only for small vocabularies: every head workgroup recomputes the row statistics.
      if (fuseLn && !w.projectOut && c.vocabSize <= 8192) this.pendingFinalLn = { gamma: w.finalLnGamma, beta: w.finalLnBeta };
      else {
        layerNorm(g, { x: b.hA, gamma: w.finalLnGamma, beta: w.finalLnBeta, y: b.normed, rows: T, dim: H, act, weight: wt });
        hidden = b.normed;
      }
    }
    if (w.projectOut) {
      linear(g, { ...common, x: hidden, w: w.projectOut, y: b.final!, M: T, N: D, K: H });
      hidden = b.final!;
    }
    this.lastHidden = { buffer: hidden, rows: T };
    if (numLogitRows > 0) this.logitsFor(logitIndices, numLogitRows, logits);
  }

  /**
   * Record the LM head for rows `indices[0..count)` of the last forward's final hidden states into `logits`
   * ([count, vocab], f32). Only the rows that need logits go through the head (vLLM's logits_indices).
   */
  logitsFor(indices: GpuBuffer | 'all', count: number, logits: GpuBuffer): void {
    if (!this.lastHidden) throw new Error('logitsFor needs a forward first');
    if (count > this.maxLogitRows) throw new RangeError(`${count} logit rows exceeds maxLogitRows ${this.maxLogitRows}`);
    if (indices === 'all') {
      if (count !== this.lastHidden.rows) throw new RangeError(`'all' logit rows means ${this.lastHidden.rows}, not ${count}`);
      this.lmHead(this.lastHidden.buffer, count, logits, this.pendingFinalLn ?? undefined);
      return;
    }
    if (this.pendingFinalLn) {
      // The head will not see every row: apply the deferred final LayerNorm now.
      const { gamma, beta } = this.pendingFinalLn;
      layerNorm(this.gpu, {
        x: this.lastHidden.buffer, gamma, beta, y: this.buf.normed, rows: this.lastHidden.rows, dim: this.config.hiddenSize,
        act: this.act, weight: this.weights.dtype,
      });
      this.lastHidden = { buffer: this.buf.normed, rows: this.lastHidden.rows };
      this.pendingFinalLn = null;
    }
    const D = this.config.wordEmbedProjDim;
    const hiddenTable: RowTable = { buffer: this.lastHidden.buffer, rows: this.lastHidden.rows, dim: D, dtype: this.act, rowsPerWindow: this.lastHidden.rows };
    gatherRows(this.gpu, { index: indices, table: hiddenTable, out: this.buf.selected, numTokens: count, act: this.act, indexOffset: 0, accumulate: false });
    this.lmHead(this.buf.selected, count, logits);
  }

  /** logits[r, :] = x[r, :] . E^T over the head's vocab windows (the tied embedding, one copy). */
  private lmHead(x: GpuBuffer, rows: number, logits: GpuBuffer, lnInput?: { gamma: GpuBuffer; beta: GpuBuffer }): void {
    const head = this.weights.lmHead;
    for (let win = 0; win < windowCount(head); win++) {
      const { binding, rowStart, rowCount } = windowBinding(head, win);
      linear(this.gpu, {
        x, w: binding, y: logits, M: rows, N: rowCount, K: head.dim, ldy: head.rows, ycol: rowStart,
        act: this.act, weight: head.dtype, out: 'f32', dummy: this.buf.dummy, lnInput,
      });
    }
  }
}
