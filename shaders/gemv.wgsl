// Linear layer for a few rows (decode): the contract of linear.wgsl for M <= 4, memory-bound on the weights.
// Each group of 32 threads streams one weight row with vec4 loads (coalesced) and dots it with up to four
// input rows at once (accumulators are the four lanes of a vec4: registers, not an array); partial sums meet in
// a fixed-order tree. With LN = true the input rows are LayerNorm-ed on the fly (gamma, beta bound), which
// saves the separate LayerNorm dispatch before attention and the MLP in pre-LN models.
// flags: bit 0 bias, bit 1 relu, bit 2 residual. Requires K % 4 == 0.
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

const LANES: u32 = 32u;
const OUTS: u32 = 8u;   // weight rows per workgroup
const LN: bool = {{LN}};
var<workgroup> red: array<vec4<f32>, 256>;
var<workgroup> stats: array<vec4<f32>, 2>;  // per input row: mean, rstd

fn tree_sum(li: u32, v: vec4<f32>) -> vec4<f32> {
  red[li] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn row_index(m: u32) -> u32 {
  return min(m, p.M - 1u);  // rows past M repeat the last one; their sums are discarded
}

fn load_x(m: u32, k: u32, K4: u32) -> vec4<f32> {
  let v = vec4<f32>(x[row_index(m) * K4 + k]);
  if (!LN) { return v; }
  let mean = stats[0][m];
  let rstd = stats[1][m];
  return (v - mean) * rstd * vec4<f32>(ln_gamma[k]) + vec4<f32>(ln_beta[k]);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let K4 = p.K / 4u;
  if (LN) {
    // Every workgroup recomputes the rows' statistics: M * K reads, noise next to its weight rows.
    var s = vec4<f32>();
    for (var k = li; k < K4; k += 256u) {
      s += vec4<f32>(dot(vec4<f32>(x[row_index(0u) * K4 + k]), vec4(1.0)), dot(vec4<f32>(x[row_index(1u) * K4 + k]), vec4(1.0)),
                     dot(vec4<f32>(x[row_index(2u) * K4 + k]), vec4(1.0)), dot(vec4<f32>(x[row_index(3u) * K4 + k]), vec4(1.0)));
    }
    let mean = tree_sum(li, s) / f32(p.K);
    var v = vec4<f32>();
    for (var k = li; k < K4; k += 256u) {
      let d0 = vec4<f32>(x[row_index(0u) * K4 + k]) - mean.x;
      let d1 = vec4<f32>(x[row_index(1u) * K4 + k]) - mean.y;
      let d2 = vec4<f32>(x[row_index(2u) * K4 + k]) - mean.z;
      let d3 = vec4<f32>(x[row_index(3u) * K4 + k]) - mean.w;
      v += vec4<f32>(dot(d0, d0), dot(d1, d1), dot(d2, d2), dot(d3, d3));
    }
    let rstd = inverseSqrt(tree_sum(li, v) / f32(p.K) + p.eps);
    if (li == 0u) { stats[0] = mean; stats[1] = rstd; }
    workgroupBarrier();
  }
  let lane = li % LANES;
  let o = li / LANES;
  let n = (wg.x + wg.y * 65535u) * OUTS + o;
  var acc = vec4<f32>();
  if (n < p.N) {
    let wrow = n * K4;
    for (var k = lane; k < K4; k += LANES) {
      let wv = vec4<f32>(w[wrow + k]);
      acc += vec4<f32>(dot(wv, load_x(0u, k, K4)), dot(wv, load_x(1u, k, K4)), dot(wv, load_x(2u, k, K4)), dot(wv, load_x(3u, k, K4)));
    }
  }
  red[li] = acc;
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  if (lane == 0u && n < p.N) {
    let total = red[li];
    for (var m = 0u; m < p.M; m++) {
      var v = total[m];
      if ((p.flags & 1u) != 0u) { v += f32(bias[n]); }
      if ((p.flags & 2u) != 0u) { v = max(v, 0.0); }
      if ((p.flags & 4u) != 0u) { v += f32(residual[m * p.N + n]); }
      y[m * p.ldy + p.ycol + n] = {{Y}}(v);
    }
  }
}
