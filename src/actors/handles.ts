/**
 * Buffer handles in place of CUDA-IPC (vLLM's `reduce_tensor` in the RLHF colocate example).
 *
 * An actor exports tensors it owns as serialisable handles — per tensor, or (as later vLLM does, because one
 * handle per tensor was slow) packed: one handle per buffer that holds them plus an index. Models keep their
 * weights in arenas (src/model/weight_arena.ts), so packed is zero-copy here too: one handle to the arena, no
 * bucket to fill — and a receiver with the same layout copies everything with one copy per arena.
 * Handles go to another actor by any message.
 * The other actor opens them through the device host: a view of the same device memory, usable in dispatch and
 * copy bindings, no copy made. The host checks the virtual GPU (a handle from another GPU fails, as CUDA-IPC
 * does, with HandleDeviceMismatchError) and the generation (use after the owner freed the buffer or died fails
 * with StaleHandleError). Opening the same handle again returns the same view with one more reference; each
 * open is closed by one closeHandle (gpu.destroyBuffer on the view).
 */
import { InvalidInputError } from '../errors.ts';
import { rootOf, type BufferBinding, type Gpu, type GpuBuffer } from '../gpu/gpu.ts';
import type { RemoteGpu } from '../gpu/remote.ts';
import type { BufferHandle } from '../gpu/remote_protocol.ts';
import type { OptGpuWeights } from '../model/gpu_weights.ts';
import { copyFullIntoShard, copyShardsInOneDispatch, type PlainCopy, shardCopyGeometry } from '../model/tensor_parallel.ts';

export type { BufferHandle } from '../gpu/remote_protocol.ts';

/** A tensor in one of the exporting actor's buffers. */
export interface TensorRef {
  buffer: GpuBuffer;
  byteOffset?: number;
  byteLength?: number;
  dtype: string;
  shape: number[];
}

/** Where one tensor sits in a packed export: which bucket (handle), and the byte range in it. */
export interface PackedEntry {
  name: string;
  dtype: string;
  shape: number[];
  bucket: number;
  byteOffset: number;
  byteLength: number;
}

/** Exported tensors: one handle each, or packed (one handle per buffer that holds them, plus an index). Plain data, postMessage-able. */
export type ExportedTensors =
  | { kind: 'tensors'; handles: Record<string, BufferHandle> }
  | { kind: 'packed'; buckets: BufferHandle[]; index: PackedEntry[] };

/** An opened tensor: a binding into a view of the exporter's memory, with what it holds. */
export interface OpenedTensor extends BufferBinding {
  offset: number;
  size: number;
  dtype: string;
  shape: number[];
}

export interface OpenedTensors {
  tensors: Map<string, OpenedTensor>;
  /** The views opened (one for a packed bucket); closeTensors() releases them. */
  views: GpuBuffer[];
}

function rangeOf(name: string, t: TensorRef): { byteOffset: number; byteLength: number } {
  const byteOffset = t.byteOffset ?? 0;
  const byteLength = t.byteLength ?? t.buffer.size - byteOffset;
  if (byteOffset < 0 || byteLength < 0 || byteOffset + byteLength > t.buffer.size) {
    throw new InvalidInputError(`tensor ${name}: [${byteOffset}, ${byteOffset + byteLength}) is outside "${t.buffer.label}" (${t.buffer.size} bytes)`);
  }
  return { byteOffset, byteLength };
}

/** One handle per tensor. */
export async function exportTensorHandles(gpu: RemoteGpu, tensors: Record<string, TensorRef>): Promise<ExportedTensors> {
  const names = Object.keys(tensors);
  const handles = await gpu.exportRanges(names.map((n) => ({ bufferId: tensors[n].buffer.id, ...rangeOf(n, tensors[n]), dtype: tensors[n].dtype, shape: tensors[n].shape })));
  return { kind: 'tensors', handles: Object.fromEntries(names.map((n, i) => [n, handles[i]])) };
}

/**
 * Packed, zero-copy: one handle per root buffer holding the tensors (a model's weight arena: usually one) and
 * an index of where each tensor sits in it. Nothing is copied or allocated.
 */
export async function exportPackedHandles(gpu: RemoteGpu, tensors: Record<string, TensorRef>): Promise<ExportedTensors> {
  const roots: GpuBuffer[] = [];
  const index: PackedEntry[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const { byteOffset, byteLength } = rangeOf(name, t);
    const { root, offset } = rootOf(t.buffer);
    let bucket = roots.findIndex((r) => r.id === root.id);
    if (bucket < 0) bucket = roots.push(root) - 1;
    index.push({ name, dtype: t.dtype, shape: t.shape, bucket, byteOffset: offset + byteOffset, byteLength });
  }
  const buckets = await gpu.exportRanges(roots.map((r) => ({ bufferId: r.id, byteOffset: 0, byteLength: r.size, dtype: 'u8', shape: [r.size] })));
  return { kind: 'packed', buckets, index };
}

/** Per tensor by default; `{packed: true}` for one handle per buffer plus an index. */
export function exportHandles(gpu: RemoteGpu, tensors: Record<string, TensorRef>, opts: { packed?: boolean } = {}): Promise<ExportedTensors> {
  return opts.packed ? exportPackedHandles(gpu, tensors) : exportTensorHandles(gpu, tensors);
}

