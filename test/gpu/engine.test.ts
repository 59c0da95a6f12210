// The serving engine end to end on the tiny fixtures: HF greedy parity for every fixture prompt served together,
// and batch invariance (alone, together, tiny token budgets, forced preemption, prefix-cache hits), greedy and seeded.
import { LLMEngine, type SamplingParams } from '../../src/engine/llm_engine.ts';
import { assert, assertEquals, FIXTURES, greedyStepsToCompare, readReference, testGpu } from './helpers.ts';

async function engine(set: string, opts: { numBlocks?: number; maxNumBatchedTokens?: number; maxNumSeqs?: number; numLookaheadTokens?: number; asyncScheduling?: boolean } = {}) {
  return LLMEngine.create(await testGpu(), `${FIXTURES}${set}`, {
    numBlocks: opts.numBlocks ?? 64, maxNumBatchedTokens: opts.maxNumBatchedTokens ?? 256, maxNumSeqs: opts.maxNumSeqs ?? 16,
    numLookaheadTokens: opts.numLookaheadTokens, asyncScheduling: opts.asyncScheduling,
  });
}

for (const set of ['opt-tiny', 'opt-tiny-postln']) {
  Deno.test(`${set}: every fixture prompt served together in one batch matches HF greedy`, async () => {
    const { ref } = await readReference(set);
    const e = await engine(set);
    const outs = await e.generate(ref.prompts, ref.prompt_results.map((r) => ({ maxTokens: r.greedy.length, ignoreEos: true })));
    outs.forEach((o, i) => {
      const n = greedyStepsToCompare(ref.prompt_results[i].greedy_margins);
      assertEquals(o.tokenIds.slice(0, n), ref.prompt_results[i].greedy.slice(0, n), `${set} prompt ${i}`);
      assertEquals(o.finishReason, 'length');
    });
    assertEquals(e.kv.usage, 0, "every block is free again (prefix-cached blocks sit in the free LRU)");
  });
}

Deno.test('batch invariance: the same tokens alone, together, in tiny chunks, under preemption, with prefix hits', async () => {
  const { ref } = await readReference('opt-tiny');
  const prompts = ref.prompts;
  const greedy: SamplingParams = { maxTokens: 20, ignoreEos: true };
  const seeded: SamplingParams[] = prompts.map((_, i) => ({ maxTokens: 20, ignoreEos: true, temperature: 0.9, topP: 0.95, seed: 100 + i }));
  for (const params of [prompts.map(() => greedy), seeded]) {
    const alone: number[][] = [];
    for (let i = 0; i < prompts.length; i++) {
      // Alone, one step per readback (no lookahead), nothing in flight: the reference every other configuration must equal.
      const e = await engine('opt-tiny', { numLookaheadTokens: 0, asyncScheduling: false });
      alone.push((await e.generate([prompts[i]], [params[i]]))[0].tokenIds);
    }
    const configs = [
      { name: 'together (7 lookahead steps per readback)', opts: {} },
      { name: 'together, 15 lookahead steps', opts: { numLookaheadTokens: 15 } },
      { name: 'token budget 7 (chunked prefill)', opts: { maxNumBatchedTokens: 7 } },
      { name: '2 sequences at a time', opts: { maxNumSeqs: 2 } },
      { name: '9 blocks (preemption)', opts: { numBlocks: 9 } },
      { name: 'together, one step at a time (no asynchronous scheduling)', opts: { asyncScheduling: false } },
    ];
    for (const { name, opts } of configs) {
      const e = await engine('opt-tiny', opts);
      const outs = await e.generate(prompts, params);
      outs.forEach((o, i) => assertEquals(o.tokenIds, alone[i], `${name}: prompt ${i}`));
      if (name.startsWith('9 blocks')) assert(e.scheduler.stats().numPreemptions > 0, 'the small cache must force preemptions');
      // Again on the same engine: prompts now hit the prefix cache.
      const again = await e.generate(prompts, params);
      again.forEach((o, i) => assertEquals(o.tokenIds, alone[i], `${name}, prefix-cache hits: prompt ${i}`));
    }
  }
});

