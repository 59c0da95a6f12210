// The colocate scenario with its default model, synthetic OPT-125m (what `npm start` runs), on real Deno Web
// Workers. Slow on lavapipe (about a minute, ~13 GB of host memory for 4 trainers and 4 engine ranks): run alone.
import { runColocate } from '../../src/actors/colocate.ts';
import { assert, assertEquals } from './helpers.ts';

Deno.test('colocate: the default model (synthetic OPT-125m), zeroed weights by handle into 2 engines of TP=2', { sanitizeResources: false, sanitizeOps: false }, async () => {
  const r = await runColocate({ maxTokens: 4, log: (l) => console.log(`  ${l}`) });
  assertEquals(r.model, 'synthetic:opt-125m:1');
  assertEquals(r.engineDeviceIds, [r.trainingActorDeviceIds.slice(0, 2), r.trainingActorDeviceIds.slice(2, 4)]);
  assertEquals(r.weightsChanged, true);
  // OPT-125m per TP=2 rank: the replicated embeddings, LayerNorms and biases, and half of every layer matrix.
  assert(r.syncBytes[0] > 600e6 && r.syncBytes[0] === r.syncBytes[1], `sync bytes ${r.syncBytes}`);
  assertEquals(r.generations.before[0], r.generations.before[1]);
  assert(r.generations.before[0].some((g) => g.text.length > 0));
  for (const engine of r.generations.after) for (const g of engine) assertEquals(g.tokenIds, [0, 0, 0, 0]);
  console.log(`  total ${r.timingsMs.total} ms, sync ${r.syncMs} ms`);
});
