// Bad input fails fast with a typed error that names the problem: token ids, prompt lengths, sampling
// parameters, missing WebGPU or features, broken checkpoints, and URL sources (404, truncated body), plus a
// URL model served with a hub-like layout that loads and matches the HF reference.
import {
  CheckpointFormatError,
  InvalidInputError,
  ModelSourceError,
  TandemError,
  WebGPUUnavailableError,
  WeightMismatchError,
} from '../../src/errors.ts';
import { acquireDevice } from '../../src/gpu/device.ts';
import { LocalGpu } from '../../src/gpu/local.ts';
import { generate, type GenerateParams } from '../../src/model/generate.ts';
import { OptModel } from '../../src/model/opt.ts';
import type { LoadProgress } from '../../src/model/weights/types.ts';
import { assert, assertEquals, assertRejects, FIXTURES, maxAbsDiff, readReference, testGpu } from './helpers.ts';

const TINY = `${FIXTURES}opt-tiny`;

/** Load opt-tiny on the shared device, run `fn`, release the model's buffers. */
async function withTiny(fn: (model: OptModel, gpu: LocalGpu) => Promise<void>): Promise<void> {
  const gpu = await testGpu();
  const model = await OptModel.load(gpu, TINY, { dtype: 'f32' });
  try {
    await fn(model, gpu);
  } finally {
    model.release();
  }
}

/** Expect `fn` to reject with `cls`, every `includes` in the message, and no GPU work recorded meanwhile. */
async function rejectsFast(
  gpu: LocalGpu, fn: () => Promise<unknown>, cls: new (...a: never[]) => Error, ...includes: string[]
): Promise<Error> {
  const before = gpu.stats().dispatches;
  const e = await assertRejects(fn, cls);
  for (const s of includes) assert(e.message.includes(s), `"${e.message}" should mention "${s}"`);
  assertEquals(gpu.stats().dispatches, before, `no GPU work before the error (${e.message})`);
  assert(e instanceof TandemError);
  return e;
}

async function tempModelDir(files: Record<string, Uint8Array>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: 'tandem-errors-' });
  for (const [name, bytes] of Object.entries(files)) await Deno.writeFile(`${dir}/${name}`, bytes);
  return dir;
}

// ------------------------------------------------------------------------------------------- user input

Deno.test('token ids outside the vocabulary: InvalidInputError naming the index and value (logits, generate)', async () => {
  await withTiny(async (model, gpu) => {
    const V = model.config.vocabSize;
    const cases: Array<[number[], number, number]> = [
      [[2, 45, V], 2, V],
      [[2, V + 1000, 7], 1, V + 1000],
      [[2, 45, 99, -1], 3, -1],
      [[-5], 0, -5],
    ];
    for (const [tokens, index, value] of cases) {
      const e = await rejectsFast(gpu, () => model.logits(tokens), InvalidInputError, `token ${index} is ${value}`, String(V));
      assertEquals((e as TandemError).code, 'invalid_input');
      await rejectsFast(gpu, () => generate(model, tokens, { maxTokens: 4 }), InvalidInputError, `token ${index} is ${value}`);
    }
    // Not integers either.
    await rejectsFast(gpu, () => model.logits([2, 1.5]), InvalidInputError, 'token 1 is 1.5');
    await rejectsFast(gpu, () => model.logits([2, NaN]), InvalidInputError, 'token 1 is NaN');
    await rejectsFast(gpu, () => model.logits([]), InvalidInputError, 'empty');
    await rejectsFast(gpu, () => generate(model, [], { maxTokens: 1 }), InvalidInputError, 'empty');
    // The model still works after rejected input.
    assertEquals((await model.logits([2, 45])).length, 2 * V);
  });
});

Deno.test('prompts longer than the position table, and generate with no position left', async () => {
  await withTiny(async (model, gpu) => {
    const P = model.config.maxPositions;
    const tokens = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 2 : 4 + (i % 300)));
    await rejectsFast(gpu, () => model.logits(tokens(P + 1)), InvalidInputError, `${P + 1} prompt tokens`, `${P} positions`);
    await rejectsFast(gpu, () => generate(model, tokens(P + 1), { maxTokens: 1 }), InvalidInputError, `${P} positions`);
    await rejectsFast(gpu, () => generate(model, tokens(P), { maxTokens: 1 }), InvalidInputError, `fills all ${P} positions`);
    // A full-length prompt is fine for logits, and one free position gives exactly one token.
    assertEquals((await model.logits(tokens(P))).length, P * model.config.vocabSize);
    const r = await generate(model, tokens(P - 1), { maxTokens: 10, ignoreEos: true });
    assertEquals(r.tokens.length, 1);
    assertEquals(r.finishReason, 'length');
  });
});

