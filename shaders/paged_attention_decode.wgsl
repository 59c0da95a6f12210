// Paged attention for a step in which every query block is a single token (a pure decode step: the engine's
// lookahead steps, single-sequence generate): one workgroup of 32 threads per (token, head, partition) instead
// of paged_attention.wgsl's 64-thread block of up to 16 queries, 15 of which would sit idle.
//
// Each tile of TILE = 32 keys: thread j loads key j's and value j's rows straight from the cache (one memory
// round trip for the tile, no staging pass) and computes key j's score; the tile maximum, the probabilities, their
// sum and the value accumulation follow. The arithmetic of each query is exactly paged_attention.wgsl's — per key
// a sequential fma chain over the head dims; per tile a running max, exp, a sum in key order by one chain, and
// a value accumulation in key order — so a decode token gets the same bits here as in any prefill or mixed
// batch: batch invariance across kernels.
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
@group(0) @binding(5) var<storage, read> key_cache: array<vec4<{{KV}}>>;
@group(0) @binding(6) var<storage, read> value_cache: array<vec4<{{KV}}>>;
@group(0) @binding(7) var<storage, read_write> out: array<{{A}}>;
@group(0) @binding(8) var<storage, read_write> stats: array<f32>;
@group(0) @binding(9) var<storage, read_write> part_acc: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> query_blocks: array<vec2<u32>>;

const WG: u32 = 32u;
const TILE: u32 = 32u;
const PART: u32 = {{PART}}u;
const HEAD_DIM: u32 = {{HEAD_DIM}}u;
const D4: u32 = HEAD_DIM / 4u;
const DIRECT: bool = {{DIRECT}};
const NEG: f32 = -3.0e38;

var<workgroup> q_s: array<vec4<f32>, D4>;
var<workgroup> v_s: array<vec4<f32>, TILE * D4>;
var<workgroup> s_s: array<f32, TILE>;     // scores, then probabilities
var<workgroup> info_wg: vec4<u32>;        // token, sequence, context

fn dot_step(acc: f32, q: vec4<f32>, k: vec4<f32>) -> f32 {
  var a = fma(q.x, k.x, acc);
  a = fma(q.y, k.y, a);
  a = fma(q.z, k.z, a);
  return fma(q.w, k.w, a);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let h = wg.y;
  let part = wg.z;
  let hidden = p.num_heads * HEAD_DIM;
  if (lid == 0u) {
    let t = query_blocks[wg.x].x;
    info_wg = vec4<u32>(t, token_seq[t], positions[t] + 1u, 0u);
  }
  let info = workgroupUniformLoad(&info_wg);
  let t = info.x;
  let seq = info.y;
  let begin = part * PART;
  let end = min(info.z, begin + PART);
  for (var c = lid; c < D4; c += WG) {
    let b = t * 3u * hidden + h * HEAD_DIM + 4u * c;
    q_s[c] = vec4<f32>(f32(qkv[b]), f32(qkv[b + 1u]), f32(qkv[b + 2u]), f32(qkv[b + 3u])) * p.scale;
  }
  workgroupBarrier();
  var m = NEG;
  var l = 0.0;
  // Thread c < D4 owns dims 4c..4c+3 of the output (HEAD_DIM <= 128).
  var acc = vec4<f32>();
  for (var k0 = begin; k0 < end; k0 += TILE) {
    // Key lid of the tile: its score (NEG past the end: a decode token sees every key before it).
    let pos = k0 + lid;
    var score = NEG;
    if (pos < end) {
      let slot = block_tables[seq * p.max_blocks_per_seq + pos / p.block_size] * p.block_size + pos % p.block_size;
      let row = (slot * hidden + h * HEAD_DIM) / 4u;
      var d = 0.0;
      for (var c = 0u; c < D4; c++) {
        d = dot_step(d, q_s[c], vec4<f32>(key_cache[row + c]));
        v_s[lid * D4 + c] = vec4<f32>(value_cache[row + c]);
      }
      score = d;
    } else {
      for (var c = 0u; c < D4; c++) { v_s[lid * D4 + c] = vec4<f32>(); }
    }
    s_s[lid] = score;
    workgroupBarrier();
    // Every thread finds the tile maximum (exact in any order) and the probabilities' sum in key order, so all
    // hold the same m, l and correction without another exchange.
    var tile_max = m;
    for (var j = 0u; j < TILE; j++) { tile_max = max(tile_max, s_s[j]); }
    let pj = select(0.0, exp(score - tile_max), score > NEG);
    workgroupBarrier();
    s_s[lid] = pj;
    workgroupBarrier();
    let correction = exp(m - tile_max);
    var tile_sum = 0.0;
    for (var j = 0u; j < TILE; j++) { tile_sum += s_s[j]; }
    l = l * correction + tile_sum;
    m = tile_max;
    if (lid < D4) {
      var a = acc * correction;
      for (var j = 0u; j < TILE; j++) { a = fma(vec4<f32>(s_s[j]), v_s[j * D4 + lid], a); }
      acc = a;
    }
    workgroupBarrier();
  }
  if (DIRECT) {
    if (lid < D4) {
      let o = acc / l;
      let base = t * hidden + h * HEAD_DIM + 4u * lid;
      out[base] = {{A}}(o.x);
      out[base + 1u] = {{A}}(o.y);
      out[base + 2u] = {{A}}(o.z);
      out[base + 3u] = {{A}}(o.w);
    }
  } else {
    let pidx = (t * p.num_heads + h) * p.num_partitions + part;
    if (lid == 0u) {
      stats[2u * pidx] = select(NEG, m, begin < end);
      stats[2u * pidx + 1u] = l;
    }
    if (lid < D4) { part_acc[pidx * D4 + lid] = acc; }
  }
}
