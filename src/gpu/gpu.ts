import type { GpuCaps } from './device.ts';

/**
 * The one interface model code is written against (DESIGN.md, "The constraint that shapes everything").
 * Everything here is an id or plain data, never a GPU object, so a remote implementation can record the same
 * calls into a command list and send them to the device host. `LocalGpu` is the in-process implementation.
 */

/** An allocated device buffer, by id. */
export interface GpuBuffer {
  readonly id: number;
  readonly size: number;
  readonly label: string;
  /** Sub-buffers (Gpu.subBuffer) only: the buffer this range was cut from, and where in it the range starts. */
  readonly parent?: GpuBuffer;
  readonly parentOffset?: number;
}

/** A byte range of a buffer bound to a shader. Offsets must be multiples of caps.minStorageOffsetAlignment. */
export interface BufferBinding {
  buffer: GpuBuffer;
  offset?: number;
  size?: number;
}

/** WGSL source with a cache key; the key must change whenever the code does. */
export interface KernelSource {
  key: string;
  code: string;
  entryPoint?: string;
}

/** A compiled compute pipeline, by id. */
export interface Kernel {
  readonly id: number;
  readonly key: string;
}

/** A captured sequence of dispatches (a step plan), replayable without re-resolving pipelines or bindings. */
export interface Recording {
  readonly id: number;
  readonly dispatches: number;
}

export interface GpuStats {
  bytesAllocated: number;
  peakBytesAllocated: number;
  buffers: number;
  kernels: number;
  bindGroups: number;
  uniformBuffers: number;
  dispatches: number;
  submits: number;
}

export interface Gpu {
  readonly caps: GpuCaps;
  /** Allocate a zero-initialised storage buffer. Rejects with GPUOutOfMemoryError when the device cannot. */
  createBuffer(size: number, label: string): Promise<GpuBuffer>;
  /**
   * A byte range of `parent` as a buffer of its own, allocating nothing: how a model keeps every weight in one
   * arena (one copy moves them all) while its kernels still bind each tensor as a buffer. Bindings, writes,
   * reads and copies on it address the parent's bytes from `byteOffset` (a multiple of
   * caps.minStorageOffsetAlignment). Destroying it frees nothing; destroying the parent ends it too.
   * WebGPU tracks usage per buffer, not per range: one dispatch may not bind ranges of the same parent both
   * read-only and read-write.
   */
  subBuffer(parent: GpuBuffer, byteOffset: number, byteLength: number, label: string): Promise<GpuBuffer>;
  destroyBuffer(buffer: GpuBuffer): void;
  /** Write host data. Ordered after every dispatch recorded before it and before every one recorded after. */
  write(buffer: GpuBuffer, data: ArrayBufferView, byteOffset?: number): void;
  /** Read back after all recorded work; resolves once the GPU is done with it. */
  read(buffer: GpuBuffer, byteOffset?: number, byteLength?: number): Promise<ArrayBuffer>;
  /** Compile (or find in the cache) a compute pipeline. Binding 0 is the params uniform if the shader has one. */
  kernel(source: KernelSource): Kernel;
  /**
   * Record a dispatch. `params` (u32 words; floats as bit patterns) become a uniform at binding 0 when given;
   * `bindings` are the storage buffers at bindings 1..n (0..n-1 when params is null).
   */
  dispatch(
    kernel: Kernel,
    bindings: ReadonlyArray<GpuBuffer | BufferBinding>,
    params: Uint32Array | null,
    workgroups: readonly [number, number?, number?],
  ): void;
  copy(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void;
  /**
   * Capture the dispatches `record` makes (and only dispatches) into a Recording instead of running them.
   * Replaying it records the same dispatches with the same bindings and params at a fraction of the CPU cost:
   * what a decode loop repeats every step. Destroying a buffer it uses invalidates it.
   */
  capture(record: () => void): Recording;
  replay(recording: Recording): void;
  releaseRecording(recording: Recording): void;
  /**
   * Tensor-parallel collective (only on a rank of a TensorParallelGroup, src/gpu/tensor_parallel_group.ts): every
   * rank calls it with its own buffer, in the same order; afterwards each holds the elementwise sum over the ranks
   * (added in rank order, so every rank has the same bits). Like a dispatch, it may be captured.
   */
  allReduce?(buffer: GpuBuffer, elements: number, dtype: 'f32' | 'f16'): void;
  /** Submit what is recorded so far. */
  flush(): void;
  /** Wait for every submitted command and surface any device error as a typed error. */
  sync(): Promise<void>;
  stats(): GpuStats;
  destroy(): void;
}

/** Validate a sub-buffer's range (every Gpu implementation applies the same rules). */
export function checkSubRange(parent: GpuBuffer, byteOffset: number, byteLength: number, label: string, alignment: number): void {
  if (!Number.isInteger(byteOffset) || !Number.isInteger(byteLength) || byteOffset < 0 || byteLength <= 0 || byteOffset + byteLength > parent.size) {
    throw new RangeError(`sub-buffer "${label}": [${byteOffset}, ${byteOffset + byteLength}) is not a non-empty range of "${parent.label}" (${parent.size} bytes)`);
  }
  if (byteOffset % alignment !== 0) {
    throw new RangeError(`sub-buffer "${label}": offset ${byteOffset} is not a multiple of the storage-binding alignment ${alignment}`);
  }
}

/** The buffer that owns `b`'s memory and where `b` starts in it (follows sub-buffers up to their root). */
export function rootOf(b: GpuBuffer): { root: GpuBuffer; offset: number } {
  let offset = 0;
  while (b.parent) {
    offset += b.parentOffset ?? 0;
    b = b.parent;
  }
  return { root: b, offset };
}

/** Pack shader params: integers as u32, floats (given as {f: x}) as f32 bit patterns. */
export function packParams(values: ReadonlyArray<number | { f: number }>): Uint32Array {
  const words = new Uint32Array(Math.max(4, Math.ceil(values.length / 4) * 4));
  const f32 = new Float32Array(words.buffer);
  values.forEach((v, i) => {
    if (typeof v === 'number') {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`param ${i}: ${v} is not a u32`);
      words[i] = v;
    } else f32[i] = v.f;
  });
  return words;
}
