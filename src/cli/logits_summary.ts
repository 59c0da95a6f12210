/** Per-position logsumexp and top-5 of a [len, vocab] logits array, plus the last row (the CLI's logits output). */
export function logitsSummary(logits: Float32Array, len: number, vocab: number): {
  logsumexp: number[]; top5_ids: number[][]; top5_logits: number[][]; last_logits: number[];
} {
  const logsumexp: number[] = [], top5Ids: number[][] = [], top5Logits: number[][] = [];
  for (let t = 0; t < len; t++) {
    const row = logits.subarray(t * vocab, (t + 1) * vocab);
    let mx = -Infinity;
    for (let i = 0; i < vocab; i++) mx = Math.max(mx, row[i]);
    let s = 0;
    for (let i = 0; i < vocab; i++) s += Math.exp(row[i] - mx);
    logsumexp.push(mx + Math.log(s));
    const top: number[] = [];
    for (let i = 0; i < vocab; i++) {
      if (top.length < 5 || row[i] > row[top[4]]) {
        top.push(i);
        top.sort((a, b) => row[b] - row[a] || a - b);
        if (top.length > 5) top.pop();
      }
    }
    top5Ids.push(top);
    top5Logits.push(top.map((i) => row[i]));
  }
  return { logsumexp, top5_ids: top5Ids, top5_logits: top5Logits, last_logits: Array.from(logits.subarray((len - 1) * vocab, len * vocab)) };
}
