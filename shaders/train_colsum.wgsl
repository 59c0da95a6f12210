// Column sums for bias and LayerNorm-parameter gradients, deterministic in two passes:
//   main:   partial[chunk, n] = sum over rows m of chunk (64 rows: many workgroups, short chains) of v(m, n)
//   then train_colsum_finish: out[n] += sum over chunks (in order) of partial[chunk, col0 + n]
// with v(m, n) = y[off + m * ld + n], or, with XHAT, y[m * ld + n] * (x[m * ld + n] - mean_m) * rstd_m
// (dgamma of a LayerNorm; stats from train_layernorm_backward). With BOTH (and XHAT), one read of y gives both
// a LayerNorm's sums: dgamma's at partial[chunk, n], dbeta's (plain y) at partial[chunk, N + n], each added in the
// same order as alone. A workgroup is 64 columns x 4 row lanes.
struct Params {
  M: u32,
  N: u32,
  ld: u32,
  off: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> partial: array<f32>;

const XHAT: bool = {{XHAT}};
const BOTH: bool = {{BOTH}};
const ROWS: u32 = 64u;
var<workgroup> lanes: array<f32, 256>;
var<workgroup> lanes_b: array<f32, 256>;

@compute @workgroup_size(64, 4)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let n = wg.x * 64u + lid.x;
  let chunk = wg.y;
  var s = 0.0;
  var sb = 0.0;
  if (n < p.N) {
    let end = min(p.M, (chunk + 1u) * ROWS);
    for (var m = chunk * ROWS + lid.y; m < end; m += 4u) {
      let i = p.off + m * p.ld + n;
      if (XHAT) {
        let st = stats[m];
        s = fma(y[i], (x[i] - st.x) * st.y, s);
        if (BOTH) { sb += y[i]; }
      } else {
        s += y[i];
      }
    }
  }
  lanes[lid.y * 64u + lid.x] = s;
  if (BOTH) { lanes_b[lid.y * 64u + lid.x] = sb; }
  workgroupBarrier();
  if (lid.y == 0u && n < p.N) {
    let width = select(p.N, 2u * p.N, BOTH);
    partial[chunk * width + n] = ((lanes[lid.x] + lanes[64u + lid.x]) + lanes[128u + lid.x]) + lanes[192u + lid.x];
    if (BOTH) {
      partial[chunk * width + p.N + n] = ((lanes_b[lid.x] + lanes_b[64u + lid.x]) + lanes_b[128u + lid.x]) + lanes_b[192u + lid.x];
    }
  }
}
