import { InvalidInputError } from '../errors.ts';
import type { GpuBuffer, Recording } from '../gpu/gpu.ts';
import { ATTENTION_PARTITION } from '../kernels/paged_attention.ts';
import { packSamplingRows, SAMPLING_ROW_WORDS, sampleAndAdvance, type SamplerBuffers } from '../kernels/sample.ts';
import type { OptModel } from './opt.ts';

export interface GenerateParams {
  maxTokens: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  /** 0 = off. */
  topK?: number;
  /** 1 = off. */
  topP?: number;
  /** 0 = off: keep tokens with probability >= minP * the most likely one's. */
  minP?: number;
  seed?: number;
  /** Keep going past the end-of-sequence token. */
  ignoreEos?: boolean;
  /** Decode steps submitted between readbacks (default 16). Tokens come back in bulk, one group behind. */
  stepsPerReadback?: number;
  /** Called with each group of new tokens as it is read back. */
  onTokens?: (tokens: number[]) => void;
}

export interface GenerateResult {
  tokens: number[];
  finishReason: 'stop' | 'length';
  /** Decode steps that ran on the GPU after a stop was already sampled (found late by design). */
  wastedSteps: number;
}

/** Decode-step buffers: the sampler writes the next step's inputs here, so the loop stays on the GPU. */
interface DecodeState extends SamplerBuffers {
  tokenSeq: GpuBuffer;
  logitIndices: GpuBuffer;
  queryBlocks: GpuBuffer;
  /** Captured decode steps (forward + sampler), by attention partition count, replayed every step. */
  plans: Map<number, Recording>;
}

const decodeStates = new WeakMap<OptModel, DecodeState>();

async function decodeState(model: OptModel): Promise<DecodeState> {
  let s = decodeStates.get(model);
  if (s) return s;
  const g = model.gpu;
  const u32 = (n: number, label: string) => g.createBuffer(4 * n, label);
  s = {
    logits: model.logitsBuffer,
    sampling: await u32(SAMPLING_ROW_WORDS, 'decode.sampling'),
    blockTables: model.prefill.blockTables,
    seqState: await u32(2, 'decode.seqState'),
    nextIds: await u32(1, 'decode.tokenIds'),
    nextPositions: await u32(1, 'decode.positions'),
    nextSlots: await u32(1, 'decode.slotMapping'),
    outTokens: await u32(model.config.maxPositions, 'decode.outTokens'),
    tokenSeq: await u32(1, 'decode.tokenSeq'),
    logitIndices: await u32(1, 'decode.logitIndices'),
    queryBlocks: await u32(2, 'decode.queryBlocks'),
    plans: new Map(),
  };
  model.extraBuffers.push(s.sampling, s.seqState, s.nextIds, s.nextPositions, s.nextSlots, s.outTokens, s.tokenSeq, s.logitIndices, s.queryBlocks);
  decodeStates.set(model, s);
  return s;
}

/** The captured decode step for a context of `context` tokens (plans differ only in their partition count). */
function decodePlan(model: OptModel, s: DecodeState, context: number, samplerArgs: Parameters<typeof sampleAndAdvance>[2]): Recording {
  const parts = Math.ceil(context / ATTENTION_PARTITION);
  let plan = s.plans.get(parts);
  if (!plan) {
    plan = model.gpu.capture(() => {
      model.runner.forward({
        numTokens: 1, tokenIds: s.nextIds, positions: s.nextPositions, tokenSeq: s.tokenSeq, slotMapping: s.nextSlots,
        blockTables: s.blockTables, maxBlocksPerSeq: model.maxBlocksPerSeq, maxContext: Math.min(parts * ATTENTION_PARTITION, model.runner.maxContext),
        queryBlocks: s.queryBlocks, numQueryBlocks: 1,
      }, model.cache, 'all', 1, s.logits);
      sampleAndAdvance(model.gpu, s, samplerArgs);
    });
    s.plans.set(parts, plan);
  }
  return plan;
}

export function validateGenerateParams(p: GenerateParams): void {
  if (!Number.isInteger(p.maxTokens) || p.maxTokens < 1) throw new InvalidInputError(`maxTokens must be a positive integer, got ${p.maxTokens}`);
  validateSamplingValues(p);
}

