// Paged attention over vLLM's block-table KV cache, for a flat batch of query tokens from any mix of
// prefill chunks and decodes. Query token t belongs to sequence token_seq[t] and sits at absolute position
// positions[t]; it attends to that sequence's keys at positions 0..positions[t] (its own chunk's keys were
// written to the cache first, so "cached blocks plus the causal part of its own chunk" is one range).
//
// Work is split three ways. Query blocks: up to QB consecutive tokens of one sequence (a prefill chunk is
// cut into blocks; a decode token is a block of one), so each key/value tile read from the cache into
// workgroup memory serves the whole block. Heads. Split-K partitions of PART keys, so a long decode context
// is spread over many workgroups; paged_attention_reduce.wgsl combines them. When every context fits in one
// partition (DIRECT) the workgroup writes the normalised output itself, with the arithmetic the reduce would
// do for one partition (weight exp(0) = 1).
//
// Batch invariance: whatever the block size or thread mapping, each query's result is computed in the same
// order — per key a sequential fma chain over head dims; per TILE keys a running max, exp, a sum in key order,
// and a value accumulation in key order — so a token gets the same bits alone, in a batch, decoding or prefilling.
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
// Partial results, [t][head][part]: max and sum in stats (2 floats), accumulators in part_acc (head_dim floats).
@group(0) @binding(8) var<storage, read_write> stats: array<f32>;
@group(0) @binding(9) var<storage, read_write> part_acc: array<vec4<f32>>;
// Query blocks: (first token, token count).
@group(0) @binding(10) var<storage, read> query_blocks: array<vec2<u32>>;

const WG: u32 = 64u;
const TILE: u32 = 32u;
const QB: u32 = {{QB}}u;   // 16 or 8 (the score loop below serves queries lid / TILE + 2r, r < 8)
const PART: u32 = {{PART}}u;
const HEAD_DIM: u32 = {{HEAD_DIM}}u;
const D4: u32 = HEAD_DIM / 4u;
// Output vec4s per thread: QB * D4 spread over WG threads.
const R: u32 = (QB * D4 + WG - 1u) / WG;
const DIRECT: bool = {{DIRECT}};
// The tile load below is written out for up to 12 key/value vec4s per thread: HEAD_DIM <= 96.
const KV_LOADS: u32 = (TILE * D4 + WG - 1u) / WG;
const NEG: f32 = -3.0e38;

var<workgroup> q_s: array<vec4<f32>, QB * D4>;
var<workgroup> k_s: array<vec4<f32>, TILE * D4>;
var<workgroup> v_s: array<vec4<f32>, TILE * D4>;
var<workgroup> s_s: array<f32, QB * TILE>;     // scores, then probabilities
var<workgroup> corr_s: array<f32, QB>;         // this tile's rescale factor per query
var<workgroup> m_s: array<f32, QB>;
var<workgroup> l_s: array<f32, QB>;
var<workgroup> info_wg: vec4<u32>;             // first token, count, sequence, largest context
var<workgroup> slot_s: array<u32, PART>;       // cache slot of each key of the partition (all ones past its end)
var<workgroup> pmax_s: array<f32, WG>;         // partial maxima of the scores, 4 per query

// Element e of the tile's TILE * D4 key and value vec4s (key e / D4, dims 4 * (e % D4)); zeros past the tile's
// keys and for e beyond the tile (threads with fewer than KV_LOADS elements).
fn load_kv(e: u32, key0: u32, h: u32, hidden: u32) -> mat2x4<f32> {
  if (e >= TILE * D4) { return mat2x4<f32>(); }
  let slot = slot_s[key0 + e / D4];
  if (slot == 0xffffffffu) { return mat2x4<f32>(); }
  let src = (slot * hidden + h * HEAD_DIM) / 4u + e % D4;
  return mat2x4<f32>(vec4<f32>(key_cache[src]), vec4<f32>(value_cache[src]));
}

fn store_kv(e: u32, kv: mat2x4<f32>) {
  if (e >= TILE * D4) { return; }
  k_s[e] = kv[0];
  v_s[e] = kv[1];
}