Deno.test('invalid sampling parameters: InvalidInputError naming the parameter', async () => {
  await withTiny(async (model, gpu) => {
    const bad: Array<[Partial<GenerateParams>, string]> = [
      [{ temperature: -0.5 }, 'temperature'],
      [{ temperature: NaN }, 'temperature'],
      [{ temperature: Infinity }, 'temperature'],
      [{ topP: 0 }, 'topP'],
      [{ topP: -0.1 }, 'topP'],
      [{ topP: 1.5 }, 'topP'],
      [{ topK: -1 }, 'topK'],
      [{ topK: 2.5 }, 'topK'],
      [{ maxTokens: 2.5 }, 'maxTokens'],
      [{ maxTokens: 0 }, 'maxTokens'],
      [{ maxTokens: -3 }, 'maxTokens'],
      [{ maxTokens: NaN }, 'maxTokens'],
      [{ seed: -1 }, 'seed'],
      [{ seed: 1.5 }, 'seed'],
      [{ seed: 2 ** 32 }, 'seed'],
    ];
    for (const [params, name] of bad) {
      const e = await rejectsFast(gpu, () => generate(model, [2, 45, 99], { maxTokens: 4, ...params }), InvalidInputError, name);
      assertEquals((e as TandemError).code, 'invalid_input');
    }
    // Edge values that are valid.
    const ok = await generate(model, [2, 45, 99], { maxTokens: 2, temperature: 0.7, topP: 1, topK: 0, seed: 0xffffffff, ignoreEos: true });
    assertEquals(ok.tokens.length, 2);
  });
});

// ------------------------------------------------------------------------------------------- WebGPU

Deno.test('dtype f16 on a device without shader-f16: WebGPUUnavailableError', async () => {
  const gpu = await LocalGpu.create({ disableFeatures: ['shader-f16'] });
  try {
    assertEquals(gpu.caps.shaderF16, false);
    const e = await assertRejects(() => OptModel.load(gpu, TINY, { dtype: 'f16' }), WebGPUUnavailableError, 'shader-f16');
    assertEquals((e as TandemError).code, 'webgpu_unavailable');
    assertEquals(gpu.stats().buffers, 0, 'nothing allocated before the error');
    // f32 still works on that device.
    const model = await OptModel.load(gpu, TINY, { dtype: 'f32' });
    assertEquals(model.dtype, 'f32');
    model.release();
  } finally {
    gpu.destroy();
  }
});

Deno.test('no WebGPU adapter: WebGPUUnavailableError that says how to get one', async () => {
  const noAdapter = { requestAdapter: async () => null } as unknown as GPU;
  for (const create of [() => acquireDevice({ gpu: noAdapter }), () => LocalGpu.create({ gpu: noAdapter })]) {
    const e = await assertRejects(create, WebGPUUnavailableError, 'mesa-vulkan-drivers');
    assertEquals((e as TandemError).code, 'webgpu_unavailable');
  }
});

Deno.test('navigator.gpu absent: WebGPUUnavailableError', async () => {
  // Deno 2.9 exposes navigator.gpu even without --unstable-webgpu, so hide it here (an own property shadows
  // the prototype's getter) and restore it afterwards.
  assert(navigator.gpu !== undefined);
  Object.defineProperty(navigator, 'gpu', { value: undefined, configurable: true });
  try {
    assertEquals(navigator.gpu, undefined);
    await assertRejects(() => acquireDevice(), WebGPUUnavailableError, 'navigator.gpu is undefined');
    await assertRejects(() => LocalGpu.create(), WebGPUUnavailableError, 'navigator.gpu is undefined');
  } finally {
    delete (navigator as { gpu?: GPU }).gpu;
  }
  assert(navigator.gpu !== undefined, 'navigator.gpu restored');
});

// ------------------------------------------------------------------------------------------- checkpoints

