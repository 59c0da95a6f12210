// Linear layer, tiled: y[m, ycol + n] = act(sum_k x[m, k] * w[n, k] + bias[n]) + residual[m, n]
// w is a torch Linear weight [N, K] (out, in), row-major, so both operands are read along K as vec4s.
// A TM x TN output tile (128 or 64 each; 128 x 128 unless the caller asks) per workgroup of (TN / 8) x (TM / 8) threads; each
// thread owns an 8x8 block (rows ty + (TM / 8) i, columns tx + (TN / 8) j, so stores are coalesced). No result
// depends on the tile. K advances 16 at a time through workgroup memory: row r of a tile at
// [r % (TM / 8)][(r / (TM / 8)) * 5 + k quad], so a thread's eight rows are one outer index and constant inner ones
// (the k-quad loop is unrolled with //#repeat): the index bounds check and address arithmetic happen once per operand,
// not once per read, which saves ~60 registers and ran 9% faster on the H100; 41 vec4s per outer row keep
// neighbouring threads' reads on different banks. The 8x8 block is written out by hand: registers, not arrays,
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
const TM: u32 = {{TM}}u;
const TN: u32 = {{TN}}u;
const WX: u32 = TN / 8u;          // threads along n
const WY: u32 = TM / 8u;          // threads along m
const THREADS: u32 = WX * WY;
const X_SLOTS: u32 = TM * 4u / THREADS;   // vec4 loads per thread per k step (2 or 4)
const W_SLOTS: u32 = TN * 4u / THREADS;
const KQ: u32 = 4u;      // vec4s of K per step (16 values)
const STRIDE: u32 = 5u;  // padded row stride in vec4s
const SEG4: u32 = 16u;   // vec4s per reduction segment (64 values)
const INNER: u32 = 8u * STRIDE + 1u;
var<workgroup> xs: array<array<vec4<f32>, INNER>, WY>;
var<workgroup> ws: array<array<vec4<f32>, INNER>, WX>;

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
  store(m, n + WX, lo.y);
  store(m, n + 2u * WX, lo.z);
  store(m, n + 3u * WX, lo.w);
  store(m, n + 4u * WX, hi.x);
  store(m, n + 5u * WX, hi.y);
  store(m, n + 6u * WX, hi.z);
  store(m, n + 7u * WX, hi.w);
}

// Store load slot s of the x / w tile (element li + s * THREADS: row / KQ, vec4 % KQ) to workgroup memory.
fn put_x(li: u32, s: u32, v: vec4<f32>) {
  let i = li + s * THREADS;
  let r = i / KQ;
  xs[r % WY][(r / WY) * STRIDE + i % KQ] = v;
}
fn put_w(li: u32, s: u32, v: vec4<f32>) {
  let i = li + s * THREADS;
  let r = i / KQ;
  ws[r % WX][(r / WX) * STRIDE + i % KQ] = v;
}

