// GPU sampler + decode advance. One workgroup per sequence s picks the next token from logits row s:
// greedy (temperature 0: argmax, lowest id on ties), or temperature / top-k / min-p / top-p sampling with a
// counter-based random number keyed on (seed, position), so a request's draw does not depend on the batch.
// A row with a token-state slot first gets vLLM's penalties, applied on the fly to every logit it reads (the
// logits buffer stays raw, for raw logprobs): repetition (over prompt + output tokens: logit > 0 → / p, else
// * p), then frequency and presence (over output tokens: logit -= freq * count + pres * (count > 0)); and,
// while fewer than min_tokens tokens were generated, its stop tokens are masked. The sampled token is counted
// into the slot, so the state follows the multi-step loop without the CPU.
// Then, so the decode loop never waits for the CPU, it appends the token to the output ring and writes the
// next step's inputs: token id, position and KV slot (through the block table). All reductions run in a
// fixed order (chunked per thread, tree across threads).
struct Params {
  vocab: u32,
  num_seqs: u32,
  block_size: u32,
  max_blocks_per_seq: u32,
  out_capacity: u32,
}
struct Sampling {
  temperature: f32,
  top_k: u32,
  top_p: f32,
  seed: u32,
  min_p: f32,     // keep tokens with probability >= min_p * the largest (0 = off)
  state_slot: u32,  // row of token_state holding this request's counts; 0xFFFFFFFF = none (no penalties)
  repetition_penalty: f32,
  presence_penalty: f32,
  frequency_penalty: f32,
  min_tokens: u32,  // stop tokens (flagged in token_state) are masked while out_base + generated < min_tokens
  out_base: u32,    // tokens the request had generated before this batch of steps
  lp_index: u32,    // logprobs record row (logprobs.wgsl); 0xFFFFFFFF = none
  num_top_logprobs: u32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> sampling: array<Sampling>;
@group(0) @binding(3) var<storage, read> block_tables: array<u32>;
// Per sequence: [position of the token whose logits these are, tokens generated so far].
@group(0) @binding(4) var<storage, read_write> seq_state: array<u32>;
@group(0) @binding(5) var<storage, read_write> next_ids: array<u32>;
@group(0) @binding(6) var<storage, read_write> next_pos: array<u32>;
@group(0) @binding(7) var<storage, read_write> next_slot: array<u32>;
@group(0) @binding(8) var<storage, read_write> out_tokens: array<u32>;
// Per state slot, per vocab id: bit 31 = in the prompt, bit 30 = a stop token, bits 0..29 = output count.
// TOKEN_STATE declares it as binding 9 (read_write storage), or, for callers without penalties, as a private
// one-word array that is never read (every row's state_slot is then 0xFFFFFFFF).
{{TOKEN_STATE}}

const IN_PROMPT: u32 = 0x80000000u;
const STOP_TOKEN: u32 = 0x40000000u;
const COUNT_MASK: u32 = 0x3FFFFFFFu;

const WG: u32 = 256u;
var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;
var<workgroup> chosen: u32;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> radix_sel: vec2<u32>;   // chosen bin, count (or mass) strictly above it
var<workgroup> chosen_thread: u32;
var<workgroup> residual_mass: f32;

fn fmix32(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u; x *= 0x85EBCA6Bu; x ^= x >> 13u; x *= 0xC2B2AE35u; x ^= x >> 16u;
  return x;
}

// Order-preserving map from f32 to u32.
fn sort_key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b >> 31u) == 1u);
}

// Radix select, one round: from the top bin down, the first bin where the running total (count or mass, on
// top of `above`, what lies above the current prefix) reaches `goal`; returns that bin and the total above it.
fn pick_bin(goal: u32, above: u32) -> vec2<u32> {
  var cum = above;
  for (var b = 255i; b >= 0i; b--) {
    let h = atomicLoad(&hist[u32(b)]);
    if (cum + h >= goal) { return vec2<u32>(u32(b), cum); }
    cum += h;
  }
  return vec2<u32>(0u, above);
}

fn sum_f(lid: u32, v: f32) -> f32 {
  red_f[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red_f[lid] += red_f[lid + s]; }
    workgroupBarrier();
  }
  let r = red_f[0];
  workgroupBarrier();
  return r;
}

