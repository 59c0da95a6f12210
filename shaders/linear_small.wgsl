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
// KVW (the fused QKV projection of a decode step): outputs n in [kv_hidden, 3 * kv_hidden) are also written to
// the paged KV cache at the row's slot, as kv_cache_write.wgsl would (keys, then values, rounded through the
// output type first): one dispatch per layer fewer.
{{ENABLE_F16}}
struct Params {
  M: u32,
  N: u32,
  K: u32,
  ldy: u32,
  ycol: u32,
  flags: u32,
  eps: f32,
  kv_hidden: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<{{A}}>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<{{W}}>>;
@group(0) @binding(3) var<storage, read> bias: array<{{W}}>;
@group(0) @binding(4) var<storage, read> residual: array<{{A}}>;
@group(0) @binding(5) var<storage, read_write> y: array<{{Y}}>;
@group(0) @binding(6) var<storage, read> ln_gamma: array<vec4<{{W}}>>;
@group(0) @binding(7) var<storage, read> ln_beta: array<vec4<{{W}}>>;
//#if KVW
@group(0) @binding(8) var<storage, read> slot_mapping: array<u32>;
@group(0) @binding(9) var<storage, read_write> key_cache: array<{{KV}}>;
@group(0) @binding(10) var<storage, read_write> value_cache: array<{{KV}}>;
//#endif

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
    // A whole segment's weights (16 vec4s) in flight at once, so the segment costs one memory round trip; the
    // fma chain itself stays in k order.
    var q = q0;
    if (q0 + 16u <= q1) {
      let w0 = vec4<f32>(w[wrow + q]); let w1 = vec4<f32>(w[wrow + q + 1u]);
      let w2 = vec4<f32>(w[wrow + q + 2u]); let w3 = vec4<f32>(w[wrow + q + 3u]);
      let w4 = vec4<f32>(w[wrow + q + 4u]); let w5 = vec4<f32>(w[wrow + q + 5u]);
      let w6 = vec4<f32>(w[wrow + q + 6u]); let w7 = vec4<f32>(w[wrow + q + 7u]);
      let w8 = vec4<f32>(w[wrow + q + 8u]); let w9 = vec4<f32>(w[wrow + q + 9u]);
      let w10 = vec4<f32>(w[wrow + q + 10u]); let w11 = vec4<f32>(w[wrow + q + 11u]);
      let w12 = vec4<f32>(w[wrow + q + 12u]); let w13 = vec4<f32>(w[wrow + q + 13u]);
      let w14 = vec4<f32>(w[wrow + q + 14u]); let w15 = vec4<f32>(w[wrow + q + 15u]);
      acc = step(acc, q, w0); acc = step(acc, q + 1u, w1); acc = step(acc, q + 2u, w2); acc = step(acc, q + 3u, w3);
      acc = step(acc, q + 4u, w4); acc = step(acc, q + 5u, w5); acc = step(acc, q + 6u, w6); acc = step(acc, q + 7u, w7);
      acc = step(acc, q + 8u, w8); acc = step(acc, q + 9u, w9); acc = step(acc, q + 10u, w10); acc = step(acc, q + 11u, w11);
      acc = step(acc, q + 12u, w12); acc = step(acc, q + 13u, w13); acc = step(acc, q + 14u, w14); acc = step(acc, q + 15u, w15);
      q = q1;
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
      let yv = {{Y}}(v);
      y[m * p.ldy + p.ycol + no] = yv;
//#if KVW
      if (no >= p.kv_hidden) {
        let dst = slot_mapping[m] * p.kv_hidden;
        if (no < 2u * p.kv_hidden) { key_cache[dst + no - p.kv_hidden] = {{KV}}(yv); }
        else { value_cache[dst + no - 2u * p.kv_hidden] = {{KV}}(yv); }
      }
//#endif
    }
  }
}
