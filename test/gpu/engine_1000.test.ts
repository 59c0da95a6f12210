// 1000 requests on opt-tiny through LLM.generate, all at once: short random prompts, small maxTokens, a mix of
// greedy and seeded sampling, penalties, logprobs, minTokens and n = 2, plus aborts while they run. Every
// request completes (or ends aborted), every KV block and token-state slot comes back, and a sample of them
// gives exactly what it gives alone (batch invariance at scale). Prints its wall time.
import { LLM, type StreamSamplingParams } from '../../src/engine/llm.ts';
import { assert, assertEquals, FIXTURES, testGpu } from './helpers.ts';

Deno.test('1000 requests on opt-tiny all complete; blocks and state slots come back; a sample matches running alone', async () => {
  const llm = await LLM.create({ model: `${FIXTURES}opt-tiny`, gpu: await testGpu(), gpuMemoryBytes: 64 << 20, gpuMemoryUtilization: 0.5, maxNumSeqs: 64 });
  let seed = 12345;
  const rnd = (n: number) => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed >>> 8) % n; };
  const prompts = Array.from({ length: 1000 }, () => ({ tokens: [2, ...Array.from({ length: 1 + rnd(24) }, () => 3 + rnd(500))] }));
  const params: StreamSamplingParams[] = prompts.map((_, i) => {
    const sp: StreamSamplingParams = { maxTokens: 1 + rnd(8), requestId: `r${i}` };
    if (rnd(2) === 0) Object.assign(sp, { temperature: 0.7 + rnd(5) / 10, topP: 0.9, seed: i });
    if (rnd(4) === 0) Object.assign(sp, { presencePenalty: 0.5, frequencyPenalty: 0.3, repetitionPenalty: 1.2 });
    if (rnd(5) === 0) sp.logprobs = rnd(6);
    if (rnd(6) === 0) sp.minTokens = Math.min(sp.maxTokens!, 2);
    if (rnd(10) === 0) sp.n = 2;
    return sp;
  });
  const t0 = performance.now();
  const pending = llm.generate(prompts, params);
  // Abort some while they run (a few steps in).
  const toAbort = Array.from({ length: 20 }, (_, k) => `r${50 * k + 7}`);
  await new Promise((r) => setTimeout(r, 50));
  for (const id of toAbort) llm.abort(id);
  const outs = await pending;
  const ms = performance.now() - t0;
  const samples = outs.flatMap((o) => o.outputs);
  const aborted = samples.filter((s) => s.finishReason === 'abort').length;
  console.log(`  1000 requests (${samples.length} samples, ${samples.reduce((s, o) => s + o.tokenIds.length, 0)} tokens, ${aborted} aborted) in ${(ms / 1000).toFixed(1)} s`);
  assertEquals(outs.length, 1000);
  for (const [i, o] of outs.entries()) {
    assertEquals(o.outputs.length, params[i].n ?? 1);
    for (const s of o.outputs) {
      assert(s.finishReason === 'length' || s.finishReason === 'stop' || (s.finishReason === 'abort' && toAbort.includes(o.requestId)), `${o.requestId}: ${s.finishReason}`);
      if (s.finishReason !== 'abort') assert(s.tokenIds.length >= 1 && s.tokenIds.length <= params[i].maxTokens!, `${o.requestId}: ${s.tokenIds.length} tokens`);
      if (params[i].logprobs !== undefined) assertEquals(s.logprobs!.length, s.tokenIds.length);
    }
  }
  assertEquals(llm.engine.hasUnfinishedRequests(), false);
  assertEquals(llm.engine.kv.usage, 0);
  assertEquals(llm.engine.runner.numStateSlotsInUse, 0);
  const { MAX_DECODE_PLANS } = await import('../../src/engine/model_runner.ts');
  const st = llm.engine.pipelineStats;
  console.log(`  ${st.scheduledSteps} scheduled steps, ${st.continuationSteps} continuations, ${st.rowsDropped} rows dropped; ${llm.engine.runner.numDecodePlans} captured decode steps`);
  assert(llm.engine.runner.numDecodePlans > 0 && llm.engine.runner.numDecodePlans <= MAX_DECODE_PLANS, 'captured steps stay bounded');
  // Batch invariance at scale: every 37th request again, alone.
  for (let i = 0; i < 1000; i += 37) {
    if (outs[i].outputs.some((s) => s.finishReason === 'abort')) continue;
    const [again] = await llm.generate([prompts[i]], [{ ...params[i], requestId: undefined }]);
    assertEquals(again.outputs.map((s) => s.tokenIds), outs[i].outputs.map((s) => s.tokenIds), `request ${i} alone`);
    assertEquals(again.outputs.map((s) => s.logprobs), outs[i].outputs.map((s) => s.logprobs), `request ${i} alone: logprobs`);
  }
  assert(ms < 60_000, `1000 requests took ${ms} ms`);
});
