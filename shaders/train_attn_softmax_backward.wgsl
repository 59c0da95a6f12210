// Backward of train_attn_softmax, one workgroup per row, in place over dP:
//   dS[i, j] = scale * P[i, j] * (dP[i, j] - sum_k P[i, k] dP[i, k])   for j <= i, else 0
// (the attention scale of S = scale * Q K^T folded in). P comes from the recomputed forward.
struct Params {
  rows: u32,
  L: u32,
  scale: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read_write> s: array<f32>;

const WG: u32 = 128u;
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
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let lid = lid3.x;
  let i = row % p.L;
  let base = row * p.L;
  var d = 0.0;
  for (var j = lid; j <= i; j += WG) { d = fma(probs[base + j], s[base + j], d); }
  d = reduce(lid, d, false);
  for (var j = lid; j < p.L; j += WG) {
    var v = 0.0;
    if (j <= i) { v = p.scale * probs[base + j] * (s[base + j] - d); }
    s[base + j] = v;
  }
}
