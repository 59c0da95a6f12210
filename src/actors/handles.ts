/**
 * Buffer handles in place of CUDA-IPC (vLLM's `reduce_tensor` in the RLHF colocate example).
 *
 * An actor exports tensors it owns as serialisable handles — per tensor, or (as later vLLM does, because one
 * handle per tensor was slow) one packed bucket plus an index — and hands them to another actor by any message.
 * The other actor opens them through the device host: a view of the same device memory, usable in dispatch and
 * copy bindings, no copy made. The host checks the virtual GPU (a handle from another GPU fails, as CUDA-IPC
 * does, with HandleDeviceMismatchError) and the generation (use after the owner freed the buffer or died fails
 * with StaleHandleError). Opening the same handle again returns the same view with one more reference; each
 * open is closed by one closeHandle (gpu.destroyBuffer on the view).
 */
import { InvalidInputError } from '../errors.ts';
import type { BufferBinding, Gpu, GpuBuffer } from '../gpu/gpu.ts';
import type { RemoteGpu } from '../gpu/remote.ts';
import type { BufferHandle } from '../gpu/remote_protocol.ts';
import type { OptGpuWeights } from '../model/gpu_weights.ts';
import { copyFullIntoShard } from '../model/tensor_parallel.ts';

export type { BufferHandle } from '../gpu/remote_protocol.ts';

/** A tensor in one of the exporting actor's buffers. */
export interface TensorRef {
  buffer: GpuBuffer;
  byteOffset?: number;
  byteLength?: number;
  dtype: string;
  shape: number[];
}

/** Where one tensor sits in a packed bucket. */
export interface PackedEntry {
  name: string;
  dtype: string;
  shape: number[];
  byteOffset: number;
  byteLength: number;
}

/** Exported tensors: one handle each, or one packed bucket plus an index. Plain data, postMessage-able. */
export type ExportedTensors =
  | { kind: 'tensors'; handles: Record<string, BufferHandle> }
  | { kind: 'packed'; bucket: BufferHandle; index: PackedEntry[] };

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

/** Bucket slots are padded to this (vLLM pads to 256 bytes; also WebGPU's storage-binding offset alignment). */
export const PACK_ALIGNMENT = 256;

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
 * Copy every tensor into one new bucket buffer (on the GPU, slots padded to PACK_ALIGNMENT) and export the
 * bucket as one handle with an index. The bucket belongs to (and counts against the budget of) the exporter,
 * which frees it with gpu.destroyBuffer(bucket) once the receivers are done.
 */
export async function exportPackedHandles(
  gpu: RemoteGpu, tensors: Record<string, TensorRef>,
): Promise<{ exported: ExportedTensors; bucket: GpuBuffer }> {
  const index: PackedEntry[] = [];
  let end = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const { byteLength } = rangeOf(name, t);
    if (byteLength % 4 !== 0) throw new InvalidInputError(`tensor ${name}: ${byteLength} bytes is not a whole number of words; it cannot be copied on the GPU`);
    index.push({ name, dtype: t.dtype, shape: t.shape, byteOffset: end, byteLength });
    end = Math.ceil((end + byteLength) / PACK_ALIGNMENT) * PACK_ALIGNMENT;
  }
  const bucket = await gpu.createBuffer(Math.max(end, 4), 'handles.bucket');
  for (const e of index) {
    const t = tensors[e.name];
    gpu.copy(t.buffer, t.byteOffset ?? 0, bucket, e.byteOffset, e.byteLength);
  }
  gpu.flush();
  const [handle] = await gpu.exportRanges([{ bufferId: bucket.id, byteOffset: 0, byteLength: bucket.size, dtype: 'u8', shape: [bucket.size] }]);
  return { exported: { kind: 'packed', bucket: handle, index }, bucket };
}

/** Per tensor by default; `{packed: true}` for one bucket. */
export async function exportHandles(
  gpu: RemoteGpu, tensors: Record<string, TensorRef>, opts: { packed?: boolean } = {},
): Promise<{ exported: ExportedTensors; bucket: GpuBuffer | null }> {
  if (opts.packed) return exportPackedHandles(gpu, tensors);
  return { exported: await exportTensorHandles(gpu, tensors), bucket: null };
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
    const view = await gpu.openRange(exported.bucket);
    for (const e of exported.index) tensors.set(e.name, { buffer: view, offset: e.byteOffset, size: e.byteLength, dtype: e.dtype, shape: e.shape });
    return { tensors, views: [view] };
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
 * stay valid. A tensor-parallel rank copies its shard of each full tensor. Every weight of the model must be present with its byte size; the caller resets any cache that
 * depends on the weights (the engine's prefix cache).
 */
export function copyIntoWeights(gpu: Gpu, opened: OpenedTensors, weights: OptGpuWeights): number {
  let bytes = 0;
  for (const name of weights.locations.keys()) {
    const t = opened.tensors.get(name);
    if (!t) throw new InvalidInputError(`the exported tensors have no ${name}`);
    // A plain device copy where the model holds the whole tensor in the same element type; a kernel for a
    // tensor-parallel shard or another element type (copyFullIntoShard chooses).
    bytes += copyFullIntoShard(gpu, t, t.dtype === 'f16' ? 'f16' : 'f32', weights, name);
  }
  gpu.flush();
  return bytes;
}
