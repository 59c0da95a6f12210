// LLM.stream (deltas from the shared step loop), abort, and llm.completions.create (OpenAI's shapes) on opt-tiny.
// opt-tiny's vocabulary has 512 tokens, so prompts are token ids; text prompts only exercise the error path.
import { LLM, type StreamDelta } from '../../src/engine/llm.ts';
import { InvalidRequestError, type CompletionChunk } from '../../src/engine/openai.ts';
import { InvalidInputError } from '../../src/errors.ts';
import { assert, assertEquals, assertRejects, FIXTURES, testGpu } from './helpers.ts';

let shared: Promise<LLM> | undefined;
function llm(): Promise<LLM> {
  shared ??= (async () => LLM.create({ model: `${FIXTURES}opt-tiny`, gpu: await testGpu(), gpuMemoryBytes: 64 << 20, gpuMemoryUtilization: 0.5, maxNumSeqs: 16 }))();
  return shared;
}

const P1 = [2, 161, 483, 357];
const P2 = [2, 31, 414, 232, 328, 9];
const P3 = [2, 100, 200, 300];

async function collect(s: AsyncIterable<StreamDelta>, log?: string[], tag?: string): Promise<StreamDelta[]> {
  const out: StreamDelta[] = [];
  for await (const d of s) {
    out.push(d);
    log?.push(tag!);
  }
  return out;
}

function joined(ds: StreamDelta[]) {
  return { text: ds.map((d) => d.text).join(''), tokenIds: ds.flatMap((d) => d.tokenIds), finishReason: ds.at(-1)!.finishReason };
}

Deno.test('stream: concatenated deltas equal generate, with and without stop strings (never emitted, not even in part)', async () => {
  const l = await llm();
  const params = { maxTokens: 24, ignoreEos: true };
  const [g] = await l.generate([{ tokens: P1 }], params);
  const ds = await collect(l.stream({ tokens: P1 }, params));
  assert(ds.length > 1, `several deltas (got ${ds.length})`);
  ds.slice(0, -1).forEach((d) => assertEquals(d.finishReason, null));
  assertEquals(joined(ds), { text: g.text, tokenIds: g.tokenIds, finishReason: 'length' });
  // Stop strings: cut text equals generate's; no delta ever carries a piece of the stop string past the cut.
  assert(g.text.length >= 8, `greedy text ${JSON.stringify(g.text)} is long enough`);
  for (const cut of [g.text.slice(5, 8), g.text.slice(5, 6), g.text.slice(1, 8)]) {
    const [gs] = await l.generate([{ tokens: P1 }], { ...params, stop: [cut, 'never-appears-xyz'] });
    const ss = await collect(l.stream({ tokens: P1 }, { ...params, stop: [cut, 'never-appears-xyz'] }));
    const j = joined(ss);
    assertEquals(j.text, g.text.slice(0, g.text.indexOf(cut)));
    assertEquals(j.text, gs.text);
    assertEquals(j.finishReason, 'stop');
    assertEquals(ss.at(-1)!.stopReason, cut);
    let acc = '';
    for (const d of ss) {
      acc += d.text;
      assert(g.text.startsWith(acc) && acc.length <= gs.text.length, `emitted ${JSON.stringify(acc)} runs past the cut`);
    }
  }
  assertEquals(l.engine.kv.usage, 0);
});

Deno.test('stream: two concurrent streams and a generate share one step loop and interleave', async () => {
  const l = await llm();
  const params = { maxTokens: 40, ignoreEos: true };
  const alone = await l.generate([{ tokens: P1 }, { tokens: P2 }, { tokens: P3 }], params);
  const order: string[] = [];
  let steps = 0;
  const origStep = l.engine.step.bind(l.engine);
  let inFlight = 0;
  l.engine.step = async () => {
    assertEquals(inFlight, 0, 'no two concurrent engine steps');
    inFlight++;
    steps++;
    try { return await origStep(); } finally { inFlight--; }
  };
  try {
    const [a, b, g] = await Promise.all([
      collect(l.stream({ tokens: P1 }, params), order, 'a'),
      collect(l.stream({ tokens: P2 }, params), order, 'b'),
      l.generate([{ tokens: P3 }], params),
    ]);
    assertEquals(joined(a).text, alone[0].text);
    assertEquals(joined(a).tokenIds, alone[0].tokenIds);
    assertEquals(joined(b).tokenIds, alone[1].tokenIds);
    assertEquals(joined(b).text, alone[1].text);
    assertEquals(g[0].tokenIds, alone[2].tokenIds);
    // Interleaved: b's deltas arrive before a's last (they ran in the same steps).
    assert(order.indexOf('b') < order.lastIndexOf('a') && order.indexOf('a') < order.lastIndexOf('b'), `interleaved: ${order.join('')}`);
    console.log(`  ${steps} engine steps for 3 concurrent requests of 40 tokens; delta order ${order.join('')}`);
  } finally {
    l.engine.step = origStep;
  }
  assertEquals(l.engine.kv.usage, 0);
});

