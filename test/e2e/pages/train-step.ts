// One AdamW training step of a tiny OPT in the browser (page or dedicated worker) against the PyTorch fixtures in
// /fixtures/<set>/: the model is loaded through the URL source, one Trainer.step on the fixture batch, then the
// loss and the parameters after the step are compared with reference.json and adamw_step1.safetensors.
//   run.html?module=/test/e2e/pages/train-step.ts&set=opt-tiny[&context=worker]
import { LocalGpu } from '../../../src/gpu/local.ts';
import { toFloat32 } from '../../../src/model/weights/dtype.ts';
import { parseSafetensors } from '../../../src/model/weights/safetensors.ts';
import { Trainer } from '../../../src/train/trainer.ts';

interface TrainFixture {
  batch: number[][];
  loss: number;
  adamw: { hyperparameters: { lr: number; betas: [number, number]; eps: number; weight_decay: number } };
}

export interface TrainStepResult {
  set: string;
  adapter: string;
  loss: number;
  referenceLoss: number;
  lossRelErr: number;
  gradNorm: number;
  /** Max |param - adamw_step1| over every tensor, and the tensor where it is reached. */
  maxParamDiff: number;
  worstTensor: string;
  tensors: number;
  ms: { create: number; step: number };
}

async function fetchOk(url: string): Promise<Response> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response;
}

export async function run(params: Record<string, string>): Promise<TrainStepResult> {
  const set = params.set ?? 'opt-tiny';
  const base = new URL(`/fixtures/${set}/`, location.href).href;
  const f = (await (await fetchOk(`${base}reference.json`)).json()).train as TrainFixture;
  const want = parseSafetensors(new Uint8Array(await (await fetchOk(`${base}adamw_step1.safetensors`)).arrayBuffer()), 'adamw_step1.safetensors');
  const hp = f.adamw.hyperparameters;
  let t0 = performance.now();
  const gpu = await LocalGpu.create();
  const trainer = await Trainer.create({
    model: base, gpu, maxBatchTokens: f.batch.length * f.batch[0].length,
    optimizer: { type: 'adamw', lr: hp.lr, betas: hp.betas, eps: hp.eps, weightDecay: hp.weight_decay },
  });
  const create = performance.now() - t0;
  t0 = performance.now();
  const r = await trainer.step(f.batch);
  const step = performance.now() - t0;
  const got = parseSafetensors(await trainer.saveWeights(), 'trained');
  let maxParamDiff = 0, worstTensor = '';
  for (const [name, w] of want) {
    const a = toFloat32(got.get(name)!), b = toFloat32(w);
    for (let i = 0; i < b.length; i++) {
      const d = Math.abs(a[i] - b[i]);
      if (!(d <= maxParamDiff)) [maxParamDiff, worstTensor] = [Number.isNaN(d) ? Infinity : d, name];
    }
  }
  trainer.release();
  gpu.destroy();
  return {
    set, adapter: gpu.caps.adapterDescription, loss: r.loss, referenceLoss: f.loss, lossRelErr: Math.abs(r.loss - f.loss) / f.loss,
    gradNorm: r.gradNorm, maxParamDiff, worstTensor, tensors: want.size, ms: { create: Math.round(create), step: Math.round(step) },
  };
}
