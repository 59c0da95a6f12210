// Deterministic scatter-add of token rows into a table gradient (token and position embeddings), no atomics.
// The host sorts the batch's token indices by destination row (`order`), lists the distinct rows (`rows`) and
// where each one's run starts (`starts`, one more entry than rows). Workgroup u owns row rows[u] and adds its
// tokens' src rows in sorted order, so every run gives the same bits. Large tables are bound in windows of
// [row_start, row_start + row_count); a row outside the bound window is left to that window's dispatch.
struct Params {
  num_rows: u32,
  dim: u32,
  row_start: u32,
  row_count: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
@group(0) @binding(2) var<storage, read> starts: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read> src: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let u = wg.x + wg.y * 65535u;
  if (u >= p.num_rows) { return; }
  let row = rows[u];
  if (row < p.row_start || row >= p.row_start + p.row_count) { return; }
  let dst = (row - p.row_start) * p.dim;
  let begin = starts[u];
  let end = starts[u + 1u];
  for (var i = lid.x; i < p.dim; i += 64u) {
    var s = grad[dst + i];
    for (var k = begin; k < end; k++) { s += src[order[k] * p.dim + i]; }
    grad[dst + i] = s;
  }
}
