/**
 * Tandem: OPT on WebGPU, in browsers and in Deno. The package's public entry (`import ... from 'tandem-webgpu'`).
 *
 *   const gpu = await LocalGpu.create();                               // WebGPUUnavailableError without WebGPU
 *   const model = await OptModel.load(gpu, 'https://huggingface.co/facebook/opt-125m/resolve/main/');
 *   const tok = await OptTokenizer.load();
 *   const { tokens } = await generate(model, tok.encode('Hello, my name is'), { maxTokens: 32 });
 *   console.log(tok.decode(tokens));
 *
 * Importing this module touches no WebGPU global, so it loads anywhere (Node included); only creating a
 * device needs WebGPU.
 */

// Typed errors: catch by class, or switch on the stable `code`.
export {
  CheckpointFormatError,
  ConfigError,
  GpuDeviceLostError,
  GpuOutOfMemoryError,
  GpuValidationError,
  InvalidInputError,
  ModelSourceError,
  TandemError,
  WebGPUUnavailableError,
  WeightMismatchError,
} from './errors.ts';

// The GPU layer: device acquisition and the in-process implementation of the Gpu interface.
export { acquireDevice, type AcquiredDevice, type AcquireOptions, type GpuCaps } from './gpu/device.ts';
export type { BufferBinding, Gpu, GpuBuffer, GpuStats, Kernel, KernelSource } from './gpu/gpu.ts';
export { LocalGpu } from './gpu/local.ts';
export type { ElementType } from './kernels/shader.ts';

// The model: config, loading, logits and generation.
export { parseOptConfig, type OptConfig } from './model/config.ts';
export { OptModel, type OptModelOptions } from './model/opt.ts';
export { generate, type GenerateParams, type GenerateResult } from './model/generate.ts';

// Checkpoints: sources (directory, URL, File list, synthetic:...), formats, host tensors.
export { loadCheckpoint } from './model/weights/sources.ts';
export type {
  CheckpointSpec,
  LoadCheckpointOptions,
  ModelFileReader,
  ModelSpec,
  NamedBlob,
  ReadOptions,
} from './model/weights/sources.ts';
export type {
  Checkpoint,
  HostTensor,
  LoadProgress,
  ProgressCallback,
  StorageDType,
  TensorMap,
} from './model/weights/types.ts';
export { parseSafetensors, serializeSafetensors } from './model/weights/safetensors.ts';
export { fromFloat32, toFloat32 } from './model/weights/dtype.ts';

// Training: the Trainer (forward, backward, AdamW/SGD on the GPU) and its step errors.
export { Trainer, type BatchInput, type InlineModel, type StepResult, type TrainerOptions } from './train/trainer.ts';
export type { AdamWConfig, OptimizerConfig, SgdConfig } from './train/optimizer.ts';
export type { TrainBatch } from './train/types.ts';
export { NonFiniteLossError, TrainingInputError } from './errors.ts';

// The OPT tokenizer (shipped with the package) and the streaming detokenizer.
export {
  type DecodeOptions,
  type EncodeOptions,
  IncrementalDetokenizer,
  type IncrementalDetokenizerOptions,
  OPT_BOS_TOKEN_ID,
  OPT_EOS_TOKEN_ID,
  OPT_PAD_TOKEN_ID,
  OptTokenizer,
  type TokenDecoder,
} from './model/tokenizer/index.ts';

// The cluster: virtual GPUs, placement groups, actor placement (Ray's semantics, infeasible requests refused at
// once), and the weighted fair queue for GPU time. See src/cluster/index.ts for the model.
export {
  ActorPlacement,
  Cluster,
  FairShareQueue,
  PlacementGroup,
  type ActorGpu,
  type ActorRequest,
  type Bundle,
  type BundlePlacement,
  type ClusterOptions,
  type KillReason,
  type NodeSpec,
  type PlacementStrategy,
  type VirtualGpu,
} from './cluster/index.ts';
export { InfeasibleResourceError, PlacementError } from './errors.ts';

// The serving engine's user-facing API (continuous batching, streaming, OpenAI-style completions, metrics).
export {
  type CompletionOutput,
  type EngineMetrics,
  type GenerateSamplingParams,
  LLM,
  type LLMOptions,
  type Prompt,
  type StreamDelta,
  type StreamSamplingParams,
} from './engine/llm.ts';
export { KvCacheTooSmallError } from './engine/errors.ts';

// Colocation (vLLM's RLHF colocate on Web Workers): training actors, tensor-parallel inference engines placed on
// bundles, collectiveRpc with worker extensions, the colocate extension and the scenario itself.
export { runColocate, type ColocateOptions, type ColocateResult } from './actors/colocate.ts';
export { COLOCATE_EXTENSION_URL, ColocateWorkerExtension } from './actors/colocate_extension.ts';
export { EngineRank, loadWorkerExtension, type WorkerExtensionClass } from './actors/extensions.ts';
export { InferenceEngine, type InferenceEngineOptions } from './actors/inference_engine.ts';
export {
  type PlacedTrainingActor,
  spawnTrainingActor,
  TrainingActor,
  type TrainingActorOptions,
  type WeightHandles,
} from './actors/training_actor.ts';
export { CollectiveRpcError } from './errors.ts';