Deno.test('LLM: token prompts (opt-tiny has a 512-token vocabulary), stop strings never emitted, KV cache sized from gpuMemoryUtilization, 1000 requests complete', async () => {
  const { LLM } = await import('../../src/engine/llm.ts');
  const { KvCacheTooSmallError } = await import('../../src/engine/errors.ts');
  const gpu = await testGpu();
  const llm = await LLM.create({ model: `${FIXTURES}opt-tiny`, gpu, gpuMemoryBytes: 64 << 20, gpuMemoryUtilization: 0.5, maxNumSeqs: 64 });
  assert(llm.memory.kvCache <= 0.5 * (64 << 20), `KV cache ${llm.memory.kvCache} bytes within its budget`);
  assertEquals(llm.memory.kvCache, llm.memory.numBlocks * llm.memory.kvPerBlock);
  console.log(`  KV cache: ${llm.memory.numBlocks} blocks x ${llm.memory.kvPerBlock} bytes (${llm.memory.kvPerBlock / 16} bytes per token)`);
  const [plain] = await llm.generate([{ tokens: [2, 161, 483, 357] }], { maxTokens: 12, ignoreEos: true });
  assertEquals(plain.tokenIds.length, 12);
  assertEquals(plain.text, llm.tokenizer.decode(plain.tokenIds, { skipSpecialTokens: true }));
  // Stop at a string that the greedy text contains: the text ends right before it, the request ends early.
  assert(plain.text.length >= 6, `greedy text ${JSON.stringify(plain.text)} is long enough to cut`);
  const cut = plain.text.slice(3, 6);
  {
    const [stopped] = await llm.generate([{ tokens: [2, 161, 483, 357] }], { maxTokens: 12, ignoreEos: true, stop: [cut] });
    assertEquals(stopped.text, plain.text.slice(0, plain.text.indexOf(cut)));
    assertEquals(stopped.finishReason, 'stop');
    assertEquals(stopped.stopReason, cut);
    assert(!stopped.text.includes(cut));
  }
  // 1000 requests of random lengths all finish, and every block comes back.
  let seed = 7;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
  const prompts = Array.from({ length: 1000 }, () => ({ tokens: [2, ...Array.from({ length: 1 + rnd(20) }, () => 3 + rnd(500))] }));
  const outs = await llm.generate(prompts, prompts.map(() => ({ maxTokens: 1 + rnd(8), ignoreEos: true })));
  assertEquals(outs.filter((o) => o.finishReason === 'length').length, 1000);
  assertEquals(llm.engine.kv.usage, 0);
  await assertRejectsClass(() => LLM.create({ model: `${FIXTURES}opt-tiny`, gpu, gpuMemoryBytes: 1 << 20, gpuMemoryUtilization: 0.5 }), KvCacheTooSmallError);
});

async function assertRejectsClass(fn: () => Promise<unknown>, cls: new (...a: never[]) => Error): Promise<void> {
  try { await fn(); } catch (e) { assert(e instanceof cls, `expected ${cls.name}, got ${(e as Error).name}: ${(e as Error).message}`); return; }
  throw new Error(`expected ${cls.name}`);
}

