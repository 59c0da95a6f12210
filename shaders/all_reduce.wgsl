// Tensor-parallel all-reduce on one device: element i of every rank's buffer becomes the sum over the ranks,
// added in rank order ((r0 + r1) + r2) + r3 in f32, so every rank holds the same bits. One entry point per rank
// count (main2, main3, main4), so each binds exactly its ranks' buffers.
{{ENABLE_F16}}
struct Params {
  count: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> r0: array<{{A}}>;
@group(0) @binding(2) var<storage, read_write> r1: array<{{A}}>;
@group(0) @binding(3) var<storage, read_write> r2: array<{{A}}>;
@group(0) @binding(4) var<storage, read_write> r3: array<{{A}}>;

fn index(wg: vec3u, lid: u32) -> u32 {
  return (wg.x + wg.y * 65535u) * 256u + lid;
}

@compute @workgroup_size(256)
fn main2(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = index(wg, lid);
  if (i >= p.count) { return; }
  let v = {{A}}(f32(r0[i]) + f32(r1[i]));
  r0[i] = v;
  r1[i] = v;
}

@compute @workgroup_size(256)
fn main3(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = index(wg, lid);
  if (i >= p.count) { return; }
  let v = {{A}}(f32(r0[i]) + f32(r1[i]) + f32(r2[i]));
  r0[i] = v;
  r1[i] = v;
  r2[i] = v;
}

@compute @workgroup_size(256)
fn main4(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = index(wg, lid);
  if (i >= p.count) { return; }
  let v = {{A}}(f32(r0[i]) + f32(r1[i]) + f32(r2[i]) + f32(r3[i]));
  r0[i] = v;
  r1[i] = v;
  r2[i] = v;
  r3[i] = v;
}
