/**
 * Typed errors. Every failure a user can cause (bad checkpoint, bad input, missing GPU) is one of these,
 * with a message that names what was wrong. Catch by class; `code` is stable for programmatic use.
 */
export class TandemError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A checkpoint file is malformed: truncated, corrupt header, bad offsets, unknown dtype, unsafe pickle. */
export class CheckpointFormatError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('checkpoint_format', message, options); }
}

/** Tensors are missing, misshapen, or disagree with the config. */
export class WeightMismatchError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('weight_mismatch', message, options); }
}

/** A config.json that is not an OPT config or has inconsistent fields. */
export class ConfigError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('config', message, options); }
}

/** Fetching a model source failed (404, connection dropped, truncated body). */
export class ModelSourceError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('model_source', message, options); }
}

/** User input out of range: token id >= vocab, prompt longer than the position table, bad sampling params. */
export class InvalidInputError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('invalid_input', message, options); }
}

/** No WebGPU, no adapter, or a feature/limit the request needs is missing. */
export class WebGPUUnavailableError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('webgpu_unavailable', message, options); }
}

/** GPU out of memory (from an error scope or a budget). */
export class GpuOutOfMemoryError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('gpu_out_of_memory', message, options); }
}

/** A WebGPU validation error: a bug in Tandem, or a limit exceeded. */
export class GpuValidationError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('gpu_validation', message, options); }
}

/** The GPU device was lost. */
export class GpuDeviceLostError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('gpu_device_lost', message, options); }
}
