// The colocate scenario in Chromium (SwiftShader WebGPU) with real Web Workers on opt-tiny: the same checks as
// the Deno test (test/gpu/colocate.test.ts): colocation of training actors and engine ranks, weights changed by
// handle, greedy token 0 everywhere after the sync (every weight zero), both engines agreeing before it.
import { expect, runInBrowser, test } from './harness.ts';
import type { ColocatePageResult } from './pages/colocate.ts';

test('colocate scenario on opt-tiny with real Web Workers (4 trainers, 2 engines of TP=2)', async ({ page, consoleErrors }) => {
  const r = await runInBrowser<ColocatePageResult>(page, '/test/e2e/pages/colocate.ts');
  console.log(`  sync ${r.syncMs} ms; timings ${JSON.stringify(r.timingsMs)}`);
  expect(r.trainingActorDeviceIds).toHaveLength(4);
  expect(new Set(r.trainingActorDeviceIds).size).toBe(4);
  expect(r.engineDeviceIds).toEqual([r.trainingActorDeviceIds.slice(0, 2), r.trainingActorDeviceIds.slice(2, 4)]);
  expect(r.colocated).toBe(true);
  expect(r.weightsChanged).toBe(true);
  expect(r.generations.before[0]).toEqual(r.generations.before[1]);
  expect(r.generations.before[0][0].tokenIds.some((t) => t !== 0)).toBe(true);
  for (const engine of r.generations.after) expect(engine[0].tokenIds).toEqual([0, 0, 0]);
  expect(consoleErrors).toEqual([]);
});
