/**
 * Tandem's prefill against onnxruntime-web on the same OPT-125m (synthetic weights), in one Deno process on
 * one GPU. The ONNX model is Tandem's own export (src/onnx/export.ts, f32, opset 17), run on each
 * onnxruntime-web execution provider that works here:
 *   webgpu  onnxruntime-web/webgpu, the native WebGPU EP      (ort-wasm-simd-threaded.asyncify.wasm)
 *   jsep    onnxruntime-web/all, the JS WebGPU EP ("JSEP")     (ort-wasm-simd-threaded.jsep.wasm)
 *   wasm    onnxruntime-web/wasm, the CPU (wasm SIMD) EP       (ort-wasm-simd-threaded.wasm)
 * A provider that fails records its exact error instead of figures.
 *
 * Measured per shape B×L (B sequences of L tokens, one prefill step):
 *   last_token_logits  logits only for each sequence's last token (what serving needs; ONNX: the
 *                      lastTokenOnly export, output [B, vocab])
 *   all_logits         logits for all B·L positions (ONNX: the full export, output [B, L, vocab])
 * Timing: a warm-up run, then the median of 3 repetitions of `iters` back-to-back runs followed by one wait for
 * the GPU (Tandem: gpu.sync(); ONNX on WebGPU: outputs kept on the GPU, then the EP's device's
 * queue.onSubmittedWorkDone()); the wasm EP's runs are synchronous CPU work with CPU outputs (one run per
 * repetition). `run_resolved_ms` is the same per-run time measured before the final wait: Tandem's forward only
 * records and submits (~2-3 ms), while onnxruntime-web's run() resolves only when its GPU work is done, so each
 * ONNX run also pays one GPU→CPU wait (in Deno ~10 ms of polling latency, see DESIGN.md).
 *
 * Usage: deno run -A --unstable-webgpu bench/onnx_bench.ts [--providers webgpu,jsep,wasm] [--shapes 1x512,8x512]
 *          [--wasm-shapes 1x128] [--modes last,all] [--iters 5] [--threads 1] [--ort-dist DIR] [--out FILE] [--no-tandem]
 * Prints one JSON document on stdout; progress on stderr. `--threads` > 1 fails in Deno (see src/onnx/ort.ts).
 *
 * On the GPU machine (no network, no node_modules): bundle it and put the .wasm files it needs beside it,
 * gzip-compressed to fit the 64 MiB travelling tree (6.6 + 6.6 + 3.7 MB; plain .wasm works too):
 *   node_modules/.bin/deno bundle --quiet -o .gpu/onnx_bench.js bench/onnx_bench.ts
 *   mkdir -p .gpu/ort && for f in ort-wasm-simd-threaded.wasm ort-wasm-simd-threaded.asyncify.wasm \
 *       ort-wasm-simd-threaded.jsep.wasm; do gzip -9 -c node_modules/onnxruntime-web/dist/$f > .gpu/ort/$f.gz; done
 *   # there:
 *   bash .gpu/enter.sh deno run -A --unstable-webgpu .gpu/onnx_bench.js --ort-dist .gpu/ort \
 *       --shapes 1x512,8x512 --wasm-shapes 1x512 --out $OUT/onnx_bench.json
 * (only the .wasm of the providers named in --providers is needed; the JS of every build is in the bundle.)
 */
import { LocalGpu } from '../src/gpu/local.ts';
import { parseOptConfig, type OptConfig } from '../src/model/config.ts';
import { uploadWeights } from '../src/model/gpu_weights.ts';
import { preparePrefillBatch } from './prefill_batch.ts';
import { loadCheckpoint } from '../src/model/weights/sources.ts';
import { buildOptOnnxModel, encodeOnnxModel } from '../src/onnx/export.ts';
import { loadOrt, type Ort, type OrtFlavor, sessionOptions } from '../src/onnx/ort.ts';

const args = Deno.args;
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const parseShapes = (s: string) => s.split(',').filter(Boolean).map((x) => {
  const [b, l] = x.split('x').map(Number);
  if (!(b > 0 && l > 0)) throw new Error(`bad shape "${x}" (want BxL, e.g. 8x512)`);
  return { B: b, L: l, key: `${b}x${l}` };
});
const providers = opt('providers', 'webgpu,jsep,wasm').split(',').filter(Boolean) as OrtFlavor[];
const shapes = parseShapes(opt('shapes', '1x512,8x512'));
const wasmShapes = parseShapes(opt('wasm-shapes', '1x128'));
const modes = opt('modes', 'last,all').split(',').filter(Boolean) as Array<'last' | 'all'>;
const iters = Number(opt('iters', '5'));
const threads = Number(opt('threads', '1'));
const ortDist = opt('ort-dist', '') || undefined;
const out = opt('out', '');
const skipTandem = args.includes('--no-tandem');
const log = (...a: unknown[]) => console.error(...a);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const MODE_KEY = { last: 'last_token_logits', all: 'all_logits' } as const;
const figure = (t: { ms: number; resolveMs: number }, tokens: number) =>
  ({ ms: +t.ms.toFixed(2), tok_per_s: +((tokens / t.ms) * 1e3).toFixed(0), run_resolved_ms: +t.resolveMs.toFixed(2) });

