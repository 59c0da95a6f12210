/**
 * The Gpu of an actor that does not own the device (a Web Worker, or an in-process actor beside others): every
 * call is recorded into a compact command list (src/actors/protocol.ts) and posted to the device host, which
 * runs it on the real device. The same model and engine code runs on it unchanged.
 *
 * Only what must be answered is awaited: createBuffer (the host assigns the id and enforces the actor's memory
 * budget), read and sync. Everything else is fire-and-forget; a burst of synchronous calls goes out as one
 * message (at flush(), at an awaited call, or at the end of the current task), so a decode step that writes
 * its inputs, replays its captured forward and flushes is one small postMessage. Errors of fire-and-forget
 * commands surface, typed, at the next awaited call, as WebGPU's do.
 */
import { ActorDisconnectedError, GpuOutOfMemoryError, GpuValidationError } from '../errors.ts';
import {
  BLOB_THRESHOLD,
  type BufferHandle,
  type CommandMessage,
  deserializeError,
  type ExportRequest,
  type HostMessage,
  type KernelDef,
  ALL_REDUCE_KERNEL,
  NONE,
  Op,
  type OpenedView,
  type WelcomeInfo,
  WordWriter,
} from './remote_protocol.ts';
import type { GpuCaps } from './device.ts';
import { checkSubRange, type BufferBinding, type Gpu, type GpuBuffer, type GpuStats, type Kernel, type KernelSource, type Recording } from './gpu.ts';

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

interface RemoteRecording extends Recording {
  released: boolean;
}

export class RemoteGpu implements Gpu {
  readonly caps: GpuCaps;
  readonly clientId: number;
  readonly actorId: string;
  readonly virtualGpuUuid: string;
  readonly memoryBudgetBytes: number;
  private port: MessagePort;
  private list = new WordWriter();
  private cost = 0;
  /** dispatchCount when the last list was posted. */
  private dispatchesPosted = 0;
  private kernelDefs: KernelDef[] = [];
  private blobs: ArrayBuffer[] = [];
  private extras: unknown[] = [];
  private postScheduled = false;
  private nextRequest = 1;
  private pending = new Map<number, Pending>();
  private kernels = new Map<string, Kernel>();
  private nextKernelId = 1;
  private nextRecordingId = 1;
  private recordings = new Map<number, RemoteRecording>();
  private capturing: WordWriter | null = null;
  private captured = 0;
  private closed: string | null = null;
  private bytes = 0;
  private peakBytes = 0;
  private buffers = new Map<number, GpuBuffer>();
  private dispatchCount = 0;
  private submitCount = 0;
  /** performance.now() of the last message to the host (liveness: heartbeats only when idle). */
  private lastSentAt = performance.now();
  private heartbeat: ReturnType<typeof setInterval> | null = null;

  private constructor(port: MessagePort, w: WelcomeInfo) {
    this.port = port;
    this.caps = w.caps;
    this.clientId = w.clientId;
    this.actorId = w.actorId;
    this.virtualGpuUuid = w.virtualGpuUuid;
    this.memoryBudgetBytes = w.memoryBudgetBytes;
    port.onmessage = (ev: MessageEvent<HostMessage>) => this.receive(ev.data);
    const every = w.heartbeatMs;
    if (every !== undefined && every > 0 && Number.isFinite(every)) {
      // Tell the host we are alive when there is nothing else to tell it: a worker killed without its spawner
      // noticing then shows as silence, and the host detaches it (DeviceHostOptions.livenessTimeoutMs).
      const timer = setInterval(() => {
        if (this.closed !== null || performance.now() - this.lastSentAt < every) return;
        this.lastSentAt = performance.now();
        this.port.postMessage({ t: 'alive' });
      }, every);
      this.heartbeat = timer;
      port.postMessage({ t: 'alive' }); // from now on the host judges this actor by its silence
      (globalThis as { Deno?: { unrefTimer?(id: number): void } }).Deno?.unrefTimer?.(timer as unknown as number);
    }
  }

