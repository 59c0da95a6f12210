/**
 * Check a checkpoint's tensors against its config before anything is uploaded: a wrong file, a config
 * from another model size, or a truncated export must fail here with one message that lists every
 * problem, not later as garbage logits or a GPU validation error.
 */
import { WeightMismatchError } from '../../errors.ts';
import type { OptConfig } from '../config.ts';
import { expectedTensors } from '../config.ts';
import { bytesPerElement, numElements } from './dtype.ts';
import { normaliseTensorNames } from './names.ts';
import type { TensorMap } from './types.ts';

const MAX_LISTED = 12;

function list(title: string, items: string[]): string {
  const shown = items.slice(0, MAX_LISTED).map((s) => `  ${s}`);
  if (items.length > MAX_LISTED) shown.push(`  ... and ${items.length - MAX_LISTED} more`);
  return `${title} (${items.length}):\n${shown.join('\n')}`;
}

const fmt = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

/**
 * The tensors the model needs, by canonical name, in `expectedTensors(config)` order. Names are normalised
 * first (`decoder.*` -> `model.decoder.*`). With tied embeddings an explicit `lm_head.weight` is dropped (the
 * head is the embedding; it is never stored twice) after its shape is checked; untied, it is required.
 * Throws WeightMismatchError listing missing tensors, wrong shapes (expected vs got) and unexpected tensors.
 */
export function validateCheckpoint(config: OptConfig, tensors: TensorMap): TensorMap {
  const named = normaliseTensorNames(tensors);
  const expected = expectedTensors(config);
  if (config.tieWordEmbeddings) expected.set('lm_head.weight', [config.vocabSize, config.wordEmbedProjDim]);
  const missing: string[] = [];
  const misshapen: string[] = [];
  const unexpected: string[] = [];
  const out: TensorMap = new Map();

  for (const [name, shape] of expected) {
    const t = named.get(name);
    if (!t) {
      if (!(config.tieWordEmbeddings && name === 'lm_head.weight')) missing.push(`${name} ${fmt(shape)}`);
      continue;
    }
    const sameShape = t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
    if (!sameShape) {
      misshapen.push(`${name}: expected ${fmt(shape)}, got ${fmt(t.shape)}`);
    } else if (t.bytes.byteLength !== numElements(shape) * bytesPerElement(t.dtype)) {
      misshapen.push(`${name}: ${t.bytes.byteLength} bytes for ${fmt(shape)} of ${t.dtype}`);
    }
    if (!(config.tieWordEmbeddings && name === 'lm_head.weight')) out.set(name, t);
  }
  for (const name of named.keys()) if (!expected.has(name)) unexpected.push(name);

  if (missing.length || misshapen.length || unexpected.length) {
    const parts: string[] = [];
    if (missing.length) parts.push(list('missing tensors', missing));
    if (misshapen.length) parts.push(list('tensors with the wrong shape', misshapen));
    if (unexpected.length) parts.push(list('unexpected tensors', unexpected));
    const arch = `vocab ${config.vocabSize}, hidden ${config.hiddenSize}, ${config.numLayers} layers, ffn ${config.ffnDim}, ` +
      `${config.maxPositions} positions, ${config.layerNormBefore ? 'pre' : 'post'}-LN`;
    throw new WeightMismatchError(`checkpoint does not match its config (${arch}):\n${parts.join('\n')}`);
  }
  return out;
}