/**
 * Median over 3 repetitions of (iters runs + one wait) / iters, after one warm-up run + wait. `resolveMs`: the
 * same per run, but up to when the last run() resolved (before the wait): close to `ms` when run() itself waits
 * for the GPU, far below it when run() only submits.
 */
async function timeIt(label: string, run: () => unknown, wait: () => Promise<unknown>, n = iters): Promise<{ ms: number; resolveMs: number }> {
  await run();
  await wait();
  const times: number[] = [], resolved: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await run();
    resolved.push((performance.now() - t0) / n);
    await wait();
    times.push((performance.now() - t0) / n);
  }
  const m = median(times), rm = median(resolved);
  log(`${label}: ${m.toFixed(2)} ms (run() resolved after ${rm.toFixed(2)} ms)`);
  return { ms: m, resolveMs: rm };
}

const res: Record<string, unknown> = { date: new Date().toISOString(), deno: Deno.version.deno, iters, shapes: shapes.map((s) => s.key) };
const ckpt = await loadCheckpoint('synthetic:opt-125m:1');
/** Tandem's last-token logits [B, vocab] per shape, the reference each ONNX result is checked against. */
const tandemLast = new Map<string, Float32Array>();
const cfg: OptConfig = parseOptConfig(ckpt.configJson);
const ids = (B: number, L: number) => Array.from({ length: B }, (_, s) => Array.from({ length: L }, (_, i) => 4 + (((s * L + i) * 104729) % 50000)));

// ------------------------------------------------------------------------------------------------ Tandem
if (!skipTandem) {
  const gpu = await LocalGpu.create();
  res.adapter = gpu.caps.adapterDescription;
  log('Tandem adapter', gpu.caps.adapterDescription);
  const weights = await uploadWeights(gpu, cfg, ckpt.tensors, 'f32');
  const tandem: Record<string, unknown> = {};
  for (const { B, L, key } of shapes) {
    const T = B * L;
    const { runner, cache, inputs, lastRows, allRows, logits } = await preparePrefillBatch(gpu, cfg, weights, {
      B, L, ids: Uint32Array.from(ids(B, L).flat()),
    });
    const entry: Record<string, unknown> = {};
    if (modes.includes('last')) {
      const ms = await timeIt(`Tandem ${key} last-token logits`, () => runner.forward(inputs, cache, lastRows, B, logits), () => gpu.sync());
      entry.last_token_logits = figure(ms, T);
      // Keep each sequence's last-token logits: every ONNX run below is checked against them.
      tandemLast.set(key, new Float32Array(await gpu.read(logits, 0, B * cfg.vocabSize * 4)));
    }
    if (modes.includes('all')) {
      const ms = await timeIt(`Tandem ${key} all logits`, () => {
        runner.forward(inputs, cache, lastRows, 0, logits);
        for (let s = 0; s < B; s++) runner.logitsFor(allRows[s], L, logits);
      }, () => gpu.sync());
      entry.all_logits = figure(ms, T);
    }
    tandem[key] = entry;
    for (const b of [...runner.buffers(), ...cache.layers.flatMap((l) => [l.key, l.value]), inputs.tokenIds, inputs.positions,
      inputs.tokenSeq, inputs.slotMapping, inputs.blockTables, inputs.queryBlocks, lastRows, logits, ...allRows]) gpu.destroyBuffer(b);
  }
  res.tandem_f32 = tandem;
  gpu.destroy();
}

// ------------------------------------------------------------------------------------------------ onnxruntime-web
const modelBytes: Partial<Record<'last' | 'all', Uint8Array>> = {};
for (const mode of modes) {
  const t0 = performance.now();
  modelBytes[mode] = encodeOnnxModel(buildOptOnnxModel(cfg, ckpt.tensors, { lastTokenOnly: mode === 'last' }));
  log(`ONNX export (${mode}): ${(modelBytes[mode]!.byteLength / 1e6).toFixed(1)} MB in ${(performance.now() - t0).toFixed(0)} ms`);
}

