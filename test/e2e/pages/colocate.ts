// The colocate scenario (src/actors/colocate.ts) in Chromium with real Web Workers: a device host in this page,
// 4 training actors and 2 tensor-parallel engines (2 ranks each) as dedicated module workers, on opt-tiny
// (SwiftShader is slow). Trainers zero their weights; engines take them by handle.
//   run.html?module=/test/e2e/pages/colocate.ts
import { runColocate } from '../../../src/actors/colocate.ts';
import type { ColocateResult } from '../../../src/actors/colocate.ts';

export type ColocatePageResult = ColocateResult & { adapterNote: string };

export async function run(): Promise<ColocatePageResult> {
  const model = new URL('/fixtures/opt-tiny/', location.href).href;
  const r = await runColocate({ model, maxTokens: 3, prompts: ['Hello, my name is'], gpuMemoryBytes: 128 * 2 ** 20 });
  return { ...r, adapterNote: 'SwiftShader' };
}