fn dot_step(acc: f32, q: vec4<f32>, k: vec4<f32>) -> f32 {
  var a = fma(q.x, k.x, acc);
  a = fma(q.y, k.y, a);
  a = fma(q.z, k.z, a);
  return fma(q.w, k.w, a);
}

// Score of query i and key j of the tile, or NEG where the key is past the query's position (causal) or the tile.
fn put_score(i: u32, j: u32, k0: u32, n_keys: u32, first: u32, count: u32, dot: f32) {
  if (i >= count || i >= QB) { return; }
  var s = NEG;
  if (j < n_keys && k0 + j < positions[first + i] + 1u) { s = dot; }
  s_s[i * TILE + j] = s;
}

fn accumulate(acc: vec4<f32>, idx: u32, n_keys: u32) -> vec4<f32> {
  // idx = query * D4 + vec4 index; keys in order, rescaled first (as the single-query path does).
  let i = idx / D4;
  let c = idx % D4;
  var a = acc * corr_s[i];
  // Keys past the tile's end have probability 0 and zero values: fma(0, 0, a) = a, so a constant trip count
  // (which the compiler can unroll) gives the same sums.
  for (var j = 0u; j < TILE; j++) { a = fma(vec4<f32>(s_s[i * TILE + j]), v_s[j * D4 + c], a); }
  return a;
}

