import { TrainingInputError } from '../errors.ts';
import type { OptConfig } from '../model/config.ts';
import { rowRuns, type RowRuns } from './kernels/scatter.ts';
import type { TrainBatch } from './types.ts';

/** A validated batch laid out for the GPU: B rows of L tokens (padded), flat index t = b * L + i. */
export interface PackedBatch {
  B: number;
  L: number;
  /** B * L. */
  T: number;
  ids: Uint32Array;
  /** Row of embed_positions for each token (HF: cumsum of the mask - 1, plus OPT's offset 2; padding uses row 1). */
  positionRows: Uint32Array;
  /** 1 = real token (attention keys with 0 are excluded). */
  keyMask: Uint32Array;
  /** Next token of row t (t = b * L + i predicts ids[t + 1]); 0 where there is none. */
  targets: Uint32Array;
  /** w_t / count for counted targets, 0 elsewhere: loss = sum_t coef_t * nll_t. */
  coef: Float32Array;
  /** Targets that count (the loss's denominator). */
  count: number;
  tokenRuns: RowRuns;
  positionRuns: RowRuns;
}

const fail = (msg: string): never => { throw new TrainingInputError(msg); };

/**
 * Validate a TrainBatch against the model and pack it. Loss definitions (../shared/fixtures/README.md):
 * mean next-token cross-entropy over every target (HF labels = input_ids); weighted, sum_t w_t nll_t / count;
 * with a mask, a target counts only when it and its input token are both real, and count is their number.
 */
export function packBatch(config: OptConfig, batch: TrainBatch, maxBatchTokens: number, maxSequenceLength = config.maxPositions): PackedBatch {
  const rows = batch.ids;
  if (!Array.isArray(rows) || rows.length === 0) fail('batch.ids must be a non-empty array of token-id rows');
  const B = rows.length;
  const lengths = rows.map((r, b) => {
    if (r === null || typeof r !== 'object' || typeof r.length !== 'number') fail(`batch.ids[${b}] is not an array of token ids`);
    return r.length;
  });
  const L = Math.max(...lengths);
  const mask = batch.mask;
  if (mask !== undefined) {
    if (!Array.isArray(mask) || mask.length !== B) fail(`batch.mask must have one row per sequence (${B}), got ${Array.isArray(mask) ? mask.length : typeof mask}`);
    mask.forEach((m, b) => {
      if (m === null || typeof m !== 'object' || m.length !== lengths[b]) fail(`batch.mask[${b}] must have ${lengths[b]} entries (as batch.ids[${b}]), got ${m?.length}`);
      for (let i = 0; i < m.length; i++) if (m[i] !== 0 && m[i] !== 1) fail(`batch.mask[${b}][${i}] is ${m[i]}: a mask holds 0 or 1`);
    });
  } else {
    const bad = lengths.findIndex((n) => n !== lengths[0]);
    if (bad >= 0) fail(`ragged batch without a mask: row ${bad} has ${lengths[bad]} ids, row 0 has ${lengths[0]}; pass a mask (1 = real token) for rows of different lengths`);
  }
  if (L < 2) fail(`sequences need at least 2 tokens (one input and one target), got ${L}`);
  if (L > config.maxPositions) fail(`sequence of ${L} tokens is longer than the position table (max_position_embeddings ${config.maxPositions})`);
  if (L > maxSequenceLength) fail(`sequence of ${L} tokens is longer than maxSequenceLength ${maxSequenceLength}`);
  if (B * L > maxBatchTokens) fail(`batch of ${B} x ${L} = ${B * L} tokens exceeds maxBatchTokens ${maxBatchTokens}`);
  const weights = batch.weights;
  if (weights !== undefined) {
    if (!Array.isArray(weights) || weights.length !== B) fail(`batch.weights must have one row per sequence (${B}), got ${Array.isArray(weights) ? weights.length : typeof weights}`);
    weights.forEach((w, b) => {
      if (w === null || typeof w !== 'object' || w.length !== lengths[b] - 1) fail(`batch.weights[${b}] must have ${lengths[b] - 1} entries (one per target of a ${lengths[b]}-token row), got ${w?.length}`);
      for (let i = 0; i < w.length; i++) if (!Number.isFinite(w[i])) fail(`batch.weights[${b}][${i}] is ${w[i]}, not a finite number`);
    });
  }

  const T = B * L;
  const ids = new Uint32Array(T), positionRows = new Uint32Array(T), keyMask = new Uint32Array(T);
  const targets = new Uint32Array(T), coef = new Float32Array(T);
  const raw = new Float64Array(T);
  let count = 0;
  for (let b = 0; b < B; b++) {
    const r = rows[b], m = mask?.[b];
    let seen = 0;
    for (let i = 0; i < L; i++) {
      const t = b * L + i;
      const real = i < lengths[b] && (m ? m[i] === 1 : true);
      let id = config.padTokenId;
      if (i < lengths[b]) {
        id = Number(r[i]);
        if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) fail(`batch.ids[${b}][${i}] = ${r[i]} is not a token id of this model (vocab ${config.vocabSize})`);
      }
      ids[t] = id;
      keyMask[t] = real ? 1 : 0;
      if (real) seen++;
      // HF OPT: position_ids = cumsum(mask) * mask - 1, then + 2; padding lands on row 1.
      positionRows[t] = real ? seen - 1 + config.positionOffset : config.positionOffset - 1;
    }
    for (let i = 0; i + 1 < lengths[b]; i++) {
      const t = b * L + i;
      targets[t] = ids[t + 1];
      if (keyMask[t] && keyMask[t + 1]) { raw[t] = weights ? Number(weights[b][i]) : 1; count++; }
    }
  }
  if (count === 0) fail('the batch has no target to learn: every next token is masked out');
  for (let t = 0; t < T; t++) coef[t] = raw[t] / count;
  return { B, L, T, ids, positionRows, keyMask, targets, coef, count, tokenRuns: rowRuns(ids), positionRuns: rowRuns(positionRows) };
}
