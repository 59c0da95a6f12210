import type { Gpu, GpuBuffer } from '../../gpu/gpu.ts';
import { packParams } from '../../gpu/gpu.ts';
import { grid1d, shaderSource } from '../../kernels/shader.ts';

/**
 * Fused softmax + cross-entropy over `rows` logit rows (global rows row0 ..), in place: rowLoss[row] =
 * coef * nll, logits become d(gradScale * loss)/dlogits. Never holds more than the chunk it is given.
 */
export function softmaxCrossEntropy(
  gpu: Gpu,
  a: { logits: GpuBuffer; rows: number; vocab: number; row0: number; coef: GpuBuffer; targets: GpuBuffer; rowLoss: GpuBuffer; gradScale: number },
): void {
  const k = gpu.kernel(shaderSource('train_xent'));
  gpu.dispatch(k, [a.coef, a.targets, a.rowLoss, a.logits], packParams([a.rows, a.vocab, a.row0, { f: a.gradScale }]), grid1d(a.rows));
}

/** loss[0] = sum of rowLoss[0..rows), in a fixed order. */
export function sumLoss(gpu: Gpu, a: { rowLoss: GpuBuffer; rows: number; loss: GpuBuffer }): void {
  gpu.dispatch(gpu.kernel(shaderSource('train_loss_sum')), [a.rowLoss, a.loss], packParams([a.rows]), [1]);
}

/** CPU reference (float64): per-row loss contributions and dlogits for one chunk. */
export function softmaxCrossEntropyReference(
  logits: ArrayLike<number>, rows: number, vocab: number, coef: ArrayLike<number>, targets: ArrayLike<number>, gradScale: number,
): { rowLoss: Float64Array; dlogits: Float64Array } {
  const rowLoss = new Float64Array(rows), dlogits = new Float64Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    const o = r * vocab;
    let mx = -Infinity;
    for (let v = 0; v < vocab; v++) mx = Math.max(mx, logits[o + v]);
    let s = 0;
    for (let v = 0; v < vocab; v++) s += Math.exp(logits[o + v] - mx);
    const lse = mx + Math.log(s);
    rowLoss[r] = coef[r] === 0 ? 0 : coef[r] * (lse - logits[o + targets[r]]);
    for (let v = 0; v < vocab; v++) dlogits[o + v] = gradScale * coef[r] * (Math.exp(logits[o + v] - lse) - (v === targets[r] ? 1 : 0));
  }
  return { rowLoss, dlogits };
}