Deno.test('LLM.metrics: TTFT, time per output token, queue time, prefix hit rate, preemptions, KV usage', async () => {
  const { LLM } = await import('../../src/engine/llm.ts');
  const { ref } = await readReference('opt-tiny');
  const llm = await LLM.create({ model: `${FIXTURES}opt-tiny`, gpu: await testGpu(), gpuMemoryBytes: 64 << 20, gpuMemoryUtilization: 0.5 });
  const prompts = ref.prompts.map((tokens) => ({ tokens }));
  await llm.generate(prompts, { maxTokens: 10, ignoreEos: true });
  await llm.generate(prompts, { maxTokens: 10, ignoreEos: true }); // the same prompts again: prefix-cache hits
  const m = llm.metrics();
  assertEquals(m.finishedRequests, 2 * prompts.length);
  assertEquals(m.generatedTokens, 2 * prompts.length * 10);
  assertEquals([m.runningRequests, m.waitingRequests, m.kvCacheUsage], [0, 0, 0]);
  for (const d of [m.ttftMs, m.timePerOutputTokenMs, m.queueTimeMs]) {
    assert(d.mean !== null && d.p50 !== null && d.p90 !== null && d.mean >= 0 && d.p50 <= d.p90, JSON.stringify(d));
  }
  assert(m.prefixCacheHitRate > 0.3, `second pass should hit the prefix cache: ${m.prefixCacheHitRate}`);
  assertEquals(m.preemptions, 0);
});

Deno.test('updateWeights: new weights by name take effect, the prefix cache is reset, bad names and shapes are typed errors', async () => {
  const { syntheticTensors } = await import('../../src/model/weights/synthetic.ts');
  const { parseOptConfig } = await import('../../src/model/config.ts');
  const { WeightMismatchError } = await import('../../src/errors.ts');
  const { ref } = await readReference('opt-tiny');
  const configJson = JSON.parse(await Deno.readTextFile(`${FIXTURES}opt-tiny/config.json`));
  const other = syntheticTensors(parseOptConfig(configJson), 2);
  const e = await engine('opt-tiny');
  const before = await e.generate(ref.prompts, { maxTokens: 12, ignoreEos: true });
  assertEquals(e.updateWeights(other), other.size);
  const after = await e.generate(ref.prompts, { maxTokens: 12, ignoreEos: true });
  // A fresh engine on the new weights is the oracle: same tokens, so no stale prefix-cache block was reused.
  const fresh = await LLMEngine.create(await testGpu(), { configJson, tensors: syntheticTensors(parseOptConfig(configJson), 2) }, { numBlocks: 64 });
  const want = await fresh.generate(ref.prompts, { maxTokens: 12, ignoreEos: true });
  after.forEach((o, i) => assertEquals(o.tokenIds, want[i].tokenIds, `prompt ${i}`));
  assert(after.some((o, i) => o.tokenIds.join() !== before[i].tokenIds.join()), 'new weights must change some output');
  let threw = 0;
  for (const bad of [[['model.decoder.nope.weight', other.get('model.decoder.embed_tokens.weight')!]], [['model.decoder.layers.0.fc1.bias', other.get('model.decoder.layers.0.fc2.bias')!]]] as const) {
    try { e.updateWeights(bad as unknown as Iterable<[string, never]>); } catch (err) { assert(err instanceof WeightMismatchError, String(err)); threw++; }
  }
  assertEquals(threw, 2);
});

Deno.test('sleep/wakeUp: level 1 frees GPU memory and restores the same model; level 2 needs new weights; asleep is a typed error', async () => {
  const { InvalidInputError } = await import('../../src/errors.ts');
  const { loadCheckpoint } = await import('../../src/model/weights/sources.ts');
  const { ref } = await readReference('opt-tiny');
  const gpu = await testGpu();
  const e = await engine('opt-tiny');
  const want = await e.generate(ref.prompts, { maxTokens: 10, ignoreEos: true });
  const before = gpu.stats().bytesAllocated;
  const freed = await e.sleep(1);
  assert(freed >= e.weights.totalBytes + e.runner.cache.bytes, `sleep(1) freed ${freed} bytes`);
  assertEquals(gpu.stats().bytesAllocated, before - freed);
  let asleepError: unknown = null;
  try { await e.step(); } catch (err) { asleepError = err; }
  assert(asleepError instanceof InvalidInputError, String(asleepError));
  await e.wakeUp();
  assertEquals((await e.generate(ref.prompts, { maxTokens: 10, ignoreEos: true })).map((o) => o.tokenIds), want.map((o) => o.tokenIds));
  // Level 2: weights dropped; wake them, load the checkpoint again by name, then the KV cache.
  await e.sleep(2);
  await e.wakeUp(['weights']);
  e.updateWeights((await loadCheckpoint(`${FIXTURES}opt-tiny`)).tensors);
  await e.wakeUp(['kv_cache']);
  assertEquals((await e.generate(ref.prompts, { maxTokens: 10, ignoreEos: true })).map((o) => o.tokenIds), want.map((o) => o.tokenIds));
  // Not while requests are in flight.
  e.addRequest(ref.prompts[0], { maxTokens: 3 });
  let busy: unknown = null;
  try { await e.sleep(1); } catch (err) { busy = err; }
  assert(busy instanceof InvalidInputError, String(busy));
  while (e.hasUnfinishedRequests()) await e.step();
});

