import { WeightMismatchError } from '../errors.ts';
import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { gatherRows, type RowTable } from '../kernels/embedding.ts';
import { windowBinding, windowCount } from '../kernels/embedding.ts';
import { layerNorm } from '../kernels/layernorm.ts';
import { linear } from '../kernels/linear.ts';
import type { OptConfig } from '../model/config.ts';
import { expectedTensors } from '../model/config.ts';
import { allocateArenas, destroyArenas, planArenas, weightGroups } from '../model/weight_arena.ts';
import { convertTensor, numElements } from '../model/weights/dtype.ts';
import type { TensorMap } from '../model/weights/types.ts';
import { packBatch, type PackedBatch } from './batch.ts';
import { attentionBackward, attentionForward, type AttentionScratch } from './kernels/attention.ts';
import { columnSum, columnSums, columnSumScratch } from './kernels/colsum.ts';
import { fillZero } from './kernels/fill.ts';
import { layerNormBackward } from './kernels/layernorm_backward.ts';
import { matmul, type Operand } from './kernels/matmul.ts';
import { scatterAddRows, type RowRunBuffers } from './kernels/scatter.ts';
import { softmaxCrossEntropy, sumLoss } from './kernels/xent.ts';
import type { ForwardBackwardOptions, ParamTensor, TrainBatch, TrainingModelOptions } from './types.ts';

/**
 * Saved activations of one decoder layer ([T, width] f32 each). The roles of h1..h3 depend on the LayerNorm
 * placement:
 *   pre-LN:  h1 = LN1(x), attn block: h2 = x + out_proj(attn), h3 = LN2(h2), output = h2 + fc2(relu(fc1(h3)))
 *   post-LN: h1 = x + out_proj(attn), h2 = LN1(h1), h3 = h2 + fc2(relu(fc1(h2))), output = LN2(h3)
 * x is the layer input (the previous layer's output buffer), qkv the q | k | v projections side by side, attn
 * the attention output before out_proj, ffn the post-ReLU fc1 output (its sign is ReLU's backward mask).
 */
interface LayerActs {
  h1: GpuBuffer;
  h2: GpuBuffer;
  h3: GpuBuffer;
  qkv: GpuBuffer;
  attn: GpuBuffer;
  ffn: GpuBuffer;
}

/**
 * One layer's q, k and v projections as one [3H, H] Linear: views of the arenas where the three weights (and
 * their biases, and the weights' gradients) lie back to back. One N = 3H product fills the GPU where three
 * N = H products each left a wave part-empty; every output keeps its reduction order (the forward's bits do not
 * change).
 */
interface FusedQkv {
  weight: GpuBuffer;
  bias: GpuBuffer;
  gradWeight: GpuBuffer;
}

interface Buffers {
  ids: GpuBuffer;
  positionRows: GpuBuffer;
  keyMask: GpuBuffer;
  targets: GpuBuffer;
  coef: GpuBuffer;
  tokenRuns: RowRunBuffers;
  positionRuns: RowRunBuffers;
  rowLoss: GpuBuffer;
  loss: GpuBuffer;
  /** x[l]: input of layer l; x[numLayers] is the last layer's output. */
  x: GpuBuffer[];
  /** Per layer, its attention probabilities kept from the forward for the backward, or null: recomputed. */
  savedProbs: GpuBuffer[] | null;
  /** Per layer, the fused q/k/v views, or null where the arenas do not hold them back to back. */
  fusedQkv: Array<FusedQkv | null>;
  layers: LayerActs[];
  /** Final LayerNorm output (pre-LN models). */
  finalNormed: GpuBuffer | null;
  /** project_out output and project_in input ([T, D]) when word_embed_proj_dim != hidden. */
  projOut: GpuBuffer | null;
  embedTok: GpuBuffer | null;
  /** Gradient streams. */
  dh: GpuBuffer;
  dtmp: GpuBuffer;
  dattn: GpuBuffer;
  dqkv: GpuBuffer;
  dffn: GpuBuffer;
  dHead: GpuBuffer;
  dEmbedTok: GpuBuffer | null;
  logits: GpuBuffer;
  attention: AttentionScratch;
  lnStats: GpuBuffer;
  colsum: GpuBuffer;
  /** Split-K partial sums for matmuls with few output tiles (weight gradients of the square layers, dHidden). */
  split: { scratch: GpuBuffer; floats: number };
  dummy: GpuBuffer;
}

const DEFAULT_MAX_LOGIT_BYTES = 512 * 1024 * 1024;
/** Default cap on saved attention probabilities (OPT-125m at 8 x 512 needs 1.2 GB: its step then peaks at 5.9 GB). */
const DEFAULT_MAX_SAVED_ATTENTION_BYTES = 1.5 * 1024 * 1024 * 1024;
/** Layers recorded per submit (see OptTrainingModel.submitPerLayer). */
const SUBMIT_LAYERS = 6;
/** Cap on one attention score scratch (two are held); groups of (sequence, head) pairs are sized to fit. */
const MAX_ATTENTION_SCRATCH_BYTES = 128 * 1024 * 1024;

