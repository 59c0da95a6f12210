import { expect, runInBrowser, test } from './harness.ts';
import type { WebGpuInfo } from './pages/webgpu-info.ts';

const MODULE = '/test/e2e/pages/webgpu-info.ts';

for (const context of ['main', 'worker'] as const) {
  test(`WebGPU adapter in the ${context === 'main' ? 'main thread' : 'dedicated worker'}`, async ({ page, consoleErrors }, testInfo) => {
    const info = await runInBrowser<WebGpuInfo>(page, MODULE, { context });
    // The full report (features, limits) goes into the test's attachments; one line to the log.
    await testInfo.attach(`webgpu-${context}.json`, { body: JSON.stringify(info, null, 2), contentType: 'application/json' });
    const a = info.adapter;
    console.log(`[${context}] ${a ? `${a.vendor} ${a.architecture} fallback=${a.isFallbackAdapter}; features: ${a.features.join(' ')}; maxStorageBufferBindingSize ${a.limits.maxStorageBufferBindingSize}` : 'no adapter'}`);

    expect(info.context).toBe(context);
    expect(info.secureContext).toBe(true);
    expect(info.hasNavigatorGpu).toBe(true);
    expect(info.adapter, 'requestAdapter() returned null').not.toBeNull();
    const adapter = info.adapter!;
    // Without a GPU, Chromium's WebGPU runs on SwiftShader (a CPU Vulkan).
    expect(`${adapter.vendor} ${adapter.architecture} ${adapter.description}`.toLowerCase()).toContain('swiftshader');
    expect(adapter.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
    expect(adapter.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
    expect(info.compute).toEqual([3, 5, 7, 9]);
    expect(consoleErrors).toEqual([]);
  });
}
