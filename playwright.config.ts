/// <reference types="node" />
/**
 * Browser tests: Debian's Chromium (not Playwright's download, which cannot work here) with WebGPU on SwiftShader,
 * a CPU Vulkan, so no GPU is needed. SwiftShader is slow (10-100x slower than lavapipe on tiled kernels): use the
 * tiny models and be generous with time. Pages are served by Vite (vite.config.ts, mode e2e) from http://localhost,
 * a secure context, which navigator.gpu requires. `scripts/ensure-system.sh` installs Chromium.
 */
import { defineConfig } from '@playwright/test';

const port = Number(process.env.TANDEM_E2E_PORT ?? 5174);
const baseURL = `http://localhost:${port}`;
/** The demo's production build, served by `vite preview` (test/e2e/demo*.spec.ts open it at this address). */
const demoPort = Number(process.env.TANDEM_DEMO_PORT ?? 5175);
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export default defineConfig({
  testDir: 'test/e2e',
  testMatch: '**/*.spec.ts',
  outputDir: 'test-results',
  timeout: 5 * 60_000,
  expect: { timeout: 30_000 },
  workers: 1,
  fullyParallel: false,
  forbidOnly: Boolean(process.env.CI),
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL,
    browserName: 'chromium',
    headless: true,
    navigationTimeout: 60_000,
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath,
      args: [
        '--enable-unsafe-webgpu',
        '--enable-features=Vulkan',
        '--use-vulkan=swiftshader',
        '--use-webgpu-adapter=swiftshader',
        '--no-sandbox',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    },
  },
  webServer: [
    {
      command: `node node_modules/vite/bin/vite.js --mode e2e --port ${port} --strictPort --logLevel warn`,
      url: `${baseURL}/test/e2e/pages/run.html`,
      reuseExistingServer: !process.env.CI,
      timeout: 120_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
    {
      // The demo as shipped: built (about a second), then served by `vite preview` (vite.config.ts, mode demo).
      command: `node node_modules/vite/bin/vite.js build --mode demo --logLevel warn && ` +
        `node node_modules/vite/bin/vite.js preview --mode demo --port ${demoPort} --strictPort`,
      url: `http://localhost:${demoPort}/index.html`,
      reuseExistingServer: !process.env.CI,
      timeout: 120_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
  ],
});