/**
 * OPT for training: f32 parameters and gradients on the GPU (one buffer per HF tensor), a forward that saves
 * what the backward needs, the loss (fused softmax + cross-entropy over row chunks of the logits), and the
 * backward. The optimizer reads `params` and `grads` by name; nothing here reads back except `readLoss`.
 * Every reduction has a fixed order and every output one owner (no float atomics): results are deterministic.
 */
export class OptTrainingModel {
  readonly config: OptConfig;
  readonly gpu: Gpu;
  readonly maxBatchTokens: number;
  /** The longest sequence a batch may hold (TrainingModelOptions.maxSequenceLength). */
  readonly maxSequenceLength: number;
  /**
   * One f32 tensor per HF name (HF shapes), each a sub-buffer of the parameter arenas; the tied head is
   * `model.decoder.embed_tokens.weight` (no lm_head entry).
   */
  readonly params: ReadonlyMap<string, ParamTensor>;
  /** Same names and shapes as `params`, in the gradient arenas (same layout). */
  readonly grads: ReadonlyMap<string, ParamTensor>;
  /** The buffers holding parameters and gradients (weight_arena.ts). */
  private readonly arenas: GpuBuffer[];
  /** The gradient arenas alone (zeroed whole: one fill each instead of one per tensor). */
  private readonly gradArenas: GpuBuffer[];
  /** Logit rows per loss chunk. */
  readonly logitRows: number;
  /**
   * Submit the forward and the backward in chunks of layers as they are recorded (default): the GPU starts on
   * them while the host encodes the rest. A step is ~700 dispatches, ~20 ms of host time that otherwise all came
   * before any GPU work (14 ms of a 194 ms step on the H100). Every 6 layers: each submit leaves the GPU a gap
   * (a submit per layer cost ~1 ms a step more when steps are queued). Off only to capture the step's dispatches
   * (a capture holds no submit: bench/train_profile.ts).
   */
  submitPerLayer = true;
  private readonly buf: Buffers;
  private released = false;

  private constructor(
    gpu: Gpu, config: OptConfig, params: Map<string, ParamTensor>, grads: Map<string, ParamTensor>, arenas: GpuBuffer[], gradArenas: GpuBuffer[], buf: Buffers,
    maxBatchTokens: number, logitRows: number, maxSequenceLength: number,
  ) {
    this.gpu = gpu;
    this.arenas = arenas;
    this.gradArenas = gradArenas;
    this.config = config;
    this.params = params;
    this.grads = grads;
    this.buf = buf;
    this.maxBatchTokens = maxBatchTokens;
    this.maxSequenceLength = maxSequenceLength;
    this.logitRows = logitRows;
  }

