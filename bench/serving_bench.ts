/**
 * Serving benchmark of the engine (vLLM's benchmark_serving, in-process), OPT-125m with synthetic weights:
 *
 *  (a) online: --requests (256) requests arriving as a Poisson process of --rate requests/s (seeded), random
 *      prompts of --input-len tokens (+-50%), --output-len generated tokens each (EOS ignored), greedy, all
 *      through llm.stream(). Reports TTFT (arrival to first token), time per output token (first to last token,
 *      per token after the first), end-to-end latency (mean, p50, p99, ms), request and output-token throughput
 *      over the run (first arrival to last finish), and the engine's own metrics (queue time, preemptions).
 *  (b) prefix caching: --prefix-requests (64) requests sharing a --prefix-len (448) token prefix, each with its
 *      own --suffix-len (16) token suffix and --prefix-output-len (32) tokens, all submitted at once, once with
 *      enablePrefixCaching and once without (a fresh engine each). Reports TTFT and total time, and the speedup.
 *
 * Usage: deno run -A --unstable-webgpu bench/serving_bench.ts [--model synthetic:opt-125m:1] [--rate 32]
 *          [--requests 256] [--input-len 128] [--output-len 128] [--prefix-requests 64] [--prefix-len 448]
 *          [--suffix-len 16] [--prefix-output-len 32] [--max-num-seqs 256] [--max-num-batched-tokens 2048]
 *          [--lookahead 15] [--dtype f32] [--gpu-memory-gib 16] [--skip poisson|prefix] [--out FILE]
 * Quick check on a tiny model (any machine): --model ../shared/fixtures/opt-tiny --requests 32 --rate 200
 *   --input-len 24 --output-len 16 --prefix-requests 8 --prefix-len 64 --prefix-output-len 8 --max-num-seqs 32
 */
import { LLM } from '../src/engine/llm.ts';
import { LocalGpu } from '../src/gpu/local.ts';
import type { ElementType } from '../src/kernels/shader.ts';

const arg = (n: string, d: string) => { const i = Deno.args.indexOf(`--${n}`); return i >= 0 ? Deno.args[i + 1] : d; };
const num = (n: string, d: number) => Number(arg(n, String(d)));
const model = arg('model', 'synthetic:opt-125m:1');
const dtype = arg('dtype', 'f32') as ElementType;
const skip = arg('skip', '');
const maxNumSeqs = num('max-num-seqs', 256);
const maxNumBatchedTokens = num('max-num-batched-tokens', 2048);
const lookahead = num('lookahead', 15);
const gpuMemoryBytes = num('gpu-memory-gib', 16) * 1024 ** 3;
const gpu = await LocalGpu.create();

/** Seeded uniform [0, 1) (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function stats(xs: number[]): { mean: number; p50: number; p99: number } | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
  const r = (x: number) => +x.toFixed(2);
  return { mean: r(s.reduce((a, b) => a + b, 0) / s.length), p50: r(q(0.5)), p99: r(q(0.99)) };
}

async function createLLM(enablePrefixCaching: boolean, maxModelLen: number): Promise<LLM> {
  return LLM.create({
    model, dtype, gpu, gpuMemoryBytes, gpuMemoryUtilization: 0.9, maxNumSeqs, maxNumBatchedTokens, maxModelLen,
    numLookaheadTokens: lookahead, enablePrefixCaching,
  });
}

interface Timing { arrival: number; first: number | null; end: number; tokens: number }

/** Stream one request from now; resolves with its timings. */
async function timed(llm: LLM, tokens: number[], maxTokens: number): Promise<Timing> {
  const arrival = performance.now();
  let first: number | null = null, n = 0;
  for await (const d of llm.stream({ tokens }, { maxTokens, ignoreEos: true })) {
    if (first === null && d.tokenIds.length > 0) first = performance.now();
    n += d.tokenIds.length;
  }
  return { arrival, first, end: performance.now(), tokens: n };
}

function summarize(ts: Timing[]) {
  const ttft = ts.filter((t) => t.first !== null).map((t) => t.first! - t.arrival);
  const tpot = ts.filter((t) => t.first !== null && t.tokens > 1).map((t) => (t.end - t.first!) / (t.tokens - 1));
  const e2e = ts.map((t) => t.end - t.arrival);
  const span = Math.max(...ts.map((t) => t.end)) - Math.min(...ts.map((t) => t.arrival));
  const tokens = ts.reduce((s, t) => s + t.tokens, 0);
  return {
    requests: ts.length, output_tokens: tokens, duration_s: +(span / 1e3).toFixed(3),
    request_throughput_per_s: +((ts.length / span) * 1e3).toFixed(2), output_tok_per_s: +((tokens / span) * 1e3).toFixed(1),
    ttft_ms: stats(ttft), tpot_ms: stats(tpot), e2e_ms: stats(e2e),
  };
}

