// Linear layer for a middling number of rows (batched decode), in two passes. Pass 1 (main): workgroup
// (column tile, row tile, segment) computes a 32x64 tile's sums over one 64-value segment of k, each a
// sequential fma chain from 0, into part[segment][m][n]. Pass 2 (reduce): each output adds its segment sums in
// order, then bias, relu, residual. That is exactly linear.wgsl's and linear_small.wgsl's reduction order
// (batch invariance), with segments spread over workgroups: a few rows still fill the GPU.
// flags: bit 0 bias, bit 1 relu, bit 2 residual. Requires K % 4 == 0.
{{ENABLE_F16}}
struct Params {
  M: u32,
  N: u32,
  K: u32,
  ldy: u32,
  ycol: u32,
  flags: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<{{A}}>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<{{W}}>>;
@group(0) @binding(3) var<storage, read> bias: array<{{W}}>;
@group(0) @binding(4) var<storage, read> residual: array<{{A}}>;
@group(0) @binding(5) var<storage, read_write> y: array<{{Y}}>;
@group(0) @binding(6) var<storage, read_write> part: array<f32>;

const SEG4: u32 = 16u;     // vec4s per segment (64 values)
const STRIDE: u32 = 17u;   // padded row stride in vec4s
var<workgroup> xs: array<vec4<f32>, 32 * 17>;
var<workgroup> ws: array<vec4<f32>, 64 * 17>;

var<private> seg_id: u32;

fn put(m: u32, n: u32, v: f32) {
  if (m < p.M && n < p.N) { part[(seg_id * p.M + m) * p.N + n] = v; }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  // Both entry points name every binding so their automatic layouts agree.
  _ = bias[0]; _ = residual[0]; _ = y[0];
  let n0 = wg.x * 64u;
  let m0 = wg.y * 32u;
  seg_id = wg.z;
  let tx = lid.x;
  let ty = lid.y;
  let K4 = p.K / 4u;
  let q0 = seg_id * SEG4;
  for (var e = li; e < 32u * SEG4; e += 256u) {
    let r = e / SEG4;
    let q = e % SEG4;
    var v = vec4<f32>();
    if (m0 + r < p.M && q0 + q < K4) { v = vec4<f32>(x[(m0 + r) * K4 + q0 + q]); }
    xs[r * STRIDE + q] = v;
  }
  for (var e = li; e < 64u * SEG4; e += 256u) {
    let r = e / SEG4;
    let q = e % SEG4;
    var v = vec4<f32>();
    if (n0 + r < p.N && q0 + q < K4) { v = vec4<f32>(w[(n0 + r) * K4 + q0 + q]); }
    ws[r * STRIDE + q] = v;
  }
  workgroupBarrier();
  var s00 = 0.0;
  var s01 = 0.0;
  var s02 = 0.0;
  var s03 = 0.0;
  var s10 = 0.0;
  var s11 = 0.0;
  var s12 = 0.0;
  var s13 = 0.0;
  for (var q = 0u; q < SEG4; q++) {
      let a0 = xs[ty * STRIDE + q];
      let a1 = xs[(ty + 16u) * STRIDE + q];
      let b0 = ws[tx * STRIDE + q];
      let b1 = ws[(tx + 16u) * STRIDE + q];
      let b2 = ws[(tx + 32u) * STRIDE + q];
      let b3 = ws[(tx + 48u) * STRIDE + q];
      s00 = fma(a0.x, b0.x, s00);
      s01 = fma(a0.x, b1.x, s01);
      s02 = fma(a0.x, b2.x, s02);
      s03 = fma(a0.x, b3.x, s03);
      s10 = fma(a1.x, b0.x, s10);
      s11 = fma(a1.x, b1.x, s11);
      s12 = fma(a1.x, b2.x, s12);
      s13 = fma(a1.x, b3.x, s13);
      s00 = fma(a0.y, b0.y, s00);
      s01 = fma(a0.y, b1.y, s01);
      s02 = fma(a0.y, b2.y, s02);
      s03 = fma(a0.y, b3.y, s03);
      s10 = fma(a1.y, b0.y, s10);
      s11 = fma(a1.y, b1.y, s11);
      s12 = fma(a1.y, b2.y, s12);
      s13 = fma(a1.y, b3.y, s13);
      s00 = fma(a0.z, b0.z, s00);
      s01 = fma(a0.z, b1.z, s01);
      s02 = fma(a0.z, b2.z, s02);
      s03 = fma(a0.z, b3.z, s03);
      s10 = fma(a1.z, b0.z, s10);
      s11 = fma(a1.z, b1.z, s11);
      s12 = fma(a1.z, b2.z, s12);
      s13 = fma(a1.z, b3.z, s13);
      s00 = fma(a0.w, b0.w, s00);
      s01 = fma(a0.w, b1.w, s01);
      s02 = fma(a0.w, b2.w, s02);
      s03 = fma(a0.w, b3.w, s03);
      s10 = fma(a1.w, b0.w, s10);
      s11 = fma(a1.w, b1.w, s11);
      s12 = fma(a1.w, b2.w, s12);
      s13 = fma(a1.w, b3.w, s13);
  }
  put(m0 + ty + 0u, n0 + tx + 0u, s00);
  put(m0 + ty + 0u, n0 + tx + 16u, s01);
  put(m0 + ty + 0u, n0 + tx + 32u, s02);
  put(m0 + ty + 0u, n0 + tx + 48u, s03);
  put(m0 + ty + 16u, n0 + tx + 0u, s10);
  put(m0 + ty + 16u, n0 + tx + 16u, s11);
  put(m0 + ty + 16u, n0 + tx + 32u, s12);
  put(m0 + ty + 16u, n0 + tx + 48u, s13);
}

@compute @workgroup_size(256)
fn reduce(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  _ = x[0]; _ = w[0];
  let i = (wg.x + wg.y * 65535u) * 256u + li;
  if (i >= p.M * p.N) { return; }
  let m = i / p.N;
  let n = i % p.N;
  let nseg = (p.K + 63u) / 64u;
  var total = 0.0;
  for (var s = 0u; s < nseg; s++) { total += part[(s * p.M + m) * p.N + n]; }
  var v = total;
  if ((p.flags & 1u) != 0u) { v += f32(bias[n]); }
  if ((p.flags & 2u) != 0u) { v = max(v, 0.0); }
  if ((p.flags & 4u) != 0u) { v += f32(residual[m * p.N + n]); }
  y[m * p.ldy + p.ycol + n] = {{Y}}(v);
}
