// Causal attention softmax over whole sequences, one workgroup per score row, in place.
// Scores S are [Zc, L, L] for batch entries z0 .. z0 + Zc of batch * heads (z = b * heads + h), already scaled; row i of sequence b may
// attend to keys j <= i whose key_mask[b * L + j] is 1 (padding keys are excluded). A row with no allowed key
// (a padding query at the start of a left-padded row) becomes all zeros rather than NaN: its output is unused,
// and zeros keep NaN out of the gradients. Entries j > i are written as 0 so later matmuls may read whole rows.
struct Params {
  rows: u32,
  L: u32,
  heads: u32,
  z0: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> key_mask: array<u32>;
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

fn allowed(b: u32, i: u32, j: u32) -> bool {
  return j <= i && key_mask[b * p.L + j] != 0u;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let lid = lid3.x;
  let i = row % p.L;
  let b = (p.z0 + row / p.L) / p.heads;
  let base = row * p.L;
  var mx = -3.0e38;
  for (var j = lid; j <= i; j += WG) { if (allowed(b, i, j)) { mx = max(mx, s[base + j]); } }
  mx = reduce(lid, mx, true);
  var sum = 0.0;
  for (var j = lid; j <= i; j += WG) { if (allowed(b, i, j)) { sum += exp(s[base + j] - mx); } }
  sum = reduce(lid, sum, false);
  let inv = select(0.0, 1.0 / sum, sum > 0.0);
  for (var j = lid; j < p.L; j += WG) {
    var v = 0.0;
    if (allowed(b, i, j)) { v = exp(s[base + j] - mx) * inv; }
    s[base + j] = v;
  }
}
