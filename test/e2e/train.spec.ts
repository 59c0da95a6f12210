// Training in Chromium (SwiftShader WebGPU): one AdamW step of opt-tiny through the Trainer, in the page and in a
// dedicated Web Worker, against PyTorch (tolerances from ../shared/fixtures/README.md: loss relative error
// <= 1e-5, parameters after AdamW step 1 max |diff| <= 1e-5). The errors actually reached are printed.
import { expect, runInBrowser, test } from './harness.ts';
import type { TrainStepResult } from './pages/train-step.ts';

for (const context of ['main', 'worker'] as const) {
  test(`opt-tiny AdamW step in Chromium matches PyTorch (${context === 'main' ? 'main thread' : 'dedicated worker'})`, async ({ page, consoleErrors }) => {
    const r = await runInBrowser<TrainStepResult>(page, '/test/e2e/pages/train-step.ts', { context, params: { set: 'opt-tiny' } });
    console.log(
      `  [${context}] opt-tiny train step: loss ${r.loss} (reference ${r.referenceLoss}, rel err ${r.lossRelErr.toExponential(2)}); ` +
        `params max |diff| ${r.maxParamDiff.toExponential(2)} (${r.worstTensor}) over ${r.tensors} tensors; ` +
        `create ${r.ms.create} ms, step ${r.ms.step} ms (${r.adapter})`,
    );
    expect(r.tensors).toBeGreaterThan(0);
    expect(r.lossRelErr).toBeLessThanOrEqual(1e-5);
    expect(r.maxParamDiff).toBeLessThanOrEqual(1e-5);
    expect(Number.isFinite(r.gradNorm) && r.gradNorm > 0).toBe(true);
    expect(consoleErrors).toEqual([]);
  });
}