Deno.test('asynchronous scheduling: the same tokens, logprobs and finish reasons as one step at a time alone; stops found late, aborts mid-flight, nothing leaks', async () => {
  const { ref } = await readReference('opt-tiny');
  const gpu = await testGpu();
  const prompts = [...ref.prompts, ...ref.prompts, ...ref.prompts];
  const base: SamplingParams[] = prompts.map((_, i) => ({
    maxTokens: 4 + ((i * 7) % 17), ignoreEos: true,
    ...(i % 3 === 1 ? { temperature: 0.9, topP: 0.95, seed: 7 + i } : {}),
    ...(i % 4 === 2 ? { repetitionPenalty: 1.3, frequencyPenalty: 0.2, minTokens: 3 } : {}),
    ...(i % 5 === 0 ? { logprobs: 2 } : {}),
  }));
  // The reference: one request at a time, one step per readback, nothing in flight, no prefix cache.
  const reference = await LLMEngine.create(gpu, `${FIXTURES}opt-tiny`, { numBlocks: 64, numLookaheadTokens: 0, asyncScheduling: false, enablePrefixCaching: false });
  const alone = async (params: SamplingParams[]) => {
    const outs = [];
    for (let i = 0; i < prompts.length; i++) outs.push((await reference.generate([prompts[i]], [params[i]]))[0]);
    return outs;
  };
  const unstopped = await alone(base);
  // Every other request stops at a token from the middle of its output: found late, inside a group of steps,
  // with the next group already on the GPU.
  const params = base.map((p, i) => (i % 2 === 0 ? { ...p, stopTokenIds: [unstopped[i].tokenIds[Math.floor(unstopped[i].tokenIds.length / 2)]] } : p));
  const want = await alone(params);
  assert(want.some((o) => o.finishReason === 'stop'), 'some requests stop early');
  assertEquals(reference.pipelineStats.continuationSteps, 0);
  const configs = [
    { name: 'async, 7 lookahead steps', opts: {} },
    { name: 'async, 15 lookahead steps', opts: { numLookaheadTokens: 15 } },
    { name: 'async, no lookahead', opts: { numLookaheadTokens: 0 } },
    { name: 'async, 4 sequences at a time (drains to admit)', opts: { maxNumSeqs: 4 } },
    { name: 'async, token budget 7', opts: { maxNumBatchedTokens: 7 } },
    { name: 'async, 9 blocks (preemption)', opts: { numBlocks: 9 } },
    { name: 'sync', opts: { asyncScheduling: false } },
  ];
  for (const { name, opts } of configs) {
    const e = await LLMEngine.create(gpu, `${FIXTURES}opt-tiny`, { numBlocks: 64, maxNumBatchedTokens: 256, maxNumSeqs: 16, ...opts });
    for (const pass of ['', ', prefix hits']) {
      const outs = await e.generate(prompts, params);
      outs.forEach((o, i) => {
        assertEquals(o.tokenIds, want[i].tokenIds, `${name}${pass}: request ${i}`);
        assertEquals(o.finishReason, want[i].finishReason, `${name}${pass}: request ${i} finish reason`);
        assertEquals(o.logprobs, want[i].logprobs, `${name}${pass}: request ${i} logprobs`);
      });
      assertEquals([e.kv.usage, e.runner.numStateSlotsInUse, e.scheduler.numRunning], [0, 0, 0], `${name}${pass}: blocks, state slots`);
    }
    const st = e.pipelineStats;
    console.log(`  ${name}: ${st.scheduledSteps} scheduled steps, ${st.continuationSteps} continuations, ${st.rowsDropped} rows dropped, ${e.scheduler.numPreemptions} preemptions`);
    if (name === 'sync') assertEquals(st.continuationSteps, 0);
    else assert(st.continuationSteps > 0, `${name}: continuations ran`);
    if (name.startsWith('async, 7')) assert(st.rowsDropped > 0, 'finished requests left the continuations');
    if (name.includes('9 blocks')) assert(e.scheduler.numPreemptions > 0, 'the small cache must force preemptions');
  }
});

