/// <reference types="node" />
/**
 * The demo page as shipped: the production build (vite build --mode demo) served by `vite preview`
 * (playwright.config.ts's second webServer), in Chromium with WebGPU on SwiftShader. Tiny models only.
 * Screenshots of each view are attached to the test and saved under its output folder.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Locator, Page, TestInfo } from '@playwright/test';
import { DEMO_URL, fakeHub, fixturesDir, type RunningServer } from './demo-servers.ts';
import { expect, test } from './harness.ts';

const TINY = join(fixturesDir, 'opt-tiny');

test.use({ actionTimeout: 20_000 });

async function shot(target: Locator | Page, testInfo: TestInfo, name: string): Promise<void> {
  const path = testInfo.outputPath(`${name}.png`);
  if ('goto' in target) await target.evaluate(() => window.scrollTo(0, 0)); // the sticky header stays on top
  await target.screenshot({ path, animations: 'disabled', ...('goto' in target ? { fullPage: true } : {}) });
  await testInfo.attach(name, { path, contentType: 'image/png' });
}

async function open(page: Page): Promise<void> {
  await page.goto(DEMO_URL);
  await expect(page.locator('#gpu-adapter')).toBeVisible({ timeout: 60_000 });
}

/** Choose a model source by its radio (the segmented control). */
async function chooseSource(page: Page, label: 'URL' | 'Local folder' | 'Synthetic'): Promise<void> {
  await pickSegment(page, label);
  await expect(page.getByRole('radio', { name: label, exact: true })).toBeChecked();
}

/** Click a segmented control's option, as a person would (the radio itself is visually hidden). */
async function pickSegment(page: Page, label: string): Promise<void> {
  await page.locator('.segmented label').getByText(label, { exact: true }).click();
}

async function setBlocks(page: Page, blocks: number): Promise<void> {
  await page.locator('#model details summary').click();
  await page.getByLabel('KV-cache blocks').fill(String(blocks));
}

async function loadAndWait(page: Page): Promise<Locator> {
  await page.getByRole('button', { name: 'Load model' }).click();
  const summary = page.locator('#model-summary');
  await expect(summary).toBeVisible({ timeout: 120_000 });
  return summary;
}

test('the page loads without console errors and shows the WebGPU adapter', async ({ page, consoleErrors }, testInfo) => {
  await open(page);
  await expect(page).toHaveTitle(/Tandem/);
  await expect(page.locator('#gpu-adapter')).toContainText(/swiftshader|google/i);
  await expect(page.locator('#webgpu')).toContainText('maxStorageBufferBindingSize');
  // SwiftShader has no shader-f16: the panel says so, and the f16 choice is off.
  await expect(page.locator('#webgpu li', { hasText: 'shader-f16' })).toHaveClass(/fail/);
  await expect(page.locator('#model option[value=f16]')).toBeDisabled();
  await page.waitForLoadState('networkidle');
  await shot(page, testInfo, 'page');
  await shot(page.locator('#webgpu'), testInfo, 'webgpu-panel');
  expect(consoleErrors).toEqual([]);
});

test('opt-tiny from a local folder streams text while the KV map changes', async ({ page, consoleErrors }, testInfo) => {
  await open(page);
  await chooseSource(page, 'Local folder');
  await page.getByLabel('Model files').setInputFiles([join(TINY, 'config.json'), join(TINY, 'model.safetensors')]);
  await expect(page.locator('#model .file-list')).toContainText('model.safetensors');
  await setBlocks(page, 32);
  const summary = await loadAndWait(page);
  await expect(summary).toContainText('2 layers × 64 wide');
  await expect(summary).toContainText('32 blocks × 16 tokens');
  await expect(page.locator('#model-pill')).toContainText('32 KV blocks');
  await shot(page.locator('#model'), testInfo, 'model-panel-loaded');

  const kv = page.locator('#kv-panel');
  await expect(kv).toHaveAttribute('data-used', '0');
  await page.getByLabel('Max tokens').fill('40');
  await page.getByLabel('Temperature').fill('0'); // greedy: the same text on every run
  await page.getByRole('button', { name: 'Generate' }).click();

  // While it runs, blocks are held: the map shows them, and the text grows.
  await expect.poll(async () => Number(await kv.getAttribute('data-used')), { timeout: 120_000, intervals: [50] }).toBeGreaterThan(0);
  const output = page.locator('#stream-output .generated');
  await expect.poll(async () => (await output.textContent())?.length ?? 0, { timeout: 120_000 }).toBeGreaterThan(0);
  await shot(page.locator('#kv'), testInfo, 'kv-map-running');
  // Done: every block back in the pool (cached prefixes stay as "free, cached"), stats filled in.
  await expect(page.locator('#playground-panel')).toHaveAttribute('data-running', 'false', { timeout: 180_000 });
  await expect(kv).toHaveAttribute('data-used', '0');
  const stats = page.locator('#stream-stats');
  await expect(stats).toContainText(/time to first token \d/);
  await expect(stats).toContainText(/tokens\/s \d/);
  await expect(stats).toContainText(/finish (length|stop)/);
  expect(((await output.textContent()) ?? '').length).toBeGreaterThan(0);
  await shot(page.locator('#playground'), testInfo, 'playground-stream');
  await shot(page.locator('#kv'), testInfo, 'kv-map-after');
  expect(consoleErrors).toEqual([]);
});

