import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { packParams } from '../gpu/gpu.ts';
import { shaderSource } from './shader.ts';

/** Per-sequence sampling parameters as the sampler kernel reads them (32 bytes each). */
export interface SamplingRow {
  /** 0 = greedy. */
  temperature: number;
  /** 0 = off. */
  topK: number;
  /** 1 = off. */
  topP: number;
  seed: number;
  /** 0 = off: keep tokens whose probability is at least minP times the most likely one's. */
  minP?: number;
}

/** u32 words per packed sampling row. */
export const SAMPLING_ROW_WORDS = 8;

export function packSamplingRows(rows: SamplingRow[]): Uint32Array {
  const W = SAMPLING_ROW_WORDS;
  const words = new Uint32Array(rows.length * W);
  const f = new Float32Array(words.buffer);
  rows.forEach((r, i) => {
    f[W * i] = r.temperature;
    words[W * i + 1] = r.topK >>> 0;
    f[W * i + 2] = r.topP;
    words[W * i + 3] = r.seed >>> 0;
    f[W * i + 4] = r.minP ?? 0;
  });
  return words;
}

export interface SamplerBuffers {
  /** [S, vocab] f32 logits, row s for sequence s. */
  logits: GpuBuffer;
  sampling: GpuBuffer;
  blockTables: GpuBuffer;
  /** [S, 2] u32: position of the token the logits belong to, tokens generated so far. */
  seqState: GpuBuffer;
  nextIds: GpuBuffer;
  nextPositions: GpuBuffer;
  nextSlots: GpuBuffer;
  /** [S, outCapacity] u32 ring of generated tokens. */
  outTokens: GpuBuffer;
}

/** Sample one token per sequence and write the next decode step's inputs (all on the GPU). */
export function sampleAndAdvance(
  gpu: Gpu,
  b: SamplerBuffers,
  a: { numSeqs: number; vocab: number; blockSize: number; maxBlocksPerSeq: number; outCapacity: number },
): void {
  const k = gpu.kernel(shaderSource('sample'));
  gpu.dispatch(k, [b.logits, b.sampling, b.blockTables, b.seqState, b.nextIds, b.nextPositions, b.nextSlots, b.outTokens],
    packParams([a.vocab, a.numSeqs, a.blockSize, a.maxBlocksPerSeq, a.outCapacity]), [a.numSeqs]);
}

/** CPU reference for greedy: argmax with the lowest id on ties. */
export function argmaxReference(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}
