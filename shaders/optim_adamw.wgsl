// Fused AdamW over one window of one tensor, with torch.optim.AdamW's exact order of operations (foreach and
// single-tensor paths agree):
//   g = grad * clip;  p *= 1 - lr*wd;  m = lerp(m, g, 1 - beta1);  v = v*beta2 + (1 - beta2)*g*g;
//   p += -(lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)      with bc_i = 1 - beta_i^t
// Host-side scalars (decay, step size, sqrt(bc2)) are computed in float64 and rounded once, like PyTorch's
// Python scalars. The whole update is skipped when the step's finiteness flag is 0.
struct Params {
  count: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
// [0] norm, [1] clip, [2] ok; [4] 1 - lr*wd, [5] lr / bc1, [6] sqrt(bc2), [7] 1 - beta1, [8] beta2, [9] 1 - beta2, [10] eps
@group(0) @binding(1) var<storage, read> scalars: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(5) var<storage, read_write> exp_avg_sq: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = (wg.x + wg.y * 65535u) * 256u + lid.x;
  if (i >= p.count || scalars[2] == 0.0) { return; }
  let g = grad[i] * scalars[1];
  let w = scalars[7];
  let m0 = exp_avg[i];
  // torch.lerp: self + w*(end - self) for w < 0.5, else end - (end - self)*(1 - w).
  let m = select(g - (g - m0) * (1.0 - w), m0 + w * (g - m0), w < 0.5);
  let v = exp_avg_sq[i] * scalars[8] + scalars[9] * (g * g);
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  let denom = sqrt(v) / scalars[6] + scalars[10];
  param[i] = param[i] * scalars[4] - scalars[5] * (m / denom);
}
