// Scatter this step's keys and values into the paged cache through the slot mapping (vLLM's
// reshape_and_cache): cache[slot, :] = qkv[t, H + :] for keys and qkv[t, 2H + :] for values, where qkv is the
// fused projection output [T, 3H] and slot = block * block_size + offset. Cache layout per layer:
// [num_blocks * block_size, num_heads * head_dim].
{{ENABLE_F16}}
struct Params {
  num_tokens: u32,
  hidden: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<{{A}}>;
@group(0) @binding(2) var<storage, read> slot_mapping: array<u32>;
@group(0) @binding(3) var<storage, read_write> key_cache: array<{{KV}}>;
@group(0) @binding(4) var<storage, read_write> value_cache: array<{{KV}}>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = wg.x + wg.y * 65535u;
  if (t >= p.num_tokens) { return; }
  let slot = slot_mapping[t];
  let src = t * 3u * p.hidden;
  let dst = slot * p.hidden;
  for (var i = lid.x; i < p.hidden; i += 64u) {
    key_cache[dst + i] = {{KV}}(qkv[src + p.hidden + i]);
    value_cache[dst + i] = {{KV}}(qkv[src + 2u * p.hidden + i]);
  }
}
