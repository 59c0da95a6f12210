// SGD over one window of one tensor, torch.optim.SGD's order (coupled weight decay, then momentum):
//   g = grad*clip + wd*p;  buf = first ? g : momentum*buf + (1 - dampening)*g;  d = nesterov ? g + momentum*buf : buf
//   p += -lr * d
// Without momentum (0) `buf` is a small dummy that is never indexed. Skipped when the step's finiteness flag is 0.
struct Params {
  count: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
// [0] norm, [1] clip, [2] ok; [4] lr, [5] weight decay, [6] momentum, [7] 1 - dampening, [8] first step (1/0), [9] nesterov (1/0)
@group(0) @binding(1) var<storage, read> scalars: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> buf: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = (wg.x + wg.y * 65535u) * 256u + lid.x;
  if (i >= p.count || scalars[2] == 0.0) { return; }
  let p0 = param[i];
  var g = grad[i] * scalars[1];
  if (scalars[5] != 0.0) { g = g + scalars[5] * p0; }
  var d = g;
  if (scalars[6] != 0.0) {
    var b = g;
    if (scalars[8] == 0.0) { b = buf[i] * scalars[6] + scalars[7] * g; }
    buf[i] = b;
    d = select(b, g + scalars[6] * b, scalars[9] != 0.0);
  }
  param[i] = p0 - scalars[4] * d;
}