test('batch mode: continuous batching with prefix sharing and preemption in a small cache', async ({ page, consoleErrors }, testInfo) => {
  await open(page);
  await chooseSource(page, 'Synthetic');
  await expect(page.getByLabel('Architecture')).toHaveValue('opt-tiny');
  await setBlocks(page, 10); // 8 prompts need ~3 blocks each: the scheduler has to preempt
  const summary = await loadAndWait(page);
  await expect(summary).toContainText('synthetic opt-tiny');
  await expect(summary).toContainText('10 blocks');

  await pickSegment(page, 'Batch');
  await page.getByLabel('Max tokens').fill('16');
  const kv = page.locator('#kv-panel');
  let maxShared = 0, maxUsed = 0;
  const watch = setInterval(async () => {
    try {
      maxShared = Math.max(maxShared, Number(await kv.getAttribute('data-shared')));
      maxUsed = Math.max(maxUsed, Number(await kv.getAttribute('data-used')));
    } catch { /* page closing */ }
  }, 40);
  await page.getByRole('button', { name: 'Send batch' }).click();
  const rows = page.locator('#batch-table tbody tr');
  await expect(rows).toHaveCount(8, { timeout: 60_000 });
  await expect(page.locator('#batch-table .status.running').first()).toBeVisible({ timeout: 120_000 });
  await shot(page.locator('#playground'), testInfo, 'playground-batch-running');
  await expect(page.locator('#batch-table .status.done')).toHaveCount(8, { timeout: 240_000 });
  clearInterval(watch);
  await expect(page.locator('#batch-stats')).toContainText(/throughput \d/);
  for (let i = 0; i < 8; i++) expect(Number(await rows.nth(i).locator('td.num').first().textContent())).toBe(16);
  expect(Number(await kv.getAttribute('data-preemptions'))).toBeGreaterThan(0);
  expect(maxUsed).toBeGreaterThan(0);
  expect(maxShared).toBeGreaterThan(0); // the four prompts with a common first block held it together
  await shot(page.locator('#playground'), testInfo, 'playground-batch-done');
  await shot(page.locator('#kv'), testInfo, 'kv-map-batch');
  await shot(page, testInfo, 'page-after-batch');
  expect(consoleErrors).toEqual([]);
});

test.describe('loading from a hub-style URL', () => {
  let hub: RunningServer;
  test.beforeAll(async () => { hub = await fakeHub(); });
  test.afterAll(async () => { await hub.close(); });

  test('shows progress, caches the files, and the second load comes from the cache', async ({ page, consoleErrors }, testInfo) => {
    await open(page);
    await expect(page.locator('#cache-size')).toHaveText('Weight cache: empty');
    const base = `${hub.url}/facebook/opt-tiny/resolve/main`;
    await page.getByLabel(/Base URL/).fill(base);
    await setBlocks(page, 16);
    await page.getByRole('button', { name: 'Load model' }).click();
    const progress = page.locator('#model .progress');
    await expect(progress).toContainText('Downloading model.safetensors', { timeout: 30_000 });
    await shot(page.locator('#model'), testInfo, 'model-panel-downloading');
    const summary = page.locator('#model-summary');
    await expect(summary).toBeVisible({ timeout: 120_000 });
    await expect(summary).not.toContainText('from cache');
    // Exactly config.json + model.safetensors came over the network.
    const fileBytes = statSync(join(TINY, 'config.json')).size + statSync(join(TINY, 'model.safetensors')).size;
    await expect(summary).toHaveAttribute('data-downloaded-bytes', String(fileBytes));
    const weights = '/facebook/opt-tiny/resolve/main/model.safetensors';
    expect(hub.hits.get(weights)).toBe(1);
    await expect(page.locator('#cache-size')).toContainText(`2 files, ${Math.round(fileBytes / 1000)} KB`);

    const before = new Map(hub.hits);
    await page.getByRole('button', { name: 'Load model' }).click();
    await expect(summary).toContainText('from cache', { timeout: 120_000 });
    await expect(summary).toContainText(/Downloaded\s*nothing/);
    await expect(summary).toHaveAttribute('data-downloaded-bytes', '0');
    await expect(progress).toContainText('Loaded from the cache');
    expect(hub.hits).toEqual(before); // not one request: config, weights and the absent files all cached
    await shot(page.locator('#model'), testInfo, 'model-panel-from-cache');

    await page.getByRole('button', { name: 'Clear cache' }).click();
    await expect(page.locator('#cache-size')).toHaveText('Weight cache: empty');
    expect(consoleErrors).toEqual([]);
  });

  test('a 404 and a truncated download show readable errors', async ({ page }, testInfo) => {
    await open(page);
    const error = page.locator('#model .error');
    await page.getByLabel(/Base URL/).fill(`${hub.url}/missing/opt-tiny/resolve/main`);
    await page.getByRole('button', { name: 'Load model' }).click();
    await expect(error).toBeVisible({ timeout: 60_000 });
    await expect(error).toContainText('Could not read the model');
    await expect(error).toContainText(/config\.json.*(not found|HTTP 404)/);
    await shot(page.locator('#model'), testInfo, 'model-panel-404');

    await page.getByLabel(/Base URL/).fill(`${hub.url}/truncated/opt-tiny/resolve/main`);
    // config.json of the truncated repo is whole; its weights stop half-way.
    await page.getByRole('button', { name: 'Load model' }).click();
    await expect(error).toContainText(/truncated|cut off/, { timeout: 60_000 });
    await expect(error).toContainText('model.safetensors');
    await shot(page.locator('#model'), testInfo, 'model-panel-truncated');
    // Nothing of a failed load is cached.
    await expect(page.locator('#cache-size')).toHaveText('Weight cache: empty');
  });
});

