// Checks the browser-test harness itself: failures and console errors surface, fixtures are served.
import { expect, runInBrowser, test } from './harness.ts';

for (const context of ['main', 'worker'] as const) {
  test(`a failing module rejects with its message, and its console errors are seen (${context})`, async ({ page, consoleErrors }) => {
    await expect(
      runInBrowser(page, '/test/e2e/pages/selftest-fail.ts', { context, params: { token: 'xyzzy' } }),
    ).rejects.toThrow(/selftest failure: xyzzy/);
    await expect.poll(() => consoleErrors.join('\n')).toContain(`selftest console error (${context})`);
  });
}

test('fixtures are served from ../shared/fixtures, with byte ranges', async ({ request }) => {
  const whole = await request.get('/fixtures/tokenizer_opt_encodings.json');
  expect(whole.status()).toBe(200);
  expect(whole.headers()['content-type']).toContain('application/json');
  const body = await whole.body();
  const part = await request.get('/fixtures/tokenizer_opt_encodings.json', { headers: { Range: 'bytes=2-9' } });
  expect(part.status()).toBe(206);
  expect((await part.body()).equals(body.subarray(2, 10))).toBe(true);
  expect((await request.get('/fixtures/does-not-exist.bin')).status()).toBe(404);
  expect((await request.get('/fixtures/..%2f..%2fmain%2fpackage.json')).status()).not.toBe(200);
});