  static async create(gpu: Gpu, config: OptConfig, tensors: TensorMap, opts: TrainingModelOptions): Promise<OptTrainingModel> {
    const Tm = opts.maxBatchTokens;
    if (!Number.isInteger(Tm) || Tm < 2) throw new RangeError(`maxBatchTokens must be an integer >= 2, got ${Tm}`);
    const expected = expectedTensors(config);
    for (const [name, shape] of expected) {
      const t = tensors.get(name);
      if (!t) throw new WeightMismatchError(`checkpoint has no tensor ${name}`);
      if (t.shape.join(',') !== shape.join(',')) throw new WeightMismatchError(`${name}: shape [${t.shape}] but the config needs [${shape}]`);
    }
    // Parameters (and gradients) in arenas, laid out as the engine lays out its weights (weight_arena.ts): one
    // copy hands every parameter to an engine. Each tensor is its own 256-aligned group: kernels bind it alone.
    const order = weightGroups(config).flat();
    const plan = planArenas(order.map((n) => numElements(expected.get(n)!) * 4), gpu.caps.maxBufferSize);
    const paramArenas = await allocateArenas(gpu, plan, order.map((n) => `param ${n}`), 'params');
    const gradArenas = await allocateArenas(gpu, plan, order.map((n) => `grad ${n}`), 'grads');
    const slot = new Map(order.map((n, i) => [n, i]));
    const params = new Map<string, ParamTensor>();
    const grads = new Map<string, ParamTensor>();
    for (const [name, shape] of expected) { // the maps keep expectedTensors' order (the optimizer's summation order)
      const i = slot.get(name)!;
      gpu.write(paramArenas.groups[i], convertTensor(tensors.get(name)!, 'F32').bytes);
      params.set(name, { name, shape, buffer: paramArenas.groups[i] });
      grads.set(name, { name, shape, buffer: gradArenas.groups[i] });
    }
    const H = config.hiddenSize, D = config.wordEmbedProjDim, F = config.ffnDim, V = config.vocabSize;
    const f32 = (n: number, label: string) => gpu.createBuffer(Math.max(16, n * 4), label);
    const u32 = f32;
    const runs = async (label: string): Promise<RowRunBuffers> => ({
      rows: await u32(Tm, `${label}.rows`), starts: await u32(Tm + 1, `${label}.starts`), order: await u32(Tm, `${label}.order`),
    });
    // q, k, v (weights, biases) back to back in an arena: one [3H, H] view each (4-byte-multiple widths whose
    // tensors are whole multiples of the arena alignment; e.g. every OPT with H % 64 == 0).
    const backToBack = (names: string[]) => {
      const s = names.map((n) => plan.slots[slot.get(n)!]);
      return s.every((x, i) => i === 0 || (x.arena === s[0].arena && x.byteOffset === s[i - 1].byteOffset + s[i - 1].bytes));
    };
    const view = (arenas: GpuBuffer[], names: string[], label: string) => {
      const s = names.map((n) => plan.slots[slot.get(n)!]);
      return gpu.subBuffer(arenas[s[0].arena], s[0].byteOffset, s.reduce((sum, x) => sum + x.bytes, 0), label);
    };
    const fusedQkv: Array<FusedQkv | null> = [];
    for (let l = 0; l < config.numLayers; l++) {
      const a = `model.decoder.layers.${l}.self_attn.`;
      const ws = ['q', 'k', 'v'].map((c) => `${a}${c}_proj.weight`), bs = ['q', 'k', 'v'].map((c) => `${a}${c}_proj.bias`);
      fusedQkv.push(backToBack(ws) && backToBack(bs)
        ? {
          weight: await view(paramArenas.arenas, ws, `param ${a}qkv.weight`), bias: await view(paramArenas.arenas, bs, `param ${a}qkv.bias`),
          gradWeight: await view(gradArenas.arenas, ws, `grad ${a}qkv.weight`),
        }
        : null);
    }
    const hasProj = D !== H;
    const x: GpuBuffer[] = [];
    for (let l = 0; l <= config.numLayers; l++) x.push(await f32(Tm * H, `act.x${l}`));
    const layers: LayerActs[] = [];
    for (let l = 0; l < config.numLayers; l++) {
      layers.push({
        h1: await f32(Tm * H, `act.l${l}.h1`), h2: await f32(Tm * H, `act.l${l}.h2`), h3: await f32(Tm * H, `act.l${l}.h3`),
        qkv: await f32(Tm * 3 * H, `act.l${l}.qkv`), attn: await f32(Tm * H, `act.l${l}.attn`), ffn: await f32(Tm * F, `act.l${l}.ffn`),
      });
    }
    const binding = gpu.caps.maxStorageBindingSize;
    // Rows per logits chunk: as many as the byte cap and the binding limit allow, a multiple of the matmul tile.
    const fitRows = Math.floor(Math.min(opts.maxLogitBytes ?? DEFAULT_MAX_LOGIT_BYTES, binding) / (V * 4));
    const logitRows = Math.max(1, Math.min(Tm, fitRows >= 128 ? Math.floor(fitRows / 128) * 128 : fitRows));
    // Score scratch: the whole batch's (sequence, head) pairs at the longest possible sequence, capped.
    const maxSeq = opts.maxSequenceLength ?? config.maxPositions;
    if (!Number.isInteger(maxSeq) || maxSeq < 2 || maxSeq > config.maxPositions) {
      throw new RangeError(`maxSequenceLength must be an integer in [2, ${config.maxPositions}] (max_position_embeddings), got ${maxSeq}`);
    }
    const maxL = Math.min(Tm, maxSeq);
    const want = Math.ceil(Tm / maxL) * config.numHeads * maxL * maxL;
    const attnFloats = Math.max(maxL * maxL, Math.min(want, Math.floor(Math.min(MAX_ATTENTION_SCRATCH_BYTES, binding) / 4)));
    // Saved probabilities (attention.ts) where the whole batch's scores fit one group and all layers' together
    // fit the cap; the shared scratch then only serves dP / dS.
    const saveProbs = attnFloats === want && config.numLayers * want * 4 <= (opts.maxSavedAttentionBytes ?? DEFAULT_MAX_SAVED_ATTENTION_BYTES);
    const savedProbs: GpuBuffer[] | null = saveProbs ? [] : null;
    for (let l = 0; savedProbs && l < config.numLayers; l++) savedProbs.push(await f32(want, `act.l${l}.probs`));
    const buf: Buffers = {
      ids: await u32(Tm, 'batch.ids'),
      positionRows: await u32(Tm, 'batch.positions'),
      keyMask: await u32(Tm, 'batch.keyMask'),
      targets: await u32(Tm, 'batch.targets'),
      coef: await f32(Tm, 'batch.coef'),
      tokenRuns: await runs('batch.tokenRuns'),
      positionRuns: await runs('batch.positionRuns'),
      rowLoss: await f32(Tm, 'loss.rows'),
      loss: await f32(1, 'loss'),
      x,
      fusedQkv,
      layers,
      finalNormed: config.hasFinalLayerNorm ? await f32(Tm * H, 'act.finalNormed') : null,
      projOut: hasProj ? await f32(Tm * D, 'act.projOut') : null,
      embedTok: hasProj ? await f32(Tm * D, 'act.embedTok') : null,
      dh: await f32(Tm * H, 'grad.dh'),
      dtmp: await f32(Tm * H, 'grad.dtmp'),
      dattn: await f32(Tm * H, 'grad.dattn'),
      dqkv: await f32(Tm * 3 * H, 'grad.dqkv'),
      dffn: await f32(Tm * F, 'grad.dffn'),
      dHead: await f32(Tm * D, 'grad.dHead'),
      dEmbedTok: hasProj ? await f32(Tm * D, 'grad.dEmbedTok') : null,
      logits: await f32(logitRows * V, 'loss.logits'),
      attention: { probs: await f32(saveProbs ? 4 : attnFloats, 'attn.probs'), grads: await f32(attnFloats, 'attn.grads'), floats: attnFloats },
      savedProbs,
      lnStats: await f32(2 * Tm, 'ln.stats'),
      colsum: await f32(columnSumScratch(Tm, Math.max(F, 3 * H, D, 2 * H)), 'colsum.partials'),
      // Up to four K slices of the largest product with too few tiles for the GPU (matmul.ts): dW of fc1/fc2
      // (F x H) and, once the batch has more tokens than F, dX of the N = H layers (Tm x H: 192 tiles at 8 x 512).
      split: { scratch: await f32(4 * Math.max(F, Tm) * H, 'matmul.splitK'), floats: 4 * Math.max(F, Tm) * H },
      dummy: await f32(4, 'dummy'),
    };
    return new OptTrainingModel(gpu, config, params, grads, [...paramArenas.arenas, ...gradArenas.arenas], gradArenas.arenas, buf, Tm, logitRows, maxSeq);
  }

