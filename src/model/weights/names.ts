/**
 * Tensor names, normalised to the Hugging Face `OPTForCausalLM` form: `model.decoder.…` and `lm_head.weight`.
 *
 * Older OPT checkpoints (facebook/opt-*'s pytorch_model.bin, saved from `OPTModel`) use `decoder.…` without
 * the `model.` prefix; HF maps them on load, and so do we, so everything downstream sees one naming.
 */
import { WeightMismatchError } from '../../errors.ts';
import type { TensorMap } from './types.ts';

/** The canonical HF name for a checkpoint tensor name (unknown names are returned unchanged). */
export function canonicalTensorName(name: string): string {
  if (name.startsWith('decoder.')) return 'model.' + name;
  return name;
}

/**
 * A new map with canonical names, in the same order. Throws WeightMismatchError when two stored names map to
 * the same canonical name (e.g. both `decoder.x` and `model.decoder.x`): which one is meant is ambiguous.
 */
export function normaliseTensorNames(tensors: TensorMap): TensorMap {
  const out: TensorMap = new Map();
  const origin = new Map<string, string>();
  for (const [name, t] of tensors) {
    const canon = canonicalTensorName(name);
    const prev = origin.get(canon);
    if (prev !== undefined) {
      throw new WeightMismatchError(`checkpoint holds "${canon}" twice (stored as "${prev}" and as "${name}")`);
    }
    origin.set(canon, name);
    out.set(canon, t);
  }
  return out;
}