  /** Connect over the port the device host's attach() gave this actor; resolves once the host has welcomed it. */
  static connect(port: MessagePort): Promise<RemoteGpu> {
    return new Promise((resolve, reject) => {
      port.onmessage = (ev: MessageEvent<HostMessage>) => {
        const m = ev.data;
        if (m.t === 'welcome') resolve(new RemoteGpu(port, m));
        else if (m.t === 'closed') reject(new ActorDisconnectedError(`the device host closed the connection: ${m.reason}`));
      };
      port.start?.();
    });
  }

  private receive(m: HostMessage): void {
    if (m.t === 'reply') {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(deserializeError(m.error!));
    } else if (m.t === 'closed') {
      this.shutDown(m.reason);
    }
  }

  private shutDown(reason: string): void {
    if (this.closed !== null) return;
    this.closed = reason;
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
    const err = new ActorDisconnectedError(`actor "${this.actorId}": the device host closed the connection: ${reason}`);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.port.onmessage = null;
    this.port.close();
  }

  private checkOpen(): void {
    if (this.closed !== null) throw new ActorDisconnectedError(`actor "${this.actorId}" is disconnected from the device host: ${this.closed}`);
  }

  // ---- command list plumbing ----

  private opStart(op: number): void {
    this.checkOpen();
    this.list.u32(op);
    if (!this.postScheduled) {
      this.postScheduled = true;
      queueMicrotask(() => this.post());
    }
  }

  /** Send what is recorded so far as one message. */
  private post(): void {
    this.postScheduled = false;
    if (this.list.length === 0 && this.kernelDefs.length === 0) return;
    if (this.closed !== null) return;
    const { buffer, length } = this.list.take();
    const msg: CommandMessage = { t: 'cmd', words: buffer, length, cost: this.cost, dispatches: this.dispatchCount - this.dispatchesPosted };
    this.dispatchesPosted = this.dispatchCount;
    if (this.kernelDefs.length) msg.kernels = this.kernelDefs;
    if (this.blobs.length) msg.blobs = this.blobs;
    if (this.extras.length) msg.extras = this.extras;
    const transfer: Transferable[] = [buffer, ...this.blobs];
    this.kernelDefs = [];
    this.blobs = [];
    this.extras = [];
    this.cost = 0;
    this.lastSentAt = performance.now();
    this.port.postMessage(msg, transfer);
  }

  /**
   * Most commands (dispatches, replayed dispatches, copies, writes) one message carries: a longer burst (a
   * whole training step) goes out in parts, so the device host's fair queue can run other actors' lists between
   * them instead of making them wait for all of it (the host never splits a list). Order is kept: the host
   * runs an actor's lists in order.
   */
  static maxListCommands = 256;

  private splitLongList(): void {
    if (this.cost >= RemoteGpu.maxListCommands) this.post();
  }

