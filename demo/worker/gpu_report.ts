/**
 * The WebGPU panel's facts, gathered where the engine runs (this worker): the adapter, its features, and the
 * limits Tandem's device actually uses (src/gpu/device.ts raises them to the adapter's maxima). When something
 * is missing, the answer says what and what to do, in words.
 */
import { LocalGpu } from '../../src/gpu/local.ts';
import { NO_WEBGPU_ADVICE } from '../advice.ts';
import type { GpuStatus } from '../protocol.ts';

const FEATURE_WHY: Record<string, string> = {
  'shader-f16': 'f16 weights and KV cache (half the memory); without it the demo runs in f32',
  'subgroups': 'faster reductions where kernels use them',
  'timestamp-query': 'GPU-side timings in benchmarks',
};


export async function gpuStatus(): Promise<{ status: GpuStatus; gpu: LocalGpu | null }> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    return { status: { available: false, reason: 'This browser does not offer WebGPU here (navigator.gpu is missing).', advice: NO_WEBGPU_ADVICE }, gpu: null };
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    return {
      status: {
        available: false,
        reason: 'WebGPU is present, but it found no GPU adapter (the GPU may be blocklisted or its driver missing).',
        advice: ['Check chrome://gpu for "WebGPU: Hardware accelerated".', ...NO_WEBGPU_ADVICE.slice(1)],
      },
      gpu: null,
    };
  }
  let local: LocalGpu;
  try {
    local = await LocalGpu.create();
  } catch (e) {
    return { status: { available: false, reason: `The GPU device could not be created: ${(e as Error).message}`, advice: NO_WEBGPU_ADVICE }, gpu: null };
  }
  const info = adapter.info;
  const caps = local.caps;
  return {
    gpu: local,
    status: {
      available: true,
      adapter: {
        vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description,
        isFallbackAdapter: caps.isFallbackAdapter,
      },
      features: [...adapter.features].map(String).sort(),
      tandemFeatures: [
        { name: 'shader-f16', enabled: caps.shaderF16, why: FEATURE_WHY['shader-f16'] },
        { name: 'subgroups', enabled: caps.subgroups, why: FEATURE_WHY['subgroups'] },
        { name: 'timestamp-query', enabled: caps.timestampQuery, why: FEATURE_WHY['timestamp-query'] },
      ],
      limitsInUse: {
        maxStorageBufferBindingSize: caps.maxStorageBindingSize,
        maxBufferSize: caps.maxBufferSize,
        maxComputeWorkgroupStorageSize: caps.maxWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: caps.maxInvocationsPerWorkgroup,
        maxStorageBuffersPerShaderStage: caps.maxStorageBuffersPerStage,
        minStorageBufferOffsetAlignment: caps.minStorageOffsetAlignment,
        maxComputeWorkgroupsPerDimension: caps.maxWorkgroupsPerDimension,
      },
    },
  };
}
