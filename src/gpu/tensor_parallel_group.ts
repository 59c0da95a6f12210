import type { BufferBinding, Gpu, GpuBuffer, GpuStats, Kernel, KernelSource, Recording } from './gpu.ts';
import { packParams } from './gpu.ts';
import { shaderSource, grid1d } from '../kernels/shader.ts';

/**
 * Tensor-parallel ranks over one device: `size` Gpu views of one underlying Gpu, each with an `allReduce`
 * collective. The model code of every rank runs unchanged on its view; what a rank records runs on the
 * underlying Gpu at once until it reaches an all-reduce, and waits there (queued) until every rank has reached
 * the same all-reduce, which then runs as one kernel summing the ranks' buffers in rank order. This is the
 * in-process form of what the device host does for rank workers (NCCL's role in vLLM, on one GPU).
 *
 * Ranks must be driven so that each eventually reaches every collective: record a step on every rank before
 * awaiting any rank's read (a read waits for the queue in front of it).
 */
export class TensorParallelGroup {
  readonly size: number;
  readonly ranks: Gpu[];
  private readonly base: Gpu;
  private readonly views: RankGpu[];
  /** Collectives run so far (all ranks together count one). */
  collectives = 0;
  /** Set when the group can no longer make progress (a rank left); every later collective throws it. */
  private broken: Error | null = null;

  constructor(base: Gpu, size: number) {
    if (!Number.isInteger(size) || size < 1 || size > 4) throw new RangeError(`a tensor-parallel group has 1 to 4 ranks, not ${size}`);
    this.base = base;
    this.size = size;
    this.views = Array.from({ length: size }, (_, r) => new RankGpu(this, base, r));
    this.ranks = this.views;
  }

  /** Mark the group unusable (e.g. the device host lost one of its rank actors): collectives throw `error`. */
  fail(error: Error): void {
    this.broken ??= error;
  }

  checkUsable(): void {
    if (this.broken) throw this.broken;
  }

  /** Run what can run: each rank's queued work up to its next collective, and every collective all ranks reached. */
  pump(): void {
    for (;;) {
      for (const v of this.views) v.drainOps();
      if (!this.views.every((v) => v.headIsReduce())) return;
      const reduces = this.views.map((v) => v.takeReduce());
      const first = reduces[0];
      for (const [r, x] of reduces.entries()) {
        if (x.elements !== first.elements || x.dtype !== first.dtype) {
          throw new Error(`allReduce mismatch: rank 0 reduces ${first.elements} ${first.dtype}, rank ${r} ${x.elements} ${x.dtype}`);
        }
      }
      this.runAllReduce(reduces.map((x) => x.buffer), first.elements, first.dtype);
    }
  }

  private runAllReduce(buffers: GpuBuffer[], elements: number, dtype: 'f32' | 'f16'): void {
    this.collectives++;
    if (this.size === 1) return;
    const k = this.base.kernel({ ...shaderSource('all_reduce', { A: dtype }), entryPoint: `main${this.size}` });
    this.base.dispatch(k, buffers, packParams([elements]), grid1d(Math.ceil(elements / 256)));
  }

}

type Op = { kind: 'op'; run: () => void } | { kind: 'reduce'; buffer: GpuBuffer; elements: number; dtype: 'f32' | 'f16' };

interface RankRecording extends Recording {
  parts: Array<{ kind: 'segment'; recording: Recording } | { kind: 'reduce'; buffer: GpuBuffer; elements: number; dtype: 'f32' | 'f16' }>;
}

class RankGpu implements Gpu {
  readonly caps: Gpu['caps'];
  private readonly queue: Op[] = [];
  private capturing: Op[] | null = null;
  private nextRecording = 1;
  private readonly recordings = new Map<number, RankRecording>();

  constructor(private readonly group: TensorParallelGroup, private readonly base: Gpu, readonly rank: number) {
    this.caps = base.caps;
  }

