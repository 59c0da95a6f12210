// Zero a window of a buffer (gradients before accumulation), one vec4 per thread.
struct Params {
  count: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * 65535u) * 256u + li;
  if (i < p.count) { out[i] = vec4<f32>(); }
}
