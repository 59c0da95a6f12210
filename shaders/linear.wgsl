// Linear layer, tiled: y[m, ycol + n] = act(sum_k x[m, k] * w[n, k] + bias[n]) + residual[m, n]
// w is a torch Linear weight [N, K] (out, in), row-major, so both operands are read along K as vec4s.
// A 128x128 output tile per workgroup of 16x16 threads; each thread owns an 8x8 block (rows ty + 16i,
// columns tx + 16j, so stores are coalesced). K advances 16 at a time through workgroup memory whose rows are
// padded to 5 vec4s (conflict-free vec4 reads). The 8x8 block is written out by hand: registers, not arrays,
// because drivers do not reliably keep dynamically indexed arrays in registers.
//
// Reduction order (shared with linear_small.wgsl, so a row's result never depends on how many rows ran with
// it, which kernel ran it, or where its tile fell): k is cut into segments of 64; each segment is a sequential
// fma chain from 0; the segment sums are added in order; then + bias, relu, + residual.
// flags: bit 0 bias, bit 1 relu, bit 2 residual. Requires K % 4 == 0. Accumulates in f32.
//
// SPLIT (batched decode: too few rows for 128-row tiles to fill the GPU): workgroup z computes only segment z
// of k and writes its sums to y = part[z][m][n] (f32 scratch); linear_segments.wgsl's reduce pass then adds the
// segments in order and applies the epilogue: the same arithmetic, spread over K/64 times more workgroups.
{{ENABLE_F16}}
struct Params {
  M: u32,
  N: u32,
  K: u32,
  ldy: u32,
  ycol: u32,
  flags: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<{{A}}>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<{{W}}>>;
@group(0) @binding(3) var<storage, read> bias: array<{{W}}>;
@group(0) @binding(4) var<storage, read> residual: array<{{A}}>;
@group(0) @binding(5) var<storage, read_write> y: array<{{Y}}>;

const SPLIT: bool = {{SPLIT}};
var<private> seg_id: u32;
const TILE: u32 = 128u;
const KQ: u32 = 4u;      // vec4s of K per step (16 values)
const STRIDE: u32 = 5u;  // padded row stride in vec4s
const SEG4: u32 = 16u;   // vec4s per reduction segment (64 values)
var<workgroup> xs: array<vec4<f32>, 640>;
var<workgroup> ws: array<vec4<f32>, 640>;

// Element idx (row idx / KQ, vec4 idx % KQ) of the x tile at rows m0.., k step k4 (zeros outside the matrix).
fn load_x(m0: u32, k4: u32, idx: u32) -> vec4<f32> {
  let row = idx / KQ;
  let kq = k4 + idx % KQ;
  if (m0 + row < p.M && kq < p.K / 4u) { return vec4<f32>(x[(m0 + row) * (p.K / 4u) + kq]); }
  return vec4<f32>();
}

fn load_w(n0: u32, k4: u32, idx: u32) -> vec4<f32> {
  let row = idx / KQ;
  let kq = k4 + idx % KQ;
  if (n0 + row < p.N && kq < p.K / 4u) { return vec4<f32>(w[(n0 + row) * (p.K / 4u) + kq]); }
  return vec4<f32>();
}

fn store(m: u32, n: u32, acc: f32) {
  if (n >= p.N) { return; }
  if (SPLIT) {
    y[(seg_id * p.M + m) * p.N + n] = {{Y}}(acc);
    return;
  }
  var v = acc;
  if ((p.flags & 1u) != 0u) { v += f32(bias[n]); }
  if ((p.flags & 2u) != 0u) { v = max(v, 0.0); }
  if ((p.flags & 4u) != 0u) { v += f32(residual[m * p.N + n]); }
  y[m * p.ldy + p.ycol + n] = {{Y}}(v);
}

fn store_row(m: u32, n: u32, lo: vec4<f32>, hi: vec4<f32>) {
  if (m >= p.M) { return; }
  store(m, n, lo.x);
  store(m, n + 16u, lo.y);
  store(m, n + 32u, lo.z);
  store(m, n + 48u, lo.w);
  store(m, n + 64u, hi.x);
  store(m, n + 80u, hi.y);
  store(m, n + 96u, hi.z);
  store(m, n + 112u, hi.w);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let n0 = wg.x * TILE;
  let m0 = wg.y * TILE;
  let tx = lid.x;
  let ty = lid.y;
  let K4 = p.K / 4u;
  var k_begin = 0u;
  var k_end = K4;
  if (SPLIT) {
    seg_id = wg.z;
    k_begin = wg.z * SEG4;
    k_end = min(K4, k_begin + SEG4);
  }
  var c0l = vec4<f32>();
  var c0h = vec4<f32>();
  var c1l = vec4<f32>();
  var c1h = vec4<f32>();
  var c2l = vec4<f32>();
  var c2h = vec4<f32>();
  var c3l = vec4<f32>();
  var c3h = vec4<f32>();
  var c4l = vec4<f32>();
  var c4h = vec4<f32>();
  var c5l = vec4<f32>();
  var c5h = vec4<f32>();
  var c6l = vec4<f32>();
  var c6h = vec4<f32>();
  var c7l = vec4<f32>();
  var c7h = vec4<f32>();
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
  // next step's while it computes (the global loads' latency hides behind the fmas; the arithmetic is unchanged).
  var px0 = load_x(m0, k_begin, li);
  var px1 = load_x(m0, k_begin, li + 256u);
  var pw0 = load_w(n0, k_begin, li);
  var pw1 = load_w(n0, k_begin, li + 256u);
  for (var k4 = k_begin; k4 < k_end; k4 += KQ) {
    // 128 rows x 4 vec4s of each operand: two of each per thread, four threads per row (64 contiguous bytes).
    xs[(li / KQ) * STRIDE + li % KQ] = px0;
    xs[((li + 256u) / KQ) * STRIDE + (li + 256u) % KQ] = px1;
    ws[(li / KQ) * STRIDE + li % KQ] = pw0;
    ws[((li + 256u) / KQ) * STRIDE + (li + 256u) % KQ] = pw1;
    workgroupBarrier();
    if (k4 + KQ < k_end) {
      px0 = load_x(m0, k4 + KQ, li);
      px1 = load_x(m0, k4 + KQ, li + 256u);
      pw0 = load_w(n0, k4 + KQ, li);
      pw1 = load_w(n0, k4 + KQ, li + 256u);
    }
    for (var q = 0u; q < KQ; q++) {
      let a0 = xs[(ty + 0u) * STRIDE + q];
      let a1 = xs[(ty + 16u) * STRIDE + q];
      let a2 = xs[(ty + 32u) * STRIDE + q];
      let a3 = xs[(ty + 48u) * STRIDE + q];
      let a4 = xs[(ty + 64u) * STRIDE + q];
      let a5 = xs[(ty + 80u) * STRIDE + q];
      let a6 = xs[(ty + 96u) * STRIDE + q];
      let a7 = xs[(ty + 112u) * STRIDE + q];
      let b0 = ws[(tx + 0u) * STRIDE + q];
      let b1 = ws[(tx + 16u) * STRIDE + q];
      let b2 = ws[(tx + 32u) * STRIDE + q];
      let b3 = ws[(tx + 48u) * STRIDE + q];
      let b4 = ws[(tx + 64u) * STRIDE + q];
      let b5 = ws[(tx + 80u) * STRIDE + q];
      let b6 = ws[(tx + 96u) * STRIDE + q];
      let b7 = ws[(tx + 112u) * STRIDE + q];
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
    // End of a 64-value segment (or of K): fold the segment sums into the totals, in order.
    if ((k4 + KQ) % SEG4 == 0u || k4 + KQ >= K4) {
      c0l += s0l; s0l = vec4<f32>();
      c0h += s0h; s0h = vec4<f32>();
      c1l += s1l; s1l = vec4<f32>();
      c1h += s1h; s1h = vec4<f32>();
      c2l += s2l; s2l = vec4<f32>();
      c2h += s2h; s2h = vec4<f32>();
      c3l += s3l; s3l = vec4<f32>();
      c3h += s3h; s3h = vec4<f32>();
      c4l += s4l; s4l = vec4<f32>();
      c4h += s4h; s4h = vec4<f32>();
      c5l += s5l; s5l = vec4<f32>();
      c5h += s5h; s5h = vec4<f32>();
      c6l += s6l; s6l = vec4<f32>();
      c6h += s6h; s6h = vec4<f32>();
      c7l += s7l; s7l = vec4<f32>();
      c7h += s7h; s7h = vec4<f32>();
    }
  }
  store_row(m0 + ty + 0u, n0 + tx, c0l, c0h);
  store_row(m0 + ty + 16u, n0 + tx, c1l, c1h);
  store_row(m0 + ty + 32u, n0 + tx, c2l, c2h);
  store_row(m0 + ty + 48u, n0 + tx, c3l, c3h);
  store_row(m0 + ty + 64u, n0 + tx, c4l, c4h);
  store_row(m0 + ty + 80u, n0 + tx, c5l, c5h);
  store_row(m0 + ty + 96u, n0 + tx, c6l, c6h);
  store_row(m0 + ty + 112u, n0 + tx, c7l, c7h);
}
