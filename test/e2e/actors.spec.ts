// The remote GPU path in Chromium with real Web Workers (SwiftShader): an engine actor in a dedicated worker,
// on a RemoteGpu, against a device host in the page or in a worker of its own; bitwise equality with the
// in-process LocalGpu, HF tolerance (fixtures README: logits max |diff| <= 1e-4 on the tiny sets), and, with
// the host in the page, handles across workers and a worker terminated mid-work. Only opt-tiny: SwiftShader is slow.
import { expect, runInBrowser, test } from './harness.ts';
import type { ActorsRemoteResult } from './pages/actors-remote.ts';

for (const host of ['page', 'worker'] as const) {
  test(`opt-tiny on a RemoteGpu in a Web Worker equals in-process bitwise (device host in the ${host})`, async ({ page, consoleErrors }) => {
    const r = await runInBrowser<ActorsRemoteResult>(page, '/test/e2e/pages/actors-remote.ts', { params: { host } });
    console.log(
      `  [host in ${host}] remote vs local max |diff| ${r.maxRemoteLocalDiff}, vs HF ${r.maxHfDiff.toExponential(2)}; ` +
        `tokens ${r.remoteTokens.join(',')}; ${r.handles ? `handles: ${r.handles.tensors} tensors, after terminate: ${r.handles.afterTerminate}; ` : ''}` +
        `${r.ms.total} ms (${r.adapter})`,
    );
    expect(r.host).toBe(host);
    expect(r.logitsBitwiseEqual).toBe(true);
    expect(r.maxHfDiff).toBeLessThanOrEqual(1e-4);
    expect(r.remoteTokens).toHaveLength(8);
    expect(r.remoteTokens).toEqual(r.localTokens);
    if (host === 'page') {
      expect(r.handles!.tensors).toBeGreaterThan(10);
      expect(r.handles!.firstTensorEqual).toBe(true);
      expect(r.handles!.afterTerminate).toMatch(/^StaleHandleError: .*engine-0.*terminated/);
      expect(r.handles!.clientsLeft).toBe(0);
    }
    expect(consoleErrors).toEqual([]);
  });
}
