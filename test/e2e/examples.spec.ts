/// <reference types="node" />
/**
 * The browser example (examples/browser) as a user would have it: the package packed by `npm pack` and installed
 * into the example's node_modules, the app built by Vite with its own ordinary config, served as static files,
 * loading opt-tiny from a hub-style URL (demo-servers.ts fakeHub) and streaming a completion in Chromium.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fakeHub, repoRoot, type RunningServer, staticServer } from './demo-servers.ts';
import { expect, test } from './harness.ts';

const app = join(repoRoot, 'examples', 'browser');
let hub: RunningServer;
let site: RunningServer;

test.beforeAll(async () => {
  test.setTimeout(240_000);
  execFileSync(process.execPath, [join(repoRoot, 'examples', 'install-local.mjs'), '--build'], { cwd: repoRoot, stdio: 'pipe' });
  // The example's own build, with its own vite.config.ts, as `npm run build` in examples/browser would do.
  execFileSync(process.execPath, [join(repoRoot, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--logLevel', 'warn'], { cwd: app, stdio: 'pipe' });
  hub = await fakeHub({ chunkDelayMs: 0 });
  site = await staticServer(join(app, 'dist'));
});

test.afterAll(async () => {
  await site?.close();
  await hub?.close();
});

test('the Vite example app streams a completion with the packed package', async ({ page, consoleErrors }, testInfo) => {
  const model = `${hub.url}/facebook/opt-tiny/resolve/main`;
  await page.goto(`${site.url}/?model=${encodeURIComponent(model)}&maxTokens=12&gpuMemoryMB=64`);
  await expect(page.locator('body')).toHaveAttribute('data-done', /.+/, { timeout: 180_000 });
  await expect(page.locator('#status')).toHaveText(/^done: 12 tokens \(length\)$/);
  const text = (await page.locator('#out').textContent()) ?? '';
  expect(text.startsWith('The first time I was in the city, it was')).toBe(true);
  expect(text.length).toBeGreaterThan('The first time I was in the city, it was'.length);
  expect(hub.hits.get('/facebook/opt-tiny/resolve/main/model.safetensors')).toBe(1);
  const path = testInfo.outputPath('example-browser.png');
  await page.screenshot({ path });
  await testInfo.attach('example-browser', { path, contentType: 'image/png' });
  expect(consoleErrors).toEqual([]);
});
