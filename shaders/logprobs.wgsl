// Logprobs of the token the sampler just picked, and the top-n (n <= MAX_TOP) of the row, from the raw model
// logits (vLLM v1's default "raw_logprobs": before penalties, temperature, top-k/top-p). Runs right after the
// sampler in every decode step of the multi-step loop; one workgroup per batch row, rows that did not ask
// return at once. Each (row, step) writes one record into the same buffer as the sampled tokens (so one
// readback brings both): [logprob of the sampled token, its rank (1 = most likely), top ids x MAX_TOP, top
// logprobs x MAX_TOP]. Reductions run in a fixed order (chunk per thread, then a tree), so values do not
// depend on the batch. Ties in the top-n go to the lower token id.
struct Params {
  vocab: u32,
  num_seqs: u32,
  out_capacity: u32,
  record_base: u32,  // word offset of record 0 in `records`
}
struct Sampling {
  temperature: f32,
  top_k: u32,
  top_p: f32,
  seed: u32,
  min_p: f32,
  state_slot: u32,
  repetition_penalty: f32,
  presence_penalty: f32,
  frequency_penalty: f32,
  min_tokens: u32,
  out_base: u32,
  lp_index: u32,
  num_top_logprobs: u32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> sampling: array<Sampling>;
@group(0) @binding(3) var<storage, read> seq_state: array<u32>;
@group(0) @binding(4) var<storage, read> next_ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> records: array<u32>;

const WG: u32 = 256u;
const MAX_TOP: u32 = {{MAX_TOP}}u;
const RECORD_WORDS: u32 = 2u + 2u * MAX_TOP;
const NONE: u32 = 0xFFFFFFFFu;
var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let s = wg.x;
  let lid = lid3.x;
  let sp = sampling[s];
  if (sp.lp_index == NONE) { return; }  // uniform per workgroup: every thread leaves
  let V = p.vocab;
  let row = s * V;
  let chunk = (V + WG - 1u) / WG;
  let lo = min(lid * chunk, V);
  let hi = min(lo + chunk, V);
  let tok = next_ids[s];
  let step = seq_state[2u * s + 1u] - 1u;
  let rec = p.record_base + (sp.lp_index * p.out_capacity + step) * RECORD_WORDS;
  let k = min(sp.num_top_logprobs, MAX_TOP);

  // Max, then the sum of exp(v - max): log-sum-exp.
  var mx = -3.4e38;
  for (var i = lo; i < hi; i++) { mx = max(mx, logits[row + i]); }
  red_f[lid] = mx;
  workgroupBarrier();
  for (var st = WG / 2u; st > 0u; st >>= 1u) {
    if (lid < st) { red_f[lid] = max(red_f[lid], red_f[lid + st]); }
    workgroupBarrier();
  }
  mx = red_f[0];
  workgroupBarrier();
  let vt = logits[row + tok];
  var z = 0.0;
  var higher = 0u;
  for (var i = lo; i < hi; i++) {
    let v = logits[row + i];
    z += exp(v - mx);
    if (v > vt) { higher++; }
  }
  red_f[lid] = z;
  red_u[lid] = higher;
  workgroupBarrier();
  for (var st = WG / 2u; st > 0u; st >>= 1u) {
    if (lid < st) { red_f[lid] += red_f[lid + st]; red_u[lid] += red_u[lid + st]; }
    workgroupBarrier();
  }
  let lse = mx + log(red_f[0]);
  if (lid == 0u) {
    records[rec] = bitcast<u32>(vt - lse);
    records[rec + 1u] = red_u[0] + 1u;
  }
  workgroupBarrier();
  if (k == 0u) { return; }

  // Top-k: each thread keeps its chunk's k best (descending; ids ascend within a chunk, so a strict > keeps the
  // lower id first on ties), then k rounds pick the best head among the threads.
  var tv: array<f32, MAX_TOP>;
  var ti: array<u32, MAX_TOP>;
  var cnt = 0u;
  for (var i = lo; i < hi; i++) {
    let v = logits[row + i];
    if (cnt == k && !(v > tv[k - 1u])) { continue; }
    var j = min(cnt, k - 1u);
    while (j > 0u && v > tv[j - 1u]) {
      tv[j] = tv[j - 1u];
      ti[j] = ti[j - 1u];
      j--;
    }
    tv[j] = v;
    ti[j] = i;
    cnt = min(cnt + 1u, k);
  }
  var head = 0u;
  for (var r = 0u; r < k; r++) {
    red_f[lid] = select(-3.4e38, tv[head], head < cnt);
    red_u[lid] = select(NONE, ti[head], head < cnt);
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
      if (lid < st) {
        let ov = red_f[lid + st];
        let oi = red_u[lid + st];
        if (oi != NONE && (red_u[lid] == NONE || ov > red_f[lid] || (ov == red_f[lid] && oi < red_u[lid]))) {
          red_f[lid] = ov;
          red_u[lid] = oi;
        }
      }
      workgroupBarrier();
    }
    let win = red_u[0];
    let wv = red_f[0];
    workgroupBarrier();
    if (head < cnt && ti[head] == win) { head++; }
    if (lid == 0u) {
      records[rec + 2u + r] = win;
      records[rec + 2u + MAX_TOP + r] = bitcast<u32>(wv - lse);
    }
  }
}
