import type { Gpu, GpuBuffer } from '../../gpu/gpu.ts';
import { packParams } from '../../gpu/gpu.ts';
import { grid1d, shaderSource } from '../../kernels/shader.ts';
import { matmul } from './matmul.ts';

/**
 * Causal self-attention over whole sequences for training, as batched matmuls over (sequence, head):
 * S = scale Q K^T, P = softmax(S) (causal, padding keys masked), O = P V.
 *
 * Saved or recomputed probabilities, chosen by memory (OptTrainingModel): P costs B * heads * L^2 floats per
 * layer (OPT-125m at 8 x 512: 100 MB a layer, 1.2 GB over 12 layers). Where the model can afford it, each layer
 * has its own P buffer (`saved`): the forward leaves P there and the backward reads it (saves a Q K^T and a
 * softmax per layer, ~3 ms of the 8 x 512 step on an H100). Otherwise the backward recomputes S and P from the
 * saved q, k, v into a transient scratch shared by all layers, bounded: (sequence, head) pairs are processed in
 * groups that fit it. The recomputed P has the forward's bits (same kernels, same inputs).
 */
export interface AttentionShape {
  /** Sequences and their (padded) length: rows of qkv are b * L + i. */
  B: number;
  L: number;
  heads: number;
  headDim: number;
}

export interface AttentionScratch {
  /** Scores / probabilities of one group: [pairs, L, L] f32. */
  probs: GpuBuffer;
  /** dP / dS of one group (backward only). */
  grads: GpuBuffer;
  /** Floats each of them holds. */
  floats: number;
}

/** (sequence, head) pairs per group so a group's [pairs, L, L] scores fit in the scratch. */
export function attentionGroup(s: AttentionShape, scratchFloats: number): number {
  const per = s.L * s.L;
  if (per > scratchFloats) throw new RangeError(`attention scratch of ${scratchFloats} floats cannot hold one ${s.L} x ${s.L} score matrix`);
  return Math.min(s.B * s.heads, Math.floor(scratchFloats / per));
}

interface Common {
  s: AttentionShape;
  /** [B * L, 3H]: q | k | v per row (the q, k, v projections written side by side). */
  qkv: GpuBuffer;
  /** [B * L] u32, 1 = real token (padding keys are excluded). */
  keyMask: GpuBuffer;
  scratch: AttentionScratch;
  dummy: GpuBuffer;
  /** This layer's own P buffer ([B * heads, L, L] f32, the whole batch in one group), or none: recompute. */
  saved?: GpuBuffer;
}

function groups(s: AttentionShape, scratchFloats: number): Array<{ first: number; count: number }> {
  const g = attentionGroup(s, scratchFloats), total = s.B * s.heads, out = [];
  for (let first = 0; first < total; first += g) out.push({ first, count: Math.min(g, total - first) });
  return out;
}

/** Where a layer's P lives: its own buffer, or the shared scratch (one group at a time). */
function probsOf(c: Common, groupCount: number): GpuBuffer {
  if (c.saved && groupCount !== 1) throw new RangeError('attention: saved probabilities need the whole batch in one group');
  return c.saved ?? c.scratch.probs;
}

/** Compute P for a group into its buffer (probsOf). */
function probabilities(gpu: Gpu, c: Common, first: number, count: number, P: GpuBuffer): void {
  const { L, heads, headDim } = c.s, H = heads * headDim, H3 = 3 * H;
  matmul(gpu, {
    M: L, N: L, K: headDim, alpha: 1 / Math.sqrt(headDim),
    a: { buffer: c.qkv, ld: H3, s1: L * H3, s2: headDim }, aKContiguous: true,
    b: { buffer: c.qkv, ld: H3, offset: H, s1: L * H3, s2: headDim }, bKContiguous: true,
    c: { buffer: P, ld: L, s3: L * L },
    batch: { count, first, div: heads }, skipUpperTiles: true, dummy: c.dummy,
  });
  gpu.dispatch(gpu.kernel(shaderSource('train_attn_softmax')), [c.keyMask, P], packParams([count * L, L, heads, first]), grid1d(count * L));
}

/** out[b * L + i, h * hd + d] = sum_j P[b, h, i, j] v[b * L + j, h * hd + d]. */
export function attentionForward(gpu: Gpu, c: Common & { out: GpuBuffer }): void {
  const { L, heads, headDim } = c.s, H = heads * headDim, H3 = 3 * H;
  const all = groups(c.s, c.scratch.floats);
  const P = probsOf(c, all.length);
  for (const { first, count } of all) {
    probabilities(gpu, c, first, count, P);
    matmul(gpu, {
      M: L, N: headDim, K: L,
      a: { buffer: P, ld: L, s3: L * L }, aKContiguous: true, aLowerTriangular: true,
      b: { buffer: c.qkv, ld: H3, offset: 2 * H, s1: L * H3, s2: headDim }, bKContiguous: false,
      c: { buffer: c.out, ld: H, s1: L * H, s2: headDim },
      batch: { count, first, div: heads }, dummy: c.dummy,
    });
  }
}

/**
 * dqkv ([B * L, 3H], overwritten) from dout ([B * L, H]). P is read from the layer's `saved` buffer, or
 * recomputed, except where `probsFromForward` says this layer's forward was the last attention to run (the last
 * layer's backward comes right after it) and its probabilities are still in the scratch: one group, nothing
 * recomputed (the same bits either way).
 */