  // --- queue mechanics ---
  private submit(op: Op): void {
    if (this.capturing) {
      this.capturing.push(op);
      return;
    }
    if (op.kind === 'op' && this.queue.length === 0) { op.run(); return; }
    this.queue.push(op);
    this.group.pump();
  }
  drainOps(): void {
    while (this.queue.length && this.queue[0].kind === 'op') (this.queue.shift() as { run: () => void }).run();
  }
  headIsReduce(): boolean {
    return this.queue.length > 0 && this.queue[0].kind === 'reduce';
  }
  takeReduce(): { buffer: GpuBuffer; elements: number; dtype: 'f32' | 'f16' } {
    return this.queue.shift() as { buffer: GpuBuffer; elements: number; dtype: 'f32' | 'f16' };
  }
  private later<T>(run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => this.submit({ kind: 'op', run: () => { run().then(resolve, reject); } }));
  }
  private noCapture(what: string): void {
    if (this.capturing) throw new Error(`${what} cannot be captured: a Recording holds dispatches only`);
  }

  // --- Gpu ---
  createBuffer(size: number, label: string): Promise<GpuBuffer> {
    return this.base.createBuffer(size, `tp${this.rank}.${label}`);
  }
  subBuffer(parent: GpuBuffer, byteOffset: number, byteLength: number, label: string): Promise<GpuBuffer> {
    return this.base.subBuffer(parent, byteOffset, byteLength, `tp${this.rank}.${label}`);
  }
  destroyBuffer(buffer: GpuBuffer): void {
    this.submit({ kind: 'op', run: () => this.base.destroyBuffer(buffer) });
  }
  write(buffer: GpuBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.noCapture('write');
    // The caller may reuse its array once write returns: copy it when the write has to wait.
    const copy = this.queue.length ? new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) : data;
    this.submit({ kind: 'op', run: () => this.base.write(buffer, copy, byteOffset) });
  }
  read(buffer: GpuBuffer, byteOffset?: number, byteLength?: number): Promise<ArrayBuffer> {
    this.noCapture('read');
    return this.later(() => this.base.read(buffer, byteOffset, byteLength));
  }
  kernel(source: KernelSource): Kernel {
    return this.base.kernel(source);
  }
  dispatch(kernel: Kernel, bindings: ReadonlyArray<GpuBuffer | BufferBinding>, params: Uint32Array | null, workgroups: readonly [number, number?, number?]): void {
    // Copy params the caller may reuse when the dispatch will not be recorded right now.
    const p = params && (this.queue.length || this.capturing) ? params.slice() : params;
    this.submit({ kind: 'op', run: () => this.base.dispatch(kernel, bindings, p, workgroups) });
  }
  copy(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void {
    this.noCapture('copy');
    this.submit({ kind: 'op', run: () => this.base.copy(src, srcOffset, dst, dstOffset, size) });
  }
  allReduce(buffer: GpuBuffer, elements: number, dtype: 'f32' | 'f16'): void {
    this.group.checkUsable();
    this.submit({ kind: 'reduce', buffer, elements, dtype });
  }
  capture(record: () => void): Recording {
    if (this.capturing) throw new Error('capture: already capturing');
    const ops: Op[] = [];
    this.capturing = ops;
    try {
      record();
    } finally {
      this.capturing = null;
    }
    // Runs of dispatches become recordings of the underlying Gpu; collectives stay markers between them.
    const parts: RankRecording['parts'] = [];
    let run: Array<() => void> = [];
    const close = () => {
      if (!run.length) return;
      const fns = run;
      parts.push({ kind: 'segment', recording: this.base.capture(() => { for (const f of fns) f(); }) });
      run = [];
    };
    for (const op of ops) {
      if (op.kind === 'op') run.push(op.run);
      else { close(); parts.push(op); }
    }
    close();
    const rec: RankRecording = { id: this.nextRecording++, dispatches: parts.reduce((s, p) => s + (p.kind === 'segment' ? p.recording.dispatches : 1), 0), parts };
    this.recordings.set(rec.id, rec);
    return rec;
  }
  replay(recording: Recording): void {
    const rec = this.recordings.get(recording.id);
    if (!rec) throw new Error(`recording ${recording.id} was released or belongs to another rank`);
    for (const part of rec.parts) {
      if (part.kind === 'segment') this.submit({ kind: 'op', run: () => this.base.replay(part.recording) });
      else this.submit({ ...part });
    }
  }
  releaseRecording(recording: Recording): void {
    const rec = this.recordings.get(recording.id);
    if (!rec) return;
    this.recordings.delete(recording.id);
    for (const part of rec.parts) if (part.kind === 'segment') this.base.releaseRecording(part.recording);
  }
  flush(): void {
    this.submit({ kind: 'op', run: () => this.base.flush() });
  }
  sync(): Promise<void> {
    return this.later(() => this.base.sync());
  }
  stats(): GpuStats {
    return this.base.stats();
  }
  destroy(): void {
    // The underlying Gpu belongs to the group's owner.
  }
}
