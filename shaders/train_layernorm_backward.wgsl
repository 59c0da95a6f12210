// LayerNorm backward over rows of `dim`, one workgroup per row. The row statistics are recomputed from the
// saved input x (two passes, as the forward does) rather than saved: a row's x is read anyway.
//   dx (+)= rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * gamma,  xhat = (x - mean) * rstd
// and stats[row] = (mean, rstd) for the dgamma/dbeta column sums (train_colsum with XHAT). flags bit 0: dx +=.
struct Params {
  rows: u32,
  dim: u32,
  eps: f32,
  flags: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

const WG: u32 = 128u;
var<workgroup> partial: array<f32, WG>;
var<workgroup> partial2: array<vec2<f32>, WG>;

fn reduce_sum(lid: u32, v: f32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}

// Two sums in one tree (each component added as reduce_sum adds it: the same bits, half the barriers).
fn reduce_sum2(lid: u32, v: vec2<f32>) -> vec2<f32> {
  partial2[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial2[lid] += partial2[lid + s]; }
    workgroupBarrier();
  }
  let total = partial2[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let lid = lid3.x;
  let base = row * p.dim;
  let n = f32(p.dim);
  var s = 0.0;
  for (var i = lid; i < p.dim; i += WG) { s += x[base + i]; }
  let mean = reduce_sum(lid, s) / n;
  var v = 0.0;
  for (var i = lid; i < p.dim; i += WG) { let d = x[base + i] - mean; v = fma(d, d, v); }
  let rstd = inverseSqrt(reduce_sum(lid, v) / n + p.eps);
  var sg = 0.0;
  var sgx = 0.0;
  for (var i = lid; i < p.dim; i += WG) {
    let g = dy[base + i] * gamma[i];
    sg += g;
    sgx = fma(g, (x[base + i] - mean) * rstd, sgx);
  }
  let sums = reduce_sum2(lid, vec2<f32>(sg, sgx));
  let mg = sums.x / n;
  let mgx = sums.y / n;
  for (var i = lid; i < p.dim; i += WG) {
    let xhat = (x[base + i] - mean) * rstd;
    var r = rstd * (dy[base + i] * gamma[i] - mg - xhat * mgx);
    if ((p.flags & 1u) != 0u) { r += dx[base + i]; }
    dx[base + i] = r;
  }
  if (lid == 0u) { stats[row] = vec2<f32>(mean, rstd); }
}
