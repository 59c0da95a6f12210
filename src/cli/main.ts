/**
 * The Tandem CLI (Deno): `tandem logits | generate | tokenize | info | verify | serve | train-step | colocate`. With --json, exactly one JSON document
 * goes to stdout (also on error: {"error": {code, message}}); logs and progress go to stderr.
 */
import { parseArgs } from 'node:util';
import { InvalidInputError, TandemError } from '../errors.ts';
import { LocalGpu } from '../gpu/local.ts';
import { generate } from '../model/generate.ts';
import { OptModel } from '../model/opt.ts';
import { OptTokenizer } from '../model/tokenizer/index.ts';
import { logitsSummary } from './logits_summary.ts';
import { LLM, type GenerateSamplingParams } from '../engine/llm.ts';
import { parsePromptsFile } from './generate_batch.ts';
import { cmdServe, SERVE_OPTIONS, SERVE_USAGE } from './serve.ts';
import { cmdVerify, exitCodeOf, formatVerify, VERIFY_OPTIONS, VERIFY_USAGE } from './verify.ts';
import { cmdTrainStep, TRAIN_STEP_OPTIONS, TRAIN_STEP_USAGE } from './train_step.ts';
import { cmdColocate, COLOCATE_OPTIONS, COLOCATE_USAGE, formatColocate } from './colocate.ts';
import type { ColocateResult } from '../actors/colocate.ts';

const USAGE = `usage: tandem <command> [options]
  logits   --model SPEC (--tokens 2,45,99 | --prompt TEXT) [--dtype f32|f16] [--json]
  generate --model SPEC --prompts-file F [sampling flags as defaults] [--gpu-memory-utilization U --gpu-memory-gb G]
           every request of F (a JSON array of {tokens} or {prompt}, with optional per-request max_tokens,
           temperature, top_k, top_p, seed, ignore_eos, min_tokens, stop, stop_token_ids) through the serving
           engine; prints [{tokens, text, finishReason}] in input order
  generate --model SPEC (--tokens ... | --prompt TEXT) --max-tokens N
           [--greedy | --temperature T --top-k K --top-p P --min-p M --seed S] [--ignore-eos] [--dtype f32|f16] [--json]
  tokenize --prompt TEXT [--json]
  info     [--json]          WebGPU adapter, features and limits
${SERVE_USAGE}
${VERIFY_USAGE}
${TRAIN_STEP_USAGE}
${COLOCATE_USAGE}
SPEC: a directory with config.json + weights, an http(s) base URL (e.g.
  https://huggingface.co/facebook/opt-125m/resolve/main/), or synthetic:CONFIG:SEED
  (CONFIG a config.json path or opt-125m).`;

const OPTIONS = {
  model: { type: 'string' },
  tokens: { type: 'string' },
  prompt: { type: 'string' },
  dtype: { type: 'string', default: 'f32' },
  'max-tokens': { type: 'string' },
  greedy: { type: 'boolean', default: false },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'min-p': { type: 'string' },
  seed: { type: 'string' },
  'ignore-eos': { type: 'boolean', default: false },
  'block-size': { type: 'string' },
  'prompts-file': { type: 'string' },
  'gpu-memory-utilization': { type: 'string' },
  'gpu-memory-gb': { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  ...VERIFY_OPTIONS,
  ...SERVE_OPTIONS,
  ...TRAIN_STEP_OPTIONS,
  ...COLOCATE_OPTIONS,
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function log(msg: string): void {
  console.error(msg);
}

function num(v: string | undefined, name: string, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new InvalidInputError(`--${name} must be ${integer ? 'an integer' : 'a number'}, got "${v}"`);
  return n;
}

function parseTokenList(s: string): number[] {
  return s.split(',').map((x) => x.trim()).filter((x) => x.length).map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 0) throw new InvalidInputError(`--tokens: "${x}" is not a token id`);
    return n;
  });
}

async function promptTokens(v: Values): Promise<number[]> {
  if (v.tokens !== undefined && v.prompt !== undefined) throw new InvalidInputError('give --tokens or --prompt, not both');
  if (v.tokens !== undefined) return parseTokenList(v.tokens);
  if (v.prompt !== undefined) return (await OptTokenizer.load()).encode(v.prompt);
  throw new InvalidInputError('give the prompt as --tokens 2,45,99 or --prompt TEXT');
}

