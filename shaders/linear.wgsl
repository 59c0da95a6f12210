// Linear layer, tiled: y[m, ycol + n] = act(sum_k x[m, k] * w[n, k] + bias[n]) + residual[m, n]
// w is a torch Linear weight [N, K] (out, in), row-major. 64x64 output tile per workgroup, 16-deep K steps
// through workgroup memory, a 4x4 register block per thread; accumulation in f32 in k order.
// flags: bit 0 bias, bit 1 relu, bit 2 residual.
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
@group(0) @binding(1) var<storage, read> x: array<{{A}}>;
@group(0) @binding(2) var<storage, read> w: array<{{W}}>;
@group(0) @binding(3) var<storage, read> bias: array<{{W}}>;
@group(0) @binding(4) var<storage, read> residual: array<{{A}}>;
@group(0) @binding(5) var<storage, read_write> y: array<{{Y}}>;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
var<workgroup> xs: array<array<f32, 64>, 16>;
var<workgroup> ws: array<array<f32, 64>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let n0 = wg.x * BN;
  let m0 = wg.y * BM;
  let tx = lid.x;
  let ty = lid.y;
  var acc: array<array<f32, 4>, 4>;
  let lr = li / 4u;          // tile row this thread loads (0..63)
  let lk = (li % 4u) * 4u;   // first of the 4 k's it loads
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    for (var c = 0u; c < 4u; c++) {
      let k = k0 + lk + c;
      let xm = m0 + lr;
      var xv = 0.0;
      if (xm < p.M && k < p.K) { xv = f32(x[xm * p.K + k]); }
      xs[lk + c][lr] = xv;
      let wn = n0 + lr;
      var wv = 0.0;
      if (wn < p.N && k < p.K) { wv = f32(w[wn * p.K + k]); }
      ws[lk + c][lr] = wv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { a[i] = xs[kk][ty + 16u * i]; b[i] = ws[kk][tx + 16u * i]; }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(a[i], b[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty + 16u * i;
    if (m >= p.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx + 16u * j;
      if (n >= p.N) { continue; }
      var v = acc[i][j];
      if ((p.flags & 1u) != 0u) { v += f32(bias[n]); }
      if ((p.flags & 2u) != 0u) { v = max(v, 0.0); }
      if ((p.flags & 4u) != 0u) { v += f32(residual[m * p.N + n]); }
      y[m * p.ldy + p.ycol + n] = {{Y}}(v);
    }
  }
}