@compute @workgroup_size(TN / 8u, TM / 8u)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let n0 = wg.x * TN;
  let m0 = wg.y * TM;
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
  // Named registers, not arrays; slots 2 and 3 exist where a tile side is 128 and the other 64.
  var px0 = load_x(m0, k_begin, li);
  var px1 = load_x(m0, k_begin, li + THREADS);
  var px2 = vec4<f32>();
  var px3 = vec4<f32>();
  if (X_SLOTS > 2u) {
    px2 = load_x(m0, k_begin, li + 2u * THREADS);
    px3 = load_x(m0, k_begin, li + 3u * THREADS);
  }
  var pw0 = load_w(n0, k_begin, li);
  var pw1 = load_w(n0, k_begin, li + THREADS);
  var pw2 = vec4<f32>();
  var pw3 = vec4<f32>();
  if (W_SLOTS > 2u) {
    pw2 = load_w(n0, k_begin, li + 2u * THREADS);
    pw3 = load_w(n0, k_begin, li + 3u * THREADS);
  }
  for (var k4 = k_begin; k4 < k_end; k4 += KQ) {
    // TM (TN) rows x 4 vec4s of each operand, four threads per row (64 contiguous bytes).
    put_x(li, 0u, px0);
    put_x(li, 1u, px1);
    if (X_SLOTS > 2u) {
      put_x(li, 2u, px2);
      put_x(li, 3u, px3);
    }
    put_w(li, 0u, pw0);
    put_w(li, 1u, pw1);
    if (W_SLOTS > 2u) {
      put_w(li, 2u, pw2);
      put_w(li, 3u, pw3);
    }
    workgroupBarrier();
    if (k4 + KQ < k_end) {
      px0 = load_x(m0, k4 + KQ, li);
      px1 = load_x(m0, k4 + KQ, li + THREADS);
      if (X_SLOTS > 2u) {
        px2 = load_x(m0, k4 + KQ, li + 2u * THREADS);
        px3 = load_x(m0, k4 + KQ, li + 3u * THREADS);
      }
      pw0 = load_w(n0, k4 + KQ, li);
      pw1 = load_w(n0, k4 + KQ, li + THREADS);
      if (W_SLOTS > 2u) {
        pw2 = load_w(n0, k4 + KQ, li + 2u * THREADS);
        pw3 = load_w(n0, k4 + KQ, li + 3u * THREADS);
      }
    }
    // Per k quad: the low four columns' fmas, then the high four's, their operands read only after the first half
    // (fewer registers live than reading all sixteen first; the same order per output).
//#repeat Q 4
    {
      let a0 = xs[ty][0u * STRIDE + {{Q}}u];
      let a1 = xs[ty][1u * STRIDE + {{Q}}u];
      let a2 = xs[ty][2u * STRIDE + {{Q}}u];
      let a3 = xs[ty][3u * STRIDE + {{Q}}u];
      let a4 = xs[ty][4u * STRIDE + {{Q}}u];
      let a5 = xs[ty][5u * STRIDE + {{Q}}u];
      let a6 = xs[ty][6u * STRIDE + {{Q}}u];
      let a7 = xs[ty][7u * STRIDE + {{Q}}u];
      let b0 = ws[tx][0u * STRIDE + {{Q}}u];
      let b1 = ws[tx][1u * STRIDE + {{Q}}u];
      let b2 = ws[tx][2u * STRIDE + {{Q}}u];
      let b3 = ws[tx][3u * STRIDE + {{Q}}u];
      bl = vec4<f32>(b0.x, b1.x, b2.x, b3.x);
      s0l = fma(vec4<f32>(a0.x), bl, s0l);
      s1l = fma(vec4<f32>(a1.x), bl, s1l);
      s2l = fma(vec4<f32>(a2.x), bl, s2l);
      s3l = fma(vec4<f32>(a3.x), bl, s3l);
      s4l = fma(vec4<f32>(a4.x), bl, s4l);
      s5l = fma(vec4<f32>(a5.x), bl, s5l);
      s6l = fma(vec4<f32>(a6.x), bl, s6l);
      s7l = fma(vec4<f32>(a7.x), bl, s7l);
      bl = vec4<f32>(b0.y, b1.y, b2.y, b3.y);
      s0l = fma(vec4<f32>(a0.y), bl, s0l);
      s1l = fma(vec4<f32>(a1.y), bl, s1l);
      s2l = fma(vec4<f32>(a2.y), bl, s2l);
      s3l = fma(vec4<f32>(a3.y), bl, s3l);
      s4l = fma(vec4<f32>(a4.y), bl, s4l);
      s5l = fma(vec4<f32>(a5.y), bl, s5l);
      s6l = fma(vec4<f32>(a6.y), bl, s6l);
      s7l = fma(vec4<f32>(a7.y), bl, s7l);
      bl = vec4<f32>(b0.z, b1.z, b2.z, b3.z);
      s0l = fma(vec4<f32>(a0.z), bl, s0l);
      s1l = fma(vec4<f32>(a1.z), bl, s1l);
      s2l = fma(vec4<f32>(a2.z), bl, s2l);
      s3l = fma(vec4<f32>(a3.z), bl, s3l);
      s4l = fma(vec4<f32>(a4.z), bl, s4l);
      s5l = fma(vec4<f32>(a5.z), bl, s5l);
      s6l = fma(vec4<f32>(a6.z), bl, s6l);
      s7l = fma(vec4<f32>(a7.z), bl, s7l);
      bl = vec4<f32>(b0.w, b1.w, b2.w, b3.w);
      s0l = fma(vec4<f32>(a0.w), bl, s0l);
      s1l = fma(vec4<f32>(a1.w), bl, s1l);
      s2l = fma(vec4<f32>(a2.w), bl, s2l);
      s3l = fma(vec4<f32>(a3.w), bl, s3l);
      s4l = fma(vec4<f32>(a4.w), bl, s4l);
      s5l = fma(vec4<f32>(a5.w), bl, s5l);
      s6l = fma(vec4<f32>(a6.w), bl, s6l);
      s7l = fma(vec4<f32>(a7.w), bl, s7l);
      let b4 = ws[tx][4u * STRIDE + {{Q}}u];
      let b5 = ws[tx][5u * STRIDE + {{Q}}u];
      let b6 = ws[tx][6u * STRIDE + {{Q}}u];
      let b7 = ws[tx][7u * STRIDE + {{Q}}u];
      bh = vec4<f32>(b4.x, b5.x, b6.x, b7.x);
      s0h = fma(vec4<f32>(a0.x), bh, s0h);
      s1h = fma(vec4<f32>(a1.x), bh, s1h);
      s2h = fma(vec4<f32>(a2.x), bh, s2h);
      s3h = fma(vec4<f32>(a3.x), bh, s3h);
      s4h = fma(vec4<f32>(a4.x), bh, s4h);
      s5h = fma(vec4<f32>(a5.x), bh, s5h);
      s6h = fma(vec4<f32>(a6.x), bh, s6h);
      s7h = fma(vec4<f32>(a7.x), bh, s7h);
      bh = vec4<f32>(b4.y, b5.y, b6.y, b7.y);
      s0h = fma(vec4<f32>(a0.y), bh, s0h);
      s1h = fma(vec4<f32>(a1.y), bh, s1h);
      s2h = fma(vec4<f32>(a2.y), bh, s2h);
      s3h = fma(vec4<f32>(a3.y), bh, s3h);
      s4h = fma(vec4<f32>(a4.y), bh, s4h);
      s5h = fma(vec4<f32>(a5.y), bh, s5h);
      s6h = fma(vec4<f32>(a6.y), bh, s6h);
      s7h = fma(vec4<f32>(a7.y), bh, s7h);
      bh = vec4<f32>(b4.z, b5.z, b6.z, b7.z);
      s0h = fma(vec4<f32>(a0.z), bh, s0h);
      s1h = fma(vec4<f32>(a1.z), bh, s1h);
      s2h = fma(vec4<f32>(a2.z), bh, s2h);
      s3h = fma(vec4<f32>(a3.z), bh, s3h);
      s4h = fma(vec4<f32>(a4.z), bh, s4h);
      s5h = fma(vec4<f32>(a5.z), bh, s5h);
      s6h = fma(vec4<f32>(a6.z), bh, s6h);
      s7h = fma(vec4<f32>(a7.z), bh, s7h);
      bh = vec4<f32>(b4.w, b5.w, b6.w, b7.w);
      s0h = fma(vec4<f32>(a0.w), bh, s0h);
      s1h = fma(vec4<f32>(a1.w), bh, s1h);
      s2h = fma(vec4<f32>(a2.w), bh, s2h);
      s3h = fma(vec4<f32>(a3.w), bh, s3h);
      s4h = fma(vec4<f32>(a4.w), bh, s4h);
      s5h = fma(vec4<f32>(a5.w), bh, s5h);
      s6h = fma(vec4<f32>(a6.w), bh, s6h);
      s7h = fma(vec4<f32>(a7.w), bh, s7h);
    }
//#end
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
  store_row(m0 + ty + 1u * WY, n0 + tx, c1l, c1h);
  store_row(m0 + ty + 2u * WY, n0 + tx, c2l, c2h);
  store_row(m0 + ty + 3u * WY, n0 + tx, c3l, c3h);
  store_row(m0 + ty + 4u * WY, n0 + tx, c4l, c4h);
  store_row(m0 + ty + 5u * WY, n0 + tx, c5l, c5h);
  store_row(m0 + ty + 6u * WY, n0 + tx, c6l, c6h);
  store_row(m0 + ty + 7u * WY, n0 + tx, c7l, c7h);
}
