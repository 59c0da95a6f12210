// Reports what WebGPU offers in the current context (page or worker) and proves the device computes:
// a 4-element compute shader round trip. Run via run.html?module=/test/e2e/pages/webgpu-info.ts[&context=worker].

export interface WebGpuInfo {
  context: 'main' | 'worker';
  secureContext: boolean;
  hasNavigatorGpu: boolean;
  adapter: null | {
    vendor: string;
    architecture: string;
    device: string;
    description: string;
    isFallbackAdapter: boolean;
    features: string[];
    limits: Record<string, number>;
  };
  /** Output of a tiny compute dispatch (x * 2 + 1 over [1, 2, 3, 4]). */
  compute: number[] | null;
}

async function roundTrip(device: GPUDevice): Promise<number[]> {
  const input = new Float32Array([1, 2, 3, 4]);
  const module = device.createShaderModule({
    code: /* wgsl */ `
      @group(0) @binding(0) var<storage, read_write> data: array<f32>;
      @compute @workgroup_size(4)
      fn main(@builtin(global_invocation_id) id: vec3u) { data[id.x] = data[id.x] * 2.0 + 1.0; }`,
  });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const storage = device.createBuffer({
    size: input.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  const readback = device.createBuffer({ size: input.byteLength, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(storage, 0, input);
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: storage } }] }));
  pass.dispatchWorkgroups(1);
  pass.end();
  encoder.copyBufferToBuffer(storage, 0, readback, 0, input.byteLength);
  device.queue.submit([encoder.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const out = Array.from(new Float32Array(readback.getMappedRange().slice(0)));
  readback.unmap();
  storage.destroy();
  readback.destroy();
  return out;
}

export async function run(): Promise<WebGpuInfo> {
  const context = typeof window === 'undefined' ? 'worker' : 'main';
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  const base = { context, secureContext: globalThis.isSecureContext, hasNavigatorGpu: gpu !== undefined } as const;
  if (!gpu) return { ...base, adapter: null, compute: null };
  const adapter = await gpu.requestAdapter();
  if (!adapter) return { ...base, adapter: null, compute: null };

  const limits: Record<string, number> = {};
  for (const key in adapter.limits) {
    const value = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof value === 'number') limits[key] = value;
  }
  const info = adapter.info;
  const device = await adapter.requestDevice();
  const errors: string[] = [];
  device.onuncapturederror = (e) => errors.push(e.error.message);
  let compute: number[];
  try {
    compute = await roundTrip(device);
  } finally {
    device.destroy();
  }
  if (errors.length) throw new Error(`WebGPU errors: ${errors.join('; ')}`);
  return {
    ...base,
    adapter: {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      isFallbackAdapter: Boolean((info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter),
      features: [...adapter.features].sort(),
      limits,
    },
    compute,
  };
}