export function attentionBackward(gpu: Gpu, c: Common & { dout: GpuBuffer; dqkv: GpuBuffer; probsFromForward?: boolean }): void {
  const { L, heads, headDim } = c.s, H = heads * headDim, H3 = 3 * H;
  const batchOf = (first: number, count: number) => ({ count, first, div: heads });
  const qkvAt = (col: number) => ({ buffer: c.qkv, ld: H3, offset: col, s1: L * H3, s2: headDim });
  const dqkvAt = (col: number) => ({ buffer: c.dqkv, ld: H3, offset: col, s1: L * H3, s2: headDim });
  const dout = { buffer: c.dout, ld: H, s1: L * H, s2: headDim };
  const all = groups(c.s, c.scratch.floats);
  const P = probsOf(c, all.length);
  const probs = { buffer: P, ld: L, s3: L * L };
  const grads = { buffer: c.scratch.grads, ld: L, s3: L * L };
  for (const { first, count } of all) {
    const batch = batchOf(first, count);
    if (!c.saved && !(c.probsFromForward && all.length === 1)) probabilities(gpu, c, first, count, P);
    // dP = dO V^T (only j <= i is read).
    matmul(gpu, { M: L, N: L, K: headDim, a: dout, aKContiguous: true, b: qkvAt(2 * H), bKContiguous: true, c: grads, batch, skipUpperTiles: true, dummy: c.dummy });
    // dV = P^T dO (P[i, j] is zero unless i >= j).
    matmul(gpu, { M: L, N: headDim, K: L, a: probs, aKContiguous: false, aUpperTriangular: true, b: dout, bKContiguous: false, c: dqkvAt(2 * H), batch, dummy: c.dummy });
    // dS = scale * P * (dP - rowsum(P dP)).
    gpu.dispatch(gpu.kernel(shaderSource('train_attn_softmax_backward')), [P, c.scratch.grads],
      packParams([count * L, L, { f: 1 / Math.sqrt(headDim) }]), grid1d(count * L));
    // dQ = dS K, dK = dS^T Q.
    matmul(gpu, { M: L, N: headDim, K: L, a: grads, aKContiguous: true, aLowerTriangular: true, b: qkvAt(H), bKContiguous: false, c: dqkvAt(0), batch, dummy: c.dummy });
    matmul(gpu, { M: L, N: headDim, K: L, a: grads, aKContiguous: false, aUpperTriangular: true, b: qkvAt(0), bKContiguous: false, c: dqkvAt(H), batch, dummy: c.dummy });
  }
}

/** CPU reference of the attention forward (float64): out [B*L, H]. */
export function attentionReference(qkv: ArrayLike<number>, keyMask: ArrayLike<number>, s: AttentionShape): Float64Array {
  return attentionCore(qkv, keyMask, s, null).out;
}

/** CPU reference of the attention backward (float64): dqkv [B*L, 3H]. */
export function attentionBackwardReference(qkv: ArrayLike<number>, keyMask: ArrayLike<number>, s: AttentionShape, dout: ArrayLike<number>): Float64Array {
  return attentionCore(qkv, keyMask, s, dout).dqkv!;
}

function attentionCore(qkv: ArrayLike<number>, keyMask: ArrayLike<number>, s: AttentionShape, dout: ArrayLike<number> | null) {
  const { B, L, heads, headDim: hd } = s, H = heads * hd, H3 = 3 * H, scale = 1 / Math.sqrt(hd);
  const out = new Float64Array(B * L * H);
  const dqkv = dout ? new Float64Array(B * L * H3) : null;
  const q = (b: number, i: number, h: number, d: number) => qkv[(b * L + i) * H3 + h * hd + d];
  const k = (b: number, j: number, h: number, d: number) => qkv[(b * L + j) * H3 + H + h * hd + d];
  const v = (b: number, j: number, h: number, d: number) => qkv[(b * L + j) * H3 + 2 * H + h * hd + d];
  for (let b = 0; b < B; b++) for (let h = 0; h < heads; h++) for (let i = 0; i < L; i++) {
    const P = new Float64Array(L);
    let mx = -Infinity;
    const ok = (j: number) => j <= i && keyMask[b * L + j] !== 0;
    for (let j = 0; j <= i; j++) if (ok(j)) {
      let dot = 0;
      for (let d = 0; d < hd; d++) dot += q(b, i, h, d) * k(b, j, h, d);
      P[j] = dot * scale;
      mx = Math.max(mx, P[j]);
    }
    let sum = 0;
    for (let j = 0; j <= i; j++) if (ok(j)) { P[j] = Math.exp(P[j] - mx); sum += P[j]; }
    for (let j = 0; j < L; j++) P[j] = ok(j) ? P[j] / sum : 0;
    for (let d = 0; d < hd; d++) {
      let o = 0;
      for (let j = 0; j <= i; j++) o += P[j] * v(b, j, h, d);
      out[(b * L + i) * H + h * hd + d] = o;
    }
    if (!dqkv || !dout) continue;
    const dO = (d: number) => dout[(b * L + i) * H + h * hd + d];
    const dP = new Float64Array(L);
    let D = 0;
    for (let j = 0; j <= i; j++) {
      for (let d = 0; d < hd; d++) dP[j] += dO(d) * v(b, j, h, d);
      D += P[j] * dP[j];
    }
    for (let j = 0; j <= i; j++) {
      const dS = P[j] * (dP[j] - D) * scale;
      for (let d = 0; d < hd; d++) {
        dqkv[(b * L + i) * H3 + h * hd + d] += dS * k(b, j, h, d);
        dqkv[(b * L + j) * H3 + H + h * hd + d] += dS * q(b, i, h, d);
        dqkv[(b * L + j) * H3 + 2 * H + h * hd + d] += P[j] * dO(d);
      }
    }
  }
  return { out, dqkv };
}
