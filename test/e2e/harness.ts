/// <reference types="node" />
// Playwright side of the generic browser-test page (test/e2e/pages/run.html). Use from a spec:
//
//   import { expect, runInBrowser, test } from './harness.ts';
//   test('my kernel', async ({ page, consoleErrors }) => {
//     const result = await runInBrowser(page, '/test/e2e/pages/my-kernel.ts', { context: 'worker' });
//     expect(consoleErrors).toEqual([]);
//   });
//
// The module runs in Chromium (SwiftShader WebGPU here, no GPU needed) and can import /src/... and fetch
// /fixtures/... (../shared/fixtures). Its run(params) result must be JSON-serialisable.
import { test as base, type Page } from '@playwright/test';

export { expect } from '@playwright/test';

export interface RunInBrowserOptions {
  /** Where run() executes: the page's main thread (default) or a dedicated module Web Worker. */
  context?: 'main' | 'worker';
  /** Extra query parameters, handed to run(params) as strings. */
  params?: Record<string, string>;
  /** How long run() may take (SwiftShader is slow). Default: the test's remaining time. */
  timeout?: number;
}

interface HarnessWindow {
  __result?: unknown;
  __error?: string;
  __done?: boolean;
}

/** Loads run.html with `module` and returns what its run() resolved to; throws with the browser's stack on failure. */
export async function runInBrowser<T = unknown>(page: Page, module: string, options: RunInBrowserOptions = {}): Promise<T> {
  const context = options.context ?? 'main';
  const query = new URLSearchParams({ ...options.params, module, context });
  await page.goto(`/test/e2e/pages/run.html?${query}`);
  await page.waitForFunction(() => (window as unknown as HarnessWindow).__done === true, null, {
    timeout: options.timeout ?? 0,
    polling: 100,
  });
  const { result, error } = await page.evaluate(() => {
    const w = window as unknown as HarnessWindow;
    return { result: w.__result, error: w.__error };
  });
  if (error !== undefined) throw new Error(`${module} (${context}) failed in the browser:\n${error}`);
  return result as T;
}

/**
 * `test` with a `consoleErrors` fixture: every console.error of the page and its workers, and every uncaught
 * exception, collected for the test to assert on.
 */
export const test = base.extend<{ consoleErrors: string[] }>({
  consoleErrors: async ({ page }, use) => {
    const errors: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const where = msg.worker() ? `worker ${msg.worker()!.url()}` : msg.location().url;
      errors.push(`${where}: ${msg.text()}`);
    });
    page.on('pageerror', (err) => errors.push(`uncaught: ${err.stack ?? err.message}`));
    await use(errors);
  },
});