  /** Record a GPU clear of every gradient. */
  zeroGrads(): void {
    // Whole arenas (the alignment padding between tensors too): a few dispatches instead of one per tensor.
    for (const a of this.gradArenas) fillZero(this.gpu, a);
  }

  /**
   * Record forward + loss + backward; ADDS d(scale * loss)/dθ into `grads` (several calls accumulate).
   * Throws TrainingInputError for a malformed batch before recording anything.
   */
  forwardBackward(batch: TrainBatch, opts: ForwardBackwardOptions = {}): void {
    const scale = opts.scale ?? 1;
    if (!Number.isFinite(scale)) throw new RangeError(`scale must be finite, got ${scale}`);
    const packed = this.pack(batch);
    this.forward(packed);
    this.headAndLoss(packed, scale);
    this.backward(packed);
  }

  /** Record forward + loss only (no gradients touched). */
  forwardLoss(batch: TrainBatch): void {
    const packed = this.pack(batch);
    this.forward(packed);
    this.headAndLoss(packed, null);
  }

  /** The loss of the last recorded forward (unscaled), one f32 read back. */
  async readLoss(): Promise<number> {
    return new Float32Array(await this.gpu.read(this.buf.loss, 0, 4))[0];
  }

  /** The GPU buffer holding the last loss (one f32), for callers that read it later or check it on the GPU. */
  get lossBuffer(): GpuBuffer {
    return this.buf.loss;
  }

  /** Bytes of activation and scratch memory (parameters and gradients excluded). */
  activationBytes(): number {
    return this.ownBuffers().reduce((sum, x) => sum + x.size, 0);
  }

  /** Free every buffer this model holds (parameters and gradients included). */
  release(): void {
    if (this.released) return;
    this.released = true;
    destroyArenas(this.gpu, this.arenas);
    for (const x of this.ownBuffers()) this.gpu.destroyBuffer(x);
  }

