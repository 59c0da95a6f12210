/** Checkpoint loading: formats, sources, dtypes, names, validation, synthetic weights. */
export type { Checkpoint, HostTensor, LoadProgress, ProgressCallback, StorageDType, TensorMap } from './types.ts';
export {
  bf16BitsToF32, bytesPerElement, convertTensor, f16BitsToF32, f32BitsToBf16Bits, f32BitsToF16Bits, float32Bits,
  float32FromBits, fromFloat32, numElements, roundToBf16, roundToF16, toFloat32,
} from './dtype.ts';
export { canonicalTensorName, normaliseTensorNames } from './names.ts';
export { MAX_SAFETENSORS_HEADER_BYTES, parseSafetensors, parseSafetensorsFile, serializeSafetensors } from './safetensors.ts';
export type { SafetensorsFile } from './safetensors.ts';
export { parsePytorchCheckpoint } from './pytorch.ts';
export { fillSynthetic, fmix32, fnv1a32, syntheticTensors } from './synthetic.ts';
export { validateCheckpoint } from './validate.ts';
export {
  blobReader, directoryReader, loadCheckpoint, loadCheckpointFrom, openModelSource, parseSyntheticSpec, readModelFile,
  readWeights, urlReader,
} from './sources.ts';
export type { CheckpointSpec, LoadCheckpointOptions, ModelSpec, ModelFileReader, NamedBlob, ReadOptions } from './sources.ts';
