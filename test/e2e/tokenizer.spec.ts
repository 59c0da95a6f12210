import { expect, runInBrowser, test } from './harness.ts';

for (const context of ['main', 'worker'] as const) {
  test(`OPT tokenizer reproduces the reference encodings in the browser (${context})`, async ({ page, consoleErrors }) => {
    const r = await runInBrowser<{ cases: number; mismatches: string[]; loadMs: number }>(
      page,
      '/test/e2e/pages/tokenizer-check.ts',
      { context },
    );
    expect(r.cases).toBeGreaterThan(10);
    expect(r.mismatches).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });
}
