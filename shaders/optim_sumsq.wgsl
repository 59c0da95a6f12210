// Pass 1 of the global gradient norm: the sum of squares of each fixed chunk of CHUNK = 256 * 16 elements of a
// gradient window, written to partials[partial_base + chunk]. Chunks, thread strides and the tree below are fixed
// by the tensor's size alone, so the result is bit-for-bit the same every run (no atomics).
struct Params {
  count: u32,         // elements in this window
  partial_base: u32,  // where this window's chunk sums go in `partials`
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;

const WG: u32 = 256u;
const PER_THREAD: u32 = 16u;
var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let chunk = wg.x + wg.y * 65535u;
  let lid = lid3.x;
  let start = chunk * WG * PER_THREAD;
  var s = 0.0;
  if (start < p.count) {
    for (var k = 0u; k < PER_THREAD; k++) {
      let i = start + k * WG + lid;
      if (i < p.count) { let g = grad[i]; s = fma(g, g, s); }
    }
  }
  sums[lid] = s;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    if (lid < w) { sums[lid] += sums[lid + w]; }
    workgroupBarrier();
  }
  if (lid == 0u && start < p.count) { partials[p.partial_base + chunk] = sums[0]; }
}
