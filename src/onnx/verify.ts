/**
 * The oracle: one prompt through Tandem's WebGPU forward pass and through onnxruntime-web (wasm execution
 * provider) running this module's ONNX export of the same checkpoint, compared position by position.
 */
import type { Gpu } from '../gpu/gpu.ts';
import type { ElementType } from '../kernels/shader.ts';
import { parseOptConfig } from '../model/config.ts';
import { OptModel } from '../model/opt.ts';
import type { Checkpoint } from '../model/weights/types.ts';
import { compareLogits, type LogitsComparison } from './compare.ts';
import { buildOptOnnxModel, encodeOnnxModel, ONNX_OPSET } from './export.ts';
import { loadOrt, runOnnxLogits, sessionOptions } from './ort.ts';

/** Default tolerances on max |logit diff| (the fixtures' README: f32 1e-3, f16 5e-2). */
export const DEFAULT_TOLERANCE: Record<ElementType, number> = { f32: 1e-3, f16: 5e-2 };

export interface VerifyOptions {
  /** Tandem's weights and activations (the ONNX model is always f32). Default f32. */
  dtype?: ElementType;
  /** Max |logit diff| allowed. Default DEFAULT_TOLERANCE[dtype]. */
  tolerance?: number;
  /** onnxruntime-web's dist folder (see loadOrt). */
  ortDist?: string | URL;
  /** KV-cache block size for Tandem. */
  blockSize?: number;
  log?: (msg: string) => void;
}

export interface VerifyResult extends LogitsComparison {
  dtype: ElementType;
  tolerance: number;
  ok: boolean;
  vocabSize: number;
  onnx: { runtime: string; executionProvider: 'wasm'; opset: number; modelBytes: number };
  timingsMs: { tandemLoad: number; tandemLogits: number; onnxExport: number; onnxSession: number; onnxRun: number };
  tandemLogits: Float32Array;
  onnxLogits: Float32Array;
}

/** Run `tokens` through Tandem on `gpu` and through onnxruntime-web, and compare the logits. */
export async function verifyCheckpoint(gpu: Gpu, ckpt: Checkpoint, tokens: readonly number[], opts: VerifyOptions = {}): Promise<VerifyResult> {
  const dtype = opts.dtype ?? 'f32';
  const tolerance = opts.tolerance ?? DEFAULT_TOLERANCE[dtype];
  const log = opts.log ?? (() => {});
  const config = parseOptConfig(ckpt.configJson);
  const V = config.vocabSize, T = tokens.length;

  let t0 = performance.now();
  const model = await OptModel.load(gpu, ckpt, { dtype, blockSize: opts.blockSize });
  let tandemLogits: Float32Array;
  const tandemLoad = performance.now() - t0;
  try {
    model.checkTokens(tokens);
    t0 = performance.now();
    tandemLogits = await model.logits(tokens);
  } finally {
    model.release();
  }
  const tandemMs = performance.now() - t0;
  log(`verify: Tandem (${dtype}) logits of ${T} tokens in ${tandemMs.toFixed(0)} ms`);

  t0 = performance.now();
  const bytes = encodeOnnxModel(buildOptOnnxModel(config, ckpt.tensors));
  const exportMs = performance.now() - t0;
  log(`verify: ONNX export: ${(bytes.byteLength / 1e6).toFixed(1)} MB in ${exportMs.toFixed(0)} ms`);
  const ort = await loadOrt('wasm', { distDir: opts.ortDist });
  t0 = performance.now();
  const session = await ort.InferenceSession.create(bytes, sessionOptions('wasm'));
  const sessionMs = performance.now() - t0;
  let onnxLogits: Float32Array;
  t0 = performance.now();
  try {
    onnxLogits = await runOnnxLogits(ort, session, [tokens]);
  } finally {
    await session.release();
  }
  const runMs = performance.now() - t0;
  log(`verify: onnxruntime-web ${ort.env.versions.web ?? ''} (wasm) session in ${sessionMs.toFixed(0)} ms, run in ${runMs.toFixed(0)} ms`);

  const cmp = compareLogits(tandemLogits, onnxLogits, T, V);
  return {
    ...cmp,
    dtype,
    tolerance,
    ok: cmp.maxAbsDiff <= tolerance,
    vocabSize: V,
    onnx: { runtime: `onnxruntime-web ${ort.env.versions.web ?? ''}`.trim(), executionProvider: 'wasm', opset: ONNX_OPSET, modelBytes: bytes.byteLength },
    timingsMs: { tandemLoad, tandemLogits: tandemMs, onnxExport: exportMs, onnxSession: sessionMs, onnxRun: runMs },
    tandemLogits,
    onnxLogits,
  };
}
