// The OPT forward pass and greedy decoding in the browser (page or dedicated worker), against the Hugging Face
// float64 references in /fixtures/<set>/ (../shared/fixtures): the model is loaded through the URL source, the
// logits of every reference prompt are compared at every position, and greedy generation is compared up to the
// first near-tie of the reference (margin < 1e-3; see the fixtures' README). Everything comes from the package's
// public entry, so this also proves src/index.ts works in a browser.
//   run.html?module=/test/e2e/pages/opt-forward.ts&set=opt-tiny[&context=worker]
import { generate, LocalGpu, OptModel, parseSafetensors, toFloat32 } from '../../../src/index.ts';

interface Reference {
  prompts: number[][];
  prompt_results: Array<{ greedy: number[]; greedy_margins: number[] }>;
}

export interface OptForwardResult {
  set: string;
  context: 'main' | 'worker';
  adapter: string;
  prompts: number;
  /** Max |logits - reference| over every position of every prompt. */
  maxLogitsDiff: number;
  perPromptMaxDiff: number[];
  /** Greedy steps compared (up to each prompt's first near-tie) and any disagreement found. */
  greedyStepsCompared: number;
  greedyMismatches: string[];
  ms: { load: number; logits: number; generate: number };
}

async function fetchOk(url: string): Promise<Response> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export async function run(params: Record<string, string>): Promise<OptForwardResult> {
  const set = params.set ?? 'opt-tiny';
  const base = new URL(`/fixtures/${set}/`, location.href).href;
  const ref = (await (await fetchOk(`${base}reference.json`)).json()) as Reference;
  const refTensors = parseSafetensors(new Uint8Array(await (await fetchOk(`${base}reference.safetensors`)).arrayBuffer()), `${set}/reference.safetensors`);

  let t0 = performance.now();
  const gpu = await LocalGpu.create();
  const model = await OptModel.load(gpu, base, { dtype: 'f32' });
  const load = performance.now() - t0;

  t0 = performance.now();
  const perPromptMaxDiff: number[] = [];
  for (let i = 0; i < ref.prompts.length; i++) {
    const want = refTensors.get(`p${i}.logits`);
    if (!want) throw new Error(`${set}/reference.safetensors has no p${i}.logits`);
    perPromptMaxDiff.push(maxAbsDiff(await model.logits(ref.prompts[i]), toFloat32(want)));
  }
  const logits = performance.now() - t0;

  t0 = performance.now();
  let greedyStepsCompared = 0;
  const greedyMismatches: string[] = [];
  for (let i = 0; i < ref.prompts.length; i++) {
    const { greedy, greedy_margins } = ref.prompt_results[i];
    const out = await generate(model, ref.prompts[i], { maxTokens: greedy.length, ignoreEos: true });
    const firstTie = greedy_margins.findIndex((m) => m < 1e-3);
    const n = firstTie < 0 ? greedy.length : firstTie;
    greedyStepsCompared += n;
    if (out.tokens.length !== greedy.length) greedyMismatches.push(`prompt ${i}: ${out.tokens.length} tokens, expected ${greedy.length}`);
    const got = out.tokens.slice(0, n), want = greedy.slice(0, n);
    if (got.join() !== want.join()) greedyMismatches.push(`prompt ${i} (first ${n} steps): got [${got}], expected [${want}]`);
  }
  const generateMs = performance.now() - t0;

  model.release();
  gpu.destroy();
  return {
    set,
    context: typeof window === 'undefined' ? 'worker' : 'main',
    adapter: gpu.caps.adapterDescription,
    prompts: ref.prompts.length,
    maxLogitsDiff: Math.max(...perPromptMaxDiff),
    perPromptMaxDiff,
    greedyStepsCompared,
    greedyMismatches,
    ms: { load: Math.round(load), logits: Math.round(logits), generate: Math.round(generateMs) },
  };
}
