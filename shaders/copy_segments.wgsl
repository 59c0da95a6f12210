// Many shard copies in one dispatch (a tensor-parallel rank's weight sync): segment s copies rows x cols
// elements, dst[dst_base + i] = src[src_base + (i / cols) * src_stride + i % cols] for i < rows * cols, converting
// the element type. Segments lie end to end in one flat index space (start = the elements of the segments before
// it); each thread finds its segment by binary search over the starts. The table rides in the params uniform.
{{ENABLE_F16}}
struct Segment {
  start: u32,
  cols: u32,
  src_base: u32,
  src_stride: u32,
  dst_base: u32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
struct Params {
  num_segments: u32,
  total: u32,
  pad0: u32,
  pad1: u32,
  segs: array<Segment, {{MAX_SEGMENTS}}>,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<{{S}}>;
@group(0) @binding(2) var<storage, read_write> dst: array<{{D}}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * 65535u) * 256u + lid;
  if (i >= p.total) { return; }
  // The last segment whose start is <= i.
  var lo = 0u;
  var hi = p.num_segments - 1u;
  while (lo < hi) {
    let mid = (lo + hi + 1u) / 2u;
    if (p.segs[mid].start <= i) { lo = mid; } else { hi = mid - 1u; }
  }
  let s = p.segs[lo];
  let local = i - s.start;
  dst[s.dst_base + local] = {{D}}(src[s.src_base + (local / s.cols) * s.src_stride + local % s.cols]);
}
