// Second pass of train_colsum: out[n] += the sum over chunks of partial[chunk, col0 + n] (rows of `stride`
// partials: one column sum pass may feed several outputs), n < N, in a fixed order: four lanes
// each sum every fourth chunk (lane l: chunks l, l + 4, ...), then ((lane 0 + lane 1) + lane 2) + lane 3.
// A workgroup is 64 columns x 4 lanes (one lane per column left the chains 64 chunks long).
struct Params {
  N: u32,
  chunks: u32,
  stride: u32,
  col0: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> lanes: array<f32, 256>;

@compute @workgroup_size(64, 4)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let n = wg.x * 64u + lid.x;
  var s = 0.0;
  if (n < p.N) {
    for (var c = lid.y; c < p.chunks; c += 4u) { s += partial[c * p.stride + p.col0 + n]; }
  }
  lanes[lid.y * 64u + lid.x] = s;
  workgroupBarrier();
  if (lid.y == 0u && n < p.N) {
    out[n] = out[n] + (((lanes[lid.x] + lanes[64u + lid.x]) + lanes[128u + lid.x]) + lanes[192u + lid.x]);
  }
}
