// Second pass of a split-K train_matmul: C[m, n] (+)= sum over splits s, in order, of partial[s, m, n]
// (partial is [splits, M, N]), then ReLU's mask as in train_matmul. flags: bit 0 accumulate, bit 1 relu mask.
struct Params {
  M: u32,
  N: u32,
  ldc: u32,
  offC: u32,
  splits: u32,
  flags: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let e = (wg.x + wg.y * 65535u) * 256u + li;
  if (e >= p.M * p.N) { return; }
  let m = e / p.N;
  let n = e % p.N;
  var v = 0.0;
  for (var s = 0u; s < p.splits; s++) { v += partial[s * p.M * p.N + e]; }
  let i = p.offC + m * p.ldc + n;
  if ((p.flags & 2u) != 0u) { v = select(0.0, v, aux[i] > 0.0); }
  if ((p.flags & 1u) != 0u) { v += c[i]; }
  c[i] = v;
}
