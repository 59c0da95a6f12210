/// <reference types="node" />
/**
 * The demo's colocation panels, against the production build served by `vite preview` (as demo.spec.ts), in
 * Chromium with WebGPU on SwiftShader and real Web Workers: the scenario worker holds the device host, the
 * training actors and engines are its nested workers. opt-tiny only (synthetic weights, seed 1: the fixtures'
 * opt-tiny), and few RL iterations: SwiftShader is slow. Screenshots of each panel are attached.
 */
import type { Locator, Page, TestInfo } from '@playwright/test';
import { DEMO_URL } from './demo-servers.ts';
import { expect, test } from './harness.ts';

test.use({ actionTimeout: 20_000 });

/**
 * The RL loop in the test: 6 iterations of 4 prompts x 4 samples (the page's default is 12 x 8). SwiftShader
 * takes about 8 s an iteration at this size (the trainer's step is most of it), and sampling is seeded, so the
 * rewards are the same on every run: 0.42 0.44 0.48 0.57 0.48 0.67 here.
 */
const RL_ITERATIONS = 6;
const RL_SAMPLES = '4';

async function shot(target: Locator, testInfo: TestInfo, name: string): Promise<void> {
  const path = testInfo.outputPath(`${name}.png`);
  await target.screenshot({ path, animations: 'disabled' });
  await testInfo.attach(name, { path, contentType: 'image/png' });
}

async function open(page: Page): Promise<void> {
  await page.goto(DEMO_URL);
  await expect(page.locator('#gpu-adapter')).toBeVisible({ timeout: 60_000 });
}