test('controls have labels and the page works from the keyboard', async ({ page, consoleErrors }) => {
  await open(page);
  // Every form control has an accessible name.
  const unnamed = await page.evaluate(() => {
    const out: string[] = [];
    for (const el of document.querySelectorAll<HTMLElement>('input, select, textarea, button')) {
      const labelled = (el as HTMLInputElement).labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') ||
        (el.tagName === 'BUTTON' && el.textContent?.trim());
      if (!labelled) out.push(el.outerHTML.slice(0, 80));
    }
    return out;
  });
  expect(unnamed).toEqual([]);

  // Pick "Synthetic" with the arrow keys, load with Enter, generate with Ctrl+Enter.
  await page.getByRole('radio', { name: 'URL', exact: true }).focus();
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  await expect(page.getByRole('radio', { name: 'Synthetic' })).toBeChecked();
  await expect(page.getByLabel('Architecture')).toBeVisible();
  await page.getByRole('button', { name: 'Load model' }).focus();
  await page.keyboard.press('Enter');
  await expect(page.locator('#model-summary')).toBeVisible({ timeout: 120_000 });
  await page.getByLabel('Max tokens').fill('8');
  await page.getByLabel('Prompt', { exact: true }).focus();
  await page.keyboard.press('Control+Enter');
  await expect(page.locator('#stream-stats')).toContainText(/finish (length|stop)/, { timeout: 120_000 });
  expect(consoleErrors).toEqual([]);
});

test('without WebGPU the page explains what is missing and what to do', async ({ page }, testInfo) => {
  await page.addInitScript(() => { delete (Navigator.prototype as { gpu?: unknown }).gpu; });
  await page.goto(DEMO_URL);
  const notice = page.locator('#gpu-unavailable');
  await expect(notice).toBeVisible();
  await expect(notice).toContainText('navigator.gpu is missing');
  await expect(notice).toContainText('chrome://flags/#enable-unsafe-webgpu');
  await expect(page.locator('#model-pill')).toHaveText('WebGPU unavailable');
  await shot(page.locator('#webgpu'), testInfo, 'webgpu-unavailable');
});

test('the colocation panels are live, with labelled controls (demo-colocation.spec.ts runs them)', async ({ page }, testInfo) => {
  await open(page);
  for (const name of ['placement', 'colocate', 'rl-loop']) {
    const card = page.locator(`#scenario-${name}`);
    await expect(card).toBeVisible();
    await expect(card).toHaveAttribute('data-available', 'true');
    await expect(card).not.toContainText('coming with the colocation work');
    await expect(card.getByRole('button')).toBeEnabled();
  }
  await expect(page.locator('#scenario-colocate').getByLabel('Train steps')).toHaveValue('0');
  await expect(page.locator('#scenario-colocate').getByLabel('Packed handles')).not.toBeChecked();
  await expect(page.locator('#scenario-rl-loop').getByLabel('Iterations')).toHaveValue('12');
  await shot(page.locator('#colocation'), testInfo, 'colocation-panels');
});