Deno.test('stream: abort mid-stream ends it with finishReason abort and frees its blocks; breaking out of the loop aborts too', async () => {
  const l = await llm();
  const long = { maxTokens: 200, ignoreEos: true };
  const s = l.stream({ tokens: P1 }, long);
  const other = l.generate([{ tokens: P2 }], { maxTokens: 30, ignoreEos: true });
  const ds: StreamDelta[] = [];
  for await (const d of s) {
    ds.push(d);
    if (ds.length === 1) assert(l.abort(s.requestId), 'abort finds the request');
  }
  assertEquals(ds.at(-1)!.finishReason, 'abort');
  const n = ds.flatMap((d) => d.tokenIds).length;
  assert(n > 0 && n < 200, `aborted after ${n} tokens`);
  assertEquals(l.abort(s.requestId), false, 'a second abort finds nothing');
  // Leaving a for-await early aborts the request.
  const s2 = l.stream({ tokens: P3 }, long);
  for await (const _ of s2) break;
  const [o] = await other;
  assertEquals(o.finishReason, 'length');
  assertEquals(o.tokenIds.length, 30);
  assertEquals(l.engine.hasUnfinishedRequests(), false);
  assertEquals(l.engine.kv.usage, 0);
  // Bad prompts throw at the call, before anything is queued.
  assert(throwsClass(() => l.stream('Hello there', long), InvalidInputError), 'a text outside the 512-token vocabulary is rejected');
  assert(throwsClass(() => l.stream({ tokens: [2, 512] }, long), InvalidInputError));
  assertEquals(l.engine.hasUnfinishedRequests(), false);
});

function throwsClass(fn: () => unknown, cls: new (...a: never[]) => Error): boolean {
  try { fn(); } catch (e) { return e instanceof cls; }
  return false;
}

