/**
 * `tandem train-step --model SPEC --batch FILE [--adamw lr,beta1,beta2,eps,wd] [--steps N] [--save DIR] [--json]`:
 * N AdamW steps on one batch (FILE: `{"batch": [[ids]], "weights"?: [[w per target]], "mask"?: [[0/1]]}`, the
 * fixtures' `train` section). Prints `{"loss", "grad_l2": {HF name: norm of step 1}, "losses": [before each
 * step..., after the last]}`. --save writes config.json + model.safetensors of the trained weights (servable).
 */
import { InvalidInputError } from '../errors.ts';
import { Trainer } from '../train/trainer.ts';
import type { TrainBatch } from '../train/types.ts';
import type { AdamWConfig } from '../train/optimizer.ts';

export const TRAIN_STEP_OPTIONS = {
  batch: { type: 'string' },
  adamw: { type: 'string' },
  steps: { type: 'string' },
  save: { type: 'string' },
} as const;

export const TRAIN_STEP_USAGE = `  train-step --model SPEC --batch FILE [--adamw lr,beta1,beta2,eps,wd] [--steps N] [--save DIR] [--json]
           N AdamW steps (default 1; AdamW defaults 1e-3,0.9,0.999,1e-8,0.01 as torch's) on the batch of FILE
           ({"batch": [[ids]], "weights"?: [[per target]], "mask"?: [[0/1]]}); prints the loss, per-parameter
           gradient L2 norms of step 1 and the losses before each step and after the last`;

/** `lr,beta1,beta2,eps,wd` -> AdamW config (torch's defaults when absent). */
export function parseAdamW(text: string | undefined): AdamWConfig {
  if (text === undefined) return { type: 'adamw', lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 };
  const parts = text.split(',').map((s) => s.trim());
  const nums = parts.map(Number);
  if (parts.length !== 5 || parts.some((p) => p === '') || nums.some((n) => !Number.isFinite(n))) {
    throw new InvalidInputError(`--adamw must be five numbers lr,beta1,beta2,eps,wd (e.g. 1e-3,0.9,0.999,1e-8,0.01), got "${text}"`);
  }
  const [lr, beta1, beta2, eps, weightDecay] = nums;
  return { type: 'adamw', lr, betas: [beta1, beta2], eps, weightDecay };
}

function matrix(v: unknown, what: string, file: string, integer: boolean): number[][] {
  const bad = (why: string) => new InvalidInputError(`${file}: "${what}" ${why}`);
  if (!Array.isArray(v) || v.length === 0) throw bad('must be a non-empty array of arrays of numbers');
  return v.map((row, b) => {
    if (!Array.isArray(row)) throw bad(`row ${b} is not an array`);
    return row.map((x, t) => {
      if (typeof x !== 'number' || !Number.isFinite(x) || (integer && !Number.isInteger(x))) {
        throw bad(`[${b}][${t}] is ${JSON.stringify(x)}, not ${integer ? 'an integer' : 'a finite number'}`);
      }
      return x;
    });
  });
}

/** Parse a batch file's text into a TrainBatch (shapes against the model are checked by the trainer). */
export function parseBatchFile(text: string, file: string): TrainBatch {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InvalidInputError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new InvalidInputError(`${file}: expected an object {"batch": [[ids]], ...}`);
  const o = json as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !['batch', 'weights', 'mask'].includes(k));
  if (unknown.length) throw new InvalidInputError(`${file}: unknown field(s) ${unknown.join(', ')} (expected batch, weights, mask)`);
  const batch: TrainBatch = { ids: matrix(o.batch, 'batch', file, true) };
  if (o.weights !== undefined) batch.weights = matrix(o.weights, 'weights', file, false);
  if (o.mask !== undefined) batch.mask = matrix(o.mask, 'mask', file, true);
  return batch;
}

export async function cmdTrainStep(v: Record<string, unknown>, log: (msg: string) => void = (m) => console.error(m)): Promise<Record<string, unknown>> {
  const model = v.model as string | undefined;
  if (!model) throw new InvalidInputError('--model SPEC is required (a directory, an http(s) URL, or synthetic:CONFIG:SEED)');
  const file = v.batch as string | undefined;
  if (!file) throw new InvalidInputError('--batch FILE is required ({"batch": [[ids]], "weights"?: [[...]]})');
  const stepsText = (v.steps as string | undefined) ?? '1';
  const steps = Number(stepsText);
  if (!Number.isInteger(steps) || steps < 1) throw new InvalidInputError(`--steps must be a positive integer, got "${stepsText}"`);
  const optimizer = parseAdamW(v.adamw as string | undefined);
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new InvalidInputError(`cannot read --batch ${file}: ${(e as Error).message}`);
  }
  const batch = parseBatchFile(text, file);
  const tokens = batch.ids.length * Math.max(...batch.ids.map((r) => r.length));
  const trainer = await Trainer.create({ model, optimizer, maxBatchTokens: tokens });
  try {
    log(`tandem: training on ${trainer.gpu.caps.adapterDescription}: ${batch.ids.length} sequences, ${tokens} tokens, ${steps} AdamW step(s)`);
    const losses: number[] = [];
    let gradL2: Record<string, number> = {};
    let gradNorm = 0;
    for (let s = 1; s <= steps; s++) {
      const t0 = performance.now();
      const r = await trainer.step(batch);
      losses.push(r.loss);
      if (s === 1) {
        gradL2 = Object.fromEntries(await trainer.gradNorms());
        gradNorm = r.gradNorm;
      }
      log(`tandem: step ${s}: loss ${r.loss.toFixed(6)}, grad norm ${r.gradNorm.toFixed(6)} (${(performance.now() - t0).toFixed(0)} ms)`);
    }
    losses.push(await trainer.loss(batch));
    if (v.save !== undefined) {
      const dir = v.save as string;
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(trainer.configJson, null, 2));
      await Deno.writeFile(`${dir}/model.safetensors`, await trainer.saveWeights());
      log(`tandem: saved the trained weights to ${dir}/ (config.json, model.safetensors)`);
    }
    return { loss: losses[0], grad_l2: gradL2, grad_norm: gradNorm, losses };
  } finally {
    trainer.release();
  }
}
