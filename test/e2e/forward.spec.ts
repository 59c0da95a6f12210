// The OPT forward pass and greedy decoding in Chromium (SwiftShader WebGPU), in the page and in a dedicated
// Web Worker, against the Hugging Face float64 references (tolerances from ../shared/fixtures/README.md:
// logits max |diff| <= 1e-4 on the tiny sets; greedy tokens identical up to the first near-tie). The errors
// actually reached are printed. Only the tiny sets: SwiftShader is far too slow for opt-125m.
import { expect, runInBrowser, test } from './harness.ts';
import type { F16Result } from './pages/opt-f16-unavailable.ts';
import type { OptForwardResult } from './pages/opt-forward.ts';

const FORWARD = '/test/e2e/pages/opt-forward.ts';
const LOGITS_TOLERANCE = 1e-4;

const CASES = [
  { set: 'opt-tiny', context: 'main' },
  { set: 'opt-tiny', context: 'worker' },
  { set: 'opt-tiny-postln', context: 'main' },
] as const;

for (const { set, context } of CASES) {
  test(`${set} f32 forward and greedy match HF (${context === 'main' ? 'main thread' : 'dedicated worker'})`, async ({ page, consoleErrors }, testInfo) => {
    const r = await runInBrowser<OptForwardResult>(page, FORWARD, { context, params: { set } });
    await testInfo.attach(`${set}-${context}.json`, { body: JSON.stringify(r, null, 2), contentType: 'application/json' });
    console.log(
      `  [${context}] ${set}: logits max |diff| ${r.maxLogitsDiff.toExponential(2)} (tolerance ${LOGITS_TOLERANCE}) over ` +
        `${r.prompts} prompts; greedy ${r.greedyStepsCompared} steps compared, ${r.greedyMismatches.length} mismatches; ` +
        `load ${r.ms.load} ms, logits ${r.ms.logits} ms, generate ${r.ms.generate} ms (${r.adapter})`,
    );
    expect(r.context).toBe(context);
    expect(r.prompts).toBeGreaterThan(0);
    expect(r.perPromptMaxDiff).toHaveLength(r.prompts);
    expect(r.maxLogitsDiff, `per prompt: ${r.perPromptMaxDiff.map((d) => d.toExponential(2)).join(', ')}`).toBeLessThanOrEqual(LOGITS_TOLERANCE);
    expect(r.greedyStepsCompared).toBeGreaterThan(0);
    expect(r.greedyMismatches).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });
}

test('dtype f16 without shader-f16 (SwiftShader) is a WebGPUUnavailableError', async ({ page, consoleErrors }) => {
  const r = await runInBrowser<F16Result>(page, '/test/e2e/pages/opt-f16-unavailable.ts');
  console.log(`  f16 on SwiftShader: ${r.error ? `${r.error.name} (${r.error.code}): ${r.error.message}` : 'loaded'}`);
  expect(r.shaderF16, 'this adapter has shader-f16: the test expects SwiftShader, which lacks it').toBe(false);
  expect(r.loaded).toBe(false);
  expect(r.error).toMatchObject({ name: 'WebGPUUnavailableError', code: 'webgpu_unavailable', isTandemError: true });
  expect(r.error!.message).toContain('shader-f16');
  expect(consoleErrors).toEqual([]);
});