Deno.test('completions.create: OpenAI shapes, streaming chunks, several prompts, validation naming the field', async () => {
  const l = await llm();
  const [g1, g2] = await l.generate([{ tokens: P1 }, { tokens: P2 }], { maxTokens: 20, ignoreEos: true });
  const c = await l.completions.create({ prompt: P1, max_tokens: 20, temperature: 0, ignore_eos: true });
  assert(c.id.startsWith('cmpl-'));
  assertEquals(c.object, 'text_completion');
  assert(Number.isInteger(c.created));
  assertEquals(c.model, l.modelName);
  assertEquals(c.choices, [{ index: 0, text: g1.text, finish_reason: 'length', logprobs: null }]);
  assertEquals(c.usage, { prompt_tokens: 4, completion_tokens: 20, total_tokens: 24 });
  // Several prompts (token-id arrays): one choice each, in order.
  const two = await l.completions.create({ prompt: [P1, P2], max_tokens: 20, temperature: 0, ignore_eos: true });
  assertEquals(two.choices.map((ch) => ch.text), [g1.text, g2.text]);
  assertEquals(two.usage.prompt_tokens, P1.length + P2.length);
  // Streaming: chunks of the same shape reassemble per choice; the usage chunk comes last when asked for.
  const chunks: CompletionChunk[] = [];
  for await (const ch of await l.completions.create({ prompt: [P1, P2], max_tokens: 20, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } })) chunks.push(ch);
  const texts = ['', ''];
  const finish: Array<string | null> = [null, null];
  for (const ch of chunks.slice(0, -1)) {
    assertEquals(ch.object, 'text_completion');
    assertEquals(ch.choices.length, 1);
    assertEquals(finish[ch.choices[0].index], null, 'no chunk after a choice finished');
    texts[ch.choices[0].index] += ch.choices[0].text;
    finish[ch.choices[0].index] = ch.choices[0].finish_reason;
  }
  assertEquals(texts, [g1.text, g2.text]);
  assertEquals(finish, ['length', 'length']);
  assertEquals(chunks.at(-1)!.choices, []);
  assertEquals(chunks.at(-1)!.usage, { prompt_tokens: 10, completion_tokens: 40, total_tokens: 50 });
  assert(new Set(chunks.map((ch) => ch.id)).size === 1);
  // Stop strings and seeded sampling through the OpenAI names.
  const cut = g1.text.slice(4, 7);
  const stopped = await l.completions.create({ prompt: P1, max_tokens: 20, temperature: 0, ignore_eos: true, stop: cut });
  assertEquals(stopped.choices[0].text, g1.text.slice(0, g1.text.indexOf(cut)));
  assertEquals(stopped.choices[0].finish_reason, 'stop');
  const s1 = await l.completions.create({ prompt: P1, max_tokens: 10, temperature: 0.9, top_p: 0.9, top_k: 50, seed: 7, ignore_eos: true });
  const s2 = await l.completions.create({ prompt: P1, max_tokens: 10, temperature: 0.9, top_p: 0.9, top_k: 50, seed: 7, ignore_eos: true });
  assertEquals(s1.choices[0].text, s2.choices[0].text);
  // Validation: typed, naming the field, nothing queued.
  const bad: Array<[Record<string, unknown>, string]> = [
    [{ prompt: P1, n: 0 }, 'n'], [{ prompt: P1, n: 1.5 }, 'n'], [{ prompt: P1, n: 2, best_of: 3 }, 'best_of'], [{ prompt: P1, max_tokens: 'ten' }, 'max_tokens'],
    [{ prompt: P1, logprobs: 21 }, 'logprobs'], [{ prompt: P1, logprobs: -1 }, 'logprobs'], [{ prompt: P1, logprobs: true }, 'logprobs'],
    [{ prompt: P1, presence_penalty: 3 }, 'presence_penalty'], [{ prompt: P1, frequency_penalty: 'x' }, 'frequency_penalty'],
    [{ prompt: P1, repetition_penalty: 0 }, 'repetition_penalty'], [{ prompt: P1, logit_bias: { 5: 1 } }, 'logit_bias'], [{ prompt: P1, max_tokens: 0 }, 'max_tokens'],
    [{ prompt: P1, temperature: -1 }, 'temperature'], [{ prompt: P1, top_p: 0 }, 'top_p'], [{ prompt: P1, seed: 1.5 }, 'seed'],
    [{ prompt: P1, stop: 3 }, 'stop'], [{ prompt: P1, stream: 'yes' }, 'stream'], [{}, 'prompt'], [{ prompt: [] }, 'prompt'],
    [{ prompt: [2, 512] }, 'prompt'], [{ prompt: [2, -1] }, 'prompt'], [{ prompt: 'Hello' }, 'prompt'], [{ prompt: ['a', 'Hello world'] }, 'prompt'], [{ prompt: ['a', ''] }, 'prompt'],
    [{ prompt: [P1, [2, 9999]] }, 'prompt'], [{ prompt: P1, echo: true }, 'echo'],
    [{ prompt: P1, max_tokens: 100000 }, 'max_tokens'], [{ prompt: P1, ignore_eos: 1 }, 'ignore_eos'],
  ];
  for (const [body, param] of bad) {
    // deno-lint-ignore no-explicit-any
    const e = await assertRejects(() => l.completions.create(body as any), InvalidRequestError).catch((e) => { throw new Error(`${JSON.stringify(body)}: ${e.message}`); });
    assertEquals((e as InvalidRequestError).param, param, `${JSON.stringify(body)}: ${e.message}`);
    assert(e instanceof InvalidInputError);
  }
  // An array of strings (single characters are byte tokens < 512 in the OPT vocabulary): one choice each.
  const strs = await l.completions.create({ prompt: ['a', 'b'], max_tokens: 5, temperature: 0, ignore_eos: true });
  const [ga, gb] = await l.generate(['a', 'b'], { maxTokens: 5, ignoreEos: true });
  assertEquals(strs.choices.map((ch) => ch.text), [ga.text, gb.text]);
  // Unknown fields are ignored (as vLLM does).
  const extra = await l.completions.create({ prompt: P1, max_tokens: 3, temperature: 0, ignore_eos: true, some_future_field: 1, user: 'u' });
  assertEquals(extra.usage.completion_tokens, 3);
  assertEquals(l.engine.hasUnfinishedRequests(), false);
  assertEquals(l.engine.kv.usage, 0);
});

