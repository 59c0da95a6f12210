/**
 * Trained weights in and out of the GPU as Hugging Face checkpoints: safetensors with HF names, f32, and the
 * tied head omitted as HF saves it, so OptModel / LLM (or transformers) load the result directly.
 */
import type { Gpu } from '../gpu/gpu.ts';
import type { OptConfig } from '../model/config.ts';
import { convertTensor } from '../model/weights/dtype.ts';
import { parseSafetensors, serializeSafetensors } from '../model/weights/safetensors.ts';
import { loadCheckpoint, type ModelSpec } from '../model/weights/sources.ts';
import type { Checkpoint, TensorMap } from '../model/weights/types.ts';
import { validateCheckpoint } from '../model/weights/validate.ts';
import type { ParamTensor } from './types.ts';

/** Where weights to load come from: a model spec (directory, URL, synthetic:...), safetensors bytes, tensors, or a Checkpoint. */
export type WeightsSource = ModelSpec | Uint8Array | TensorMap | Checkpoint;

/** Every parameter read back as an F32 host tensor, in parameter order. */
export async function readParameters(gpu: Gpu, params: ReadonlyMap<string, ParamTensor>): Promise<TensorMap> {
  const out: TensorMap = new Map();
  for (const [name, p] of params) {
    const bytes = p.shape.reduce((a, b) => a * b, 1) * 4;
    out.set(name, { dtype: 'F32', shape: [...p.shape], bytes: new Uint8Array(await gpu.read(p.buffer, 0, bytes)) });
  }
  return out;
}

/** Safetensors bytes of the parameters (HF names, F32, metadata format=pt as transformers writes). */
export async function saveParameters(gpu: Gpu, params: ReadonlyMap<string, ParamTensor>): Promise<Uint8Array> {
  return serializeSafetensors(await readParameters(gpu, params), { format: 'pt' });
}

function isCheckpoint(x: unknown): x is Checkpoint {
  return typeof x === 'object' && x !== null && 'configJson' in x && 'tensors' in x;
}

/**
 * The tensors of `source`, checked against `config` (the model being trained): names normalised, a tied
 * `lm_head.weight` dropped, and any missing, misshapen or unexpected tensor a WeightMismatchError listing them.
 */
export async function readWeightsSource(source: WeightsSource, config: OptConfig): Promise<TensorMap> {
  let tensors: TensorMap;
  if (source instanceof Uint8Array) tensors = parseSafetensors(source, 'the given safetensors bytes');
  else if (source instanceof Map) tensors = source;
  else if (isCheckpoint(source)) tensors = source.tensors;
  else tensors = (await loadCheckpoint(source)).tensors;
  return validateCheckpoint(config, tensors);
}

/** Overwrite every parameter from validated tensors (any stored dtype, converted to f32). */
export function writeParameters(gpu: Gpu, params: ReadonlyMap<string, ParamTensor>, tensors: TensorMap): void {
  for (const [name, p] of params) {
    const t = tensors.get(name);
    if (!t) throw new Error(`writeParameters: no tensor ${name} (validate first)`);
    gpu.write(p.buffer, convertTensor(t, 'F32').bytes);
  }
}

/** A Hugging Face config.json object for `c` (what save_pretrained would write for the fields OPT reads). */
export function optConfigJson(c: OptConfig): Record<string, unknown> {
  return {
    model_type: 'opt', architectures: ['OPTForCausalLM'], activation_function: 'relu',
    vocab_size: c.vocabSize, hidden_size: c.hiddenSize, num_hidden_layers: c.numLayers, num_attention_heads: c.numHeads,
    ffn_dim: c.ffnDim, max_position_embeddings: c.maxPositions, do_layer_norm_before: c.layerNormBefore,
    word_embed_proj_dim: c.wordEmbedProjDim, _remove_final_layer_norm: c.layerNormBefore && !c.hasFinalLayerNorm,
    tie_word_embeddings: c.tieWordEmbeddings, enable_bias: c.enableBias, layer_norm_elementwise_affine: c.layerNormElementwiseAffine,
    bos_token_id: c.bosTokenId, eos_token_id: c.eosTokenId, pad_token_id: c.padTokenId, dropout: 0, torch_dtype: 'float32',
  };
}