/** Open one handle: a zero-copy view (refcounted; close with closeHandle). */
export function openHandle(gpu: RemoteGpu, handle: BufferHandle): Promise<GpuBuffer> {
  return gpu.openRange(handle);
}

export function closeHandle(gpu: RemoteGpu, view: GpuBuffer): void {
  gpu.destroyBuffer(view);
}

/** Open what exportHandles gave: each tensor as a binding into a view of the exporter's memory. */
export async function openTensors(gpu: RemoteGpu, exported: ExportedTensors): Promise<OpenedTensors> {
  const tensors = new Map<string, OpenedTensor>();
  if (exported.kind === 'packed') {
    const views = await gpu.openRanges(exported.buckets);
    for (const e of exported.index) tensors.set(e.name, { buffer: views[e.bucket], offset: e.byteOffset, size: e.byteLength, dtype: e.dtype, shape: e.shape });
    return { tensors, views };
  }
  const names = Object.keys(exported.handles);
  const views = await gpu.openRanges(names.map((n) => exported.handles[n])); // one request for all
  names.forEach((n, i) => tensors.set(n, { buffer: views[i], offset: 0, size: views[i].size, dtype: exported.handles[n].dtype, shape: exported.handles[n].shape }));
  return { tensors, views };
}

export function closeTensors(gpu: RemoteGpu, opened: OpenedTensors): void {
  for (const v of opened.views) gpu.destroyBuffer(v);
}

/** An OPT model's weights as exportable tensors, by HF name (fused q/k/v appear as their three ranges). */
export function weightTensors(weights: OptGpuWeights): Record<string, TensorRef> {
  const out: Record<string, TensorRef> = {};
  for (const [name, loc] of weights.locations) {
    out[name] = { buffer: loc.buffer, byteOffset: loc.byteOffset, byteLength: loc.byteLength, dtype: weights.dtype, shape: loc.localShape };
  }
  return out;
}

/**
 * Copy opened tensors into a model's weights by HF name, on the GPU (no CPU copy), in place: captured steps
 * stay valid. A tensor-parallel rank copies its shard of each full tensor (a kernel where the shard is strided or
 * the element type differs). Plain copies that are contiguous in both the source and the model's weight arena
 * merge into one: from a packed export of a trainer's parameters (the same layout) every tensor moves in one
 * copy per arena. Every weight of the model must be present with its byte size; the caller resets any cache
 * that depends on the weights (the engine's prefix cache). Returns the bytes copied and the copy commands used.
 */
export function copyIntoWeights(gpu: Gpu, opened: OpenedTensors, weights: OptGpuWeights): { bytes: number; copies: number } {
  const items = [...weights.locations.keys()].map((name) => {
    const t = opened.tensors.get(name);
    if (!t) throw new InvalidInputError(`the exported tensors have no ${name}`);
    const srcDtype: 'f16' | 'f32' = t.dtype === 'f16' ? 'f16' : 'f32';
    return { name, src: t, srcDtype, geometry: shardCopyGeometry(t, srcDtype, weights, name) };
  });
  const bytes = items.reduce((s, it) => s + it.geometry.loc.byteLength, 0);
  // Plain copies where the model holds the whole tensor in the same element type, merged where contiguous.
  const plain = items.flatMap(({ src, geometry: g }) => g.plain ? [{
    src: src.buffer, srcOffset: (src.offset ?? 0) + g.srcBase * g.srcElem, dst: g.loc.buffer, dstOffset: g.loc.byteOffset, size: g.loc.byteLength,
  }] : []);
  const merged = mergeCopies(plain);
  const kernels = items.length - plain.length;
  // More than one command (a tensor-parallel shard, another element type): everything in one dispatch when the
  // buffers fit one binding each; else a copy or a kernel per tensor (copyFullIntoShard).
  if (merged.length + kernels > 1 && copyShardsInOneDispatch(gpu, items, weights)) {
    gpu.flush();
    return { bytes, copies: 1 };
  }
  for (const c of merged) gpu.copy(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
  for (const it of items) if (!it.geometry.plain) copyFullIntoShard(gpu, it.src, it.srcDtype, weights, it.name);
  gpu.flush();
  return { bytes, copies: merged.length + kernels };
}

/**
 * Merge copies whose source and destination ranges both continue where the previous one ended, in the same
 * root buffers (a gap of alignment padding counts as contiguous when it is the same on both sides and no other
 * tensor sits in it: it is padding in both layouts, and copying it is harmless).
 */
export function mergeCopies(copies: readonly PlainCopy[]): PlainCopy[] {
  const resolved = copies.map((c) => {
    const s = rootOf(c.src), d = rootOf(c.dst);
    return { src: s.root, srcOffset: s.offset + c.srcOffset, dst: d.root, dstOffset: d.offset + c.dstOffset, size: c.size };
  }).sort((a, b) => a.dst.id - b.dst.id || a.dstOffset - b.dstOffset);
  const out: PlainCopy[] = [];
  for (const c of resolved) {
    const last = out[out.length - 1];
    if (last && last.src.id === c.src.id && last.dst.id === c.dst.id) {
      const gap = c.dstOffset - (last.dstOffset + last.size);
      if (gap >= 0 && gap < MERGE_GAP && c.srcOffset - (last.srcOffset + last.size) === gap) {
        last.size += gap + c.size;
        continue;
      }
    }
    out.push({ ...c });
  }
  return out;
}

/** Largest padding gap merged over (the arena alignment: between two tensors there is never more). */
const MERGE_GAP = 256;
