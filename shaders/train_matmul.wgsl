// General tiled matmul for training: C[m, n] (+)= alpha * sum_k A(m, k) * B(k, n), batched over workgroup z.
// The backward needs every transpose combination (dX = dY W, dW = dY^T X, attention's P V, P^T dO, ...), so
// each operand says which of its indices is contiguous in memory (A_KC / B_KC: contiguous along k):
//   A_KC: A(m, k) = a[offA + m * lda + k]      else A(m, k) = a[offA + k * lda + m]
//   B_KC: B(k, n) = b[offB + n * ldb + k]      else B(k, n) = b[offB + k * ldb + n]
//   C(m, n) = c[offC + m * ldc + n]
// Batching: workgroup z is batch entry zl = wg.z of a group that starts at global entry zg = z0 + zl; each operand's
// offset gets (zg / zdiv) * s1 + (zg % zdiv) * s2 + zl * s3 (batch x heads for attention; s3 for scratch that
// holds only the group).
// Tiles and reduction order follow linear.wgsl: 128x128 outputs per workgroup of 16x16 threads, each thread an
// 8x8 register block (rows ty + 16i, columns tx + 16j); K advances 16 at a time through workgroup memory
// holding both operands as [row][k] vec4s (rows padded to 5 vec4s). Loads are arranged so that neighbouring
// threads read neighbouring addresses whichever index is contiguous. Every output has one owner: deterministic.
// Split-K (kchunk > 0): workgroup z computes k in [z * kchunk, (z + 1) * kchunk) into its own slice of C (via sC3),
// and train_matmul_reduce adds the slices in order: deterministic, and it fills the GPU when M x N has few tiles.
// flags: bit 0 accumulate (C += ...), bit 1 relu mask (result *= aux(m, n) > 0, aux indexed like C),
//        bit 2 skip tiles strictly above the diagonal (n0 > m0 + 127: outputs nobody reads, e.g. causal scores),
//        bit 3 A is lower-triangular in (m, k) (k <= m): stop k at m0 + 128,
//        bit 4 A is upper-triangular in (m, k) (k >= m): start k at m0 (rounded down to 16).
struct Params {
  M: u32,
  N: u32,
  K: u32,
  lda: u32,
  ldb: u32,
  ldc: u32,
  offA: u32,
  offB: u32,
  offC: u32,
  sA1: u32,
  sA2: u32,
  sB1: u32,
  sB2: u32,
  sC1: u32,
  sC2: u32,
  sA3: u32,
  sB3: u32,
  sC3: u32,
  z0: u32,
  zdiv: u32,
  flags: u32,
  alpha: f32,
  kchunk: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const A_KC: bool = {{A_KC}};
const B_KC: bool = {{B_KC}};
const TILE: u32 = 128u;
const KT: u32 = 16u;     // k values per step
const STRIDE: u32 = 5u;  // padded row stride in vec4s
var<workgroup> as_: array<vec4<f32>, 640>;
var<workgroup> bs_: array<vec4<f32>, 640>;

fn load_a(base: u32, m: u32, k: u32) -> f32 {
  if (m >= p.M || k >= p.K) { return 0.0; }
  if (A_KC) { return a[base + m * p.lda + k]; }
  return a[base + k * p.lda + m];
}

fn load_b(base: u32, n: u32, k: u32) -> f32 {
  if (n >= p.N || k >= p.K) { return 0.0; }
  if (B_KC) { return b[base + n * p.ldb + k]; }
  return b[base + k * p.ldb + n];
}

// One tile row (of 128) and one quad of k (of 4) for load slot idx in [0, 512): along k when k is contiguous
// (four threads cover a row's 16 values), along the rows otherwise (128 threads cover 128 neighbouring rows).
fn slot(idx: u32, kc: bool) -> vec2<u32> {
  if (kc) { return vec2<u32>(idx / 4u, idx % 4u); }
  return vec2<u32>(idx % 128u, idx / 128u);
}

// Load slot idx of the A (B) tile at rows m0 (n0), k step k0: four k values of one row.
fn fetch_a(base: u32, m0: u32, k0: u32, idx: u32) -> vec4<f32> {
  let sa = slot(idx, A_KC);
  let k = k0 + sa.y * 4u;
  let m = m0 + sa.x;
  return vec4<f32>(load_a(base, m, k), load_a(base, m, k + 1u), load_a(base, m, k + 2u), load_a(base, m, k + 3u));
}

fn fetch_b(base: u32, n0: u32, k0: u32, idx: u32) -> vec4<f32> {
  let sb = slot(idx, B_KC);
  let k = k0 + sb.y * 4u;
  let n = n0 + sb.x;
  return vec4<f32>(load_b(base, n, k), load_b(base, n, k + 1u), load_b(base, n, k + 2u), load_b(base, n, k + 3u));
}

fn store(m: u32, n: u32, base: u32, acc: f32) {
  if (m >= p.M || n >= p.N) { return; }
  let i = base + m * p.ldc + n;
  var v = p.alpha * acc;
  if ((p.flags & 2u) != 0u) { v = select(0.0, v, aux[i] > 0.0); }
  if ((p.flags & 1u) != 0u) { v += c[i]; }
  c[i] = v;
}

fn store_row(m: u32, n: u32, base: u32, lo: vec4<f32>, hi: vec4<f32>) {
  store(m, n, base, lo.x);
  store(m, n + 16u, base, lo.y);
  store(m, n + 32u, base, lo.z);
  store(m, n + 48u, base, lo.w);
  store(m, n + 64u, base, hi.x);
  store(m, n + 80u, base, hi.y);
  store(m, n + 96u, base, hi.z);
  store(m, n + 112u, base, hi.w);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let n0 = wg.x * TILE;
  let m0 = wg.y * TILE;
  if ((p.flags & 4u) != 0u && n0 > m0 + TILE - 1u) { return; }
  let zl = wg.z;
  let zg = p.z0 + zl;
  let zq = zg / p.zdiv;
  let zr = zg % p.zdiv;
  let baseA = p.offA + zq * p.sA1 + zr * p.sA2 + zl * p.sA3;
  let baseB = p.offB + zq * p.sB1 + zr * p.sB2 + zl * p.sB3;
  let baseC = p.offC + zq * p.sC1 + zr * p.sC2 + zl * p.sC3;
  var kBegin = 0u;
  var kEnd = p.K;
  if ((p.flags & 8u) != 0u) { kEnd = min(p.K, m0 + TILE); }
  if ((p.flags & 16u) != 0u) { kBegin = (m0 / KT) * KT; }
  if (p.kchunk > 0u) {
    kBegin = zl * p.kchunk;
    kEnd = min(p.K, kBegin + p.kchunk);
  }
  let tx = lid.x;
  let ty = lid.y;
  var s0l = vec4<f32>();
  var s0h = vec4<f32>();
  var s1l = vec4<f32>();
  var s1h = vec4<f32>();
  var s2l = vec4<f32>();
  var s2h = vec4<f32>();
  var s3l = vec4<f32>();
  var s3h = vec4<f32>();
  var s4l = vec4<f32>();
  var s4h = vec4<f32>();
  var s5l = vec4<f32>();
  var s5h = vec4<f32>();
  var s6l = vec4<f32>();
  var s6h = vec4<f32>();
  var s7l = vec4<f32>();
  var s7h = vec4<f32>();
  var bl: vec4<f32>;
  var bh: vec4<f32>;
  // Operands of the first k step in registers; each step stores them to workgroup memory and then fetches the
  // next step's while it computes (global load latency hidden behind the fmas; arithmetic unchanged).
  var pa0 = fetch_a(baseA, m0, kBegin, li);
  var pa1 = fetch_a(baseA, m0, kBegin, li + 256u);
  var pb0 = fetch_b(baseB, n0, kBegin, li);
  var pb1 = fetch_b(baseB, n0, kBegin, li + 256u);
  for (var k0 = kBegin; k0 < kEnd; k0 += KT) {
    let sa0 = slot(li, A_KC);
    let sa1 = slot(li + 256u, A_KC);
    let sb0 = slot(li, B_KC);
    let sb1 = slot(li + 256u, B_KC);
    as_[sa0.x * STRIDE + sa0.y] = pa0;
    as_[sa1.x * STRIDE + sa1.y] = pa1;
    bs_[sb0.x * STRIDE + sb0.y] = pb0;
    bs_[sb1.x * STRIDE + sb1.y] = pb1;
    workgroupBarrier();
    if (k0 + KT < kEnd) {
      pa0 = fetch_a(baseA, m0, k0 + KT, li);
      pa1 = fetch_a(baseA, m0, k0 + KT, li + 256u);
      pb0 = fetch_b(baseB, n0, k0 + KT, li);
      pb1 = fetch_b(baseB, n0, k0 + KT, li + 256u);
    }
    for (var q = 0u; q < 4u; q++) {
      let a0 = as_[(ty + 0u) * STRIDE + q];
      let a1 = as_[(ty + 16u) * STRIDE + q];
      let a2 = as_[(ty + 32u) * STRIDE + q];
      let a3 = as_[(ty + 48u) * STRIDE + q];
      let a4 = as_[(ty + 64u) * STRIDE + q];
      let a5 = as_[(ty + 80u) * STRIDE + q];
      let a6 = as_[(ty + 96u) * STRIDE + q];
      let a7 = as_[(ty + 112u) * STRIDE + q];
      let b0 = bs_[(tx + 0u) * STRIDE + q];
      let b1 = bs_[(tx + 16u) * STRIDE + q];
      let b2 = bs_[(tx + 32u) * STRIDE + q];
      let b3 = bs_[(tx + 48u) * STRIDE + q];
      let b4 = bs_[(tx + 64u) * STRIDE + q];
      let b5 = bs_[(tx + 80u) * STRIDE + q];
      let b6 = bs_[(tx + 96u) * STRIDE + q];
      let b7 = bs_[(tx + 112u) * STRIDE + q];
      bl = vec4<f32>(b0.x, b1.x, b2.x, b3.x);
      bh = vec4<f32>(b4.x, b5.x, b6.x, b7.x);
      s0l = fma(vec4<f32>(a0.x), bl, s0l);
      s0h = fma(vec4<f32>(a0.x), bh, s0h);
      s1l = fma(vec4<f32>(a1.x), bl, s1l);
      s1h = fma(vec4<f32>(a1.x), bh, s1h);
      s2l = fma(vec4<f32>(a2.x), bl, s2l);
      s2h = fma(vec4<f32>(a2.x), bh, s2h);
      s3l = fma(vec4<f32>(a3.x), bl, s3l);
      s3h = fma(vec4<f32>(a3.x), bh, s3h);
      s4l = fma(vec4<f32>(a4.x), bl, s4l);
      s4h = fma(vec4<f32>(a4.x), bh, s4h);
      s5l = fma(vec4<f32>(a5.x), bl, s5l);
      s5h = fma(vec4<f32>(a5.x), bh, s5h);
      s6l = fma(vec4<f32>(a6.x), bl, s6l);
      s6h = fma(vec4<f32>(a6.x), bh, s6h);
      s7l = fma(vec4<f32>(a7.x), bl, s7l);
      s7h = fma(vec4<f32>(a7.x), bh, s7h);
      bl = vec4<f32>(b0.y, b1.y, b2.y, b3.y);
      bh = vec4<f32>(b4.y, b5.y, b6.y, b7.y);
      s0l = fma(vec4<f32>(a0.y), bl, s0l);
      s0h = fma(vec4<f32>(a0.y), bh, s0h);
      s1l = fma(vec4<f32>(a1.y), bl, s1l);
      s1h = fma(vec4<f32>(a1.y), bh, s1h);
      s2l = fma(vec4<f32>(a2.y), bl, s2l);
      s2h = fma(vec4<f32>(a2.y), bh, s2h);
      s3l = fma(vec4<f32>(a3.y), bl, s3l);
      s3h = fma(vec4<f32>(a3.y), bh, s3h);
      s4l = fma(vec4<f32>(a4.y), bl, s4l);
      s4h = fma(vec4<f32>(a4.y), bh, s4h);
      s5l = fma(vec4<f32>(a5.y), bl, s5l);
      s5h = fma(vec4<f32>(a5.y), bh, s5h);
      s6l = fma(vec4<f32>(a6.y), bl, s6l);
      s6h = fma(vec4<f32>(a6.y), bh, s6h);
      s7l = fma(vec4<f32>(a7.y), bl, s7l);
      s7h = fma(vec4<f32>(a7.y), bh, s7h);
      bl = vec4<f32>(b0.z, b1.z, b2.z, b3.z);
      bh = vec4<f32>(b4.z, b5.z, b6.z, b7.z);
      s0l = fma(vec4<f32>(a0.z), bl, s0l);
      s0h = fma(vec4<f32>(a0.z), bh, s0h);
      s1l = fma(vec4<f32>(a1.z), bl, s1l);
      s1h = fma(vec4<f32>(a1.z), bh, s1h);
      s2l = fma(vec4<f32>(a2.z), bl, s2l);
      s2h = fma(vec4<f32>(a2.z), bh, s2h);
      s3l = fma(vec4<f32>(a3.z), bl, s3l);
      s3h = fma(vec4<f32>(a3.z), bh, s3h);
      s4l = fma(vec4<f32>(a4.z), bl, s4l);
      s4h = fma(vec4<f32>(a4.z), bh, s4h);
      s5l = fma(vec4<f32>(a5.z), bl, s5l);
      s5h = fma(vec4<f32>(a5.z), bh, s5h);
      s6l = fma(vec4<f32>(a6.z), bl, s6l);
      s6h = fma(vec4<f32>(a6.z), bh, s6h);
      s7l = fma(vec4<f32>(a7.z), bl, s7l);
      s7h = fma(vec4<f32>(a7.z), bh, s7h);
      bl = vec4<f32>(b0.w, b1.w, b2.w, b3.w);
      bh = vec4<f32>(b4.w, b5.w, b6.w, b7.w);
      s0l = fma(vec4<f32>(a0.w), bl, s0l);
      s0h = fma(vec4<f32>(a0.w), bh, s0h);
      s1l = fma(vec4<f32>(a1.w), bl, s1l);
      s1h = fma(vec4<f32>(a1.w), bh, s1h);
      s2l = fma(vec4<f32>(a2.w), bl, s2l);
      s2h = fma(vec4<f32>(a2.w), bh, s2h);
      s3l = fma(vec4<f32>(a3.w), bl, s3l);
      s3h = fma(vec4<f32>(a3.w), bh, s3h);
      s4l = fma(vec4<f32>(a4.w), bl, s4l);
      s4h = fma(vec4<f32>(a4.w), bh, s4h);
      s5l = fma(vec4<f32>(a5.w), bl, s5l);
      s5h = fma(vec4<f32>(a5.w), bh, s5h);
      s6l = fma(vec4<f32>(a6.w), bl, s6l);
      s6h = fma(vec4<f32>(a6.w), bh, s6h);
      s7l = fma(vec4<f32>(a7.w), bl, s7l);
      s7h = fma(vec4<f32>(a7.w), bh, s7h);
    }
    workgroupBarrier();
  }
  store_row(m0 + ty + 0u, n0 + tx, baseC, s0l, s0h);
  store_row(m0 + ty + 16u, n0 + tx, baseC, s1l, s1h);
  store_row(m0 + ty + 32u, n0 + tx, baseC, s2l, s2h);
  store_row(m0 + ty + 48u, n0 + tx, baseC, s3l, s3h);
  store_row(m0 + ty + 64u, n0 + tx, baseC, s4l, s4h);
  store_row(m0 + ty + 80u, n0 + tx, baseC, s5l, s5h);
  store_row(m0 + ty + 96u, n0 + tx, baseC, s6l, s6h);
  store_row(m0 + ty + 112u, n0 + tx, baseC, s7l, s7h);
}
