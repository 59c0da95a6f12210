// Combines the split-K partitions of paged_attention.wgsl in partition order:
// M = max_p m_p, L = sum_p l_p * exp(m_p - M), out = sum_p acc_p * exp(m_p - M) / L.
// Partitions past a token's context have l = 0 and contribute nothing.
{{ENABLE_F16}}
struct Params {
  num_tokens: u32,
  num_heads: u32,
  head_dim: u32,
  num_partitions: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read> part_acc: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<{{A}}>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = wg.x;
  let h = wg.y;
  let base = (t * p.num_heads + h) * p.num_partitions;
  var M = -3.0e38;
  for (var q = 0u; q < p.num_partitions; q++) {
    if (stats[2u * (base + q) + 1u] > 0.0) { M = max(M, stats[2u * (base + q)]); }
  }
  var L = 0.0;
  for (var q = 0u; q < p.num_partitions; q++) {
    let l = stats[2u * (base + q) + 1u];
    if (l > 0.0) { L += l * exp(stats[2u * (base + q)] - M); }
  }
  let hidden = p.num_heads * p.head_dim;
  for (var d = lid.x; d < p.head_dim; d += 64u) {
    var o = 0.0;
    for (var q = 0u; q < p.num_partitions; q++) {
      let l = stats[2u * (base + q) + 1u];
      if (l > 0.0) { o += part_acc[(base + q) * p.head_dim + d] * exp(stats[2u * (base + q)] - M); }
    }
    out[t * hidden + h * p.head_dim + d] = {{A}}(o / L);
  }
}
