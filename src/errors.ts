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

/** A training batch is malformed: ragged rows without a mask, ids >= vocab, too long, weights or mask misshapen. */
export class TrainingInputError extends InvalidInputError {
  constructor(message: string, options?: { cause?: unknown }) { super(message, options); }
}

/**
 * A training step's loss or gradient norm was NaN or Inf. The update was not applied (weights and optimizer state
 * are as before the step); `step` is the 1-based number of the step that failed.
 */
export class NonFiniteLossError extends TandemError {
  readonly step: number;
  readonly loss: number;
  readonly gradNorm: number;
  /** Steps of the same call (Trainer.steps) that were applied before this one, with their results. */
  readonly completed: ReadonlyArray<{ loss: number; gradNorm: number; step: number }>;
  /** Steps of the call not applied: this one and those queued behind it. */
  readonly notApplied: number;
  constructor(info: { step: number; loss: number; gradNorm: number; completed?: ReadonlyArray<{ loss: number; gradNorm: number; step: number }>; notApplied?: number }) {
    const notApplied = info.notApplied ?? 1;
    super(
      'non_finite_loss',
      `training step ${info.step}: the ${Number.isFinite(info.loss) ? 'gradient norm' : 'loss'} is not finite ` +
        `(loss ${info.loss}, gradient norm ${info.gradNorm}); the update was not applied` +
        (notApplied > 1 ? `, nor those of the ${notApplied - 1} step(s) queued after it` : ''),
    );
    this.step = info.step;
    this.loss = info.loss;
    this.gradNorm = info.gradNorm;
    this.completed = info.completed ?? [];
    this.notApplied = notApplied;
  }
}

/**
 * An actor asked for more device memory than its budget allows (src/actors, enforced by the device host at
 * allocation, beyond what Ray only counts). Names the actor, its budget, what it holds and what it asked for.
 */
export class ActorOutOfMemoryError extends GpuOutOfMemoryError {
  readonly actorId: string;
  readonly budgetBytes: number;
  readonly inUseBytes: number;
  readonly requestedBytes: number;
  constructor(info: { actorId: string; budgetBytes: number; inUseBytes: number; requestedBytes: number; label?: string }) {
    super(
      `actor "${info.actorId}" is out of its GPU memory budget: allocating ${info.requestedBytes} bytes` +
        `${info.label ? ` for "${info.label}"` : ''} with ${info.inUseBytes} of ${info.budgetBytes} bytes in use`,
    );
    this.actorId = info.actorId;
    this.budgetBytes = info.budgetBytes;
    this.inUseBytes = info.inUseBytes;
    this.requestedBytes = info.requestedBytes;
  }
}

/** A buffer handle opened on a different virtual GPU than the one it was exported from (as CUDA-IPC refuses). */
export class HandleDeviceMismatchError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('handle_device_mismatch', message, options); }
}

/** A buffer handle used after its owner freed the buffer or died (its generation no longer matches). */
export class StaleHandleError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('stale_handle', message, options); }
}

/** The connection between an actor and the device host is closed (the actor detached, or the host went away). */
export class ActorDisconnectedError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('actor_disconnected', message, options); }
}

/**
 * A placement request that is malformed or cannot proceed (src/cluster): a bad resource quantity, a bundle index
 * out of range, a placement group removed while something waited on it, a cancelled pending request.
 */
export class PlacementError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('placement', message, options); }
}

/**
 * A placement group or actor that can never be placed on this cluster, even were it idle (src/cluster): a bundle
 * bigger than every node, STRICT_PACK bigger than one node, STRICT_SPREAD with more bundles than nodes, an actor
 * asking its bundle for more than the bundle holds. Ray leaves such requests pending forever; Tandem fails at once
 * and says what cannot fit where.
 */
export class InfeasibleResourceError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) { super('infeasible_resource', message, options); }
}

/**
 * A collective RPC (InferenceEngine.collectiveRpc, vLLM's collective_rpc) failed on one or more tensor-parallel
 * ranks. `failures` names each failed rank with the error it raised there (name and message), or the worker's
 * crash; the ranks that succeeded are not reported.
 */
export class CollectiveRpcError extends TandemError {
  readonly method: string;
  readonly failures: ReadonlyArray<{ rank: number; name: string; message: string }>;
  constructor(info: { engine: string; method: string; failures: Array<{ rank: number; name: string; message: string }> }) {
    super(
      'collective_rpc_failed',
      `collectiveRpc("${info.method}") on engine "${info.engine}" failed on ` +
        info.failures.map((f) => `rank ${f.rank} (${f.name}: ${f.message})`).join('; '),
    );
    this.method = info.method;
    this.failures = info.failures;
  }
}