async function loadModel(v: Values): Promise<OptModel> {
  if (!v.model) throw new InvalidInputError('--model SPEC is required (a directory, an http(s) URL, or synthetic:CONFIG:SEED)');
  const dtype = v.dtype;
  if (dtype !== 'f32' && dtype !== 'f16') throw new InvalidInputError(`--dtype must be f32 or f16, got "${dtype}"`);
  const gpu = await LocalGpu.create();
  log(`tandem: WebGPU adapter: ${gpu.caps.adapterDescription}`);
  let lastReport = 0;
  const t0 = performance.now();
  const model = await OptModel.load(gpu, v.model, {
    dtype,
    blockSize: num(v['block-size'], 'block-size', true),
    onProgress: (p) => {
      const now = performance.now();
      if (now - lastReport < 1000 && p.loadedBytes !== p.totalBytes) return;
      lastReport = now;
      const pct = p.totalBytes ? ` (${((100 * p.loadedBytes) / p.totalBytes).toFixed(0)}%)` : '';
      log(`tandem: loading ${p.file}: ${(p.loadedBytes / 1e6).toFixed(1)} MB${pct}`);
    },
  });
  log(`tandem: model ready in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${model.config.numLayers} layers, hidden ${model.config.hiddenSize}, ` +
    `${model.dtype} weights ${(model.weights.totalBytes / 1e6).toFixed(1)} MB`);
  return model;
}

async function cmdLogits(v: Values): Promise<unknown> {
  const tokens = await promptTokens(v);
  const model = await loadModel(v);
  model.checkTokens(tokens);
  const logits = await model.logits(tokens);
  return { tokens, ...logitsSummary(logits, tokens.length, model.config.vocabSize) };
}

/** `generate --prompts-file F`: every request through the serving engine, results in input order. */
async function cmdGenerateBatch(v: Values): Promise<unknown> {
  if (v.tokens !== undefined || v.prompt !== undefined) throw new InvalidInputError('give --prompts-file or --tokens/--prompt, not both');
  if (!v.model) throw new InvalidInputError('--model SPEC is required');
  if (v.dtype !== 'f32' && v.dtype !== 'f16') throw new InvalidInputError(`--dtype must be f32 or f16, got "${v.dtype}"`);
  let text: string;
  try { text = await Deno.readTextFile(v['prompts-file']!); } catch (e) {
    throw new InvalidInputError(`cannot read --prompts-file ${v['prompts-file']}: ${(e as Error).message}`);
  }
  const defaults: GenerateSamplingParams = {
    maxTokens: num(v['max-tokens'], 'max-tokens', true) ?? 16,
    temperature: v.greedy ? 0 : num(v.temperature, 'temperature', false),
    topK: num(v['top-k'], 'top-k', true),
    topP: num(v['top-p'], 'top-p', false),
    minP: num(v['min-p'], 'min-p', false),
    seed: num(v.seed, 'seed', true),
    ignoreEos: v['ignore-eos'] || undefined,
  };
  for (const k of Object.keys(defaults) as Array<keyof GenerateSamplingParams>) if (defaults[k] === undefined) delete defaults[k];
  const requests = parsePromptsFile(text, defaults);
  const gb = num(v['gpu-memory-gb'], 'gpu-memory-gb', false);
  const llm = await LLM.create({
    model: v.model, dtype: v.dtype, blockSize: num(v['block-size'], 'block-size', true),
    gpuMemoryUtilization: num(v['gpu-memory-utilization'], 'gpu-memory-utilization', false),
    gpuMemoryBytes: gb === undefined ? undefined : gb * 1024 ** 3,
  });
  log(`tandem: engine ready: ${llm.memory.numBlocks} KV blocks (${(llm.memory.kvCache / 1e6).toFixed(1)} MB), ${requests.length} requests`);
  const t0 = performance.now();
  const outs = await llm.generate(requests.map((r) => r.prompt), requests.map((r) => r.params));
  const seconds = (performance.now() - t0) / 1000;
  const total = outs.reduce((s, o) => s + o.tokenIds.length, 0);
  log(`tandem: ${total} tokens for ${outs.length} requests in ${seconds.toFixed(2)} s (${(total / seconds).toFixed(1)} tokens/s)`);
  return outs.map((o) => ({ tokens: o.tokenIds, text: o.text, finishReason: o.finishReason }));
}

