// Copy a tensor-parallel rank's shard out of a full tensor (and convert its element type): dst[dst_base + i]
// for i < rows * cols is src[src_base + (i / cols) * src_stride + i % cols]. Row shards are one run of rows,
// column shards a column range of every row, replicated tensors the whole thing.
{{ENABLE_F16}}
struct Params {
  rows: u32,
  cols: u32,
  src_base: u32,
  src_stride: u32,
  dst_base: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<{{S}}>;
@group(0) @binding(2) var<storage, read_write> dst: array<{{D}}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * 65535u) * 256u + lid;
  if (i >= p.rows * p.cols) { return; }
  dst[p.dst_base + i] = {{D}}(src[p.src_base + (i / p.cols) * p.src_stride + i % p.cols]);
}