Deno.test('asynchronous scheduling: a request aborted while its next step is on the GPU gets nothing more; the others are unaffected', async () => {
  const { ref } = await readReference('opt-tiny');
  const gpu = await testGpu();
  const params: SamplingParams = { maxTokens: 30, ignoreEos: true, presencePenalty: 0.5, logprobs: 1 };
  const sync = await LLMEngine.create(gpu, `${FIXTURES}opt-tiny`, { numBlocks: 64, asyncScheduling: false });
  const want = await sync.generate(ref.prompts, params);
  const e = await LLMEngine.create(gpu, `${FIXTURES}opt-tiny`, { numBlocks: 64, numLookaheadTokens: 3 });
  const reqs = ref.prompts.map((p) => e.addRequest(p, params));
  const got = new Map<string, number[]>(reqs.map((r) => [r.requestId, []]));
  let steps = 0, abortedAt = -1;
  while (e.hasUnfinishedRequests()) {
    for (const o of await e.step()) got.get(o.requestId)!.push(...o.newTokenIds);
    steps++;
    if (steps === 3) {
      // A continuation covering request 1 is in flight now.
      abortedAt = got.get(reqs[1].requestId)!.length;
      assert(e.scheduler.numInflightTokens(reqs[1].requestId) > 0, 'request 1 has tokens in flight');
      assert(e.abort(reqs[1].requestId));
    }
  }
  assert(abortedAt > 0 && abortedAt < 30, `aborted after ${abortedAt} tokens`);
  assertEquals(reqs[1].finishReason, 'abort');
  assertEquals(got.get(reqs[1].requestId), want[1].tokenIds.slice(0, abortedAt), 'nothing after the abort');
  assertEquals([...reqs[1].outputTokenIds], want[1].tokenIds.slice(0, abortedAt));
  reqs.forEach((r, i) => { if (i !== 1) assertEquals(got.get(r.requestId), want[i].tokenIds, `request ${i}`); });
  assert(e.pipelineStats.rowsDropped >= 1, 'the aborted row left the next continuation');
  assertEquals([e.kv.usage, e.runner.numStateSlotsInUse], [0, 0]);
});

Deno.test('asynchronous scheduling with tensorParallelSize 2: every rank records each continuation (rows compacted on each) before any reads; tokens equal TP=1 one step at a time', async () => {
  const { ref } = await readReference('opt-tiny');
  const gpu = await testGpu();
  const prompts = [...ref.prompts, ...ref.prompts];
  const params: SamplingParams[] = prompts.map((_, i) => ({ maxTokens: 3 + ((i * 5) % 14), ignoreEos: true, ...(i % 2 ? { temperature: 0.8, seed: i, frequencyPenalty: 0.3 } : {}) }));
  const want = await (await LLMEngine.create(gpu, `${FIXTURES}opt-tiny`, { numBlocks: 64, asyncScheduling: false })).generate(prompts, params);
  const tp = await LLMEngine.create(gpu, `${FIXTURES}opt-tiny`, { numBlocks: 64, numLookaheadTokens: 3, tensorParallelSize: 2 });
  const got = await tp.generate(prompts, params);
  got.forEach((o, i) => assertEquals(o.tokenIds, want[i].tokenIds, `request ${i}`));
  assert(tp.pipelineStats.continuationSteps > 0 && tp.pipelineStats.rowsDropped > 0, JSON.stringify(tp.pipelineStats));
  assertEquals([tp.kv.usage, ...tp.ranks.map((r) => r.runner.numStateSlotsInUse)], [0, 0, 0]);
});

