// Tensor-parallel all-reduce on one device: element i of every rank's buffer becomes the sum over the ranks,
// added in rank order ((r0 + r1) + r2) + r3 in f32, so every rank holds the same bits. RANKS <= 4; unused
// bindings get distinct dummy buffers (a writable binding may not alias another).
{{ENABLE_F16}}
struct Params {
  count: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> r0: array<{{A}}>;
@group(0) @binding(2) var<storage, read_write> r1: array<{{A}}>;
@group(0) @binding(3) var<storage, read_write> r2: array<{{A}}>;
@group(0) @binding(4) var<storage, read_write> r3: array<{{A}}>;

const RANKS: u32 = {{RANKS}}u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * 65535u) * 256u + lid;
  if (i >= p.count) { return; }
  var s = f32(r0[i]) + f32(r1[i]);
  if (RANKS > 2u) { s += f32(r2[i]); }
  if (RANKS > 3u) { s += f32(r3[i]); }
  let v = {{A}}(s);
  r0[i] = v;
  r1[i] = v;
  if (RANKS > 2u) { r2[i] = v; }
  if (RANKS > 3u) { r3[i] = v; }
}
