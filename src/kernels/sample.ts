import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import { packParams } from '../gpu/gpu.ts';
import { shaderSource } from './shader.ts';

/** Per-sequence sampling parameters as the sampler kernel reads them (64 bytes each). */
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
  /**
   * Row of the token-state table (initTokenState) holding this request's prompt mask, output counts and stop
   * flags; undefined = none: no penalties, no min-tokens mask, nothing counted.
   */
  stateSlot?: number;
  /** vLLM's: over prompt + output tokens, logit > 0 → logit / p, else logit * p (1 = off). Needs stateSlot. */
  repetitionPenalty?: number;
  /** Over output tokens: logit -= presencePenalty * (count > 0) (0 = off). Needs stateSlot. */
  presencePenalty?: number;
  /** Over output tokens: logit -= frequencyPenalty * count (0 = off). Needs stateSlot. */
  frequencyPenalty?: number;
  /** Stop tokens flagged in the state are masked while outputBase + generated < minTokens. Needs stateSlot. */
  minTokens?: number;
  /** Tokens the request generated before this batch of steps. */
  outputBase?: number;
  /** Logprobs record row (computeLogprobs); undefined = no logprobs for this row. */
  logprobsIndex?: number;
  /** Top logprobs per step besides the sampled token's (0..MAX_TOP_LOGPROBS). */
  numTopLogprobs?: number;
}

/** u32 words per packed sampling row. */
export const SAMPLING_ROW_WORDS = 16;
const NONE = 0xffffffff;