  /** Append a request, send the list, and wait for the host's answer. */
  private request<T>(op: number, body: (req: number) => void): Promise<T> {
    try {
      this.checkOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    const req = this.nextRequest++;
    const done = new Promise<T>((resolve, reject) => this.pending.set(req, { resolve: resolve as (v: unknown) => void, reject }));
    this.opStart(op);
    this.list.u32(req);
    body(req);
    this.post();
    return done;
  }

  private extra(value: unknown): number {
    this.extras.push(value);
    return this.extras.length - 1;
  }

  private noCapture(what: string): void {
    if (this.capturing) throw new Error(`${what} cannot be captured: a Recording holds dispatches only`);
  }

  // ---- the Gpu interface ----

  async createBuffer(size: number, label: string): Promise<GpuBuffer> {
    if (size > this.caps.maxBufferSize) {
      throw new GpuOutOfMemoryError(`buffer "${label}" of ${size} bytes exceeds this device's maxBufferSize ${this.caps.maxBufferSize}`);
    }
    const v = await this.request<OpenedView>(Op.CreateBuffer, () => {
      this.list.big(size);
      this.list.u32(this.extra(label));
    });
    const buf: GpuBuffer = { id: v.id, size, label };
    this.buffers.set(buf.id, buf);
    this.bytes += Math.max(16, Math.ceil(size / 16) * 16);
    this.peakBytes = Math.max(this.peakBytes, this.bytes);
    return buf;
  }

  async subBuffer(parent: GpuBuffer, byteOffset: number, byteLength: number, label: string): Promise<GpuBuffer> {
    checkSubRange(parent, byteOffset, byteLength, label, this.caps.minStorageOffsetAlignment);
    const v = await this.request<OpenedView>(Op.SubBuffer, () => {
      this.list.u32(parent.id);
      this.list.big(byteOffset);
      this.list.big(byteLength);
      this.list.u32(this.extra(label));
    });
    return { id: v.id, size: byteLength, label, parent, parentOffset: byteOffset };
  }

  destroyBuffer(b: GpuBuffer): void {
    if (this.closed !== null) return;
    if (!b.parent && this.buffers.delete(b.id)) this.bytes -= Math.max(16, Math.ceil(b.size / 16) * 16);
    this.opStart(Op.Destroy);
    this.list.u32(b.id);
  }

  write(b: GpuBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.noCapture('write');
    if (byteOffset + data.byteLength > b.size) {
      throw new GpuValidationError(`write of ${data.byteLength} bytes at ${byteOffset} overflows "${b.label}" (${b.size} bytes)`);
    }
    this.opStart(Op.Write);
    this.list.u32(b.id);
    this.list.big(byteOffset);
    this.list.big(data.byteLength);
    if (data.byteLength >= BLOB_THRESHOLD) {
      // Large payloads (weights) travel as their own transferred copy instead of growing the list.
      const blob = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice().buffer;
      this.blobs.push(blob);
      this.list.u32(NONE);
      this.list.u32(this.blobs.length - 1);
    } else {
      this.list.u32(Math.ceil(data.byteLength / 4));
      this.list.bytes(data);
    }
    this.cost += 1;
    this.splitLongList();
  }

  read(b: GpuBuffer, byteOffset = 0, byteLength = b.size - byteOffset): Promise<ArrayBuffer> {
    if (byteOffset + byteLength > b.size) {
      return Promise.reject(new GpuValidationError(`read of ${byteLength} bytes at ${byteOffset} overflows "${b.label}" (${b.size} bytes)`));
    }
    return this.request<ArrayBuffer>(Op.Read, () => {
      this.list.u32(b.id);
      this.list.big(byteOffset);
      this.list.big(byteLength);
    });
  }

  kernel(src: KernelSource): Kernel {
    const key = `${src.key}#${src.entryPoint ?? 'main'}`;
    const hit = this.kernels.get(key);
    if (hit) return hit;
    const k: Kernel = { id: this.nextKernelId++, key };
    this.kernels.set(key, k);
    this.kernelDefs.push({ id: k.id, key: src.key, code: src.code, entryPoint: src.entryPoint });
    return k;
  }

  dispatch(
    kernel: Kernel,
    bindings: ReadonlyArray<GpuBuffer | BufferBinding>,
    params: Uint32Array | null,
    workgroups: readonly [number, number?, number?],
  ): void {
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.caps.maxWorkgroupsPerDimension;
    if (x > max || y > max || z > max) {
      throw new GpuValidationError(`${kernel.key}: dispatch (${x}, ${y}, ${z}) exceeds ${max} workgroups per dimension`);
    }
    let w: WordWriter;
    if (this.capturing) {
      w = this.capturing;
      this.captured++;
    } else {
      this.opStart(Op.Dispatch);
      w = this.list;
      this.cost += 1;
      this.dispatchCount++;
    }
    w.u32(kernel.id);
    w.u32(x);
    w.u32(y);
    w.u32(z);
    if (params) {
      w.u32(params.length);
      w.append(params);
    } else w.u32(NONE);
    w.u32(bindings.length);
    for (const b of bindings) {
      if ('buffer' in b) {
        w.u32(b.buffer.id);
        w.u32(b.offset ?? 0);
        w.u32(b.size ?? NONE);
      } else {
        w.u32(b.id);
        w.u32(0);
        w.u32(NONE);
      }
    }
    if (!this.capturing) this.splitLongList();
  }

  copy(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void {
    this.noCapture('copy');
    if (size === 0) return;
    this.opStart(Op.Copy);
    this.list.u32(src.id);
    this.list.big(srcOffset);
    this.list.u32(dst.id);
    this.list.big(dstOffset);
    this.list.big(size);
    this.cost += 1;
    this.splitLongList();
  }

  /**
   * Tensor-parallel all-reduce with the other ranks of this actor's group (DeviceHost.attach's tensorParallel):
   * sent as a dispatch body the host recognises, so it may also be captured between dispatches.
   */
  allReduce(buffer: GpuBuffer, elements: number, dtype: 'f32' | 'f16'): void {
    let w: WordWriter;
    if (this.capturing) {
      w = this.capturing;
      this.captured++;
    } else {
      this.opStart(Op.Dispatch);
      w = this.list;
      this.cost += 1;
    }
    w.u32(ALL_REDUCE_KERNEL);
    w.u32(buffer.id);
    w.u32(elements);
    w.u32(dtype === 'f16' ? 1 : 0);
    w.u32(NONE);
    w.u32(0);
    if (!this.capturing) this.splitLongList();
  }

  capture(record: () => void): Recording {
    if (this.capturing) throw new Error('capture: already capturing');
    this.checkOpen();
    const body = new WordWriter();
    this.capturing = body;
    this.captured = 0;
    try {
      record();
    } finally {
      this.capturing = null;
    }
    const rec: RemoteRecording = { id: this.nextRecordingId++, dispatches: this.captured, released: false };
    this.recordings.set(rec.id, rec);
    this.opStart(Op.DefineRecording);
    this.list.u32(rec.id);
    this.list.u32(rec.dispatches);
    this.list.append(body.view());
    return rec;
  }

  replay(recording: Recording): void {
    const rec = this.recordings.get(recording.id);
    if (!rec) throw new GpuValidationError(`recording ${recording.id} was released or uses a destroyed buffer`);
    this.opStart(Op.Replay);
    this.list.u32(rec.id);
    this.cost += rec.dispatches;
    this.dispatchCount += rec.dispatches;
    this.splitLongList();
  }

  releaseRecording(recording: Recording): void {
    if (!this.recordings.delete(recording.id) || this.closed !== null) return;
    this.opStart(Op.ReleaseRecording);
    this.list.u32(recording.id);
  }

  flush(): void {
    this.noCapture('flush');
    this.opStart(Op.Flush);
    this.submitCount++;
    this.post();
  }

  sync(): Promise<void> {
    return this.request<void>(Op.Sync, () => {});
  }

  /**
   * Resolves once the device host has run every command sent before (submitted to the GPU, not finished):
   * from then on, work any actor sends runs after it in the device's queue, so it sees its results.
   */
  executed(): Promise<void> {
    return this.request<void>(Op.Ping, () => {});
  }

  /** Export byte ranges of this actor's own buffers as serialisable handles (src/actors/handles.ts). */
  exportRanges(items: ExportRequest[]): Promise<BufferHandle[]> {
    return this.request<BufferHandle[]>(Op.Export, () => this.list.u32(this.extra(items)));
  }

  /** Open a handle exported by an actor on the same virtual GPU: a view of its memory, no copy. */
  async openRange(handle: BufferHandle): Promise<GpuBuffer> {
    return (await this.openRanges([handle]))[0];
  }

  /** Open many handles in one request (all or none). */
  async openRanges(handles: BufferHandle[]): Promise<GpuBuffer[]> {
    const views = await this.request<OpenedView[]>(Op.Open, () => this.list.u32(this.extra(handles)));
    return views.map((v) => ({ id: v.id, size: v.size, label: v.label }));
  }

  stats(): GpuStats {
    return {
      bytesAllocated: this.bytes,
      peakBytesAllocated: this.peakBytes,
      buffers: this.buffers.size,
      kernels: this.kernels.size,
      bindGroups: 0,
      uniformBuffers: 0,
      dispatches: this.dispatchCount,
      submits: this.submitCount,
    };
  }

  /** Disconnect: the host frees this actor's buffers (after running what was already sent) and invalidates its handles. */
  destroy(): void {
    if (this.closed !== null) return;
    this.post();
    this.port.postMessage({ t: 'bye' });
    this.shutDown('this actor disconnected');
  }
}
