import { defineConfig } from 'vitest/config';

// Unit tier: pure logic under Node (no GPU). GPU tests run in Deno (test/gpu), browser tests in Playwright (test/e2e).
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
  },
});
