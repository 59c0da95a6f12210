// Linear layer for few rows (decode): the same contract as linear.wgsl, specialised for M <= ROWS.
// Memory-bound on the weights: each group of 32 threads streams one weight row with vec4 loads
// (coalesced), keeps ROWS partial sums, and reduces them in workgroup memory in a fixed order.
// Requires K % 4 == 0.
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
@group(0) @binding(2) var<storage, read> w: array<vec4<{{W}}>>;
@group(0) @binding(3) var<storage, read> bias: array<{{W}}>;
@group(0) @binding(4) var<storage, read> residual: array<{{A}}>;
@group(0) @binding(5) var<storage, read_write> y: array<{{Y}}>;

const ROWS: u32 = {{ROWS}}u;
const LANES: u32 = 32u;
const OUTS: u32 = 8u;   // outputs (weight rows) per workgroup
var<workgroup> red: array<array<f32, 256>, ROWS>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let lane = li % LANES;
  let o = li / LANES;
  let n = (wg.x + wg.y * 65535u) * OUTS + o;
  var acc: array<f32, ROWS>;
  if (n < p.N) {
    let k4 = p.K / 4u;
    let wrow = n * k4;
    for (var k = lane; k < k4; k += LANES) {
      let wv = vec4<f32>(w[wrow + k]);
      for (var m = 0u; m < ROWS; m++) {
        if (m < p.M) {
          let xb = m * p.K + 4u * k;
          let xv = vec4<f32>(f32(x[xb]), f32(x[xb + 1u]), f32(x[xb + 2u]), f32(x[xb + 3u]));
          acc[m] += dot(wv, xv);
        }
      }
    }
  }
  for (var m = 0u; m < ROWS; m++) { red[m][li] = acc[m]; }
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var m = 0u; m < ROWS; m++) { red[m][li] += red[m][li + s]; }
    }
    workgroupBarrier();
  }
  if (lane == 0u && n < p.N) {
    for (var m = 0u; m < ROWS; m++) {
      if (m >= p.M) { break; }
      var v = red[m][li];
      if ((p.flags & 1u) != 0u) { v += f32(bias[n]); }
      if ((p.flags & 2u) != 0u) { v = max(v, 0.0); }
      if ((p.flags & 4u) != 0u) { v += f32(residual[m * p.N + n]); }
      y[m * p.ldy + p.ycol + n] = {{Y}}(v);
    }
  }
}