  /** Every activation and scratch buffer, once each. */
  private ownBuffers(): GpuBuffer[] {
    const b = this.buf;
    const list: Array<GpuBuffer | null> = [
      b.ids, b.positionRows, b.keyMask, b.targets, b.coef, b.rowLoss, b.loss, ...b.x,
      ...b.layers.flatMap((l) => [l.h1, l.h2, l.h3, l.qkv, l.attn, l.ffn]),
      b.finalNormed, b.projOut, b.embedTok, b.dh, b.dtmp, b.dattn, b.dqkv, b.dffn, b.dHead, b.dEmbedTok, b.logits,
      b.attention.probs, b.attention.grads, ...(b.savedProbs ?? []), b.lnStats, b.colsum, b.split.scratch, b.dummy,
      b.tokenRuns.rows, b.tokenRuns.starts, b.tokenRuns.order, b.positionRuns.rows, b.positionRuns.starts, b.positionRuns.order,
    ];
    return [...new Set(list.filter((x): x is GpuBuffer => x !== null))];
  }

  // ---------------------------------------------------------------------------------------------------------

  private layersSinceSubmit = 0;
  /** Called after each layer's forward or backward: submits every SUBMIT_LAYERS layers. */
  private submitLayer(): void {
    if (this.submitPerLayer && ++this.layersSinceSubmit >= SUBMIT_LAYERS) {
      this.layersSinceSubmit = 0;
      this.gpu.flush();
    }
  }

  private pack(batch: TrainBatch): PackedBatch {
    if (this.released) throw new Error('OptTrainingModel: used after release()');
    const p = packBatch(this.config, batch, this.maxBatchTokens, this.maxSequenceLength);
    const g = this.gpu, b = this.buf;
    g.write(b.ids, p.ids);
    g.write(b.positionRows, p.positionRows);
    g.write(b.keyMask, p.keyMask);
    g.write(b.targets, p.targets);
    g.write(b.coef, p.coef);
    for (const [dst, src] of [[b.tokenRuns, p.tokenRuns], [b.positionRuns, p.positionRuns]] as const) {
      g.write(dst.rows, src.rows);
      g.write(dst.starts, src.starts);
      g.write(dst.order, src.order);
    }
    return p;
  }

  private param(name: string): GpuBuffer {
    const t = this.params.get(name);
    if (!t) throw new Error(`no parameter ${name}`);
    return t.buffer;
  }

  private grad(name: string): GpuBuffer {
    const t = this.grads.get(name);
    if (!t) throw new Error(`no gradient ${name}`);
    return t.buffer;
  }

  /** A [rows, dim] parameter or gradient as a row table bound in windows under the per-binding limit. */
  private table(buffer: GpuBuffer, rows: number, dim: number): RowTable {
    const fit = Math.floor(this.gpu.caps.maxStorageBindingSize / (dim * 4));
    return { buffer, rows, dim, dtype: 'f32', rowsPerWindow: fit >= rows ? rows : Math.max(64, Math.floor(fit / 64) * 64) };
  }

  private headName(): string {
    return this.config.tieWordEmbeddings ? 'model.decoder.embed_tokens.weight' : 'lm_head.weight';
  }

  private get hidden(): GpuBuffer {
    const b = this.buf;
    return b.projOut ?? b.finalNormed ?? b.x[this.config.numLayers];
  }

