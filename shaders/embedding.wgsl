// Row gather: out[t, :] (+)= table[index[t] + index_offset - row_start, :] for tokens whose row falls in the
// bound window [row_start, row_start + row_count). Used for the token embedding (index = token id; a large
// table is bound in windows to stay under the per-binding limit) and the learned position embedding
// (index = position, offset 2 as OPT does, accumulate = 1). Each token's row lies in exactly one window.
{{ENABLE_F16}}
struct Params {
  num_tokens: u32,
  dim: u32,
  row_start: u32,
  row_count: u32,
  index_offset: u32,
  accumulate: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<{{W}}>;
@group(0) @binding(3) var<storage, read_write> out: array<{{A}}>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = wg.x + wg.y * 65535u;
  if (t >= p.num_tokens) { return; }
  let row = index[t] + p.index_offset;
  if (row < p.row_start || row >= p.row_start + p.row_count) { return; }
  let src = (row - p.row_start) * p.dim;
  let dst = t * p.dim;
  for (var i = lid.x; i < p.dim; i += 64u) {
    var v = f32(table[src + i]);
    if (p.accumulate != 0u) { v += f32(out[dst + i]); }
    out[dst + i] = {{A}}(v);
  }
}
