// Smoke test of the demo page (demo/index.html): it loads and logs no errors.
import { expect, test } from './harness.ts';

test('demo page loads without console errors', async ({ page, consoleErrors }) => {
  await page.goto('/demo/index.html');
  await expect(page).toHaveTitle(/Tandem/);
  await page.waitForLoadState('networkidle');
  expect(consoleErrors).toEqual([]);
});
