/** Comparing two [T, vocab] logits arrays position by position: max |diff| and top-1 agreement. */

export interface PositionComparison {
  position: number;
  /** max over the vocabulary of |a - b| at this position. */
  maxAbsDiff: number;
  /** argmax of a (lowest id on ties). */
  top1A: number;
  /** argmax of b. */
  top1B: number;
  agree: boolean;
  /** b's top-1 minus top-2 logit: a disagreement where this is tiny is a near-tie, not an error. */
  marginB: number;
}

export interface LogitsComparison {
  positions: PositionComparison[];
  maxAbsDiff: number;
  top1Agree: number;
}

/** [top-1 id, top-1 minus top-2] of one row. */
function top2(row: Float32Array): [number, number] {
  let i1 = 0, v1 = -Infinity, v2 = -Infinity;
  for (let i = 0; i < row.length; i++) {
    const x = row[i];
    if (x > v1) { v2 = v1; v1 = x; i1 = i; } else if (x > v2) v2 = x;
  }
  return [i1, v1 - v2];
}

/** Compare logits `a` and `b`, both [T, vocab] row-major. A NaN anywhere makes the difference Infinity. */
export function compareLogits(a: Float32Array, b: Float32Array, T: number, vocab: number): LogitsComparison {
  if (a.length !== T * vocab || b.length !== T * vocab) {
    throw new RangeError(`compareLogits: expected ${T}×${vocab} values, got ${a.length} and ${b.length}`);
  }
  const positions: PositionComparison[] = [];
  for (let t = 0; t < T; t++) {
    const ra = a.subarray(t * vocab, (t + 1) * vocab), rb = b.subarray(t * vocab, (t + 1) * vocab);
    let m = 0;
    for (let i = 0; i < vocab; i++) {
      const d = Math.abs(ra[i] - rb[i]);
      if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
    }
    const [top1A] = top2(ra);
    const [top1B, marginB] = top2(rb);
    positions.push({ position: t, maxAbsDiff: m, top1A, top1B, agree: top1A === top1B, marginB });
  }
  return {
    positions,
    maxAbsDiff: positions.reduce((m, p) => (p.maxAbsDiff > m ? p.maxAbsDiff : m), 0),
    top1Agree: positions.filter((p) => p.agree).length,
  };
}