test('the colocate scenario passes in the page and shows device ids, the sync time and its checks', async ({ page, consoleErrors }, testInfo) => {
  test.setTimeout(6 * 60_000);
  const t0 = Date.now();
  await open(page);
  const card = page.locator('#scenario-colocate');
  await expect(card).toHaveAttribute('data-available', 'true');
  await expect(card.getByLabel('Train steps')).toHaveValue('0');
  await card.getByRole('button', { name: 'Run colocate scenario' }).click();
  await expect(card).toHaveAttribute('data-result', 'running');
  // The other scenarios wait: one scenario at a time.
  await expect(page.getByRole('button', { name: 'Run RL loop' })).toBeDisabled();

  // While it runs, the placement panel shows its actors live: 4 GPUs, a trainer and an engine rank on each.
  const placement = page.locator('#scenario-placement .placement');
  await expect(placement).toHaveAttribute('data-actors', '8', { timeout: 180_000 });
  await expect(placement).toHaveAttribute('data-source', 'Colocate scenario');

  await expect(card).toHaveAttribute('data-result', /pass|fail|error/, { timeout: 300_000 });
  await expect(card.getByRole('status')).toContainText('Passed');
  await expect(card).toHaveAttribute('data-result', 'pass');

  // Device ids: each training actor shares its virtual GPU with one engine rank; 4 distinct GPUs.
  const rows = card.locator('table.device-table tbody tr');
  await expect(rows).toHaveCount(4);
  const table = await rows.evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.querySelector('code')?.dataset.uuid ?? td.textContent ?? '')));
  expect(table.map((r) => r[0])).toEqual(['trainer-0', 'trainer-1', 'trainer-2', 'trainer-3']);
  expect(table.map((r) => r[2])).toEqual(['engine-0 · rank 0', 'engine-0 · rank 1', 'engine-1 · rank 0', 'engine-1 · rank 1']);
  for (const r of table) expect(r[3]).toBe(r[1]);
  expect(new Set(table.map((r) => r[1])).size).toBe(4);

  // The checks, the weights-changed one first of all.
  const check = (name: string) => card.locator(`.checks li[data-check="${name}"]`);
  await expect(check('weights changed')).toHaveAttribute('data-ok', 'true');
  for (const name of ['colocated', 'engines agreed before the sync', 'engines agree after the sync', 'generation changed', 'within memory budgets']) {
    await expect(check(name)).toHaveAttribute('data-ok', 'true');
  }
  await expect(card.locator('.checks li.fail')).toHaveCount(0);

  // The handle sync time, measured in the worker.
  const sync = card.locator('[data-timing="handle sync"]');
  await expect(sync).toBeVisible();
  const syncMs = Number(await sync.getAttribute('data-ms'));
  expect(syncMs).toBeGreaterThan(0);

  // Generations: both engines agree before; after the trainers zeroed their weights, greedy picks token 0.
  const after = card.locator('table.generations[data-label="after the sync"] td.num');
  await expect(after).toHaveCount(4); // 2 engines x 2 prompts
  for (const ids of await after.allTextContents()) expect(ids.split(' ').every((t) => t === '0')).toBe(true);
  const before = await card.locator('table.generations[data-label="before the sync"] td.num').allTextContents();
  expect(before).toHaveLength(4);
  expect(before.slice(0, 2)).toEqual(before.slice(2, 4));
  expect(before.some((ids) => ids.split(' ').some((t) => t !== '0'))).toBe(true);

  // Memory per budget: every actor holds bytes, none beyond its budget.
  const mem = await placement.locator('.mem').evaluateAll((els) => els.map((e) => ({ used: Number((e as HTMLElement).dataset.used), budget: Number((e as HTMLElement).dataset.budget) })));
  expect(mem).toHaveLength(8);
  for (const m of mem) {
    expect(m.used).toBeGreaterThan(0);
    expect(m.used).toBeLessThanOrEqual(m.budget);
  }
  const fractions = await placement.locator('.gpu-bar .share[data-fraction]').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.fraction));
  expect(fractions).toEqual(Array(8).fill('0.4'));

  console.log(`  colocate in the page: handle sync ${syncMs} ms; whole test ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await shot(card, testInfo, 'colocate-scenario');
  await shot(page.locator('#scenario-placement'), testInfo, 'placement-view');
  expect(consoleErrors).toEqual([]);
});

test('the RL loop draws reward and loss as it runs, from the keyboard, and the mean reward rises', async ({ page, consoleErrors }, testInfo) => {
  test.setTimeout(6 * 60_000);
  const t0 = Date.now();
  await open(page);
  const card = page.locator('#scenario-rl-loop');
  // Keyboard only: the iterations field, Tab past the samples choice to the Run button, Enter.
  await card.getByLabel('Samples per prompt').selectOption(RL_SAMPLES);
  const iterations = card.getByLabel('Iterations');
  await iterations.focus();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.type(String(RL_ITERATIONS));
  await page.keyboard.press('Tab');
  await expect(card.getByLabel('Samples per prompt')).toBeFocused();
  await page.keyboard.press('Tab');
  await expect(card.getByRole('button', { name: 'Run RL loop' })).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(card).toHaveAttribute('data-result', 'running');

  // The charts draw while it runs: a point per iteration, before the loop ends.
  const reward = card.locator('[data-series="mean reward"]');
  const loss = card.locator('[data-series="loss"]');
  await expect(reward.locator('svg polyline')).toBeVisible({ timeout: 240_000 });
  await expect(loss.locator('svg polyline')).toBeVisible();
  expect(await card.getAttribute('data-result')).toBe('running');
  await expect(page.locator('#scenario-placement .placement')).toHaveAttribute('data-source', 'RL loop');
  // The page stays responsive while the loop trains: timers on the main thread fire on time (GPU work is in workers).
  const lagMs = await page.evaluate(async () => {
    let worst = 0, last = performance.now();
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setTimeout(r, 25));
      const now = performance.now();
      worst = Math.max(worst, now - last - 25);
      last = now;
    }
    return worst;
  });
  expect(await card.getAttribute('data-result')).toBe('running');
  expect(lagMs).toBeLessThan(250);
  await shot(card, testInfo, 'rl-loop-running');

  await expect(card).toHaveAttribute('data-result', /pass|fail|error/, { timeout: 300_000 });
  const values = JSON.parse((await reward.getAttribute('data-values')) ?? '[]') as number[];
  const losses = JSON.parse((await loss.getAttribute('data-values')) ?? '[]') as number[];
  expect(values).toHaveLength(RL_ITERATIONS);
  expect(losses).toHaveLength(RL_ITERATIONS);
  expect(losses.every(Number.isFinite)).toBe(true);
  await expect(reward.locator('svg circle')).toHaveCount(RL_ITERATIONS);
  // Mean reward over the last third against the first third.
  const k = Math.floor(RL_ITERATIONS / 3);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const head = mean(values.slice(0, k)), tail = mean(values.slice(-k));
  console.log(`  RL loop in the page: rewards ${values.map((v) => v.toFixed(2)).join(' ')}; first ${k} ${head.toFixed(3)} -> last ${k} ${tail.toFixed(3)}; ` +
    `worst main-thread timer lag while training ${lagMs.toFixed(0)} ms; whole test ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  expect(tail).toBeGreaterThan(head);
  await expect(card.locator('.checks li[data-check="mean reward rose"]')).toHaveAttribute('data-ok', 'true');
  await expect(card).toHaveAttribute('data-result', 'pass');
  await shot(card, testInfo, 'rl-loop-done');
  expect(consoleErrors).toEqual([]);
});

test('placement: the actors as fractions of their GPUs, memory against each budget', async ({ page, consoleErrors }, testInfo) => {
  test.setTimeout(4 * 60_000);
  await open(page);
  const card = page.locator('#scenario-placement');
  await card.getByRole('button', { name: 'Place actors' }).focus();
  await page.keyboard.press('Enter');
  await expect(card).toHaveAttribute('data-result', /pass|fail|error/, { timeout: 180_000 });
  await expect(card).toHaveAttribute('data-result', 'pass');
  const gpus = card.locator('.gpu');
  await expect(gpus).toHaveCount(4);
  for (let g = 0; g < 4; g++) {
    const names = await gpus.nth(g).locator('.gpu-bar .share[data-actor]').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.actor));
    // A trainer and the engine rank of its bundle share each GPU.
    expect(names).toEqual([`engine-${Math.floor(g / 2)}.rank${g % 2}`, `trainer-${g}`]);
    await expect(gpus.nth(g).locator('.gpu-bar .share.reserved')).toHaveCount(1); // 0.2 of the bundle unplaced
  }
  await expect(card.locator('.checks li.fail')).toHaveCount(0);
  await expect(card.locator('.checks li')).toHaveCount(3);
  await shot(card, testInfo, 'placement-panel');
  expect(consoleErrors).toEqual([]);
});
