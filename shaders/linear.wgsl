// Linear layer, tiled: y[m, ycol + n] = act(sum_k x[m, k] * w[n, k] + bias[n]) + residual[m, n]
// w is a torch Linear weight [N, K] (out, in), row-major, so both operands are read along K as vec4s.
// A 128x128 output tile per workgroup of 16x16 threads; each thread owns an 8x8 block (rows ty + 16i,
// columns tx + 16j, so stores are coalesced). K advances 16 at a time through workgroup memory whose rows are
// padded to 5 vec4s (conflict-free vec4 reads). The 8x8 block is written out by hand: registers, not arrays,
// because drivers do not reliably keep dynamically indexed arrays in registers.
// flags: bit 0 bias, bit 1 relu, bit 2 residual. Requires K % 4 == 0. Accumulates in f32.
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

const TILE: u32 = 128u;
const KQ: u32 = 4u;      // vec4s of K per step (16 values)
const STRIDE: u32 = 5u;  // padded row stride in vec4s
var<workgroup> xs: array<vec4<f32>, 640>;
var<workgroup> ws: array<vec4<f32>, 640>;

fn store(m: u32, n: u32, acc: f32) {
  if (n >= p.N) { return; }
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
  for (var k4 = 0u; k4 < K4; k4 += KQ) {
    // 128 rows x 4 vec4s of each operand: two of each per thread, four threads per row (64 contiguous bytes).
    for (var r = 0u; r < 2u; r++) {
      let idx = li + 256u * r;
      let row = idx / KQ;
      let q = idx % KQ;
      let kq = k4 + q;
      var xv = vec4<f32>();
      if (m0 + row < p.M && kq < K4) { xv = vec4<f32>(x[(m0 + row) * K4 + kq]); }
      xs[row * STRIDE + q] = xv;
      var wv = vec4<f32>();
      if (n0 + row < p.N && kq < K4) { wv = vec4<f32>(w[(n0 + row) * K4 + kq]); }
      ws[row * STRIDE + q] = wv;
    }
    workgroupBarrier();
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
      c0l += vec4<f32>(dot(a0, b0), dot(a0, b1), dot(a0, b2), dot(a0, b3));
      c0h += vec4<f32>(dot(a0, b4), dot(a0, b5), dot(a0, b6), dot(a0, b7));
      c1l += vec4<f32>(dot(a1, b0), dot(a1, b1), dot(a1, b2), dot(a1, b3));
      c1h += vec4<f32>(dot(a1, b4), dot(a1, b5), dot(a1, b6), dot(a1, b7));
      c2l += vec4<f32>(dot(a2, b0), dot(a2, b1), dot(a2, b2), dot(a2, b3));
      c2h += vec4<f32>(dot(a2, b4), dot(a2, b5), dot(a2, b6), dot(a2, b7));
      c3l += vec4<f32>(dot(a3, b0), dot(a3, b1), dot(a3, b2), dot(a3, b3));
      c3h += vec4<f32>(dot(a3, b4), dot(a3, b5), dot(a3, b6), dot(a3, b7));
      c4l += vec4<f32>(dot(a4, b0), dot(a4, b1), dot(a4, b2), dot(a4, b3));
      c4h += vec4<f32>(dot(a4, b4), dot(a4, b5), dot(a4, b6), dot(a4, b7));
      c5l += vec4<f32>(dot(a5, b0), dot(a5, b1), dot(a5, b2), dot(a5, b3));
      c5h += vec4<f32>(dot(a5, b4), dot(a5, b5), dot(a5, b6), dot(a5, b7));
      c6l += vec4<f32>(dot(a6, b0), dot(a6, b1), dot(a6, b2), dot(a6, b3));
      c6h += vec4<f32>(dot(a6, b4), dot(a6, b5), dot(a6, b6), dot(a6, b7));
      c7l += vec4<f32>(dot(a7, b0), dot(a7, b1), dot(a7, b2), dot(a7, b3));
      c7h += vec4<f32>(dot(a7, b4), dot(a7, b5), dot(a7, b6), dot(a7, b7));
    }
    workgroupBarrier();
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