  private forward(pk: PackedBatch): void {
    const g = this.gpu, c = this.config, b = this.buf, T = pk.T;
    const H = c.hiddenSize, D = c.wordEmbedProjDim, F = c.ffnDim;
    const d = 'model.decoder.';
    const lin = (x: GpuBuffer, w: string | GpuBuffer, bias: string | GpuBuffer | null, y: GpuBuffer, N: number, K: number, more: { relu?: boolean; residual?: GpuBuffer; ldy?: number; ycol?: number } = {}) =>
      linear(g, {
        x, w: typeof w === 'string' ? this.param(w) : w, bias: typeof bias === 'string' ? this.param(bias) : bias ?? undefined,
        y, M: T, N, K, act: 'f32', weight: 'f32', dummy: b.dummy, ...more,
      });
    const ln = (x: GpuBuffer, name: string, y: GpuBuffer) =>
      layerNorm(g, { x, gamma: this.param(`${name}.weight`), beta: this.param(`${name}.bias`), y, rows: T, dim: H, act: 'f32', weight: 'f32' });

    // Embeddings: tokens (projected D -> H when project_in exists) plus learned positions (rows packed with the offset).
    const embed = this.table(this.param(d + 'embed_tokens.weight'), c.vocabSize, D);
    gatherRows(g, { index: b.ids, table: embed, out: b.embedTok ?? b.x[0], numTokens: T, act: 'f32', indexOffset: 0, accumulate: false });
    if (b.embedTok) lin(b.embedTok, d + 'project_in.weight', null, b.x[0], H, D);
    const positions = this.table(this.param(d + 'embed_positions.weight'), c.maxPositions + c.positionOffset, H);
    gatherRows(g, { index: b.positionRows, table: positions, out: b.x[0], numTokens: T, act: 'f32', indexOffset: 0, accumulate: true });

    const shape = { B: pk.B, L: pk.L, heads: c.numHeads, headDim: c.headDim };
    for (let l = 0; l < c.numLayers; l++) {
      const p = `${d}layers.${l}.`, a = `${p}self_attn.`, A = b.layers[l], x = b.x[l];
      const attnIn = c.layerNormBefore ? A.h1 : x;
      if (c.layerNormBefore) ln(x, `${p}self_attn_layer_norm`, A.h1);
      const fused = b.fusedQkv[l];
      if (fused) lin(attnIn, fused.weight, fused.bias, A.qkv, 3 * H, H);
      else {
        ['q_proj', 'k_proj', 'v_proj'].forEach((proj, i) =>
          lin(attnIn, `${a}${proj}.weight`, `${a}${proj}.bias`, A.qkv, H, H, { ldy: 3 * H, ycol: i * H }));
      }
      attentionForward(g, { s: shape, qkv: A.qkv, keyMask: b.keyMask, scratch: b.attention, dummy: b.dummy, out: A.attn, saved: b.savedProbs?.[l] });
      if (c.layerNormBefore) {
        lin(A.attn, `${a}out_proj.weight`, `${a}out_proj.bias`, A.h2, H, H, { residual: x });
        ln(A.h2, `${p}final_layer_norm`, A.h3);
        lin(A.h3, `${p}fc1.weight`, `${p}fc1.bias`, A.ffn, F, H, { relu: true });
        lin(A.ffn, `${p}fc2.weight`, `${p}fc2.bias`, b.x[l + 1], H, F, { residual: A.h2 });
      } else {
        lin(A.attn, `${a}out_proj.weight`, `${a}out_proj.bias`, A.h1, H, H, { residual: x });
        ln(A.h1, `${p}self_attn_layer_norm`, A.h2);
        lin(A.h2, `${p}fc1.weight`, `${p}fc1.bias`, A.ffn, F, H, { relu: true });
        lin(A.ffn, `${p}fc2.weight`, `${p}fc2.bias`, A.h3, H, F, { residual: A.h2 });
        ln(A.h3, `${p}final_layer_norm`, b.x[l + 1]);
      }
      this.submitLayer();
    }
    const last = b.x[c.numLayers];
    if (b.finalNormed) ln(last, d + 'final_layer_norm', b.finalNormed);
    if (b.projOut) lin(b.finalNormed ?? last, d + 'project_out.weight', null, b.projOut, D, H);
  }

  /**
   * LM head, loss and (when gradScale is not null) the head's backward, chunk by chunk over rows: logits of a
   * chunk -> fused softmax + cross-entropy (in place: logits become dlogits) -> dHidden = dlogits E and
   * dE += dlogits^T hidden. Only one chunk of logits ever exists.
   */
  private headAndLoss(pk: PackedBatch, gradScale: number | null): void {
    const g = this.gpu, c = this.config, b = this.buf, T = pk.T, V = c.vocabSize, D = c.wordEmbedProjDim;
    const head = this.table(this.param(this.headName()), V, D);
    const headGrad = this.table(this.grad(this.headName()), V, D);
    const hidden = this.hidden;
    for (let r0 = 0; r0 < T; r0 += this.logitRows) {
      const R = Math.min(this.logitRows, T - r0);
      for (let w = 0; w < windowCount(head); w++) {
        const { binding, rowStart, rowCount } = windowBinding(head, w);
        matmul(g, {
          M: R, N: rowCount, K: D, a: { buffer: hidden, ld: D, offset: r0 * D }, aKContiguous: true,
          b: { buffer: binding, ld: D }, bKContiguous: true, c: { buffer: b.logits, ld: V, offset: rowStart }, dummy: b.dummy,
        });
      }
      softmaxCrossEntropy(g, { logits: b.logits, rows: R, vocab: V, row0: r0, coef: b.coef, targets: b.targets, rowLoss: b.rowLoss, gradScale: gradScale ?? 0 });
      if (gradScale === null) continue;
      for (let w = 0; w < windowCount(head); w++) {
        const { binding, rowStart, rowCount } = windowBinding(head, w);
        const gradWindow = windowBinding(headGrad, w).binding;
        const dlogits = { buffer: b.logits, ld: V, offset: rowStart };
        // dHidden[r0 .. r0 + R] (+)= dlogits[:, window] E[window]
        matmul(g, {
          M: R, N: D, K: rowCount, a: dlogits, aKContiguous: true, b: { buffer: binding, ld: D }, bKContiguous: false,
          c: { buffer: b.dHead, ld: D, offset: r0 * D }, accumulate: w > 0, splitK: b.split, dummy: b.dummy,
        });
        // dE[window] += dlogits[:, window]^T hidden[r0 .. r0 + R]
        matmul(g, {
          M: rowCount, N: D, K: R, a: dlogits, aKContiguous: false, b: { buffer: hidden, ld: D, offset: r0 * D }, bKContiguous: false,
          c: { buffer: gradWindow, ld: D }, accumulate: true, dummy: b.dummy,
        });
      }
    }
    sumLoss(g, { rowLoss: b.rowLoss, rows: T, loss: b.loss });
  }

