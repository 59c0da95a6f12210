// The OpenAI-compatible HTTP server with real HTTP: the handler of src/engine/openai.ts under Deno.serve on an
// ephemeral loopback port (fetch requests, SSE streaming, malformed requests), and `tandem serve` as a subprocess.
// opt-tiny's vocabulary has 512 tokens: prompts are token ids; text prompts only exercise the error path.
import { LLM } from '../../src/engine/llm.ts';
import { createOpenAIHandler, type Completion, type CompletionChunk } from '../../src/engine/openai.ts';
import { assert, assertEquals, FIXTURES, testGpu } from './helpers.ts';

import { REPO_ROOT } from './cli_helpers.ts';
const P1 = [2, 161, 483, 357];
const P2 = [2, 31, 414, 232, 328, 9];

async function withServer(fn: (base: string, llm: LLM) => Promise<void>): Promise<void> {
  const llm = await LLM.create({ model: `${FIXTURES}opt-tiny`, gpu: await testGpu(), gpuMemoryBytes: 64 << 20, gpuMemoryUtilization: 0.5, servedModelName: 'opt-tiny' });
  const errors: unknown[] = [];
  const ac = new AbortController();
  const server = Deno.serve({ hostname: '127.0.0.1', port: 0, signal: ac.signal, onListen: () => {} }, createOpenAIHandler(llm, { onError: (e) => errors.push(e) }));
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, llm);
  } finally {
    ac.abort();
    await server.finished;
    await llm.dispose();
  }
  assertEquals(errors, [], 'no internal errors');
  assertEquals(llm.engine.kv.usage, 0);
}

async function post(base: string, body: unknown, raw = false): Promise<Response> {
  return await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw ? body as string : JSON.stringify(body) });
}

/** Read an SSE body: the data payloads in order. */
async function sse(res: Response): Promise<string[]> {
  const text = await res.text();
  assert(text.endsWith('\n\n'), 'events end with a blank line');
  return text.split('\n\n').filter((e) => e.length).map((e) => {
    assert(e.startsWith('data: '), `event ${JSON.stringify(e)}`);
    return e.slice(6);
  });
}

async function expectError(res: Response, status: number, param?: string | null): Promise<string> {
  const body = await res.json();
  assertEquals(res.status, status, JSON.stringify(body));
  assert(body.error && typeof body.error.message === 'string' && typeof body.error.type === 'string' && body.error.code !== undefined, JSON.stringify(body));
  if (param !== undefined) assertEquals(body.error.param, param, JSON.stringify(body));
  return body.error.message;
}

Deno.test('serve: completions (JSON and SSE) match the engine, models, health, 400/404/405 and still answering', async () => {
  await withServer(async (base, llm) => {
    const [g1, g2] = await llm.generate([{ tokens: P1 }, { tokens: P2 }], { maxTokens: 20, ignoreEos: true });
    // JSON completion = the engine's greedy output.
    const res = await post(base, { model: 'opt-tiny', prompt: P1, max_tokens: 20, temperature: 0, ignore_eos: true });
    assertEquals(res.status, 200);
    assert(res.headers.get('content-type')?.startsWith('application/json'));
    const c = await res.json() as Completion;
    assertEquals(c.object, 'text_completion');
    assertEquals(c.model, 'opt-tiny');
    assertEquals(c.choices, [{ index: 0, text: g1.text, finish_reason: 'length', logprobs: null }]);
    assertEquals(c.usage, { prompt_tokens: 4, completion_tokens: 20, total_tokens: 24 });
    // SSE: chunks reassemble to the same texts, end with [DONE].
    const sres = await post(base, { prompt: [P1, P2], max_tokens: 20, temperature: 0, ignore_eos: true, stream: true });
    assertEquals(sres.status, 200);
    assertEquals(sres.headers.get('content-type'), 'text/event-stream');
    const events = await sse(sres);
    assertEquals(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as CompletionChunk);
    assert(chunks.length > 2, `several chunks (${chunks.length})`);
    const texts = ['', ''];
    for (const ch of chunks) {
      assertEquals(ch.object, 'text_completion');
      texts[ch.choices[0].index] += ch.choices[0].text;
    }
    assertEquals(texts, [g1.text, g2.text]);
    assertEquals(chunks.filter((ch) => ch.choices[0].finish_reason === 'length').length, 2);
    // n and logprobs over HTTP, JSON and SSE: the same samples, the same logprobs.
    const body = { prompt: P2, max_tokens: 8, temperature: 1, seed: 11, n: 2, logprobs: 1, ignore_eos: true, presence_penalty: 0.5 };
    const nj = await (await post(base, body)).json() as Completion;
    assertEquals(nj.choices.map((ch) => ch.index), [0, 1]);
    const [gn] = await llm.generate([{ tokens: P2 }], { maxTokens: 8, temperature: 1, seed: 11, n: 2, logprobs: 1, ignoreEos: true, presencePenalty: 0.5 });
    nj.choices.forEach((ch, i) => {
      assertEquals(ch.text, gn.outputs[i].text);
      assertEquals(ch.logprobs!.token_logprobs, gn.outputs[i].logprobs!.map((e) => e.logprob));
    });
    const nchunks = (await sse(await post(base, { ...body, stream: true }))).slice(0, -1).map((e) => JSON.parse(e) as CompletionChunk);
    for (const i of [0, 1]) {
      const mine = nchunks.filter((ch) => ch.choices[0].index === i).map((ch) => ch.choices[0]);
      assertEquals(mine.map((ch) => ch.text).join(''), gn.outputs[i].text);
      assertEquals(mine.flatMap((ch) => ch.logprobs!.token_logprobs), gn.outputs[i].logprobs!.map((e) => e.logprob));
    }
    // Models and health.
    const models = await (await fetch(`${base}/v1/models`)).json();
    assertEquals(models.object, 'list');
    assertEquals(models.data.map((m: { id: string }) => m.id), ['opt-tiny']);
    const health = await fetch(`${base}/health`);
    assertEquals(health.status, 200);
    await health.body?.cancel();
    // Bad requests: 400 with a reason naming the field; unknown routes 404; wrong method 405; unknown model 404.
    console.log('  ' + await expectError(await post(base, '{"prompt": [2, 3', true), 400, null));
    await expectError(await post(base, '', true), 400);
    await expectError(await post(base, '[1, 2]', true), 400);
    await expectError(await post(base, 'null', true), 400);
    await expectError(await post(base, { prompt: P1, max_tokens: '5' }), 400, 'max_tokens');
    await expectError(await post(base, { prompt: P1, temperature: 'hot' }), 400, 'temperature');
    await expectError(await post(base, { prompt: 42 }), 400, 'prompt');
    await expectError(await post(base, { prompt: [2, 3.5] }), 400, 'prompt');
    console.log('  ' + await expectError(await post(base, { prompt: [2, 512, 3] }), 400, 'prompt'));
    console.log('  ' + await expectError(await post(base, { prompt: 'Hello, my dog is cute' }), 400, 'prompt'));
    console.log('  ' + await expectError(await post(base, { prompt: P1, n: 0 }), 400, 'n'));
    console.log('  ' + await expectError(await post(base, { prompt: P1, echo: true }), 400, 'echo'));
    await expectError(await post(base, { prompt: P1, logprobs: 50 }), 400, 'logprobs');
    await expectError(await post(base, { prompt: P1, stream: true, stop: [1] }), 400, 'stop');
    await expectError(await post(base, { model: 'gpt-4', prompt: P1 }), 404, 'model');
    await expectError(await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: '{}' }), 404);
    await expectError(await fetch(`${base}/nope`), 404);
    await expectError(await fetch(`${base}/v1/completions`), 405);
    // Unknown fields are ignored, like vLLM; the server still answers correctly after all of the above.
    const after = await (await post(base, { prompt: P2, max_tokens: 20, temperature: 0, ignore_eos: true, frobnicate: true })).json() as Completion;
    assertEquals(after.choices[0].text, g2.text);
    // Concurrent HTTP requests share the engine.
    const many = await Promise.all([P1, P2, P1].map(async (p) => (await (await post(base, { prompt: p, max_tokens: 20, temperature: 0, ignore_eos: true })).json() as Completion).choices[0].text));
    assertEquals(many, [g1.text, g2.text, g1.text]);
  });
});

