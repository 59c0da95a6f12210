// The colocate scenario (src/actors/colocate.ts) on opt-tiny, with real Deno Web Workers: 4 training actors and
// 2 engines of 2 tensor-parallel ranks on 4 virtual GPUs; the colocation check, the weight sync by handles, the
// weights check and generations before/after; then trained (not zeroed) weights through packed handles, and
// the CLI's --json document. The default model (OPT-125m) is in colocate_125m.test.ts.
import { runColocate } from '../../src/actors/colocate.ts';
import { runCli, singleJson } from './cli_helpers.ts';
import { assert, assertEquals, FIXTURES } from './helpers.ts';

const opts = { sanitizeResources: false, sanitizeOps: false };
const TINY = `${FIXTURES}opt-tiny`;
const UUID = /^GPU-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

Deno.test('colocate: opt-tiny, trainers zero their weights; engines on the trainers GPUs get them by handle', opts, async () => {
  const r = await runColocate({ model: TINY, maxTokens: 6 });
  console.log(`  sync ${r.syncMs} ms, ${r.syncBytes.join(' / ')} bytes; timings ${JSON.stringify(r.timingsMs)}`);
  assertEquals(r.trainingActorDeviceIds.length, 4);
  assert(r.trainingActorDeviceIds.every((u) => UUID.test(u)), `uuids: ${r.trainingActorDeviceIds}`);
  assertEquals(new Set(r.trainingActorDeviceIds).size, 4, 'one training actor per virtual GPU');
  // The reference's assertion: actors 0-1 share engine 0's GPUs, 2-3 engine 1's.
  assertEquals(r.engineDeviceIds, [r.trainingActorDeviceIds.slice(0, 2), r.trainingActorDeviceIds.slice(2, 4)]);
  assert(r.colocated);
  assertEquals(r.weightsChanged, true);
  // Each rank copies its shard of every tensor; the two engines copy the same amount.
  assertEquals(r.syncBytes[0], r.syncBytes[1]);
  assert(r.syncBytes[0] > 0);
  // Before: both engines (same synthetic weights, TP=2 each) agree, and the model does not emit only token 0.
  assertEquals(r.generations.before[0], r.generations.before[1]);
  assert(r.generations.before[0].some((g) => g.tokenIds.some((t) => t !== 0)), 'the model before the sync is not degenerate');
  // After: every weight is zero, so every logit is 0 and greedy picks token 0 every time.
  for (const engine of r.generations.after) for (const g of engine) assertEquals(g.tokenIds, new Array(6).fill(0));
});

Deno.test('colocate: opt-tiny, trainers train 2 steps, packed handles; engines hold the trained weights bit for bit', opts, async () => {
  const r = await runColocate({ model: TINY, trainSteps: 2, packed: true, maxTokens: 6 });
  assert(r.packed && r.trainSteps === 2);
  // Every actor trained on the same batch with deterministic kernels: identical replicas, whose loss went down.
  const losses = r.trainLosses!;
  assertEquals(losses.length, 4);
  for (const l of losses) assertEquals(l, losses[0]);
  assert(losses[0][1] < losses[0][0], `loss did not decrease: ${losses[0]}`);
  // checkWeightsChanged with handles compares every rank's shards with the trainer's tensors, bitwise.
  assertEquals(r.weightsChanged, true);
  assertEquals(r.generations.after[0], r.generations.after[1]);
});

Deno.test('CLI: tandem colocate --model opt-tiny --json prints the scenario document', opts, async () => {
  const run = await runCli(['colocate', '--model', TINY, '--max-tokens', '4', '--json']);
  assertEquals(run.code, 0, run.stderr);
  const doc = singleJson(run, 'colocate --json');
  const ids = doc.trainingActorDeviceIds as string[];
  assertEquals(ids.length, 4);
  assertEquals(doc.engineDeviceIds, [ids.slice(0, 2), ids.slice(2, 4)]);
  assertEquals(doc.weightsChanged, true);
  assert(typeof doc.syncMs === 'number' && doc.syncMs > 0);
  const gens = doc.generations as { before: unknown[][]; after: Array<Array<{ tokenIds: number[] }>> };
  assertEquals(gens.before.length, 2);
  assertEquals(gens.after[0][0].tokenIds, [0, 0, 0, 0]);
  assert(typeof (doc.timingsMs as Record<string, number>).total === 'number');
  const bad = await runCli(['colocate', '--model', TINY, '--train-steps', 'x', '--json']);
  assertEquals(bad.code, 1);
  assertEquals((singleJson(bad, 'bad --train-steps').error as { code: string }).code, 'invalid_input');
});
