/**
 * `tandem verify`: an independent check of Tandem's logits on any checkpoint, with no Python. The prompt runs
 * through Tandem's WebGPU kernels and through onnxruntime-web's wasm execution provider on an ONNX export of the
 * same weights (src/onnx/); per position the max |logit diff| and top-1 agreement are reported, and the exit
 * code is 1 when the max diff exceeds the tolerance (1e-3 for f32, 5e-2 for f16 unless --tolerance).
 */
import { InvalidInputError } from '../errors.ts';
import { LocalGpu } from '../gpu/local.ts';
import type { ElementType } from '../kernels/shader.ts';
import { OptTokenizer } from '../model/tokenizer/index.ts';
import { loadCheckpoint } from '../model/weights/sources.ts';
import { DEFAULT_TOLERANCE, verifyCheckpoint } from '../onnx/verify.ts';

export const VERIFY_USAGE =
  `  verify   --model SPEC (--tokens ... | --prompt TEXT) [--dtype f32|f16] [--tolerance X] [--ort-dist DIR] [--json]
           Tandem's logits against onnxruntime-web (wasm) on an ONNX export of the same weights; exit 1 when
           the max |diff| exceeds the tolerance (default 1e-3 f32, 5e-2 f16). DIR: onnxruntime-web's dist files`;

export const VERIFY_OPTIONS = {
  tolerance: { type: 'string' },
  'ort-dist': { type: 'string' },
} as const;

/** The parsed CLI values verify reads (a subset of main.ts's). */
export interface VerifyValues {
  model?: string;
  tokens?: string;
  prompt?: string;
  dtype?: string;
  tolerance?: string;
  'ort-dist'?: string;
  'block-size'?: string;
}

/** A result carrying this symbol asks main() for that exit code (JSON.stringify skips symbol keys). */
export const EXIT_CODE = Symbol('tandem.exitCode');

/** The exit code a command's result asks for: 0 unless it carries EXIT_CODE. */
export function exitCodeOf(result: unknown): number {
  const code = (result as { [EXIT_CODE]?: number } | null)?.[EXIT_CODE];
  return typeof code === 'number' ? code : 0;
}

function log(msg: string): void {
  console.error(msg);
}

function tokenList(v: VerifyValues): Promise<number[]> | number[] {
  if (v.tokens !== undefined && v.prompt !== undefined) throw new InvalidInputError('give --tokens or --prompt, not both');
  if (v.tokens !== undefined) {
    return v.tokens.split(',').map((x) => x.trim()).filter((x) => x.length).map((x) => {
      const n = Number(x);
      if (!Number.isInteger(n) || n < 0) throw new InvalidInputError(`--tokens: "${x}" is not a token id`);
      return n;
    });
  }
  if (v.prompt !== undefined) return OptTokenizer.load().then((t) => t.encode(v.prompt!));
  throw new InvalidInputError('give the prompt as --tokens 2,45,99 or --prompt TEXT');
}

const round = (x: number, digits = 3) => Number.isFinite(x) ? +x.toPrecision(digits) : x;

export async function cmdVerify(v: VerifyValues): Promise<Record<string | symbol, unknown>> {
  if (!v.model) throw new InvalidInputError('--model SPEC is required (a directory, an http(s) URL, or synthetic:CONFIG:SEED)');
  const dtype = (v.dtype ?? 'f32') as ElementType;
  if (dtype !== 'f32' && dtype !== 'f16') throw new InvalidInputError(`--dtype must be f32 or f16, got "${dtype}"`);
  let tolerance = DEFAULT_TOLERANCE[dtype];
  if (v.tolerance !== undefined) {
    tolerance = Number(v.tolerance);
    if (!(tolerance >= 0)) throw new InvalidInputError(`--tolerance must be a non-negative number, got "${v.tolerance}"`);
  }
  let blockSize: number | undefined;
  if (v['block-size'] !== undefined) {
    blockSize = Number(v['block-size']);
    if (!Number.isInteger(blockSize)) throw new InvalidInputError(`--block-size must be an integer, got "${v['block-size']}"`);
  }
  const tokens = await tokenList(v);
  if (tokens.length === 0) throw new InvalidInputError('the prompt is empty: give at least one token');

  const t0 = performance.now();
  const ckpt = await loadCheckpoint(v.model);
  log(`tandem: checkpoint loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const gpu = await LocalGpu.create();
  log(`tandem: WebGPU adapter: ${gpu.caps.adapterDescription}`);
  try {
    const r = await verifyCheckpoint(gpu, ckpt, tokens, { dtype, tolerance, ortDist: v['ort-dist'], blockSize, log });
    return {
      model: v.model,
      dtype,
      tokens,
      tolerance,
      ok: r.ok,
      max_abs_diff: r.maxAbsDiff,
      top1_agree: r.top1Agree,
      positions: r.positions.map((p) => ({
        position: p.position,
        token: tokens[p.position],
        max_abs_diff: p.maxAbsDiff,
        top1_tandem: p.top1A,
        top1_onnx: p.top1B,
        top1_agree: p.agree,
        onnx_top1_margin: round(p.marginB, 6),
      })),
      onnx: { runtime: r.onnx.runtime, execution_provider: r.onnx.executionProvider, opset: r.onnx.opset, model_bytes: r.onnx.modelBytes },
      timings_ms: Object.fromEntries(Object.entries(r.timingsMs).map(([k, ms]) => [k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase()), round(ms, 4)])),
      [EXIT_CODE]: r.ok ? 0 : 1,
    };
  } finally {
    gpu.destroy();
  }
}

/** The human-readable report (without --json). */
export function formatVerify(r: Record<string, unknown>): string {
  const positions = r.positions as Array<Record<string, number | boolean>>;
  const lines = [`position  token  max|diff|   top-1 tandem / onnx`];
  for (const p of positions) {
    lines.push(`${String(p.position).padStart(8)}  ${String(p.token).padStart(5)}  ${(p.max_abs_diff as number).toExponential(2).padStart(9)}   ` +
      `${p.top1_tandem} / ${p.top1_onnx}${p.top1_agree ? '' : `  DIFFERENT (onnx margin ${p.onnx_top1_margin})`}`);
  }
  const verdict = r.ok ? 'OK' : 'FAIL';
  lines.push(`${verdict}: max |logit diff| ${(r.max_abs_diff as number).toExponential(2)} ${r.ok ? '<=' : '>'} tolerance ${r.tolerance} ` +
    `(${r.dtype}); top-1 agrees at ${r.top1_agree}/${positions.length} positions; reference: ${(r.onnx as { runtime: string }).runtime} wasm`);
  return lines.join('\n');
}