fn finish(acc: vec4<f32>, idx: u32, first: u32, count: u32, h: u32, part: u32) {
  let i = idx / D4;
  let c = idx % D4;
  if (i >= count) { return; }
  let t = first + i;
  if (DIRECT) {
    let o = acc / l_s[i];
    let base = t * p.num_heads * HEAD_DIM + h * HEAD_DIM + 4u * c;
    out[base] = {{A}}(o.x);
    out[base + 1u] = {{A}}(o.y);
    out[base + 2u] = {{A}}(o.z);
    out[base + 3u] = {{A}}(o.w);
  } else {
    let pidx = (t * p.num_heads + h) * p.num_partitions + part;
    part_acc[pidx * D4 + c] = acc;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let h = wg.y;
  let part = wg.z;
  let lid = lid3.x;
  let hidden = p.num_heads * HEAD_DIM;
  if (lid == 0u) {
    let qb = query_blocks[wg.x];
    info_wg = vec4<u32>(qb.x, qb.y, token_seq[qb.x], positions[qb.x + qb.y - 1u] + 1u);
  }
  let info = workgroupUniformLoad(&info_wg);
  let first = info.x;
  let count = info.y;
  let seq = info.z;
  let begin = part * PART;
  let end = min(info.w, begin + PART);
  for (var e = lid; e < count * D4; e += WG) {
    let i = e / D4;
    let b = (first + i) * 3u * hidden + h * HEAD_DIM + 4u * (e % D4);
    q_s[e] = vec4<f32>(f32(qkv[b]), f32(qkv[b + 1u]), f32(qkv[b + 2u]), f32(qkv[b + 3u])) * p.scale;
  }
  if (lid < QB) { m_s[lid] = NEG; l_s[lid] = 0.0; }
  var acc0 = vec4<f32>(); var acc1 = vec4<f32>(); var acc2 = vec4<f32>(); var acc3 = vec4<f32>();
  var acc4 = vec4<f32>(); var acc5 = vec4<f32>(); var acc6 = vec4<f32>(); var acc7 = vec4<f32>();
  // Cache slots of the partition's keys, looked up once.
  for (var e = lid; e < PART; e += WG) {
    let pos = begin + e;
    var slot = 0xffffffffu;
    if (pos < end) { slot = block_tables[seq * p.max_blocks_per_seq + pos / p.block_size] * p.block_size + pos % p.block_size; }
    slot_s[e] = slot;
  }
  workgroupBarrier();
  for (var k0 = begin; k0 < end; k0 += TILE) {
    let n_keys = min(TILE, end - k0);
    // Keys and values of this tile into workgroup memory (zeros past the end, so unused lanes stay finite): every
    // thread issues all its loads before storing any, so a tile costs one memory round trip.
    let key0 = k0 - begin;
    let kv0 = load_kv(lid, key0, h, hidden); let kv1 = load_kv(lid + WG, key0, h, hidden);
    let kv2 = load_kv(lid + 2u * WG, key0, h, hidden); let kv3 = load_kv(lid + 3u * WG, key0, h, hidden);
    let kv4 = load_kv(lid + 4u * WG, key0, h, hidden); let kv5 = load_kv(lid + 5u * WG, key0, h, hidden);
    let kv6 = load_kv(lid + 6u * WG, key0, h, hidden); let kv7 = load_kv(lid + 7u * WG, key0, h, hidden);
    var kv8 = mat2x4<f32>(); var kv9 = mat2x4<f32>(); var kv10 = mat2x4<f32>(); var kv11 = mat2x4<f32>();
    if (KV_LOADS > 8u) {
      kv8 = load_kv(lid + 8u * WG, key0, h, hidden); kv9 = load_kv(lid + 9u * WG, key0, h, hidden);
      kv10 = load_kv(lid + 10u * WG, key0, h, hidden); kv11 = load_kv(lid + 11u * WG, key0, h, hidden);
    }
    store_kv(lid, kv0); store_kv(lid + WG, kv1); store_kv(lid + 2u * WG, kv2); store_kv(lid + 3u * WG, kv3);
    store_kv(lid + 4u * WG, kv4); store_kv(lid + 5u * WG, kv5); store_kv(lid + 6u * WG, kv6); store_kv(lid + 7u * WG, kv7);
    if (KV_LOADS > 8u) { store_kv(lid + 8u * WG, kv8); store_kv(lid + 9u * WG, kv9); store_kv(lid + 10u * WG, kv10); store_kv(lid + 11u * WG, kv11); }
    workgroupBarrier();
    // Scores: thread lid takes key j = lid % TILE for queries i = lid / TILE + 2r (r < 8), so each key vec4
    // it loads serves up to eight queries; per (query, key) a sequential fma chain over the head dims.
    {
      let j = lid % TILE;
      let i0 = lid / TILE;
      var d0 = 0.0; var d1 = 0.0; var d2 = 0.0; var d3 = 0.0; var d4 = 0.0; var d5 = 0.0; var d6 = 0.0; var d7 = 0.0;
      for (var c = 0u; c < D4; c++) {
        let kv = k_s[j * D4 + c];
        // Only queries of this block (count of them): a decode block of one skips the other seven chains.
        if (i0 < count) { d0 = dot_step(d0, q_s[min(i0, QB - 1u) * D4 + c], kv); }
        if (QB > 2u && i0 + 2u < count) { d1 = dot_step(d1, q_s[min(i0 + 2u, QB - 1u) * D4 + c], kv); }
        if (QB > 4u && i0 + 4u < count) { d2 = dot_step(d2, q_s[min(i0 + 4u, QB - 1u) * D4 + c], kv); }
        if (QB > 6u && i0 + 6u < count) { d3 = dot_step(d3, q_s[min(i0 + 6u, QB - 1u) * D4 + c], kv); }
        if (QB > 8u && i0 + 8u < count) { d4 = dot_step(d4, q_s[min(i0 + 8u, QB - 1u) * D4 + c], kv); }
        if (QB > 10u && i0 + 10u < count) { d5 = dot_step(d5, q_s[min(i0 + 10u, QB - 1u) * D4 + c], kv); }
        if (QB > 12u && i0 + 12u < count) { d6 = dot_step(d6, q_s[min(i0 + 12u, QB - 1u) * D4 + c], kv); }
        if (QB > 14u && i0 + 14u < count) { d7 = dot_step(d7, q_s[min(i0 + 14u, QB - 1u) * D4 + c], kv); }
      }
      put_score(i0, j, k0, n_keys, first, count, d0);
      put_score(i0 + 2u, j, k0, n_keys, first, count, d1);
      put_score(i0 + 4u, j, k0, n_keys, first, count, d2);
      put_score(i0 + 6u, j, k0, n_keys, first, count, d3);
      put_score(i0 + 8u, j, k0, n_keys, first, count, d4);
      put_score(i0 + 10u, j, k0, n_keys, first, count, d5);
      put_score(i0 + 12u, j, k0, n_keys, first, count, d6);
      put_score(i0 + 14u, j, k0, n_keys, first, count, d7);
    }
    workgroupBarrier();
    // Online softmax. The tile maximum (exact in any order) and the probabilities are computed in parallel, four
    // threads per query with eight keys each; then one thread per query sums the probabilities in key order.
    let qi = lid / 4u;
    let j0 = (lid % 4u) * 8u;
    {
      var part_max = NEG;
      if (qi < count) { for (var j = j0; j < j0 + 8u; j++) { part_max = max(part_max, s_s[qi * TILE + j]); } }
      pmax_s[lid] = part_max;
    }
    workgroupBarrier();
    if (qi < count) {
      let tile_max = max(m_s[qi], max(max(pmax_s[4u * qi], pmax_s[4u * qi + 1u]), max(pmax_s[4u * qi + 2u], pmax_s[4u * qi + 3u])));
      for (var j = j0; j < j0 + 8u; j++) {
        let sj = s_s[qi * TILE + j];
        s_s[qi * TILE + j] = select(0.0, exp(sj - tile_max), sj > NEG);
      }
    }
    workgroupBarrier();
    if (lid < count) {
      let m_old = m_s[lid];
      let tile_max = max(m_old, max(max(pmax_s[4u * lid], pmax_s[4u * lid + 1u]), max(pmax_s[4u * lid + 2u], pmax_s[4u * lid + 3u])));
      let correction = exp(m_old - tile_max);
      var tile_sum = 0.0;
      for (var j = 0u; j < TILE; j++) { tile_sum += s_s[lid * TILE + j]; }
      l_s[lid] = l_s[lid] * correction + tile_sum;
      m_s[lid] = tile_max;
      corr_s[lid] = correction;
    }
    workgroupBarrier();
    // Values: each thread owns up to R (query, vec4-of-dims) outputs.
    let n_out = count * D4;
    if (R > 0u && lid < n_out) { acc0 = accumulate(acc0, lid, n_keys); }
    if (R > 1u && lid + WG < n_out) { acc1 = accumulate(acc1, lid + WG, n_keys); }
    if (R > 2u && lid + 2u * WG < n_out) { acc2 = accumulate(acc2, lid + 2u * WG, n_keys); }
    if (R > 3u && lid + 3u * WG < n_out) { acc3 = accumulate(acc3, lid + 3u * WG, n_keys); }
    if (R > 4u && lid + 4u * WG < n_out) { acc4 = accumulate(acc4, lid + 4u * WG, n_keys); }
    if (R > 5u && lid + 5u * WG < n_out) { acc5 = accumulate(acc5, lid + 5u * WG, n_keys); }
    if (R > 6u && lid + 6u * WG < n_out) { acc6 = accumulate(acc6, lid + 6u * WG, n_keys); }
    if (R > 7u && lid + 7u * WG < n_out) { acc7 = accumulate(acc7, lid + 7u * WG, n_keys); }
    workgroupBarrier();
  }
  if (!DIRECT && lid < count) {
    let pidx = ((first + lid) * p.num_heads + h) * p.num_partitions + part;
    stats[2u * pidx] = select(NEG, m_s[lid], begin < end);
    stats[2u * pidx + 1u] = l_s[lid];
  }
  if (R > 0u) { finish(acc0, lid, first, count, h, part); }
  if (R > 1u) { finish(acc1, lid + WG, first, count, h, part); }
  if (R > 2u) { finish(acc2, lid + 2u * WG, first, count, h, part); }
  if (R > 3u) { finish(acc3, lid + 3u * WG, first, count, h, part); }
  if (R > 4u) { finish(acc4, lid + 4u * WG, first, count, h, part); }
  if (R > 5u) { finish(acc5, lid + 5u * WG, first, count, h, part); }
  if (R > 6u) { finish(acc6, lid + 6u * WG, first, count, h, part); }
  if (R > 7u) { finish(acc7, lid + 7u * WG, first, count, h, part); }
}
