import { GpuDeviceLostError, GpuOutOfMemoryError, GpuValidationError, type TandemError } from '../errors.ts';
import { acquireDevice, type AcquireOptions, type GpuCaps } from './device.ts';
import type { BufferBinding, Gpu, GpuBuffer, GpuStats, Kernel, KernelSource } from './gpu.ts';

interface LocalBuffer extends GpuBuffer {
  gpuBuffer: GPUBuffer;
}
interface LocalKernel extends Kernel {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

// Read at use, not at module load: importing the library where WebGPU is missing (Node) must not throw.
const storageUsage = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/**
 * The in-process GPU: direct WebGPU on a device this object owns. Dispatches are recorded into one compute
 * pass until something needs the queue (a write, a copy, a read, a flush); bind groups and param uniforms
 * are cached so a steady-state decode step allocates nothing.
 */
export class LocalGpu implements Gpu {
  readonly caps: GpuCaps;
  readonly device: GPUDevice;
  private nextId = 1;
  private buffers = new Map<number, LocalBuffer>();
  private kernels = new Map<string, LocalKernel>();
  private uniforms = new Map<string, GPUBuffer>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pendingCommands = 0;
  private error: TandemError | null = null;
  private lost = false;
  private bytes = 0;
  private peakBytes = 0;
  private dispatchCount = 0;
  private submitCount = 0;
  private readbackPool: GPUBuffer[] = [];

  private constructor(device: GPUDevice, caps: GpuCaps) {
    this.device = device;
    this.caps = caps;
    device.addEventListener('uncapturederror', (ev) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      this.error ??= err instanceof GPUOutOfMemoryError
        ? new GpuOutOfMemoryError(`GPU out of memory: ${err.message}`)
        : new GpuValidationError(`WebGPU error: ${err.message}`);
    });
    device.lost.then((info) => {
      this.lost = true;
      if (info.reason !== 'destroyed') this.error ??= new GpuDeviceLostError(`GPU device lost: ${info.message}`);
    });
  }

  static async create(opts: AcquireOptions = {}): Promise<LocalGpu> {
    const { device, caps } = await acquireDevice(opts);
    return new LocalGpu(device, caps);
  }

  private check(): void {
    if (this.error) {
      const e = this.error;
      this.error = null;
      throw e;
    }
    if (this.lost) throw new GpuDeviceLostError('GPU device was lost or destroyed');
  }

  async createBuffer(size: number, label: string): Promise<GpuBuffer> {
    this.check();
    if (size > this.caps.maxBufferSize) {
      throw new GpuOutOfMemoryError(`buffer "${label}" of ${size} bytes exceeds this device's maxBufferSize ${this.caps.maxBufferSize}`);
    }
    const alignedSize = Math.max(16, Math.ceil(size / 16) * 16);
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    const gpuBuffer = this.device.createBuffer({ size: alignedSize, usage: storageUsage(), label });
    const validation = await this.device.popErrorScope();
    const oom = await this.device.popErrorScope();
    if (oom) throw new GpuOutOfMemoryError(`GPU out of memory allocating "${label}" (${size} bytes): ${oom.message}`);
    if (validation) throw new GpuValidationError(`creating buffer "${label}" (${size} bytes): ${validation.message}`);
    const buf: LocalBuffer = { id: this.nextId++, size, label, gpuBuffer };
    this.buffers.set(buf.id, buf);
    this.bytes += alignedSize;
    this.peakBytes = Math.max(this.peakBytes, this.bytes);
    return buf;
  }

  private local(b: GpuBuffer): LocalBuffer {
    const lb = this.buffers.get(b.id);
    if (!lb) throw new GpuValidationError(`buffer ${b.id} ("${b.label}") was destroyed or belongs to another GPU`);
    return lb;
  }

  destroyBuffer(b: GpuBuffer): void {
    const lb = this.buffers.get(b.id);
    if (!lb) return;
    // Work already recorded may still use it: submit first, WebGPU defers the free until that work is done.
    this.flush();
    this.buffers.delete(b.id);
    this.bytes -= lb.gpuBuffer.size;
    for (const key of [...this.bindGroups.keys()]) if (key.includes(`|${b.id}@`)) this.bindGroups.delete(key);
    lb.gpuBuffer.destroy();
  }

  write(b: GpuBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.check();
    const lb = this.local(b);
    if (byteOffset + data.byteLength > b.size) {
      throw new GpuValidationError(`write of ${data.byteLength} bytes at ${byteOffset} overflows "${b.label}" (${b.size} bytes)`);
    }
    // queue.writeBuffer runs before any command buffer submitted later, so submit what is recorded first.
    if (this.pendingCommands > 0) this.flush();
    const padded = data.byteLength % 4 === 0 ? data : padTo4(data);
    this.device.queue.writeBuffer(lb.gpuBuffer, byteOffset, padded.buffer, padded.byteOffset, padded.byteLength);
  }

  kernel(src: KernelSource): Kernel {
    const cacheKey = `${src.key}#${src.entryPoint ?? 'main'}`;
    const hit = this.kernels.get(cacheKey);
    if (hit) return hit;
    const module = this.device.createShaderModule({ code: src.code, label: src.key });
    const pipeline = this.device.createComputePipeline({
      layout: 'auto',
      compute: { module, entryPoint: src.entryPoint ?? 'main' },
      label: src.key,
    });
    const k: LocalKernel = { id: this.kernels.size + 1, key: cacheKey, pipeline, layout: pipeline.getBindGroupLayout(0) };
    this.kernels.set(cacheKey, k);
    return k;
  }

