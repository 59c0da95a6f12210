// Fused softmax + cross-entropy over a chunk of logit rows, one workgroup per row, in place.
// Row r of the chunk is global row row0 + r; coef[row] = w_t / count (0 for rows that are not targets: the last
// token of a sequence, padding) and target[row] its next token. Writes
//   row_loss[row] = coef * (logsumexp(x) - x[target])
//   x[v]          = grad_scale * coef * (softmax(x)[v] - [v == target])     (d(grad_scale * loss)/dlogits)
// Max-subtracted, so large logits do not overflow. train_loss_sum then adds row_loss up in a fixed order.
struct Params {
  rows: u32,
  vocab: u32,
  row0: u32,
  grad_scale: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> coef: array<f32>;
@group(0) @binding(2) var<storage, read> target_ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (lid < k) {
      if (is_max) { partial[lid] = max(partial[lid], partial[lid + k]); } else { partial[lid] += partial[lid + k]; }
    }
    workgroupBarrier();
  }
  let r = partial[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let r = wg.x + wg.y * 65535u;
  if (r >= p.rows) { return; }
  let lid = lid3.x;
  let row = p.row0 + r;
  let base = r * p.vocab;
  let c = coef[row];
  let tgt = target_ids[row];
  var mx = -3.0e38;
  for (var v = lid; v < p.vocab; v += WG) { mx = max(mx, x[base + v]); }
  mx = reduce(lid, mx, true);
  var sum = 0.0;
  for (var v = lid; v < p.vocab; v += WG) { sum += exp(x[base + v] - mx); }
  sum = reduce(lid, sum, false);
  let lse = mx + log(sum);
  if (lid == 0u) { row_loss[row] = select(0.0, c * (lse - x[base + tgt]), c != 0.0); }
  // Every thread has read what it needs of the row (x[base + tgt] above by thread 0) before anyone writes.
  workgroupBarrier();
  let g = p.grad_scale * c;
  for (var v = lid; v < p.vocab; v += WG) {
    let prob = exp(x[base + v] - lse);
    x[base + v] = g * (prob - select(0.0, 1.0, v == tgt));
  }
}