  /**
   * Backward of a Linear y = x W^T + bias over T rows: dW += dy^T x, db += colsum(dy), and dx (=, or += with
   * accumulate) dy W, optionally times ReLU's mask of the layer below. dy may be a column block of a wider buffer.
   */
  private linearBackward(a: {
    T: number; x: GpuBuffer; dy: Operand; weight: string | { param: GpuBuffer; grad: GpuBuffer }; bias: string | null; N: number; K: number;
    dx: { buffer: GpuBuffer; accumulate: boolean; reluOutput?: GpuBuffer } | null;
  }): void {
    const g = this.gpu, b = this.buf;
    const w = typeof a.weight === 'string' ? { param: this.param(a.weight), grad: this.grad(a.weight) } : a.weight;
    matmul(g, {
      M: a.N, N: a.K, K: a.T, a: a.dy, aKContiguous: false, b: { buffer: a.x, ld: a.K }, bKContiguous: false,
      c: { buffer: w.grad, ld: a.K }, accumulate: true, splitK: b.split, dummy: b.dummy,
    });
    if (a.bias) columnSum(g, { y: a.dy.buffer as GpuBuffer, M: a.T, N: a.N, ld: a.dy.ld, off: a.dy.offset, out: this.grad(a.bias), scratch: b.colsum, dummy: b.dummy });
    if (a.dx) {
      matmul(g, {
        M: a.T, N: a.K, K: a.N, a: a.dy, aKContiguous: true, b: { buffer: w.param, ld: a.K }, bKContiguous: false,
        c: { buffer: a.dx.buffer, ld: a.K }, accumulate: a.dx.accumulate, reluOutput: a.dx.reluOutput, splitK: b.split, dummy: b.dummy,
      });
    }
  }

  private lnBackward(T: number, name: string, x: GpuBuffer, dy: GpuBuffer, dx: GpuBuffer, accumulate: boolean): void {
    const b = this.buf;
    layerNormBackward(this.gpu, {
      x, gamma: this.param(`${name}.weight`), dy, dx, accumulate, rows: T, dim: this.config.hiddenSize,
      dgamma: this.grad(`${name}.weight`), dbeta: this.grad(`${name}.bias`), stats: b.lnStats, scratch: b.colsum, dummy: b.dummy,
    });
  }

