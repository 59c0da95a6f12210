import type { Gpu } from '../gpu/gpu.ts';
import { TensorParallelGroup } from '../gpu/tensor_parallel_group.ts';
import { parseOptConfig } from './config.ts';
import { OptModel, type OptModelOptions } from './opt.ts';
import { checkTensorParallel } from './tensor_parallel.ts';
import { loadCheckpoint, type ModelSpec } from './weights/sources.ts';
import type { Checkpoint } from './weights/types.ts';

/**
 * An OPT model split over `size` tensor-parallel ranks on one device (one OptModel per rank, each on its rank of
 * a TensorParallelGroup). Every step is recorded on every rank before any result is awaited, as the ranks'
 * all-reduces require; results are read from rank 0 (all ranks hold the same logits).
 */
export class TensorParallelOptModel {
  private constructor(readonly group: TensorParallelGroup, readonly ranks: OptModel[]) {}

  static async load(base: Gpu, source: ModelSpec | Checkpoint, opts: OptModelOptions & { size: number }): Promise<TensorParallelOptModel> {
    const ckpt = isCheckpoint(source) ? source : await loadCheckpoint(source, { onProgress: opts.onProgress });
    checkTensorParallel(parseOptConfig(ckpt.configJson), { rank: 0, size: opts.size });
    const group = new TensorParallelGroup(base, opts.size);
    const ranks: OptModel[] = [];
    for (let r = 0; r < opts.size; r++) {
      ranks.push(await OptModel.load(group.ranks[r], ckpt, { ...opts, tensorParallel: { rank: r, size: opts.size } }));
    }
    return new TensorParallelOptModel(group, ranks);
  }

  get config() {
    return this.ranks[0].config;
  }

  /** Full logits [tokens.length, vocab] of a prompt, as OptModel.logits. */
  async logits(tokens: readonly number[]): Promise<Float32Array> {
    const lead = this.ranks[0];
    lead.checkTokens(tokens);
    const V = lead.config.vocabSize;
    const out = new Float32Array(tokens.length * V);
    const step = Math.min(lead.runner.maxTokens, lead.runner.maxLogitRows);
    for (let start = 0; start < tokens.length; start += step) {
      const end = Math.min(tokens.length, start + step);
      const rows = Array.from({ length: end - start }, (_, i) => i);
      for (const m of this.ranks) m.recordPrefillChunk(tokens, start, end, rows);
      const bytes = await lead.gpu.read(lead.logitsBuffer, 0, (end - start) * V * 4);
      out.set(new Float32Array(bytes), start * V);
    }
    return out;
  }

  release(): void {
    for (const m of this.ranks) m.release();
  }
}

function isCheckpoint(x: unknown): x is Checkpoint {
  return typeof x === 'object' && x !== null && 'configJson' in x && 'tensors' in x;
}
