/**
 * Gradient accumulation: a batch larger than the model's maxBatchTokens is split by rows into micro-batches
 * that each fit. Each micro-batch's loss is a mean over its own targets, so its gradient is scaled by its share
 * of the batch's targets: the accumulated gradient (and the combined loss) is then exactly that of the whole
 * batch, for the plain, weighted and masked losses alike.
 */
import { TrainingInputError } from '../errors.ts';
import type { TrainBatch } from './types.ts';

export interface MicroBatch {
  batch: TrainBatch;
  /** This micro-batch's targets / the batch's targets (1 when the batch is not split). */
  share: number;
}

/**
 * Targets of one row that count in the loss's denominator: positions 1..len-1 (each predicted from the one
 * before); with a mask, only those whose token and input token are both real (src/train/batch.ts's rule).
 */
function rowTargets(batch: TrainBatch, b: number): number {
  const len = batch.ids[b].length;
  const mask = batch.mask?.[b];
  if (!mask) return Math.max(0, len - 1);
  let n = 0;
  for (let t = 1; t < len; t++) if (mask[t] && mask[t - 1]) n++;
  return n;
}

export function splitMicroBatches(batch: TrainBatch, maxTokens: number): MicroBatch[] {
  const B = batch.ids.length;
  if (B === 0) throw new TrainingInputError('the batch is empty: give at least one sequence');
  for (const [what, rows] of [['weights', batch.weights], ['mask', batch.mask]] as const) {
    if (rows && rows.length !== B) throw new TrainingInputError(`${what} has ${rows.length} rows, the batch has ${B} sequences`);
  }
  const lengths = batch.ids.map((r) => r.length);
  const L = Math.max(...lengths);
  if (!batch.mask) {
    const b = lengths.findIndex((l) => l !== lengths[0]);
    if (b >= 0) {
      throw new TrainingInputError(`ragged batch: sequence ${b} has ${lengths[b]} tokens, sequence 0 has ${lengths[0]}; give a mask for ragged rows`);
    }
  }
  if (B * L <= maxTokens) return [{ batch, share: 1 }];
  const rowsPer = Math.floor(maxTokens / L);
  if (rowsPer === 0) throw new TrainingInputError(`a sequence of ${L} tokens does not fit maxBatchTokens ${maxTokens}`);
  const targets = batch.ids.map((_, b) => rowTargets(batch, b));
  const total = targets.reduce((a, b) => a + b, 0);
  if (total === 0) throw new TrainingInputError('the batch has no targets (every sequence is shorter than 2 real tokens)');
  const out: MicroBatch[] = [];
  for (let s = 0; s < B; s += rowsPer) {
    const e = Math.min(B, s + rowsPer);
    const part: TrainBatch = { ids: batch.ids.slice(s, e) };
    if (batch.weights) part.weights = batch.weights.slice(s, e);
    if (batch.mask) part.mask = batch.mask.slice(s, e);
    const n = targets.slice(s, e).reduce((a, b) => a + b, 0);
    if (n > 0) out.push({ batch: part, share: n / total });
  }
  return out;
}
