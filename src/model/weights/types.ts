/** What a checkpoint reader produces: raw tensors on the host, before any GPU upload. */

export type StorageDType = 'F32' | 'F16' | 'BF16';

/** A tensor as stored in a checkpoint: little-endian bytes of `dtype`, row-major `shape`. */
export interface HostTensor {
  dtype: StorageDType;
  shape: number[];
  /** Exactly product(shape) * bytesPerElement(dtype) bytes. May be a view into a larger buffer. */
  bytes: Uint8Array;
}

/** Tensors by canonical HF name (`model.decoder....`, `lm_head.weight`). */
export type TensorMap = Map<string, HostTensor>;

/** Progress of a load: bytes done of bytes total (total may be undefined while unknown). */
export interface LoadProgress {
  file: string;
  loadedBytes: number;
  totalBytes?: number;
}
export type ProgressCallback = (p: LoadProgress) => void;

/** A loaded checkpoint: the raw config.json object and its tensors, names normalised. */
export interface Checkpoint {
  configJson: Record<string, unknown>;
  tensors: TensorMap;
}
