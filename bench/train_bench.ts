/**
 * One AdamW training step of OPT-125m on 8 x 512 tokens, f32 (synthetic weights: speed does not depend on their
 * values): the same work as ../shared/peers/hf_opt_bench.py's train mode (zero_grad, forward with
 * labels=input_ids, backward, AdamW(lr=1e-4, weight decay 0.01) over every parameter; random ids in [4, 50000)).
 *
 *   queued:     Trainer.steps over 5 batches, one readback after the last (the peer's protocol: 5 steps, one
 *               sync), ms per step, median of --steps such calls. The figure compared with the peer.
 *   step:       Trainer.step, median over --steps after --warmup steps; includes the one readback a step makes
 *               (loss + grad norm: Deno notices finished GPU work on a ~10 ms timer, DESIGN.md).
 *   breakdown:  forward + loss alone (Trainer.loss, one readback), and the optimizer alone (grad norm + AdamW
 *               over 125M parameters, one readback), to name the bottleneck; backward ~= step - both.
 *   memory:     gpu.stats().peakBytesAllocated over the whole run (parameters, gradients, AdamW state,
 *               activations, logits chunks): the trainer is the only thing on this device.
 *
 * Usage: deno run -A --unstable-webgpu bench/train_bench.ts [--steps 5] [--warmup 2] [--batch 8] [--seq 512]
 *        [--model synthetic:opt-125m:1] [--out FILE]
 */
import { LocalGpu } from '../src/gpu/local.ts';
import { Trainer } from '../src/train/trainer.ts';

const args = Deno.args;
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const steps = Number(opt('steps', '5'));
const warmup = Number(opt('warmup', '2'));
const B = Number(opt('batch', '8'));
const L = Number(opt('seq', '512'));
const modelSpec = opt('model', 'synthetic:opt-125m:1');
const out = opt('out', '');
const log = (...a: unknown[]) => console.error(...a);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const gpu = await LocalGpu.create();
log('adapter', gpu.caps.adapterDescription);
const res: Record<string, unknown> = {
  adapter: gpu.caps.adapterDescription, date: new Date().toISOString(), deno: Deno.version.deno, model: modelSpec,
  batch: `${B}x${L}`, dtype: 'f32', optimizer: 'AdamW(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)',
};

const t0 = performance.now();
const trainer = await Trainer.create({
  model: modelSpec, gpu, maxBatchTokens: B * L, maxSequenceLength: L, // (attention memory sized for L: probabilities saved)
  optimizer: { type: 'adamw', lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 },
});
res.setup_ms = +(performance.now() - t0).toFixed(0);
let params = 0;
for (const p of trainer.parameters().values()) params += p.shape.reduce((a, b) => a * b, 1);
res.parameters = params;
log(`trainer ready in ${res.setup_ms} ms: ${params} parameters`);

// Deterministic "random" ids in [4, 50000), as the peer draws them (below the vocabulary for smaller configs).
const idLimit = Math.min(50000, trainer.config.vocabSize);
let x = 12345;
const ids = Array.from({ length: B }, () => Array.from({ length: L }, () => {
  x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
  return 4 + (x % (idLimit - 4));
}));

const times: number[] = [];
const losses: number[] = [];
for (let i = 0; i < warmup + steps; i++) {
  const s = performance.now();
  const r = await trainer.step(ids);
  const ms = performance.now() - s;
  log(`step ${i + 1}${i < warmup ? ' (warm-up)' : ''}: ${ms.toFixed(1)} ms, loss ${r.loss.toFixed(4)}, grad norm ${r.gradNorm.toFixed(4)}`);
  if (i >= warmup) times.push(ms);
  losses.push(r.loss);
}
const stepMs = median(times);
// The peer's protocol: five steps queued, one sync.
const queued: number[] = [];
for (let i = 0; i < steps; i++) {
  const s = performance.now();
  const rs = await trainer.steps([ids, ids, ids, ids, ids]);
  const ms = (performance.now() - s) / 5;
  log(`5 queued steps: ${ms.toFixed(1)} ms per step, losses ${rs.map((r) => r.loss.toFixed(4)).join(' ')}`);
  queued.push(ms);
}
res.train_fp32_queued = {
  ms_per_step: +median(queued).toFixed(1), tok_per_s: +((B * L) / (median(queued) / 1e3)).toFixed(1),
  all_ms: queued.map((t) => +t.toFixed(1)), note: 'Trainer.steps over 5 batches, one readback (the peer: 5 steps, one sync)',
};
res.train_fp32_step = {
  ms_per_step: +stepMs.toFixed(1), tok_per_s: +((B * L) / (stepMs / 1e3)).toFixed(1),
  all_ms: times.map((t) => +t.toFixed(1)), note: 'Trainer.step: forward, loss, backward, grad norm, AdamW, one readback',
};
res.losses = losses.map((l) => +l.toFixed(5));

// Breakdown: forward + loss alone, optimizer alone.
const fwd: number[] = [];
for (let i = 0; i < 3; i++) {
  const s = performance.now();
  await trainer.loss(ids);
  fwd.push(performance.now() - s);
}
const optMs: number[] = [];
for (let i = 0; i < 3; i++) {
  const s = performance.now();
  trainer.optimizer.record();
  await trainer.optimizer.finish();
  optMs.push(performance.now() - s);
}
// A bare readback, the fixed cost included in each figure above.
const probe = await gpu.createBuffer(16, 'probe');
const rb: number[] = [];
for (let i = 0; i < 5; i++) {
  const s = performance.now();
  await gpu.read(probe);
  rb.push(performance.now() - s);
}
const f = median(fwd), o = median(optMs);
res.breakdown_ms = {
  forward_loss: +f.toFixed(1), optimizer: +o.toFixed(1), backward_estimate: +(stepMs - f - o).toFixed(1),
  readback: +median(rb).toFixed(1), note: 'each of forward_loss and optimizer includes one readback',
};
res.peak_gpu_bytes = gpu.stats().peakBytesAllocated;
res.peak_gpu_GB = +(gpu.stats().peakBytesAllocated / 1e9).toFixed(3);
log('peak GPU bytes', res.peak_gpu_bytes);
trainer.release();
console.log(JSON.stringify(res, null, 1));
if (out) await Deno.writeTextFile(out, JSON.stringify(res, null, 1));
Deno.exit(0);