  private backward(pk: PackedBatch): void {
    const g = this.gpu, c = this.config, b = this.buf, T = pk.T;
    const H = c.hiddenSize, D = c.wordEmbedProjDim, F = c.ffnDim;
    const d = 'model.decoder.';
    const last = b.x[c.numLayers];
    // dHead holds d loss / d hidden (the head's input). Route it back to dh = d loss / d x[numLayers].
    if (b.projOut) {
      this.linearBackward({
        T, x: b.finalNormed ?? last, dy: { buffer: b.dHead, ld: D }, weight: d + 'project_out.weight', bias: null, N: D, K: H,
        dx: { buffer: b.finalNormed ? b.dtmp : b.dh, accumulate: false },
      });
      if (b.finalNormed) this.lnBackward(T, d + 'final_layer_norm', last, b.dtmp, b.dh, false);
    } else if (b.finalNormed) {
      this.lnBackward(T, d + 'final_layer_norm', last, b.dHead, b.dh, false);
    } else {
      g.copy(b.dHead, 0, b.dh, 0, T * H * 4);
    }

    const shape = { B: pk.B, L: pk.L, heads: c.numHeads, headDim: c.headDim };
    for (let l = c.numLayers - 1; l >= 0; l--) {
      const p = `${d}layers.${l}.`, a = `${p}self_attn.`, A = b.layers[l], x = b.x[l];
      const attnBackward = (attnIn: GpuBuffer, dAttnIn: { buffer: GpuBuffer; accumulate: boolean }) => {
        // dh holds d loss / d (out_proj output).
        this.linearBackward({ T, x: A.attn, dy: { buffer: b.dh, ld: H }, weight: `${a}out_proj.weight`, bias: `${a}out_proj.bias`, N: H, K: H, dx: { buffer: b.dattn, accumulate: false } });
        attentionBackward(g, {
          s: shape, qkv: A.qkv, keyMask: b.keyMask, scratch: b.attention, dummy: b.dummy, dout: b.dattn, dqkv: b.dqkv,
          saved: b.savedProbs?.[l],
          probsFromForward: l === c.numLayers - 1, // the head and loss in between leave the attention scratch alone
        });
        // k_proj.bias gets no gradient: adding a constant to every key shifts each query's scores by the same
        // q . b, which softmax ignores, so its gradient is exactly zero. Summing dK's columns would give rounding
        // noise (~1e-10 in f32), which AdamW's first step (update ~ lr * g / (|g| + eps)) turns into a real move.
        const fused = b.fusedQkv[l];
        if (fused) {
          // One [3H, H] Linear's dW and dX; the biases' column sums stay per projection (k_proj's is zero).
          this.linearBackward({
            T, x: attnIn, dy: { buffer: b.dqkv, ld: 3 * H }, weight: { param: fused.weight, grad: fused.gradWeight }, bias: null,
            N: 3 * H, K: H, dx: { buffer: dAttnIn.buffer, accumulate: dAttnIn.accumulate },
          });
          columnSums(g, {
            y: b.dqkv, M: T, N: 3 * H, ld: 3 * H, scratch: b.colsum, dummy: b.dummy,
            outs: [{ col: 0, count: H, out: this.grad(`${a}q_proj.bias`) }, { col: 2 * H, count: H, out: this.grad(`${a}v_proj.bias`) }],
          });
        } else {
          ['q_proj', 'k_proj', 'v_proj'].forEach((proj, i) => this.linearBackward({
            T, x: attnIn, dy: { buffer: b.dqkv, ld: 3 * H, offset: i * H }, weight: `${a}${proj}.weight`,
            bias: proj === 'k_proj' ? null : `${a}${proj}.bias`, N: H, K: H,
            dx: { buffer: dAttnIn.buffer, accumulate: dAttnIn.accumulate || i > 0 },
          }));
        }
      };
      if (c.layerNormBefore) {
        // dh = d x[l + 1] = d h2 (residual) and d fc2 output.
        this.linearBackward({ T, x: A.ffn, dy: { buffer: b.dh, ld: H }, weight: `${p}fc2.weight`, bias: `${p}fc2.bias`, N: H, K: F, dx: { buffer: b.dffn, accumulate: false, reluOutput: A.ffn } });
        this.linearBackward({ T, x: A.h3, dy: { buffer: b.dffn, ld: F }, weight: `${p}fc1.weight`, bias: `${p}fc1.bias`, N: F, K: H, dx: { buffer: b.dtmp, accumulate: false } });
        this.lnBackward(T, `${p}final_layer_norm`, A.h2, b.dtmp, b.dh, true);
        // dh = d h2 = d x (residual) and d out_proj output.
        attnBackward(A.h1, { buffer: b.dtmp, accumulate: false });
        this.lnBackward(T, `${p}self_attn_layer_norm`, x, b.dtmp, b.dh, true);
      } else {
        this.lnBackward(T, `${p}final_layer_norm`, A.h3, b.dh, b.dtmp, false);
        // dtmp = d h3 = d h2 (residual) and d fc2 output.
        this.linearBackward({ T, x: A.ffn, dy: { buffer: b.dtmp, ld: H }, weight: `${p}fc2.weight`, bias: `${p}fc2.bias`, N: H, K: F, dx: { buffer: b.dffn, accumulate: false, reluOutput: A.ffn } });
        this.linearBackward({ T, x: A.h2, dy: { buffer: b.dffn, ld: F }, weight: `${p}fc1.weight`, bias: `${p}fc1.bias`, N: F, K: H, dx: { buffer: b.dtmp, accumulate: true } });
        this.lnBackward(T, `${p}self_attn_layer_norm`, A.h1, b.dtmp, b.dh, false);
        // dh = d h1 = d x (residual) and d out_proj output.
        attnBackward(x, { buffer: b.dh, accumulate: true });
      }
      this.submitLayer();
    }

    // Embeddings: dh = d x[0]. Positions, then tokens (through project_in when present); the tied head's
    // gradient is already in the embedding gradient.
    const positions = this.table(this.grad(d + 'embed_positions.weight'), c.maxPositions + c.positionOffset, H);
    scatterAddRows(g, { runs: b.positionRuns, numRows: pk.positionRuns.rows.length, src: b.dh, grad: positions });
    let dTok = b.dh;
    if (b.embedTok && b.dEmbedTok) {
      this.linearBackward({ T, x: b.embedTok, dy: { buffer: b.dh, ld: H }, weight: d + 'project_in.weight', bias: null, N: H, K: D, dx: { buffer: b.dEmbedTok, accumulate: false } });
      dTok = b.dEmbedTok;
    }
    const tokens = this.table(this.grad(d + 'embed_tokens.weight'), c.vocabSize, D);
    scatterAddRows(g, { runs: b.tokenRuns, numRows: pk.tokenRuns.rows.length, src: dTok, grad: tokens });
  }
}