Deno.test('serve: a client that disconnects mid-stream aborts its request and frees its blocks', async () => {
  await withServer(async (base, llm) => {
    const aborted: string[] = [];
    const origAbort = llm.abort.bind(llm);
    llm.abort = (id: string) => { const r = origAbort(id); if (r) aborted.push(id); return r; };
    const res = await post(base, { prompt: P1, max_tokens: 120, temperature: 0, ignore_eos: true, stream: true });
    assertEquals(res.status, 200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert(!first.done && new TextDecoder().decode(first.value).startsWith('data: '));
    await reader.cancel();
    for (let i = 0; i < 200 && llm.engine.hasUnfinishedRequests(); i++) await new Promise((r) => setTimeout(r, 10));
    assertEquals(llm.engine.hasUnfinishedRequests(), false, 'the request was aborted');
    assertEquals(aborted.length, 1, 'the disconnect aborted the request');
    llm.abort = origAbort;
    const ok = await post(base, { prompt: P2, max_tokens: 2, temperature: 0 });
    assertEquals(ok.status, 200);
    await ok.body?.cancel();
  });
});

Deno.test('tandem serve: the CLI listens on loopback, answers, and stops on SIGTERM', async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ['run', '-A', '--unstable-webgpu', 'src/cli/main.ts', 'serve', '--model', `${FIXTURES}opt-tiny`, '--port', '0', '--gpu-memory-gb', '0.0625', '--gpu-memory-utilization', '0.5'],
    cwd: REPO_ROOT, env: { XDG_RUNTIME_DIR: Deno.env.get('XDG_RUNTIME_DIR') ?? '/tmp', NO_COLOR: '1' },
    stdin: 'null', stdout: 'piped', stderr: 'piped',
  }).spawn();
  const dec = new TextDecoder();
  let log = '';
  const reader = child.stderr.getReader();
  let base: string | undefined;
  while (!base) {
    const r = await reader.read();
    if (r.done) break;
    log += dec.decode(r.value);
    base = /serving \S+ on (http:\/\/127\.0\.0\.1:\d+)/.exec(log)?.[1];
  }
  try {
    assert(base, `no listening line in:\n${log}`);
    const h = await fetch(`${base}/health`);
    assertEquals(h.status, 200);
    await h.body?.cancel();
    const c = await (await post(base, { prompt: P1, max_tokens: 5, temperature: 0, ignore_eos: true })).json() as Completion;
    assertEquals(c.usage.completion_tokens, 5);
    await expectError(await post(base, '{', true), 400);
  } finally {
    child.kill('SIGTERM');
    const rest = (async () => { for (;;) { const r = await reader.read(); if (r.done) break; log += dec.decode(r.value); } })();
    const [status, out] = await Promise.all([child.status, new Response(child.stdout).text(), rest]);
    assertEquals(status.code, 0, log);
    assert(log.includes('server stopped'), log);
    void out;
  }
});
