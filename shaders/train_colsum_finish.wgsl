// Second pass of train_colsum: out[n] += sum over chunks, in order, of partial[chunk, n].
struct Params {
  N: u32,
  chunks: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let n = gid.x;
  if (n >= p.N) { return; }
  var s = out[n];
  for (var c = 0u; c < p.chunks; c++) { s += partial[c * p.N + n]; }
  out[n] = s;
}
