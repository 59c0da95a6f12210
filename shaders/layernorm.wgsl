// LayerNorm over the last dim, one workgroup per row, statistics in f32 with a fixed reduction order
// (two passes: mean, then variance of the centred values, as torch does, for accuracy).
{{ENABLE_F16}}
struct Params {
  num_rows: u32,
  dim: u32,
  eps: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<{{A}}>;
@group(0) @binding(2) var<storage, read> gamma: array<{{W}}>;
@group(0) @binding(3) var<storage, read> beta: array<{{W}}>;
@group(0) @binding(4) var<storage, read_write> y: array<{{A}}>;

const WG: u32 = 128u;
var<workgroup> partial: array<f32, WG>;

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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.num_rows) { return; }
  let lid = lid3.x;
  let base = row * p.dim;
  var s = 0.0;
  for (var i = lid; i < p.dim; i += WG) { s += f32(x[base + i]); }
  let mean = reduce_sum(lid, s) / f32(p.dim);
  var v = 0.0;
  for (var i = lid; i < p.dim; i += WG) { let d = f32(x[base + i]) - mean; v = fma(d, d, v); }
  let rstd = inverseSqrt(reduce_sum(lid, v) / f32(p.dim) + p.eps);
  for (var i = lid; i < p.dim; i += WG) {
    y[base + i] = {{A}}(fma((f32(x[base + i]) - mean) * rstd, f32(gamma[i]), f32(beta[i])));
  }
}