Deno.test('config.json that does not match the weights: WeightMismatchError', async () => {
  const gpu = await testGpu();
  const dir = await tempModelDir({
    'config.json': await Deno.readFile(`${FIXTURES}opt-tiny-postln/config.json`),
    'model.safetensors': await Deno.readFile(`${TINY}/model.safetensors`),
  });
  try {
    const buffers = gpu.stats().buffers;
    const e = await assertRejects(() => OptModel.load(gpu, dir, { dtype: 'f32' }), WeightMismatchError);
    assertEquals((e as TandemError).code, 'weight_mismatch');
    // It names a tensor and a shape that disagree (opt-tiny has hidden 64, the postln config says 48).
    assert(/model\.decoder\./.test(e.message), e.message);
    assert(e.message.includes('64') && e.message.includes('48'), e.message);
    assertEquals(gpu.stats().buffers, buffers, 'nothing uploaded');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test('truncated safetensors file: CheckpointFormatError naming the file', async () => {
  const gpu = await testGpu();
  const full = await Deno.readFile(`${TINY}/model.safetensors`);
  const config = await Deno.readFile(`${TINY}/config.json`);
  const headerLen = Number(new DataView(full.buffer, full.byteOffset).getBigUint64(0, true));
  // Cut in the data, in the JSON header, and inside the 8-byte length prefix.
  for (const cut of [full.length - 1000, full.length - 1, 8 + Math.floor(headerLen / 2), 5]) {
    const dir = await tempModelDir({ 'config.json': config, 'model.safetensors': full.subarray(0, cut) });
    try {
      const e = await assertRejects(() => OptModel.load(gpu, dir, { dtype: 'f32' }), CheckpointFormatError, 'model.safetensors');
      assertEquals((e as TandemError).code, 'checkpoint_format');
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

// ------------------------------------------------------------------------------------------- URL sources

Deno.test('URL sources: 404 and a cut-off body give ModelSourceError naming the URL; a hub-like URL loads', async () => {
  const gpu = await testGpu();
  const files: Record<string, Uint8Array<ArrayBuffer>> = {
    'config.json': await Deno.readFile(`${TINY}/config.json`),
    'model.safetensors': await Deno.readFile(`${TINY}/model.safetensors`),
  };
  const requests: string[] = [];
  const server = Deno.serve({ hostname: '127.0.0.1', port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    requests.push(path);
    let m = /^\/facebook\/opt-tiny\/resolve\/main\/([^/]+)$/.exec(path);
    if (m && files[m[1]]) return new Response(files[m[1]], { headers: { 'content-type': 'application/octet-stream' } });
    // /cut/: the config is fine, the weights declare their full length and stop after a third of it.
    m = /^\/cut\/([^/]+)$/.exec(path);
    if (m && m[1] === 'config.json') return new Response(files['config.json']);
    if (m && m[1] === 'model.safetensors') {
      const bytes = files['model.safetensors'];
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(bytes.slice(0, Math.floor(bytes.length / 3)));
          c.close();
        },
      });
      return new Response(body, { headers: { 'content-length': String(bytes.length) } });
    }
    return new Response('not found', { status: 404 });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    // 404 on config.json: the error names the URL that failed.
    const missing = `${base}/facebook/opt-nope/resolve/main/`;
    let e = await assertRejects(() => OptModel.load(gpu, missing, { dtype: 'f32' }), ModelSourceError, `${missing}config.json`);
    assert(e.message.includes('404'), e.message);
    assertEquals((e as TandemError).code, 'model_source');

    // The body stops early: truncated, never mistaken for a smaller file.
    e = await assertRejects(() => OptModel.load(gpu, `${base}/cut`, { dtype: 'f32' }), ModelSourceError, `${base}/cut/model.safetensors`);
    assert(/truncated|cut off/.test(e.message), e.message);

    // The hub-like layout loads (base URL without a trailing slash), reporting progress.
    const progress: LoadProgress[] = [];
    const model = await OptModel.load(gpu, `${base}/facebook/opt-tiny/resolve/main`, {
      dtype: 'f32', onProgress: (p) => progress.push(p),
    });
    try {
      const { ref, tensors } = await readReference('opt-tiny');
      const err = maxAbsDiff(await model.logits(ref.prompts[1]), tensors('p1.logits')!);
      console.log(`  URL model p1 logits: max |diff| ${err.toExponential(2)} (tolerance 1e-4)`);
      assert(err <= 1e-4, `URL model logits differ by ${err}`);
      assert(progress.length > 0, 'onProgress was called');
      const last = progress.filter((p) => p.file === 'model.safetensors').at(-1);
      assert(last, 'progress reported for model.safetensors');
      assertEquals(last.loadedBytes, files['model.safetensors'].length);
      assert(last.totalBytes === undefined || last.totalBytes === last.loadedBytes);
    } finally {
      model.release();
    }
    assert(requests.includes('/facebook/opt-tiny/resolve/main/model.safetensors'), requests.join(' '));
  } finally {
    await server.shutdown();
  }
  // The server is gone: connection refused is a ModelSourceError too.
  await assertRejects(() => OptModel.load(gpu, `${base}/facebook/opt-tiny/resolve/main/`), ModelSourceError, `${base}/facebook/opt-tiny/resolve/main/config.json`);
});