async function cmdGenerate(v: Values): Promise<unknown> {
  if (v['prompts-file'] !== undefined) return cmdGenerateBatch(v);
  const tokens = await promptTokens(v);
  const maxTokens = num(v['max-tokens'], 'max-tokens', true);
  if (maxTokens === undefined) throw new InvalidInputError('--max-tokens N is required');
  const sampled = v.temperature !== undefined || v['top-k'] !== undefined || v['top-p'] !== undefined || v['min-p'] !== undefined || v.seed !== undefined;
  if (v.greedy && sampled) throw new InvalidInputError('--greedy cannot be combined with --temperature/--top-k/--top-p/--seed');
  const model = await loadModel(v);
  const t0 = performance.now();
  const result = await generate(model, tokens, {
    maxTokens,
    temperature: v.greedy ? 0 : num(v.temperature, 'temperature', false) ?? (sampled ? 1 : 0),
    topK: num(v['top-k'], 'top-k', true),
    topP: num(v['top-p'], 'top-p', false),
    minP: num(v['min-p'], 'min-p', false),
    seed: num(v.seed, 'seed', true),
    ignoreEos: v['ignore-eos'],
  });
  const seconds = (performance.now() - t0) / 1000;
  log(`tandem: ${result.tokens.length} tokens in ${seconds.toFixed(2)} s (${(result.tokens.length / seconds).toFixed(1)} tokens/s, prefill included)`);
  const tokenizer = await OptTokenizer.load();
  return { tokens: result.tokens, text: tokenizer.decode(result.tokens, { skipSpecialTokens: true }), finishReason: result.finishReason };
}

async function cmdTokenize(v: Values): Promise<unknown> {
  if (v.prompt === undefined) throw new InvalidInputError('tokenize needs --prompt TEXT');
  return { ids: (await OptTokenizer.load()).encode(v.prompt) };
}

async function cmdInfo(): Promise<unknown> {
  const gpu = await LocalGpu.create();
  const info = { ...gpu.caps };
  gpu.destroy();
  return info;
}

function printHuman(cmd: string, result: Record<string, unknown>): void {
  if (cmd === 'generate' && Array.isArray(result)) console.log(JSON.stringify(result, null, 1));
  else if (cmd === 'generate') console.log(result.text);
  else if (cmd === 'tokenize') console.log((result.ids as number[]).join(','));
  else if (cmd === 'verify') console.log(formatVerify(result));
  else if (cmd === 'serve') return;
  else if (cmd === 'colocate') console.log(formatColocate(result as unknown as ColocateResult));
  else console.log(JSON.stringify(result, null, 2));
}

export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  const cmd = positionals[0];
  if (v.help || !cmd) {
    console.log(USAGE);
    return cmd || v.help ? 0 : 2;
  }
  const commands: Record<string, (v: Values) => Promise<unknown>> = {
    logits: cmdLogits, generate: cmdGenerate, tokenize: cmdTokenize, info: cmdInfo, verify: cmdVerify, serve: (v) => cmdServe(v),
    'train-step': (v) => cmdTrainStep(v),
    colocate: (v) => cmdColocate(v),
  };
  const run = commands[cmd];
  if (!run) {
    console.error(`unknown command "${cmd}"\n${USAGE}`);
    return 2;
  }
  try {
    const result = (await run(v)) as Record<string, unknown>;
    if (v.json) console.log(JSON.stringify(result));
    else printHuman(cmd, result);
    if (cmd === 'colocate') return (result as unknown as ColocateResult).weightsChanged ? 0 : 1;
    return exitCodeOf(result);
  } catch (e) {
    const code = e instanceof TandemError ? e.code : 'internal';
    const message = e instanceof Error ? e.message : String(e);
    if (v.json) console.log(JSON.stringify({ error: { code, name: (e as Error)?.name, message } }));
    console.error(`tandem: error [${code}]: ${message}`);
    if (!(e instanceof TandemError)) console.error((e as Error)?.stack);
    return 1;
  }
}

if (import.meta.main) {
  const code = await main(Deno.args);
  // The GPU device can keep the event loop alive; exit explicitly.
  Deno.exit(code);
}
