import { ConfigError } from '../errors.ts';

/** The OPT architecture, read from a Hugging Face config.json. Covers the family's variants. */
export interface OptConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  headDim: number;
  ffnDim: number;
  maxPositions: number;
  /** true: pre-LN (125m, 1.3b, ...); false: post-LN (350m). */
  layerNormBefore: boolean;
  /** Embedding width; when != hiddenSize, project_in / project_out exist (350m). */
  wordEmbedProjDim: number;
  /** Whether the final layer norm exists (pre-LN and not `_remove_final_layer_norm`). */
  hasFinalLayerNorm: boolean;
  tieWordEmbeddings: boolean;
  enableBias: boolean;
  layerNormElementwiseAffine: boolean;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number;
  /** OPT's learned positions are offset by 2 (the first two rows are unused). */
  positionOffset: 2;
}

type Json = Record<string, unknown>;

function int(cfg: Json, key: string, fallback?: number): number {
  const v = cfg[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new ConfigError(`config.json: "${key}" must be a non-negative integer, got ${JSON.stringify(cfg[key])}`);
  }
  return v;
}

function bool(cfg: Json, key: string, fallback: boolean): boolean {
  const v = cfg[key] ?? fallback;
  if (typeof v !== 'boolean') throw new ConfigError(`config.json: "${key}" must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

/** Parse a HF OPT config.json (object or text). Throws ConfigError naming the bad field. */
export function parseOptConfig(input: string | Json): OptConfig {
  let cfg: Json;
  if (typeof input === 'string') {
    try { cfg = JSON.parse(input) as Json; } catch (e) { throw new ConfigError(`config.json is not valid JSON: ${(e as Error).message}`); }
  } else cfg = input;
  if (cfg === null || typeof cfg !== 'object') throw new ConfigError('config.json must be a JSON object');
  if (cfg.model_type !== undefined && cfg.model_type !== 'opt') {
    throw new ConfigError(`config.json: model_type is "${String(cfg.model_type)}", only "opt" is supported`);
  }
  const act = cfg.activation_function ?? 'relu';
  if (act !== 'relu') throw new ConfigError(`config.json: activation_function "${String(act)}" is not supported (OPT uses relu)`);
  const hiddenSize = int(cfg, 'hidden_size');
  const numHeads = int(cfg, 'num_attention_heads');
  if (numHeads === 0 || hiddenSize % numHeads !== 0) {
    throw new ConfigError(`config.json: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  }
  const layerNormBefore = bool(cfg, 'do_layer_norm_before', true);
  const removeFinal = bool(cfg, '_remove_final_layer_norm', false);
  const config: OptConfig = {
    vocabSize: int(cfg, 'vocab_size'),
    hiddenSize,
    numLayers: int(cfg, 'num_hidden_layers'),
    numHeads,
    headDim: hiddenSize / numHeads,
    ffnDim: int(cfg, 'ffn_dim'),
    maxPositions: int(cfg, 'max_position_embeddings'),
    layerNormBefore,
    wordEmbedProjDim: int(cfg, 'word_embed_proj_dim', hiddenSize),
    hasFinalLayerNorm: layerNormBefore && !removeFinal,
    tieWordEmbeddings: bool(cfg, 'tie_word_embeddings', true),
    enableBias: bool(cfg, 'enable_bias', true),
    layerNormElementwiseAffine: bool(cfg, 'layer_norm_elementwise_affine', true),
    bosTokenId: int(cfg, 'bos_token_id', 2),
    eosTokenId: int(cfg, 'eos_token_id', 2),
    padTokenId: int(cfg, 'pad_token_id', 1),
    positionOffset: 2,
  };
  if (config.vocabSize === 0 || config.numLayers === 0 || config.ffnDim === 0 || config.maxPositions === 0) {
    throw new ConfigError('config.json: vocab_size, num_hidden_layers, ffn_dim and max_position_embeddings must be positive');
  }
  if (!config.enableBias) throw new ConfigError('config.json: enable_bias=false is not supported yet');
  if (!config.layerNormElementwiseAffine) throw new ConfigError('config.json: layer_norm_elementwise_affine=false is not supported yet');
  return config;
}

/** The facebook/opt-125m config, built in so `synthetic:opt-125m:SEED` works offline. */
export const OPT_125M_CONFIG_JSON: Json = {
  model_type: 'opt', activation_function: 'relu', vocab_size: 50272, hidden_size: 768, num_hidden_layers: 12,
  num_attention_heads: 12, ffn_dim: 3072, max_position_embeddings: 2048, do_layer_norm_before: true,
  word_embed_proj_dim: 768, _remove_final_layer_norm: false, enable_bias: true, layer_norm_elementwise_affine: true,
  tie_word_embeddings: true, bos_token_id: 2, eos_token_id: 2, pad_token_id: 1,
};

/**
 * Every tensor an OPT checkpoint must hold, with HF names (prefix `model.`) and shapes
 * (Linear weights are [out, in]). `lm_head.weight` is listed only when it is not tied.
 */
export function expectedTensors(c: OptConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const d = 'model.decoder.';
  const H = c.hiddenSize;
  m.set(d + 'embed_tokens.weight', [c.vocabSize, c.wordEmbedProjDim]);
  m.set(d + 'embed_positions.weight', [c.maxPositions + c.positionOffset, H]);
  if (c.wordEmbedProjDim !== H) {
    m.set(d + 'project_in.weight', [H, c.wordEmbedProjDim]);
    m.set(d + 'project_out.weight', [c.wordEmbedProjDim, H]);
  }
  if (c.hasFinalLayerNorm) {
    m.set(d + 'final_layer_norm.weight', [H]);
    m.set(d + 'final_layer_norm.bias', [H]);
  }
  for (let l = 0; l < c.numLayers; l++) {
    const p = `${d}layers.${l}.`;
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      m.set(`${p}self_attn.${proj}.weight`, [H, H]);
      m.set(`${p}self_attn.${proj}.bias`, [H]);
    }
    m.set(`${p}self_attn_layer_norm.weight`, [H]);
    m.set(`${p}self_attn_layer_norm.bias`, [H]);
    m.set(`${p}fc1.weight`, [c.ffnDim, H]);
    m.set(`${p}fc1.bias`, [c.ffnDim]);
    m.set(`${p}fc2.weight`, [H, c.ffnDim]);
    m.set(`${p}fc2.bias`, [H]);
    m.set(`${p}final_layer_norm.weight`, [H]);
    m.set(`${p}final_layer_norm.bias`, [H]);
  }
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, c.wordEmbedProjDim]);
  return m;
}