const res: Record<string, unknown> = { model, dtype, lookahead, max_num_seqs: maxNumSeqs, max_num_batched_tokens: maxNumBatchedTokens };

if (skip !== 'poisson') {
  const requests = num('requests', 256), rate = num('rate', 32), inputLen = num('input-len', 128), outputLen = num('output-len', 128);
  const llm = await createLLM(true, Math.ceil(inputLen * 1.5) + outputLen + 1);
  const vocab = llm.engine.config.vocabSize;
  const rand = rng(1);
  const prompts = Array.from({ length: requests }, () => {
    const len = Math.max(1, Math.round(inputLen * (0.5 + rand())));
    return [2, ...Array.from({ length: len - 1 }, () => 4 + Math.floor(rand() * (vocab - 4)))];
  });
  // Exponential inter-arrival gaps: a Poisson process of `rate` requests per second.
  const offsets: number[] = [];
  for (let t = 0, i = 0; i < requests; i++) { offsets.push(t); t += (-Math.log(1 - rand()) / rate) * 1e3; }
  await llm.generate(prompts.slice(0, 4).map((tokens) => ({ tokens })), { maxTokens: 8, ignoreEos: true }); // warm-up: pipelines
  const t0 = performance.now();
  const runs = offsets.map((off, i) => new Promise<Timing>((resolve, reject) => {
    setTimeout(() => timed(llm, prompts[i], outputLen).then(resolve, reject), Math.max(0, t0 + off - performance.now()));
  }));
  const ts = await Promise.all(runs);
  const m = llm.metrics();
  res.poisson = {
    rate_per_s: rate, input_len: inputLen, output_len: outputLen, ...summarize(ts),
    engine: { queue_ms: m.queueTimeMs, preemptions: m.preemptions, prefix_cache_hit_rate: +m.prefixCacheHitRate.toFixed(3) },
  };
  console.error('poisson', JSON.stringify(res.poisson));
  await llm.engine.sleep(2); // free its weights and KV cache before the next engine
}

if (skip !== 'prefix') {
  const n = num('prefix-requests', 64), prefixLen = num('prefix-len', 448), suffixLen = num('suffix-len', 16), outLen = num('prefix-output-len', 32);
  const out: Record<string, unknown> = { requests: n, prefix_len: prefixLen, suffix_len: suffixLen, output_len: outLen };
  for (const caching of [true, false]) {
    const llm = await createLLM(caching, prefixLen + suffixLen + outLen + 1);
    const vocab = llm.engine.config.vocabSize;
    const rand = rng(2);
    const rnd = () => 4 + Math.floor(rand() * (vocab - 4));
    const prefix = [2, ...Array.from({ length: prefixLen - 1 }, rnd)];
    const prompts = Array.from({ length: n }, () => [...prefix, ...Array.from({ length: suffixLen }, rnd)]);
    // Warm up the pipelines on an unrelated prompt (nothing of the shared prefix gets cached).
    await llm.generate([{ tokens: [2, ...Array.from({ length: prefixLen + suffixLen - 1 }, () => 3)] }], { maxTokens: 8, ignoreEos: true });
    const t0 = performance.now();
    const ts = await Promise.all(prompts.map((p) => timed(llm, p, outLen)));
    const total = performance.now() - t0;
    const s = summarize(ts);
    out[caching ? 'with_prefix_caching' : 'without_prefix_caching'] = {
      total_ms: +total.toFixed(1), ttft_ms: s.ttft_ms, tpot_ms: s.tpot_ms, output_tok_per_s: s.output_tok_per_s,
      prefix_cache_hit_rate: +llm.metrics().prefixCacheHitRate.toFixed(3),
    };
    console.error(caching ? 'prefix caching on' : 'prefix caching off', JSON.stringify(out[caching ? 'with_prefix_caching' : 'without_prefix_caching']));
    await llm.engine.sleep(2);
  }
  const on = out.with_prefix_caching as { total_ms: number; ttft_ms: { mean: number } };
  const off = out.without_prefix_caching as { total_ms: number; ttft_ms: { mean: number } };
  out.speedup_total = +(off.total_ms / on.total_ms).toFixed(2);
  out.speedup_ttft_mean = +(off.ttft_ms.mean / on.ttft_ms.mean).toFixed(2);
  res.prefix_caching = out;
}

console.log(JSON.stringify(res, null, 1));
const outFile = arg('out', '');
if (outFile) await Deno.writeTextFile(outFile, JSON.stringify(res, null, 1));
Deno.exit(0);