Deno.test('LLM memory: everything it allocates (weights, activations, step buffers, KV cache) fits gpuMemoryUtilization x gpuMemoryBytes, within one block; numGpuBlocksOverride; onProgress', async () => {
  const { LLM } = await import('../../src/engine/llm.ts');
  const { LocalGpu } = await import('../../src/gpu/local.ts');
  for (const [set, tp] of [['opt-tiny', 1], ['opt-tiny', 2], ['opt-tiny-postln', 1]] as const) {
    const gpu = await LocalGpu.create();
    const budget = 0.5 * (48 << 20);
    const llm = await LLM.create({ model: `${FIXTURES}${set}`, gpu, gpuMemoryBytes: 48 << 20, gpuMemoryUtilization: 0.5, maxNumSeqs: 32, tensorParallelSize: tp });
    // Per rank (each rank's virtual GPU gets the budget); in-process ranks share one device, so divide by tp.
    const used = gpu.stats().bytesAllocated / tp;
    console.log(`  ${set} TP=${tp}: ${used} of ${budget} bytes allocated per rank (${llm.memory.numBlocks} blocks of ${llm.memory.kvPerBlock})`);
    assert(used <= budget, `${set} TP=${tp}: allocated ${used} bytes, over the ${budget}-byte budget`);
    assert(used > budget - llm.memory.kvPerBlock - 4096, `${set} TP=${tp}: ${budget - used} bytes of the budget left unused (a block is ${llm.memory.kvPerBlock})`);
    gpu.destroy();
  }
  const gpu = await testGpu();
  const progress: Array<{ file: string; loadedBytes: number }> = [];
  const small = await LLM.create({ model: `${FIXTURES}opt-tiny`, gpu, numGpuBlocksOverride: 9, onProgress: (p) => progress.push(p) });
  assertEquals(small.memory.numBlocks, 9);
  const weights = progress.filter((p) => p.file.endsWith('.safetensors'));
  assert(weights.length > 0, 'onProgress reports the weights file');
  assertEquals(weights[weights.length - 1].loadedBytes, (await Deno.stat(`${FIXTURES}opt-tiny/model.safetensors`)).size);
  assertEquals(small.engine.kv.numBlocks, 9);
});

Deno.test('LLM.dispose: aborts what runs, frees every buffer the engine holds (TP=1 and 2), leaves a given Gpu usable', async () => {
  const { LLM } = await import('../../src/engine/llm.ts');
  const gpu = await testGpu();
  for (const tensorParallelSize of [1, 2]) {
    const before = gpu.stats().bytesAllocated;
    const llm = await LLM.create({ model: `${FIXTURES}opt-tiny`, gpu, numGpuBlocksOverride: 16, tensorParallelSize });
    const running = llm.generate([{ tokens: [2, 161, 483] }], { maxTokens: 40, ignoreEos: true });
    await llm.dispose();
    const [out] = await running;
    assertEquals(out.finishReason, 'abort');
    assertEquals(gpu.stats().bytesAllocated, before, `TP=${tensorParallelSize}: every buffer freed`);
  }
  const again = await LLM.create({ model: `${FIXTURES}opt-tiny`, gpu, numGpuBlocksOverride: 16 });
  assertEquals((await again.generate([{ tokens: [2, 161, 483] }], { maxTokens: 3, ignoreEos: true }))[0].tokenIds.length, 3);
  await again.dispose();
});
