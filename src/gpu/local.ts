import { GpuDeviceLostError, GpuOutOfMemoryError, GpuValidationError, type TandemError } from '../errors.ts';
import { acquireDevice, type AcquireOptions, type GpuCaps } from './device.ts';
import { checkSubRange, type BufferBinding, type Gpu, type GpuBuffer, type GpuStats, type Kernel, type KernelSource, type Recording } from './gpu.ts';

interface LocalBuffer extends GpuBuffer {
  gpuBuffer: GPUBuffer;
  /** Where this buffer's bytes start in gpuBuffer: 0, or a sub-buffer's offset in its parent. */
  base: number;
  /** Sub-buffers only: the buffer they were cut from. */
  root: LocalBuffer | null;
  /** Own buffers only: ids of the sub-buffers cut from it (they end with it). */
  children: Set<number> | null;
}
interface CapturedDispatch {
  label: string;
  pipeline: GPUComputePipeline;
  group: GPUBindGroup;
  x: number;
  y: number;
  z: number;
}
interface LocalRecording extends Recording {
  steps: CapturedDispatch[];
  bufferIds: Set<number>;
  valid: boolean;
}
interface TimestampSlot {
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
  staging: GPUBuffer;
}

/** What LocalGpu.endTimedSpan measured. */
export interface SpanTiming {
  /** Summed GPU time of the span's compute passes (ms), or null where it could not be measured. */
  gpuMs: number | null;
  /** performance.now() when the span's completion was observed. */
  doneAt: number;
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
  /** queue.writeBuffer calls since the last submit (wgpu submits them with the next one). */
  private unsubmittedWrites = false;
  private error: TandemError | null = null;
  private lost = false;
  private bytes = 0;
  private peakBytes = 0;
  private dispatchCount = 0;
  private submitCount = 0;
  private readbackPool: GPUBuffer[] = [];
  private capturing: LocalRecording | null = null;
  private recordings = new Map<number, LocalRecording>();

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
    const buf: LocalBuffer = { id: this.nextId++, size, label, gpuBuffer, base: 0, root: null, children: new Set() };
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

  async subBuffer(parent: GpuBuffer, byteOffset: number, byteLength: number, label: string): Promise<GpuBuffer> {
    this.check();
    const p = this.local(parent);
    checkSubRange(parent, byteOffset, byteLength, label, this.caps.minStorageOffsetAlignment);
    const root = p.root ?? p;
    const buf: LocalBuffer = {
      id: this.nextId++, size: byteLength, label, gpuBuffer: p.gpuBuffer, base: p.base + byteOffset, root, children: null,
      parent, parentOffset: byteOffset,
    };
    this.buffers.set(buf.id, buf);
    root.children!.add(buf.id);
    return buf;
  }

  destroyBuffer(b: GpuBuffer): void {
    const lb = this.buffers.get(b.id);
    if (!lb) return;
    if (lb.root) {
      // A sub-buffer owns no memory: forget it (and what was cached for it).
      this.buffers.delete(b.id);
      lb.root.children!.delete(b.id);
      this.forgetBindings(new Set([b.id]));
      return;
    }
    for (const id of lb.children!) this.buffers.delete(id);
    // Work already recorded may still use it: submit first, WebGPU defers the free until that work is done.
    this.flush();
    this.buffers.delete(b.id);
    this.bytes -= lb.gpuBuffer.size;
    this.forgetBindings(new Set([b.id, ...lb.children!]));
    lb.gpuBuffer.destroy();
  }

  /** Drop cached bind groups that bind any of these buffers and invalidate recordings that use them, in one pass. */
  private forgetBindings(ids: ReadonlySet<number>): void {
    for (const key of [...this.bindGroups.keys()]) {
      for (const m of key.matchAll(/\|(\d+)@/g)) {
        if (ids.has(Number(m[1]))) {
          this.bindGroups.delete(key);
          break;
        }
      }
    }
    for (const rec of this.recordings.values()) for (const id of ids) if (rec.bufferIds.has(id)) rec.valid = false;
  }

