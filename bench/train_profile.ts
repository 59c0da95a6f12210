/**
 * Where the GPU time of one training step goes, kernel by kernel: the step's dispatches (forward, head + loss,
 * backward) captured once and replayed with a timestamp pair around every dispatch
 * (LocalGpu.profileRecording), summed by kernel and by phase. Each dispatch runs in a pass of its own here, so the
 * sum is a little above the step's real GPU time; the shares are what to read. OPT-125m (synthetic), 8 x 512, f32.
 *
 * Usage: deno run -A --unstable-webgpu bench/train_profile.ts [--batch 8] [--seq 512] [--model synthetic:opt-125m:1] [--top 25] [--out FILE]
 * (On lavapipe there are no timestamps: it only checks that the step captures.)
 */
import { LocalGpu } from '../src/gpu/local.ts';
import { Trainer } from '../src/train/trainer.ts';
import type { OptTrainingModel } from '../src/train/training_model.ts';
import type { PackedBatch } from '../src/train/batch.ts';

const arg = (n: string, d: string) => { const i = Deno.args.indexOf(`--${n}`); return i >= 0 ? Deno.args[i + 1] : d; };
const B = Number(arg('batch', '8')), L = Number(arg('seq', '512')), top = Number(arg('top', '25'));
const gpu = await LocalGpu.create();
const trainer = await Trainer.create({
  model: arg('model', 'synthetic:opt-125m:1'), gpu, maxBatchTokens: B * L, maxSequenceLength: L,
  optimizer: { type: 'adamw', lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 },
});
const limit = Math.min(50000, trainer.config.vocabSize);
let x = 12345;
const ids = Array.from({ length: B }, () => Array.from({ length: L }, () => { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; return 4 + (x % (limit - 4)); }));
await trainer.step(ids); // warm: pipelines compiled, bind groups cached

// The model's phases are private: reach them for this measurement only.
type Phases = Pick<OptTrainingModel, 'zeroGrads'> & {
  pack(b: unknown): PackedBatch; forward(p: PackedBatch): void; headAndLoss(p: PackedBatch, s: number | null): void; backward(p: PackedBatch): void;
};
const model = trainer.model as unknown as Phases;
trainer.model.submitPerLayer = false; // a capture holds no submit
model.zeroGrads();
const pk = model.pack({ ids });
const phases: Array<[string, () => void]> = [
  ['forward', () => model.forward(pk)], ['head+loss(+head backward)', () => model.headAndLoss(pk, 1)],
  ['backward', () => model.backward(pk)],
];  // (the optimizer writes its step's scalars, which a capture cannot hold: train_bench times it, ~4 ms)
const byKernel = new Map<string, { ms: number; n: number }>();
const res: Record<string, unknown> = { adapter: gpu.caps.adapterDescription, date: new Date().toISOString(), batch: `${B}x${L}` };
const phaseMs: Record<string, number> = {};
let total = 0;
for (const [name, run] of phases) {
  const rec = gpu.capture(run);
  const per = await gpu.profileRecording(rec);
  gpu.releaseRecording(rec);
  if (!per) { console.error('no timestamp queries here: captured', rec.dispatches, 'dispatches in', name); continue; }
  const ms = per.reduce((s, p) => s + p.ms, 0);
  phaseMs[name] = +ms.toFixed(2);
  total += ms;
  for (const p of per) {
    const k = `${name}: ${p.kernel.replace(/ \[.*\]$/, '')}`;
    const e = byKernel.get(k) ?? { ms: 0, n: 0 };
    e.ms += p.ms;
    e.n++;
    byKernel.set(k, e);
  }
}
res.total_ms = +total.toFixed(2);
res.phases_ms = phaseMs;
res.kernels = [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, top).map(([k, e]) => ({ kernel: k, ms: +e.ms.toFixed(2), dispatches: e.n }));
console.log(JSON.stringify(res, null, 1));
const out = arg('out', '');
if (out) await Deno.writeTextFile(out, JSON.stringify(res, null, 1));
Deno.exit(0);
