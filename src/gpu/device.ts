import { WebGPUUnavailableError } from '../errors.ts';

/** What the device can do, decided once at start-up; kernels specialise on it. */
export interface GpuCaps {
  adapterDescription: string;
  isFallbackAdapter: boolean;
  shaderF16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
  maxStorageBindingSize: number;
  maxBufferSize: number;
  maxWorkgroupStorageSize: number;
  maxInvocationsPerWorkgroup: number;
  maxStorageBuffersPerStage: number;
  minStorageOffsetAlignment: number;
  maxWorkgroupsPerDimension: number;
}

export interface AcquireOptions {
  powerPreference?: GPUPowerPreference;
  /** Turn off optional features even when present (e.g. to test the f32-only path). */
  disableFeatures?: GPUFeatureName[];
  /** The WebGPU entry point to use instead of `navigator.gpu` (e.g. one passed into a worker, or a stub in tests). */
  gpu?: GPU;
}

export interface AcquiredDevice {
  device: GPUDevice;
  caps: GpuCaps;
}

/**
 * Get an adapter and a device with the limits an OPT model needs. The default limits (128 MiB per storage
 * binding, 256 MiB per buffer) are too small for OPT-125m's 154 MB embedding, so ask for the adapter's maxima.
 * Optional features (shader-f16, subgroups, timestamp-query) are requested when present and reported in caps.
 */
export async function acquireDevice(opts: AcquireOptions = {}): Promise<AcquiredDevice> {
  const gpu = opts.gpu ?? (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new WebGPUUnavailableError(
      'WebGPU is not available here (navigator.gpu is undefined). In Deno run with --unstable-webgpu; ' +
        'in a browser use a recent Chromium over https or http://localhost.',
    );
  }
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new WebGPUUnavailableError(
      'No WebGPU adapter was found. On Linux without a GPU install a Vulkan driver: apt-get install mesa-vulkan-drivers',
    );
  }
  const disabled = new Set(opts.disableFeatures ?? []);
  const want: GPUFeatureName[] = (['shader-f16', 'subgroups', 'timestamp-query'] as GPUFeatureName[])
    .filter((f) => adapter.features.has(f) && !disabled.has(f));
  const L = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
    maxBufferSize: L.maxBufferSize,
    maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX,
    maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
  };
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures: want, requiredLimits });
  } catch (e) {
    throw new WebGPUUnavailableError(`requestDevice failed: ${(e as Error).message}`, { cause: e });
  }
  const info = adapter.info;
  const caps: GpuCaps = {
    adapterDescription: [info?.vendor, info?.architecture, info?.device, info?.description].filter((s) => s).join(' '),
    isFallbackAdapter: Boolean((info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter),
    shaderF16: device.features.has('shader-f16'),
    subgroups: device.features.has('subgroups'),
    timestampQuery: device.features.has('timestamp-query'),
    maxStorageBindingSize: device.limits.maxStorageBufferBindingSize,
    maxBufferSize: device.limits.maxBufferSize,
    maxWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
    maxInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
    maxStorageBuffersPerStage: device.limits.maxStorageBuffersPerShaderStage,
    minStorageOffsetAlignment: device.limits.minStorageBufferOffsetAlignment,
    maxWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
  };
  return { device, caps };
}