  write(b: GpuBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.noCapture('write');
    this.check();
    const lb = this.local(b);
    if (byteOffset + data.byteLength > b.size) {
      throw new GpuValidationError(`write of ${data.byteLength} bytes at ${byteOffset} overflows "${b.label}" (${b.size} bytes)`);
    }
    // queue.writeBuffer runs before any command buffer submitted later, so submit what is recorded first.
    if (this.pendingCommands > 0) this.flush();
    const padded = data.byteLength % 4 === 0 ? data : padTo4(data);
    this.unsubmittedWrites = true;
    this.device.queue.writeBuffer(lb.gpuBuffer, lb.base + byteOffset, padded.buffer, padded.byteOffset, padded.byteLength);
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

  private uniform(params: Uint32Array, key: string): GPUBuffer {
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
    if (!this.pass) this.pass = this.span ? this.beginSpanPass(this.encoder, this.span) : this.encoder.beginComputePass();
    return this.pass;
  }

  // ---- timed spans (the device host's fair share of GPU time) ----

  /** Compute passes one span can time; passes past it make the span report no GPU time (gpuMs null). */
  static readonly SPAN_MAX_PASSES = 512;
  private span: { slot: TimestampSlot | null; passes: number; overflow: boolean } | null = null;
  private timestampSlots: TimestampSlot[] = [];

  private beginSpanPass(encoder: GPUCommandEncoder, span: NonNullable<LocalGpu['span']>): GPUComputePassEncoder {
    if (!span.slot || span.passes >= LocalGpu.SPAN_MAX_PASSES) {
      span.overflow = span.slot !== null;
      return encoder.beginComputePass();
    }
    const i = span.passes++;
    return encoder.beginComputePass({
      timestampWrites: { querySet: span.slot.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
    });
  }

  /**
   * Start measuring the GPU time of the work recorded from now until endTimedSpan(): every compute pass begun
   * meanwhile gets timestamp writes (when the device has timestamp-query). Work recorded before is submitted
   * first, so it is not part of the span. One span at a time.
   */
  beginTimedSpan(): void {
    if (this.span) throw new Error('beginTimedSpan: a span is already open');
    this.flush();
    let slot: TimestampSlot | null = null;
    if (this.caps.timestampQuery && !this.lost) {
      const n = 2 * LocalGpu.SPAN_MAX_PASSES;
      slot = this.timestampSlots.pop() ?? {
        querySet: this.device.createQuerySet({ type: 'timestamp', count: n, label: 'span-timestamps' }),
        resolve: this.device.createBuffer({ size: 8 * n, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }),
        staging: this.device.createBuffer({ size: 8 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
      };
    }
    this.span = { slot, passes: 0, overflow: false };
  }

  /** Whether a span is open. */
  get timingSpan(): boolean {
    return this.span !== null;
  }

  /**
   * Close the span and submit it. Resolves once the GPU has finished everything submitted so far, with the
   * span's GPU time: the summed durations of its compute passes (copies and queue writes are not timed: a span
   * without a compute pass measures 0), or null where that cannot be measured (no timestamp-query, more than
   * SPAN_MAX_PASSES passes, device lost).
   * `doneAt` is performance.now() when completion was observed.
   */
  async endTimedSpan(): Promise<SpanTiming> {
    const span = this.span;
    if (!span) throw new Error('endTimedSpan: no span is open');
    this.flush();
    this.span = null;
    const slot = span.slot;
    if (!slot || span.passes === 0 || span.overflow || this.lost) {
      if (slot && !this.lost) this.timestampSlots.push(slot);
      try {
        await this.device.queue.onSubmittedWorkDone();
      } catch { /* device lost: nothing more will finish */ }
      // Timed but without a compute pass (writes, copies, requests): no compute time to charge.
      const untimed = !slot || span.overflow || this.lost;
      return { gpuMs: untimed ? null : 0, doneAt: performance.now() };
    }
    const bytes = 16 * span.passes;
    const enc = this.device.createCommandEncoder();
    enc.resolveQuerySet(slot.querySet, 0, 2 * span.passes, slot.resolve, 0);
    enc.copyBufferToBuffer(slot.resolve, 0, slot.staging, 0, bytes);
    this.device.queue.submit([enc.finish()]);
    try {
      await slot.staging.mapAsync(GPUMapMode.READ, 0, bytes);
    } catch {
      return { gpuMs: null, doneAt: performance.now() };
    }
    const doneAt = performance.now();
    const t = new BigUint64Array(slot.staging.getMappedRange(0, bytes));
    let ns = 0n;
    for (let i = 0; i < span.passes; i++) if (t[2 * i + 1] > t[2 * i]) ns += t[2 * i + 1] - t[2 * i];
    slot.staging.unmap();
    this.timestampSlots.push(slot);
    return { gpuMs: Number(ns) / 1e6, doneAt };
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
    const paramsKey = params ? params.join(',') : '';
    let key = `${k.id}|u${paramsKey}`;
    const resolved: Array<{ lb: LocalBuffer; offset: number; size: number }> = [];
    for (const b of bindings) {
      const bb: BufferBinding = 'buffer' in b ? b : { buffer: b };
      const lb = this.local(bb.buffer);
      const offset = lb.base + (bb.offset ?? 0);
      // By default the rest of the buffer; for a sub-buffer the rest of its range (rounded up to 16 bytes as an
      // own buffer's allocation is, within the parent).
      const size = bb.size ?? (lb.root ? Math.min(Math.ceil(lb.size / 16) * 16 + lb.base, lb.gpuBuffer.size) : lb.gpuBuffer.size) - offset;
      resolved.push({ lb, offset, size });
      key += `|${lb.id}@${offset}+${size}`;
    }
    let group = this.bindGroups.get(key);
    if (!group) {
      const entries: GPUBindGroupEntry[] = [];
      let binding = 0;
      if (params) entries.push({ binding: binding++, resource: { buffer: this.uniform(params, paramsKey) } });
      for (const r of resolved) entries.push({ binding: binding++, resource: { buffer: r.lb.gpuBuffer, offset: r.offset, size: r.size } });
      group = this.device.createBindGroup({ layout: k.layout, entries, label: k.key });
      this.bindGroups.set(key, group);
    }
    if (this.capturing) {
      this.capturing.steps.push({ label: k.key, pipeline: k.pipeline, group, x, y, z });
      for (const r of resolved) this.capturing.bufferIds.add(r.lb.id);
      return;
    }
    const pass = this.ensurePass();
    pass.setPipeline(k.pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
    this.pendingCommands++;
    this.dispatchCount++;
  }

  capture(record: () => void): Recording {
    if (this.capturing) throw new Error('capture: already capturing');
    const rec: LocalRecording = { id: this.nextId++, dispatches: 0, steps: [], bufferIds: new Set(), valid: true };
    this.capturing = rec;
    try {
      record();
    } finally {
      this.capturing = null;
    }
    (rec as { dispatches: number }).dispatches = rec.steps.length;
    this.recordings.set(rec.id, rec);
    return rec;
  }

  replay(recording: Recording): void {
    const rec = this.recordings.get(recording.id);
    if (!rec || !rec.valid) throw new GpuValidationError(`recording ${recording.id} was released or uses a destroyed buffer`);
    const pass = this.ensurePass();
    let last: GPUComputePipeline | null = null;
    for (const st of rec.steps) {
      if (st.pipeline !== last) { pass.setPipeline(st.pipeline); last = st.pipeline; }
      pass.setBindGroup(0, st.group);
      pass.dispatchWorkgroups(st.x, st.y, st.z);
    }
    this.pendingCommands += rec.steps.length;
    this.dispatchCount += rec.steps.length;
  }

  releaseRecording(recording: Recording): void {
    this.recordings.delete(recording.id);
  }

  private noCapture(what: string): void {
    if (this.capturing) throw new Error(`${what} cannot be captured: a Recording holds dispatches only`);
  }

  copy(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void {
    this.noCapture('copy');
    if (size === 0) return;
    const s = this.local(src), d = this.local(dst);
    // WebGPU checks the whole buffer; a sub-buffer's neighbours are only protected here.
    if (s.root && srcOffset + size > s.size) throw new GpuValidationError(`copy of ${size} bytes at ${srcOffset} overflows "${s.label}" (${s.size} bytes)`);
    if (d.root && dstOffset + size > d.size) throw new GpuValidationError(`copy of ${size} bytes at ${dstOffset} overflows "${d.label}" (${d.size} bytes)`);
    this.ensurePass();
    this.pass!.end();
    this.pass = null;
    this.encoder!.copyBufferToBuffer(s.gpuBuffer, s.base + srcOffset, d.gpuBuffer, d.base + dstOffset, size);
    this.pendingCommands++;
  }

  flush(): void {
    this.noCapture('flush');
    if (!this.encoder) {
      // Writes wait in wgpu's queue for the next submit: submit them now, so a sync covers them and their cost
      // does not land on whoever submits next (a weight sync after many small writes paid ~1 ms for them).
      if (this.unsubmittedWrites) {
        this.device.queue.submit([]);
        this.unsubmittedWrites = false;
        this.submitCount++;
      }
      return;
    }
    this.unsubmittedWrites = false;
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
    this.encoder!.copyBufferToBuffer(lb.gpuBuffer, lb.base + alignedOffset, staging, 0, alignedLength);
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

  /**
   * Profiling aid: GPU time of each dispatch of a recording, each run alone in a timed pass (so the figures
   * include a pass's fixed cost but no waiting on the dispatch before it). Null without timestamp-query.
   */
  async profileRecording(recording: Recording): Promise<Array<{ kernel: string; ms: number }> | null> {
    const rec = this.recordings.get(recording.id);
    if (!rec || !this.caps.timestampQuery) return null;
    this.flush();
    const n = rec.steps.length;
    const querySet = this.device.createQuerySet({ type: 'timestamp', count: 2 * n });
    const resolve = this.device.createBuffer({ size: 16 * n, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const staging = this.device.createBuffer({ size: 16 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    rec.steps.forEach((st, i) => {
      const pass = enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
      pass.setPipeline(st.pipeline);
      pass.setBindGroup(0, st.group);
      pass.dispatchWorkgroups(st.x, st.y, st.z);
      pass.end();
    });
    enc.resolveQuerySet(querySet, 0, 2 * n, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, staging, 0, 16 * n);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    resolve.destroy();
    querySet.destroy();
    return rec.steps.map((st, i) => ({ kernel: `${st.label} [${st.x},${st.y},${st.z}]`, ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6 }));
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
      buffers: [...this.buffers.values()].filter((b) => !b.root).length,
      kernels: this.kernels.size,
      bindGroups: this.bindGroups.size,
      uniformBuffers: this.uniforms.size,
      dispatches: this.dispatchCount,
      submits: this.submitCount,
    };
  }

  destroy(): void {
    this.flush();
    for (const b of this.buffers.values()) if (!b.root) b.gpuBuffer.destroy();
    this.buffers.clear();
    this.device.destroy();
  }
}

function padTo4(data: ArrayBufferView): Uint8Array {
  const out = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return out;
}