/** Checks the sampler's values (shared by generate() and the serving engine); throws InvalidInputError naming the field. */
export function validateSamplingValues(p: { temperature?: number; topK?: number; topP?: number; minP?: number; seed?: number }): void {
  const bad = (m: string) => { throw new InvalidInputError(m); };
  if (p.temperature !== undefined && !(p.temperature >= 0 && Number.isFinite(p.temperature))) bad(`temperature must be >= 0, got ${p.temperature}`);
  if (p.topK !== undefined && !(Number.isInteger(p.topK) && p.topK >= 0)) bad(`topK must be a non-negative integer (0 = off), got ${p.topK}`);
  if (p.topP !== undefined && !(p.topP > 0 && p.topP <= 1)) bad(`topP must be in (0, 1], got ${p.topP}`);
  if (p.minP !== undefined && !(p.minP >= 0 && p.minP <= 1)) bad(`minP must be in [0, 1], got ${p.minP}`);
  if (p.seed !== undefined && !(Number.isInteger(p.seed) && p.seed >= 0 && p.seed <= 0xffffffff)) bad(`seed must be a u32, got ${p.seed}`);
}

/**
 * Generate up to maxTokens tokens after `prompt` (one sequence). The prompt is prefilled in chunks; then each
 * decode step is forward + sample, where the sampler writes the next step's token, position and slot on the GPU.
 * Groups of steps are submitted back to back and the generated ids are read back in bulk one group behind
 * (Deno's readback takes ~10 ms however small), so a stop token is noticed late and the extra steps discarded.
 */
export async function generate(model: OptModel, prompt: readonly number[], params: GenerateParams): Promise<GenerateResult> {
  validateGenerateParams(params);
  model.checkTokens(prompt);
  const cfg = model.config;
  const maxTokens = Math.min(params.maxTokens, cfg.maxPositions - prompt.length);
  if (maxTokens < 1) throw new InvalidInputError(`the prompt fills all ${cfg.maxPositions} positions; nothing can be generated`);
  const g = model.gpu;
  const s = await decodeState(model);
  const sampling = packSamplingRows([{
    temperature: params.temperature ?? 0, topK: params.topK ?? 0, topP: params.topP ?? 1, seed: params.seed ?? 0, minP: params.minP ?? 0,
  }]);
  g.write(s.sampling, sampling);
  g.write(s.seqState, Uint32Array.of(prompt.length - 1, 0));
  g.write(s.tokenSeq, Uint32Array.of(0));
  g.write(s.logitIndices, Uint32Array.of(0));
  g.write(s.queryBlocks, Uint32Array.of(0, 1));
  const samplerArgs = { numSeqs: 1, vocab: cfg.vocabSize, blockSize: model.blockSize, maxBlocksPerSeq: model.maxBlocksPerSeq, outCapacity: cfg.maxPositions };

  // Prefill in chunks; only the last chunk's last row needs logits.
  const chunk = model.runner.maxTokens;
  for (let start = 0; start < prompt.length; start += chunk) {
    const end = Math.min(prompt.length, start + chunk);
    model.recordPrefillChunk(prompt, start, end, end === prompt.length ? [end - start - 1] : []);
  }
  sampleAndAdvance(g, s, samplerArgs);

  const stepsPerGroup = Math.max(1, params.stepsPerReadback ?? 16);
  const out: number[] = [];
  let recorded = 1; // tokens whose sampling has been recorded (the prefill's)
  let finishReason: 'stop' | 'length' = 'length';
  let stopped = false;
  const eos = params.ignoreEos ? -1 : cfg.eosTokenId;
  // Each in-flight read holds the ids sampled in steps [from, upTo).
  const inflight: Array<{ from: number; upTo: number; data: Promise<ArrayBuffer> }> = [];
  const consume = async () => {
    const r = inflight.shift()!;
    const ids = new Uint32Array(await r.data);
    if (stopped) return;
    const fresh: number[] = [];
    for (const id of ids) {
      fresh.push(id);
      if (id === eos) { stopped = true; finishReason = 'stop'; break; }
    }
    out.push(...fresh);
    params.onTokens?.(fresh);
  };

  let readFrom = 0;
  for (;;) {
    if (!stopped && recorded < maxTokens) {
      const groupEnd = Math.min(maxTokens, recorded + stepsPerGroup);
      for (; recorded < groupEnd; recorded++) {
        const pos = prompt.length + recorded - 1; // position of the token this step feeds in
        g.replay(decodePlan(model, s, pos + 1, samplerArgs));
        // Submit every step, so the GPU runs it while the CPU records the next.
        g.flush();
      }
    }
    if (readFrom < recorded && !stopped) {
      inflight.push({ from: readFrom, upTo: recorded, data: g.read(s.outTokens, readFrom * 4, (recorded - readFrom) * 4) });
      readFrom = recorded;
    }
    if (inflight.length === 0) break;
    // Keep one group in flight while the next is recorded; drain once nothing more will be recorded.
    if (stopped || recorded >= maxTokens || inflight.length >= 2) await consume();
  }
  const wastedSteps = Math.max(0, recorded - out.length);
  return { tokens: out, finishReason, wastedSteps };
}