  private uniform(params: Uint32Array): GPUBuffer {
    const key = params.join(',');
    let u = this.uniforms.get(key);
    if (!u) {
      u = this.device.createBuffer({ size: params.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      this.device.queue.writeBuffer(u, 0, params.buffer, params.byteOffset, params.byteLength);
      this.uniforms.set(key, u);
    }
    return u;
  }

  private ensurePass(): GPUComputePassEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (!this.pass) this.pass = this.encoder.beginComputePass();
    return this.pass;
  }

  dispatch(
    kernel: Kernel,
    bindings: ReadonlyArray<GpuBuffer | BufferBinding>,
    params: Uint32Array | null,
    workgroups: readonly [number, number?, number?],
  ): void {
    const k = kernel as LocalKernel;
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.caps.maxWorkgroupsPerDimension;
    if (x > max || y > max || z > max) {
      throw new GpuValidationError(`${k.key}: dispatch (${x}, ${y}, ${z}) exceeds ${max} workgroups per dimension`);
    }
    let key = `${k.id}`;
    const entries: GPUBindGroupEntry[] = [];
    let binding = 0;
    if (params) {
      const u = this.uniform(params);
      entries.push({ binding: binding++, resource: { buffer: u } });
      key += `|u${params.join(',')}`;
    }
    for (const b of bindings) {
      const bb: BufferBinding = 'buffer' in b ? b : { buffer: b };
      const lb = this.local(bb.buffer);
      const offset = bb.offset ?? 0;
      const size = bb.size ?? lb.gpuBuffer.size - offset;
      entries.push({ binding: binding++, resource: { buffer: lb.gpuBuffer, offset, size } });
      key += `|${lb.id}@${offset}+${size}`;
    }
    let group = this.bindGroups.get(key);
    if (!group) {
      group = this.device.createBindGroup({ layout: k.layout, entries, label: k.key });
      this.bindGroups.set(key, group);
    }
    const pass = this.ensurePass();
    pass.setPipeline(k.pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
    this.pendingCommands++;
    this.dispatchCount++;
  }

  copy(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void {
    if (size === 0) return;
    const s = this.local(src), d = this.local(dst);
    this.ensurePass();
    this.pass!.end();
    this.pass = null;
    this.encoder!.copyBufferToBuffer(s.gpuBuffer, srcOffset, d.gpuBuffer, dstOffset, size);
    this.pendingCommands++;
  }

  flush(): void {
    if (!this.encoder) return;
    this.pass?.end();
    this.pass = null;
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.pendingCommands = 0;
    this.submitCount++;
  }

  async read(b: GpuBuffer, byteOffset = 0, byteLength = b.size - byteOffset): Promise<ArrayBuffer> {
    this.check();
    const lb = this.local(b);
    if (byteOffset + byteLength > b.size) {
      throw new GpuValidationError(`read of ${byteLength} bytes at ${byteOffset} overflows "${b.label}" (${b.size} bytes)`);
    }
    const alignedOffset = byteOffset & ~3;
    const alignedLength = Math.ceil((byteOffset - alignedOffset + byteLength) / 4) * 4;
    const staging = this.takeStaging(alignedLength);
    this.ensurePass();
    this.pass!.end();
    this.pass = null;
    this.encoder!.copyBufferToBuffer(lb.gpuBuffer, alignedOffset, staging, 0, alignedLength);
    this.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, alignedLength);
    } catch (e) {
      this.check();
      throw new GpuValidationError(`reading "${b.label}" failed: ${(e as Error).message}`, { cause: e });
    }
    const skip = byteOffset - alignedOffset;
    const out = staging.getMappedRange(0, alignedLength).slice(skip, skip + byteLength);
    staging.unmap();
    this.readbackPool.push(staging);
    this.check();
    return out;
  }

  private takeStaging(size: number): GPUBuffer {
    const i = this.readbackPool.findIndex((s) => s.size >= size && s.size <= size * 4);
    if (i >= 0) return this.readbackPool.splice(i, 1)[0];
    return this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  /**
   * Profiling aid: run `record` (dispatches only) in a compute pass of its own with timestamp queries and
   * return its GPU time in milliseconds, or null without the timestamp-query feature.
   */
  async timeOnGpu(record: () => void): Promise<number | null> {
    if (!this.caps.timestampQuery) { record(); return null; }
    this.flush();
    const querySet = this.device.createQuerySet({ type: 'timestamp', count: 2 });
    const resolve = this.device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const staging = this.device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.encoder = this.device.createCommandEncoder();
    this.pass = this.encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    record();
    if (!this.pass) throw new Error('timeOnGpu: the recorded work must be dispatches only');
    this.pass.end();
    this.pass = null;
    this.encoder.resolveQuerySet(querySet, 0, 2, resolve, 0);
    this.encoder.copyBufferToBuffer(resolve, 0, staging, 0, 16);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.pendingCommands = 0;
    await staging.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(staging.getMappedRange());
    const ms = Number(t[1] - t[0]) / 1e6;
    staging.unmap();
    staging.destroy();
    resolve.destroy();
    querySet.destroy();
    this.check();
    return ms;
  }

  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.check();
  }

  stats(): GpuStats {
    return {
      bytesAllocated: this.bytes,
      peakBytesAllocated: this.peakBytes,
      buffers: this.buffers.size,
      kernels: this.kernels.size,
      bindGroups: this.bindGroups.size,
      uniformBuffers: this.uniforms.size,
      dispatches: this.dispatchCount,
      submits: this.submitCount,
    };
  }

  destroy(): void {
    this.flush();
    for (const b of this.buffers.values()) b.gpuBuffer.destroy();
    this.buffers.clear();
    this.device.destroy();
  }
}

function padTo4(data: ArrayBufferView): Uint8Array {
  const out = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return out;
}
