// (Re)build request token-state slots for the sampler's penalties (sample.wgsl's token_state): one workgroup per
// entry zeroes its slot's row, then marks the prompt tokens (bit 31), counts the tokens generated so far (bits
// 0..29: a resumed or preempted request recomputes its counts from its history) and flags its stop tokens (bit
// 30, masked until min_tokens). The whole row is rebuilt, so a slot never inherits a finished request's counts.
struct Params {
  vocab: u32,
  num_entries: u32,
}
struct Entry {
  slot: u32,
  first: u32,       // index in `tokens` of the entry's first prompt token
  num_prompt: u32,
  num_output: u32,  // output tokens follow the prompt tokens
  num_stop: u32,    // stop token ids follow the output tokens
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> entries: array<Entry>;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> token_state: array<atomic<u32>>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let e = entries[wg.x];
  let lid = lid3.x;
  let base = e.slot * p.vocab;
  for (var i = lid; i < p.vocab; i += WG) { atomicStore(&token_state[base + i], 0u); }
  storageBarrier();
  workgroupBarrier();
  let n = e.num_prompt + e.num_output + e.num_stop;
  for (var j = lid; j < n; j += WG) {
    let tok = tokens[e.first + j];
    if (tok >= p.vocab) { continue; }
    if (j < e.num_prompt) {
      atomicOr(&token_state[base + tok], 0x80000000u);
    } else if (j < e.num_prompt + e.num_output) {
      atomicAdd(&token_state[base + tok], 1u);
    } else {
      atomicOr(&token_state[base + tok], 0x40000000u);
    }
  }
}