export function packSamplingRows(rows: SamplingRow[]): Uint32Array {
  const W = SAMPLING_ROW_WORDS;
  const words = new Uint32Array(rows.length * W);
  const f = new Float32Array(words.buffer);
  rows.forEach((r, i) => {
    const o = W * i;
    f[o] = r.temperature;
    words[o + 1] = r.topK >>> 0;
    f[o + 2] = r.topP;
    words[o + 3] = r.seed >>> 0;
    f[o + 4] = r.minP ?? 0;
    words[o + 5] = r.stateSlot ?? NONE;
    f[o + 6] = r.repetitionPenalty ?? 1;
    f[o + 7] = r.presencePenalty ?? 0;
    f[o + 8] = r.frequencyPenalty ?? 0;
    words[o + 9] = r.minTokens ?? 0;
    words[o + 10] = r.outputBase ?? 0;
    words[o + 11] = r.logprobsIndex ?? NONE;
    words[o + 12] = r.numTopLogprobs ?? 0;
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
  /** [slots, vocab] u32 token state (initTokenState). Without it, no row may have a stateSlot. */
  tokenState?: GpuBuffer;
}

const STATE_BINDING = '@group(0) @binding(9) var<storage, read_write> token_state: array<u32>;';
const NO_STATE = 'var<private> token_state: array<u32, 1>;';

/** Sample one token per sequence and write the next decode step's inputs (all on the GPU). */
export function sampleAndAdvance(
  gpu: Gpu,
  b: SamplerBuffers,
  a: { numSeqs: number; vocab: number; blockSize: number; maxBlocksPerSeq: number; outCapacity: number },
): void {
  const k = gpu.kernel(shaderSource('sample', { TOKEN_STATE: b.tokenState ? STATE_BINDING : NO_STATE }));
  const bufs = [b.logits, b.sampling, b.blockTables, b.seqState, b.nextIds, b.nextPositions, b.nextSlots, b.outTokens];
  if (b.tokenState) bufs.push(b.tokenState);
  gpu.dispatch(k, bufs, packParams([a.vocab, a.numSeqs, a.blockSize, a.maxBlocksPerSeq, a.outCapacity]), [a.numSeqs]);
}

/** u32 words per token-state init entry (penalties_init.wgsl's Entry). */
export const TOKEN_STATE_ENTRY_WORDS = 8;

export interface TokenStateInit {
  slot: number;
  promptTokenIds: ArrayLike<number>;
  outputTokenIds: ArrayLike<number>;
  /** Tokens masked until minTokens (EOS unless ignored, stop token ids). */
  stopTokenIds: ArrayLike<number>;
}

/** Pack init entries and their flat token list (prompt, outputs, stop ids per entry). */
export function packTokenStateInits(inits: readonly TokenStateInit[]): { entries: Uint32Array; tokens: Uint32Array } {
  const total = inits.reduce((s, e) => s + e.promptTokenIds.length + e.outputTokenIds.length + e.stopTokenIds.length, 0);
  const entries = new Uint32Array(inits.length * TOKEN_STATE_ENTRY_WORDS);
  const tokens = new Uint32Array(Math.max(1, total));
  let t = 0;
  inits.forEach((e, i) => {
    entries.set([e.slot, t, e.promptTokenIds.length, e.outputTokenIds.length, e.stopTokenIds.length], i * TOKEN_STATE_ENTRY_WORDS);
    for (const list of [e.promptTokenIds, e.outputTokenIds, e.stopTokenIds]) {
      for (let j = 0; j < list.length; j++) tokens[t++] = list[j];
    }
  });
  return { entries, tokens };
}

/** Rebuild `numEntries` token-state rows from packed entries (packTokenStateInits, already uploaded). */
export function initTokenState(gpu: Gpu, b: { entries: GpuBuffer; tokens: GpuBuffer; tokenState: GpuBuffer }, a: { numEntries: number; vocab: number }): void {
  if (a.numEntries === 0) return;
  const k = gpu.kernel(shaderSource('penalties_init'));
  gpu.dispatch(k, [b.entries, b.tokens, b.tokenState], packParams([a.vocab, a.numEntries]), [a.numEntries]);
}

/** Most top logprobs per step (OpenAI's limit for completions). */
export const MAX_TOP_LOGPROBS = 20;
/** u32 words per logprobs record: sampled logprob, its rank, top ids, top logprobs. */
export const LOGPROBS_RECORD_WORDS = 2 + 2 * MAX_TOP_LOGPROBS;

/**
 * After sampleAndAdvance: for each row with a logprobsIndex, write the raw logprob and rank of the token just
 * sampled (nextIds) and the row's top-n to `records`, record (logprobsIndex * outCapacity + step) starting at
 * word `recordBase`.
 */
export function computeLogprobs(
  gpu: Gpu,
  b: { logits: GpuBuffer; sampling: GpuBuffer; seqState: GpuBuffer; nextIds: GpuBuffer; records: GpuBuffer },
  a: { numSeqs: number; vocab: number; outCapacity: number; recordBase: number },
): void {
  const k = gpu.kernel(shaderSource('logprobs', { MAX_TOP: MAX_TOP_LOGPROBS }));
  gpu.dispatch(k, [b.logits, b.sampling, b.seqState, b.nextIds, b.records], packParams([a.vocab, a.numSeqs, a.outCapacity, a.recordBase]), [a.numSeqs]);
}

/** One step's logprobs as read back. */
export interface LogprobsRecord {
  logprob: number;
  rank: number;
  top: Array<{ tokenId: number; logprob: number }>;
}

/** Decode the record at word `offset` of `words`, keeping the first `numTop` top entries. */
export function unpackLogprobsRecord(words: Uint32Array, offset: number, numTop: number): LogprobsRecord {
  const f = new Float32Array(words.buffer, words.byteOffset, words.length);
  const top: LogprobsRecord['top'] = [];
  for (let r = 0; r < numTop; r++) top.push({ tokenId: words[offset + 2 + r], logprob: f[offset + 2 + MAX_TOP_LOGPROBS + r] });
  return { logprob: f[offset], rank: words[offset + 1], top };
}

/** CPU reference for greedy: argmax with the lowest id on ties. */
export function argmaxReference(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}
