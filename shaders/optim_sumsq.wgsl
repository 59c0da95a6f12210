// Pass 1 of the global gradient norm: the sum of squares of each fixed chunk of CHUNK = 256 * 16 elements of a
// gradient tensor, written to partials[slot]. One dispatch covers every chunk lying in one binding window of one
// buffer (a gradient arena holds all of OPT-125m's: one dispatch, not one per tensor); chunk c of the dispatch is
// described by table[first + c] = (element offset in the window, elements, slot). Chunks, thread strides and the
// tree below are fixed by each tensor's size alone, so the result is bit-for-bit the same every run (no atomics).
struct Params {
  first: u32,   // this dispatch's first entry of `table`
  chunks: u32,  // entries it covers
}
struct Chunk {
  offset: u32,
  count: u32,
  slot: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<Chunk>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

const WG: u32 = 256u;
const PER_THREAD: u32 = 16u;
var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let c = wg.x + wg.y * 65535u;
  if (c >= p.chunks) { return; }
  let lid = lid3.x;
  let d = table[p.first + c];
  var s = 0.0;
  for (var k = 0u; k < PER_THREAD; k++) {
    let j = k * WG + lid;
    if (j < d.count) { let g = grad[d.offset + j]; s = fma(g, g, s); }
  }
  sums[lid] = s;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    if (lid < w) { sums[lid] += sums[lid + w]; }
    workgroupBarrier();
  }
  if (lid == 0u) { partials[d.slot] = sums[0]; }
}
