// Linear layer for a few rows (decode): the contract of linear.wgsl for M <= 4, memory-bound on the weights.
// Each thread computes one 64-value segment of one output's dot product for all (up to four) input rows,
// which ride in the lanes of a vec4 (ROWS = 1 skips the other lanes' loads), so each weight element is loaded once; a thread per output then adds
// the segment sums in order. Threads of a warp read consecutive segments of a row: coalesced.
//
// Reduction order: exactly linear.wgsl's (64-value segments, each a sequential fma chain from 0, added in
// order, then bias, relu, residual), so a row gets the same bits whichever kernel ran it and however many rows
// ran with it: batch invariance. With LN = true the input rows are LayerNorm-ed on the fly (gamma, beta bound),
// reproducing layernorm.wgsl's arithmetic bit for bit (its 128 partial sums, its tree, its fma, the rounding
// to the activation type): the pre-LN LayerNorm costs no dispatch.
// flags: bit 0 bias, bit 1 relu, bit 2 residual. Requires K % 4 == 0 and K <= 64 * 256.
{{ENABLE_F16}}
struct Params {
  M: u32,
  N: u32,
  K: u32,
  ldy: u32,
  ycol: u32,
  flags: u32,
  eps: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<{{A}}>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<{{W}}>>;
@group(0) @binding(3) var<storage, read> bias: array<{{W}}>;
@group(0) @binding(4) var<storage, read> residual: array<{{A}}>;
@group(0) @binding(5) var<storage, read_write> y: array<{{Y}}>;
@group(0) @binding(6) var<storage, read> ln_gamma: array<vec4<{{W}}>>;
@group(0) @binding(7) var<storage, read> ln_beta: array<vec4<{{W}}>>;

const WG: u32 = 256u;
const SEG: u32 = 64u;      // values per reduction segment (linear.wgsl's SEG4 * 4)
const LN_WG: u32 = 128u;   // layernorm.wgsl's workgroup size: its partial sums are reproduced here
const LN: bool = {{LN}};
const ROWS: u32 = {{ROWS}}u;  // 1 (a single row: no loads for the other lanes) or 4
var<workgroup> partial: array<f32, LN_WG>;
var<workgroup> mean_s: array<f32, 4>;
var<workgroup> rstd_s: array<f32, 4>;
var<workgroup> seg_s: array<vec4<f32>, WG>;

fn tree(lid: u32) -> f32 {
  workgroupBarrier();
  for (var s = LN_WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}

fn row(m: u32) -> u32 {
  return min(m, p.M - 1u);  // rows past M repeat the last one; their results are never stored
}

fn xs(i: u32) -> f32 {
  return f32(x[i / 4u][i % 4u]);
}

// Values 4q..4q+3 of input row m (LayerNorm-ed when LN, rounded to the activation type as LayerNorm stores them).
fn xq(m: u32, q: u32) -> vec4<f32> {
  var v = vec4<f32>(x[row(m) * (p.K / 4u) + q]);
  if (LN) {
    v = vec4<f32>(vec4<{{A}}>(fma((v - mean_s[row(m)]) * rstd_s[row(m)], vec4<f32>(ln_gamma[q]), vec4<f32>(ln_beta[q]))));
  }
  return v;
}

// One k-quad of the fma chain for all rows (lanes of acc), k in order.
fn step(acc: vec4<f32>, q: u32, wv: vec4<f32>) -> vec4<f32> {
  let x0 = xq(0u, q);
  var x1 = x0; var x2 = x0; var x3 = x0;
  if (ROWS > 1u) { x1 = xq(1u, q); x2 = xq(2u, q); x3 = xq(3u, q); }
  var a = fma(vec4<f32>(x0.x, x1.x, x2.x, x3.x), vec4<f32>(wv.x), acc);
  a = fma(vec4<f32>(x0.y, x1.y, x2.y, x3.y), vec4<f32>(wv.y), a);
  a = fma(vec4<f32>(x0.z, x1.z, x2.z, x3.z), vec4<f32>(wv.z), a);
  return fma(vec4<f32>(x0.w, x1.w, x2.w, x3.w), vec4<f32>(wv.w), a);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let K = p.K;
  let K4 = K / 4u;
  if (LN) {
    for (var m = 0u; m < p.M; m++) {
      let base = m * K;
      if (lid < LN_WG) {
        var s = 0.0;
        for (var i = lid; i < K; i += LN_WG) { s += xs(base + i); }
        partial[lid] = s;
      }
      let mean = tree(lid) / f32(K);
      if (lid < LN_WG) {
        var v = 0.0;
        for (var i = lid; i < K; i += LN_WG) { let d = xs(base + i) - mean; v = fma(d, d, v); }
        partial[lid] = v;
      }
      let rstd = inverseSqrt(tree(lid) / f32(K) + p.eps);
      if (lid == 0u) { mean_s[m] = mean; rstd_s[m] = rstd; }
    }
    workgroupBarrier();
  }
  let nseg = (K + SEG - 1u) / SEG;
  let outs = WG / nseg;                       // outputs per workgroup
  let n0 = (wg.x + wg.y * 65535u) * outs;
  let o = lid / nseg;
  let seg = lid % nseg;
  let n = n0 + o;
  var acc = vec4<f32>();
  if (o < outs && n < p.N) {
    let q0 = seg * (SEG / 4u);
    let q1 = min(q0 + SEG / 4u, K4);
    let wrow = n * K4;
    // Four weight vec4s in flight per step; the fma chain itself stays in k order.
    var q = q0;
    for (; q + 4u <= q1; q += 4u) {
      let w0 = vec4<f32>(w[wrow + q]);
      let w1 = vec4<f32>(w[wrow + q + 1u]);
      let w2 = vec4<f32>(w[wrow + q + 2u]);
      let w3 = vec4<f32>(w[wrow + q + 3u]);
      acc = step(acc, q, w0);
      acc = step(acc, q + 1u, w1);
      acc = step(acc, q + 2u, w2);
      acc = step(acc, q + 3u, w3);
    }
    for (; q < q1; q++) { acc = step(acc, q, vec4<f32>(w[wrow + q])); }
  }
  seg_s[lid] = acc;
  workgroupBarrier();
  if (lid < outs) {
    let no = n0 + lid;
    if (no >= p.N) { return; }
    var total = vec4<f32>();
    for (var s = 0u; s < nseg; s++) { total += seg_s[lid * nseg + s]; }
    for (var m = 0u; m < p.M; m++) {
      var v = total[m];
      if ((p.flags & 1u) != 0u) { v += f32(bias[no]); }
      if ((p.flags & 2u) != 0u) { v = max(v, 0.0); }
      if ((p.flags & 4u) != 0u) { v += f32(residual[m * p.N + no]); }
      y[m * p.ldy + p.ycol + no] = {{Y}}(v);
    }
  }
}
