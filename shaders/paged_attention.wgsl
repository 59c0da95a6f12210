// Paged attention over vLLM's block-table KV cache, for a flat batch of query tokens from any mix of
// prefill chunks and decodes. Query token t belongs to sequence token_seq[t] and sits at absolute position
// positions[t]; it attends to that sequence's keys at positions 0..positions[t] (its own chunk's keys were
// written to the cache first, so "cached blocks plus the causal part of its own chunk" is one range).
//
// Split-K: the context is cut into partitions of PART keys; workgroup (t, head, part) handles one partition
// with an online softmax over tiles of TILE keys and writes (max, sum, acc) for paged_attention_reduce.wgsl
// to combine, so a long decode context is spread over many workgroups. When every context fits in one
// partition (DIRECT = 1) the workgroup writes the normalised output itself, with the same arithmetic the
// reduce would do for one partition, so the result does not depend on which path ran.
{{ENABLE_F16}}
struct Params {
  num_tokens: u32,
  num_heads: u32,
  head_dim: u32,
  block_size: u32,
  max_blocks_per_seq: u32,
  num_partitions: u32,
  scale: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<{{A}}>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> token_seq: array<u32>;
@group(0) @binding(4) var<storage, read> block_tables: array<u32>;
@group(0) @binding(5) var<storage, read> key_cache: array<{{KV}}>;
@group(0) @binding(6) var<storage, read> value_cache: array<{{KV}}>;
@group(0) @binding(7) var<storage, read_write> out: array<{{A}}>;
// Partial results, [t][head][part]: max and sum in stats (2 floats), accumulators in part_acc (head_dim floats).
@group(0) @binding(8) var<storage, read_write> stats: array<f32>;
@group(0) @binding(9) var<storage, read_write> part_acc: array<f32>;

const TILE: u32 = 64u;
const PART: u32 = {{PART}}u;
const HEAD_DIM: u32 = {{HEAD_DIM}}u;
const DIMS_PER_THREAD: u32 = (HEAD_DIM + TILE - 1u) / TILE;
const DIRECT: bool = {{DIRECT}};

var<workgroup> q_s: array<f32, HEAD_DIM>;
var<workgroup> prob_s: array<f32, TILE>;
var<workgroup> slot_s: array<u32, TILE>;
var<workgroup> ctx_wg: u32;

@compute @workgroup_size(TILE)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let t = wg.x;
  let h = wg.y;
  let part = wg.z;
  let lid = lid3.x;
  let hidden = p.num_heads * HEAD_DIM;
  if (lid == 0u) { ctx_wg = positions[t] + 1u; }
  for (var d = lid; d < HEAD_DIM; d += TILE) { q_s[d] = f32(qkv[t * 3u * hidden + h * HEAD_DIM + d]) * p.scale; }
  let ctx = workgroupUniformLoad(&ctx_wg);
  let begin = part * PART;
  let end = min(ctx, begin + PART);
  let seq = token_seq[t];
  var m = -3.0e38;
  var l = 0.0;
  var acc: array<f32, DIMS_PER_THREAD>;
  for (var k0 = begin; k0 < end; k0 += TILE) {
    let j = k0 + lid;
    var score = -3.0e38;
    var slot = 0u;
    if (j < end) {
      let block = block_tables[seq * p.max_blocks_per_seq + j / p.block_size];
      slot = block * p.block_size + j % p.block_size;
      let kb = slot * hidden + h * HEAD_DIM;
      var s = 0.0;
      for (var d = 0u; d < HEAD_DIM; d++) { s = fma(q_s[d], f32(key_cache[kb + d]), s); }
      score = s;
    }
    prob_s[lid] = score;
    slot_s[lid] = slot;
    workgroupBarrier();
    var tile_max = m;
    for (var i = 0u; i < TILE; i++) { tile_max = max(tile_max, prob_s[i]); }
    workgroupBarrier();
    let correction = exp(m - tile_max);
    var pj = 0.0;
    if (j < end) { pj = exp(score - tile_max); }
    prob_s[lid] = pj;
    workgroupBarrier();
    var tile_sum = 0.0;
    for (var i = 0u; i < TILE; i++) { tile_sum += prob_s[i]; }
    l = l * correction + tile_sum;
    m = tile_max;
    let n_keys = min(TILE, end - k0);
    for (var di = 0u; di < DIMS_PER_THREAD; di++) {
      let d = lid + di * TILE;
      if (d < HEAD_DIM) {
        var a = acc[di] * correction;
        for (var i = 0u; i < n_keys; i++) {
          a = fma(prob_s[i], f32(value_cache[slot_s[i] * hidden + h * HEAD_DIM + d]), a);
        }
        acc[di] = a;
      }
    }
    workgroupBarrier();
  }
  if (DIRECT) {
    // One partition: the reduce's arithmetic with weight exp(0) = 1, written directly.
    for (var di = 0u; di < DIMS_PER_THREAD; di++) {
      let d = lid + di * TILE;
      if (d < HEAD_DIM) { out[t * hidden + h * HEAD_DIM + d] = {{A}}(acc[di] / l); }
    }
  } else {
    let idx = (t * p.num_heads + h) * p.num_partitions + part;
    if (lid == 0u) {
      stats[2u * idx] = select(-3.0e38, m, begin < ctx);
      stats[2u * idx + 1u] = l;
    }
    for (var di = 0u; di < DIMS_PER_THREAD; di++) {
      let d = lid + di * TILE;
      if (d < HEAD_DIM) { part_acc[idx * HEAD_DIM + d] = acc[di]; }
    }
  }
}
