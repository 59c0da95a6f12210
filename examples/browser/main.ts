/**
 * The smallest useful Tandem app: load an OPT model onto WebGPU and stream a completion.
 * Query parameters: ?model=BASE_URL (default: facebook/opt-125m on the Hugging Face hub), &prompt=..., &maxTokens=N,
 * &gpuMemoryMB=M (the memory the engine may plan for; the KV cache gets what the weights leave).
 */
import { LLM, TandemError } from 'tandem-webgpu';

const params = new URLSearchParams(location.search);
const model = params.get('model') ?? 'https://huggingface.co/facebook/opt-125m/resolve/main';
const prompt = params.get('prompt') ?? 'The first time I was in the city, it was';
const maxTokens = Number(params.get('maxTokens') ?? 32);
const gpuMemoryBytes = Number(params.get('gpuMemoryMB') ?? 1024) * 2 ** 20;

const status = document.getElementById('status')!;
const out = document.getElementById('out')!;

async function main(): Promise<void> {
  status.textContent = `loading ${model}…`;
  const llm = await LLM.create({ model, gpuMemoryBytes, gpuMemoryUtilization: 0.9, maxModelLen: 128 });
  status.textContent = 'generating…';
  out.textContent = prompt;
  let tokens = 0;
  for await (const delta of llm.stream(prompt, { maxTokens })) {
    out.textContent += delta.text;
    tokens += delta.tokenIds.length;
    if (delta.finishReason) status.textContent = `done: ${tokens} tokens (${delta.finishReason})`;
  }
  document.body.dataset.done = 'true';
}

main().catch((e: unknown) => {
  status.textContent = e instanceof TandemError ? `${e.name} (${e.code}): ${e.message}` : `error: ${String(e)}`;
  document.body.dataset.done = 'error';
});
