// `tandem train-step` as a user runs it (a Deno subprocess), against the opt-tiny fixtures: the loss, every
// parameter's gradient L2 norm (HF names, the tied embedding under model.decoder.embed_tokens.weight), the 4-loss
// AdamW trajectory, the weighted loss, --save producing a checkpoint the library serves, and typed errors.
import { Trainer } from '../../src/train/trainer.ts';
import { runCli, singleJson } from './cli_helpers.ts';
import { assert, assertEquals, FIXTURES, testGpu } from './helpers.ts';

interface TrainFixture {
  batch: number[][];
  loss: number;
  grad_l2: Record<string, number>;
  weighted: { weights: number[][]; loss: number; grad_l2: Record<string, number> };
  adamw: { hyperparameters: { lr: number; betas: [number, number]; eps: number; weight_decay: number }; losses_before_each_step_and_after: number[] };
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
const f = JSON.parse(await Deno.readTextFile(`${FIXTURES}opt-tiny/reference.json`)).train as TrainFixture;
const tmp = await Deno.makeTempDir({ prefix: 'tandem-train-cli-' });

async function batchFile(name: string, body: unknown): Promise<string> {
  const path = `${tmp}/${name}`;
  await Deno.writeTextFile(path, JSON.stringify(body));
  return path;
}

/**
 * Per-tensor relative errors of CLI grad norms vs the fixture. k_proj.bias's gradient is zero in exact arithmetic
 * (adding q.b to every score of a row leaves its softmax unchanged): the fixture holds float64 round-off (~1e-19)
 * and any f32 computation gets f32 round-off (~1e-10), so a relative error means nothing there. Tensors whose
 * reference norm is below f32 resolution of the whole gradient (1.19e-7 x the global norm) must instead be zero at
 * that resolution too; every other tensor is checked relative to its own norm.
 */
function gradErrors(got: Record<string, number>, want: Record<string, number>): { worst: number; name: string } {
  assertEquals(Object.keys(got).sort(), Object.keys(want).sort());
  const floor = 1.19e-7 * Math.hypot(...Object.values(want));
  let worst = 0, name = '';
  for (const [n, w] of Object.entries(want)) {
    if (w < floor) {
      assert(got[n] < floor, `${n}: ${got[n]} should be zero at f32 resolution (< ${floor}), reference ${w}`);
      continue;
    }
    const e = rel(got[n], w);
    if (e > worst) [worst, name] = [e, n];
  }
  return { worst, name };
}

Deno.test('train-step --steps 3 --json on opt-tiny: loss, grad_l2 of step 1 and the loss trajectory match PyTorch', async () => {
  const hp = f.adamw.hyperparameters;
  const file = await batchFile('batch.json', { batch: f.batch });
  const save = `${tmp}/trained`;
  const r = await runCli([
    'train-step', '--model', `${FIXTURES}opt-tiny`, '--batch', file, '--steps', '3', '--json', '--save', save,
    '--adamw', [hp.lr, hp.betas[0], hp.betas[1], hp.eps, hp.weight_decay].join(','),
  ]);
  assertEquals(r.code, 0, r.stderr);
  const out = singleJson(r, 'train-step') as { loss: number; grad_l2: Record<string, number>; losses: number[] };
  const g = gradErrors(out.grad_l2, f.grad_l2);
  const want = f.adamw.losses_before_each_step_and_after;
  assertEquals(out.losses.length, 4);
  const traj = Math.max(...out.losses.map((l, i) => rel(l, want[i])));
  console.log(`CLI: loss rel err ${rel(out.loss, f.loss).toExponential(2)}, grad_l2 worst rel err ${g.worst.toExponential(2)} (${g.name}), trajectory max rel err ${traj.toExponential(2)}`);
  assert(rel(out.loss, f.loss) <= 1e-5, `loss ${out.loss} vs ${f.loss}`);
  assert(g.worst <= 1e-3, `${g.name}: ${out.grad_l2[g.name]} vs ${f.grad_l2[g.name]}`);
  assert('model.decoder.embed_tokens.weight' in out.grad_l2 && !('lm_head.weight' in out.grad_l2));
  assert(traj <= 1e-4, `losses ${out.losses} vs ${want}`);
  // --save wrote a checkpoint the library loads: its loss is the trajectory's last value.
  const trainer = await Trainer.create({ model: save, gpu: await testGpu(), optimizer: { type: 'sgd', lr: 0 }, maxBatchTokens: 96 });
  try {
    const l = await trainer.loss(f.batch);
    assert(rel(l, out.losses[3]) <= 1e-6, `reloaded loss ${l} vs ${out.losses[3]}`);
  } finally {
    trainer.release();
  }
});

Deno.test('train-step with per-target weights: the weighted loss and its gradient norms', async () => {
  const file = await batchFile('weighted.json', { batch: f.batch, weights: f.weighted.weights });
  const r = await runCli(['train-step', '--model', `${FIXTURES}opt-tiny`, '--batch', file, '--json']);
  assertEquals(r.code, 0, r.stderr);
  const out = singleJson(r, 'train-step weighted') as { loss: number; grad_l2: Record<string, number>; losses: number[] };
  const g = gradErrors(out.grad_l2, f.weighted.grad_l2);
  console.log(`CLI weighted: loss rel err ${rel(out.loss, f.weighted.loss).toExponential(2)}, grad_l2 worst rel err ${g.worst.toExponential(2)}`);
  assert(rel(out.loss, f.weighted.loss) <= 1e-5);
  assert(g.worst <= 1e-3);
  assertEquals(out.losses.length, 2);
});

Deno.test('train-step errors are typed JSON: bad --adamw, ids outside the vocabulary', async () => {
  const file = await batchFile('bad.json', { batch: [[2, 5, 900]] });
  const r1 = await runCli(['train-step', '--model', `${FIXTURES}opt-tiny`, '--batch', file, '--adamw', '1e-3,0.9', '--json']);
  assertEquals(r1.code, 1);
  const e1 = singleJson(r1, 'bad adamw').error as { code: string; message: string };
  assertEquals(e1.code, 'invalid_input');
  assert(e1.message.includes('--adamw'), e1.message);
  const r2 = await runCli(['train-step', '--model', `${FIXTURES}opt-tiny`, '--batch', file, '--json']);
  assertEquals(r2.code, 1);
  const e2 = singleJson(r2, 'id 900').error as { code: string; message: string };
  assertEquals(e2.code, 'invalid_input');
  assert(e2.message.includes('900'), e2.message);
});

addEventListener('unload', () => Deno.removeSync(tmp, { recursive: true }));