Deno.test('n > 1 and logprobs: generate, stream and completions (OpenAI logprobs object, choice order, streamed chunks)', async () => {
  const { sampleSeed } = await import('../../src/engine/llm_engine.ts');
  const l = await llm();
  const sp = { maxTokens: 12, ignoreEos: true, temperature: 1, seed: 99, n: 3, logprobs: 2 };
  const [g] = await l.generate([{ tokens: P2 }], sp);
  assertEquals(g.outputs.length, 3);
  assertEquals(g.outputs.map((o) => o.index), [0, 1, 2]);
  assertEquals(g.tokenIds, g.outputs[0].tokenIds);
  assert(new Set(g.outputs.map((o) => o.tokenIds.join())).size > 1, 'samples differ');
  // Each sample equals a single request with its derived seed; logprobs line up with the tokens.
  for (const o of g.outputs) {
    const [one] = await l.generate([{ tokens: P2 }], { ...sp, n: 1, seed: sampleSeed(99, o.index) });
    assertEquals(one.tokenIds, o.tokenIds, `sample ${o.index}`);
    assertEquals(one.logprobs, o.logprobs);
    assertEquals(o.logprobs!.map((e) => e.tokenId), o.tokenIds);
    for (const e of o.logprobs!) {
      assertEquals(e.top.length, 2);
      assert(e.logprob <= 0 && e.rank >= 1 && e.top[0].logprob >= e.top[1].logprob && e.top[0].logprob >= e.logprob, JSON.stringify(e));
    }
  }
  // Streaming n = 3: deltas carry their sample index; each sample's deltas reassemble generate's sample.
  const ds = await collect(l.stream({ tokens: P2 }, sp));
  for (const o of g.outputs) {
    const mine = ds.filter((d) => d.index === o.index);
    assertEquals(joined(mine), { text: o.text, tokenIds: o.tokenIds, finishReason: 'length' });
    assertEquals(mine.flatMap((d) => d.logprobs!), o.logprobs);
  }
  // Aborting an n > 1 stream by its id ends every sample.
  const st = l.stream({ tokens: P1 }, { maxTokens: 60, ignoreEos: true, n: 2 });
  let aborted = 0;
  for await (const d of st) {
    if (d.finishReason === null) l.abort(st.requestId);
    else { assertEquals(d.finishReason, 'abort'); aborted++; }
  }
  assertEquals(aborted, 2);
  // Completions: choices prompt-major (prompt i, sample j → index i * n + j) with OpenAI's logprobs object.
  const c = await l.completions.create({ prompt: [P1, P2], max_tokens: 6, temperature: 0.8, seed: 5, n: 2, logprobs: 3, ignore_eos: true });
  assertEquals(c.choices.map((ch) => ch.index), [0, 1, 2, 3]);
  assertEquals(c.usage.completion_tokens, 24);
  const [ref1, ref2] = await l.generate([{ tokens: P1 }, { tokens: P2 }], { maxTokens: 6, temperature: 0.8, seed: 5, n: 2, logprobs: 3, ignoreEos: true });
  const samples = [...ref1.outputs, ...ref2.outputs];
  c.choices.forEach((ch, i) => {
    assertEquals(ch.text, samples[i].text);
    const lp = ch.logprobs!;
    assertEquals(lp.token_logprobs, samples[i].logprobs!.map((e) => e.logprob));
    assertEquals(lp.tokens, samples[i].tokenIds.map((t) => l.tokenizer.decode([t])));
    assertEquals(lp.tokens.join(''), ch.text, 'tokens decoded one by one concatenate to the text (ASCII-range vocabulary)');
    let off = 0;
    lp.tokens.forEach((t, k) => { assertEquals(lp.text_offset[k], off); off += t.length; });
    lp.top_logprobs.forEach((top, k) => {
      const keys = Object.keys(top);
      assert(keys.length >= 1 && keys.length <= 4, `top-3 plus the sampled token: ${JSON.stringify(top)}`);
      assertEquals(top[lp.tokens[k]], lp.token_logprobs[k]);
    });
  });
  // Streaming completions with logprobs: per choice, the chunks' logprobs concatenate to the whole.
  const chunks: CompletionChunk[] = [];
  for await (const ch of await l.completions.create({ prompt: P1, max_tokens: 6, temperature: 0.8, seed: 5, n: 2, logprobs: 3, ignore_eos: true, stream: true })) chunks.push(ch);
  for (const idx of [0, 1]) {
    const mine = chunks.map((ch) => ch.choices[0]).filter((ch) => ch.index === idx);
    assertEquals(mine.flatMap((ch) => ch.logprobs!.token_logprobs), c.choices[idx].logprobs!.token_logprobs);
    assertEquals(mine.flatMap((ch) => ch.logprobs!.text_offset), c.choices[idx].logprobs!.text_offset);
  }
  // Penalties through the OpenAI names change greedy output, as the engine's do.
  const plain = await l.completions.create({ prompt: P1, max_tokens: 16, temperature: 0, ignore_eos: true });
  const pen = await l.completions.create({ prompt: P1, max_tokens: 16, temperature: 0, ignore_eos: true, presence_penalty: 1.5, frequency_penalty: 0.5, repetition_penalty: 1.3 });
  const [penRef] = await l.generate([{ tokens: P1 }], { maxTokens: 16, ignoreEos: true, presencePenalty: 1.5, frequencyPenalty: 0.5, repetitionPenalty: 1.3 });
  assertEquals(pen.choices[0].text, penRef.text);
  assert(pen.choices[0].text !== plain.choices[0].text, 'penalties change the greedy text');
  assertEquals(l.engine.hasUnfinishedRequests(), false);
  assertEquals(l.engine.kv.usage, 0);
  assertEquals(l.engine.runner.numStateSlotsInUse, 0);
});