fn sum_u(lid: u32, v: u32) -> u32 {
  red_u[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red_u[lid] += red_u[lid + s]; }
    workgroupBarrier();
  }
  let r = red_u[0];
  workgroupBarrier();
  return r;
}

// The logit of token i as the sampler sees it: raw, or with the row's penalties and min-tokens mask.
fn logit_at(row: u32, i: u32, sp: Sampling, mask_stops: bool) -> f32 {
  var v = logits[row + i];
  if (sp.state_slot != 0xFFFFFFFFu) {
    let st = token_state[sp.state_slot * p.vocab + i];
    let count = st & COUNT_MASK;
    if ((st & IN_PROMPT) != 0u || count > 0u) {
      v = select(v * sp.repetition_penalty, v / sp.repetition_penalty, v > 0.0);
    }
    v -= sp.frequency_penalty * f32(count) + select(0.0, sp.presence_penalty, count > 0u);
    if (mask_stops && (st & STOP_TOKEN) != 0u) { v = -3.4e38; }
  }
  return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let s = wg.x;
  let lid = lid3.x;
  let V = p.vocab;
  let row = s * V;
  let chunk = (V + WG - 1u) / WG;
  let lo = min(lid * chunk, V);
  let hi = min(lo + chunk, V);
  let sp = sampling[s];
  let pos = seq_state[2u * s];
  let ms = sp.out_base + seq_state[2u * s + 1u] < sp.min_tokens;

  if (sp.temperature <= 0.0 || sp.top_k == 1u) {
    // Greedy: per-thread first max, then a tree that keeps the lower id on ties. The argmax (lowest id on ties)
    // does not depend on the order the logits are visited in, so threads stride through the row (coalesced).
    var best = -3.4e38;
    var best_i = 0xFFFFFFFFu;
    for (var i = lid; i < V; i += WG) {
      let v = logit_at(row, i, sp, ms);
      if (v > best || best_i == 0xFFFFFFFFu) { best = v; best_i = i; }
    }
    red_f[lid] = best;
    red_u[lid] = best_i;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
      if (lid < st) {
        let ov = red_f[lid + st];
        let oi = red_u[lid + st];
        if (oi != 0xFFFFFFFFu && (red_u[lid] == 0xFFFFFFFFu || ov > red_f[lid] || (ov == red_f[lid] && oi < red_u[lid]))) {
          red_f[lid] = ov;
          red_u[lid] = oi;
        }
      }
      workgroupBarrier();
    }
    if (lid == 0u) { chosen = red_u[0]; }
  } else {
    let inv_t = 1.0 / sp.temperature;
    // Max of the scaled logits (for a stable exp).
    var mx = -3.4e38;
    for (var i = lo; i < hi; i++) { mx = max(mx, logit_at(row, i, sp, ms) * inv_t); }
    red_f[lid] = mx;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
      if (lid < st) { red_f[lid] = max(red_f[lid], red_f[lid + st]); }
      workgroupBarrier();
    }
    mx = red_f[0];
    workgroupBarrier();
    // Top-k: the k-th largest key (ties at the k-th value are kept, as Hugging Face's TopKLogitsWarper does),
    // by radix select: four passes of 8 bits, each a 256-bin histogram of the keys that match the prefix so far.
    var thr = 0u;
    if (sp.top_k > 1u && sp.top_k < V) {
      var prefix = 0u;
      var mask = 0u;
      var above = 0u;  // keys known to be above the current prefix
      for (var r8 = 0u; r8 < 4u; r8++) {
        let shift = 24u - 8u * r8;
        atomicStore(&hist[lid], 0u);
        workgroupBarrier();
        for (var i = lo; i < hi; i++) {
          let key = sort_key(logit_at(row, i, sp, ms) * inv_t);
          if ((key & mask) == prefix) { atomicAdd(&hist[(key >> shift) & 255u], 1u); }
        }
        workgroupBarrier();
        if (lid == 0u) { radix_sel = pick_bin(sp.top_k, above); }
        workgroupBarrier();
        let sel = radix_sel;
        prefix |= sel.x << shift;
        mask |= 255u << shift;
        above = sel.y;
        workgroupBarrier();
      }
      thr = prefix;
    }
    // Min-p: p >= min_p * p_max, i.e. v >= max + ln(min_p); a threshold like top-k's, so they intersect.
    if (sp.min_p > 0.0) { thr = max(thr, sort_key(mx + log(min(sp.min_p, 1.0)))); }
    var z = 0.0;
    for (var i = lo; i < hi; i++) {
      let v = logit_at(row, i, sp, ms) * inv_t;
      if (sort_key(v) >= thr) { z += exp(v - mx); }
    }
    z = sum_f(lid, z);
    // Top-p: the largest key threshold whose kept mass is still >= top_p of the top-k mass, by the same radix
    // select over masses in 2^-31 fixed point (integer sums: the same in any order).
    if (sp.top_p < 1.0) {
      let goal = u32(min(sp.top_p, 1.0) * 2147483648.0);
      var prefix = 0u;
      var mask = 0u;
      var above = 0u;
      for (var r8 = 0u; r8 < 4u; r8++) {
        let shift = 24u - 8u * r8;
        atomicStore(&hist[lid], 0u);
        workgroupBarrier();
        for (var i = lo; i < hi; i++) {
          let v = logit_at(row, i, sp, ms) * inv_t;
          let key = sort_key(v);
          if (key >= thr && (key & mask) == prefix) {
            atomicAdd(&hist[(key >> shift) & 255u], u32(exp(v - mx) / z * 2147483648.0));
          }
        }
        workgroupBarrier();
        if (lid == 0u) { radix_sel = pick_bin(goal, above); }
        workgroupBarrier();
        let sel = radix_sel;
        prefix |= sel.x << shift;
        mask |= 255u << shift;
        above = sel.y;
        workgroupBarrier();
      }
      thr = max(thr, prefix);
    }
    // Inverse-CDF draw over the kept tokens in id order.
    var mine = 0.0;
    for (var i = lo; i < hi; i++) {
      let v = logit_at(row, i, sp, ms) * inv_t;
      if (sort_key(v) >= thr) { mine += exp(v - mx); }
    }
    red_f[lid] = mine;
    workgroupBarrier();
    if (lid == 0u) {
      var total = 0.0;
      for (var i = 0u; i < WG; i++) { total += red_f[i]; }
      let h = fmix32(sp.seed ^ fmix32(pos * 0x9E3779B9u + 0x7F4A7C15u));
      let u = f32(h >> 8u) / 16777216.0;
      let goal = u * total;
      var acc = 0.0;
      var ct = 0xFFFFFFFFu;
      var last_nonzero = 0u;
      for (var i = 0u; i < WG; i++) {
        let c = red_f[i];
        if (c > 0.0) {
          last_nonzero = i;
          if (ct == 0xFFFFFFFFu && goal < acc + c) { ct = i; residual_mass = goal - acc; }
        }
        acc += c;
      }
      if (ct == 0xFFFFFFFFu) { ct = last_nonzero; residual_mass = 3.4e38; }
      chosen_thread = ct;
    }
    workgroupBarrier();
    if (lid == chosen_thread) {
      var acc = 0.0;
      var pick = 0xFFFFFFFFu;
      var last_kept = lo;
      for (var i = lo; i < hi; i++) {
        let v = logit_at(row, i, sp, ms) * inv_t;
        if (sort_key(v) >= thr) {
          last_kept = i;
          acc += exp(v - mx);
          if (pick == 0xFFFFFFFFu && residual_mass < acc) { pick = i; }
        }
      }
      chosen = select(pick, last_kept, pick == 0xFFFFFFFFu);
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    let tok = chosen;
    let step = seq_state[2u * s + 1u];
    if (step < p.out_capacity) { out_tokens[s * p.out_capacity + step] = tok; }
    seq_state[2u * s] = pos + 1u;
    seq_state[2u * s + 1u] = step + 1u;
    if (sp.state_slot != 0xFFFFFFFFu) {
      let si = sp.state_slot * p.vocab + tok;
      let st = token_state[si];
      token_state[si] = (st & ~COUNT_MASK) | min((st & COUNT_MASK) + 1u, COUNT_MASK);
    }
    let np = pos + 1u;
    next_ids[s] = tok;
    next_pos[s] = np;
    let bi = min(np / p.block_size, p.max_blocks_per_seq - 1u);
    next_slot[s] = block_tables[s * p.max_blocks_per_seq + bi] * p.block_size + np % p.block_size;
  }
}