const ortRes: Record<string, unknown> = {};
for (const flavor of providers) {
  const ep: 'webgpu' | 'wasm' = flavor === 'wasm' ? 'wasm' : 'webgpu';
  const entry: Record<string, unknown> = { execution_provider: ep, build: { webgpu: 'onnxruntime-web/webgpu', jsep: 'onnxruntime-web/all', wasm: 'onnxruntime-web/wasm' }[flavor] };
  ortRes[flavor] = entry;
  let ort: Ort;
  try {
    ort = await loadOrt(flavor, { distDir: ortDist, numThreads: threads });
    res.ort_version = ort.env.versions.web;
  } catch (e) {
    entry.error = `loading onnxruntime-web (${flavor}): ${(e as Error)?.stack ?? e}`;
    log(entry.error);
    continue;
  }
  // WebGPU: the EP makes its own device from the default adapter; its queue is what we wait on (set below).
  let sync = async () => {};
  for (const { B, L, key } of ep === 'wasm' ? wasmShapes : shapes) {
    const perShape: Record<string, unknown> = {};
    entry[key] = perShape;
    for (const mode of modes) {
      let session: Awaited<ReturnType<Ort['InferenceSession']['create']>> | undefined;
      try {
        const t0 = performance.now();
        session = await ort.InferenceSession.create(modelBytes[mode]!, sessionOptions(ep, true));
        const sessionMs = performance.now() - t0;
        if (ep === 'webgpu' && !entry.adapter) {
          const device = await ort.env.webgpu.device as GPUDevice;
          const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
          entry.adapter = info ? `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.trim() : 'unknown';
          sync = () => device.queue.onSubmittedWorkDone();
        }
        const T = B * L;
        const data = new BigInt64Array(ids(B, L).flat().map(BigInt));
        const feeds = { input_ids: new ort.Tensor('int64', data, [B, L]) };
        const s = session;
        const run = async () => {
          const outMap = await s.run(feeds);
          for (const v of Object.values(outMap)) v.dispose();
        };
        const n = ep === 'wasm' ? 1 : iters;
        const ms = await timeIt(`onnxruntime-web ${flavor} ${key} ${MODE_KEY[mode]}`, run, sync, n);
        // One run with the output read back, as a check that it computed something finite.
        const check = await s.run(feeds);
        const outTensor = Object.values(check)[0];
        const values = (await outTensor.getData()) as Float32Array;
        outTensor.dispose();
        // Each sequence's last row against Tandem's (when Tandem ran this shape): a wrong result is no figure.
        const V = cfg.vocabSize, ref = tandemLast.get(key);
        let diff: number | null = null;
        if (ref) {
          diff = 0;
          for (let b = 0; b < B; b++) {
            const row = mode === 'last' ? b : b * L + L - 1;
            for (let v = 0; v < V; v++) {
              const d = Math.abs(values[row * V + v] - ref[b * V + v]);
              if (!(d <= diff)) diff = Number.isNaN(d) ? Infinity : d;
            }
          }
          log(`  last-token logits vs Tandem: max |diff| ${diff.toExponential(2)}`);
        }
        perShape[MODE_KEY[mode]] = { ...figure(ms, T), session_create_ms: +sessionMs.toFixed(0), max_abs_diff_vs_tandem: diff };
      } catch (e) {
        const msg = `${(e as Error)?.message ?? e}`;
        perShape[MODE_KEY[mode]] = { error: msg };
        log(`onnxruntime-web ${flavor} ${key} ${mode}: ERROR ${msg}`);
      } finally {
        await session?.release().catch(() => {});
      }
    }
  }
}
res.onnxruntime_web = ortRes;

// Tandem / onnxruntime-web throughput ratios (> 1: Tandem is faster), where both ran.
const ratios: Record<string, number> = {};
const tandemFig = (res.tandem_f32 ?? {}) as Record<string, Record<string, { tok_per_s: number }>>;
for (const [flavor, entry] of Object.entries(ortRes) as Array<[string, Record<string, Record<string, { tok_per_s?: number }>>]>) {
  for (const [key, perShape] of Object.entries(entry)) {
    if (typeof perShape !== 'object' || perShape === null) continue;
    for (const [mode, fig] of Object.entries(perShape)) {
      const t = tandemFig[key]?.[mode]?.tok_per_s;
      if (t && fig?.tok_per_s) ratios[`${flavor} ${key} ${mode}`] = +(t / fig.tok_per_s).toFixed(2);
    }
  }
}
res.tandem_over_ort_throughput = ratios;
console.log(JSON.stringify(res, null, 1));
if (out) await Deno.writeTextFile(out, JSON.stringify(res, null, 1));
Deno.exit(0);
