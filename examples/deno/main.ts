/**
 * Tandem from Deno, imported as an npm package: load an OPT model and stream a completion to stdout.
 *
 *   deno run -A main.ts [MODEL] [--prompt TEXT | --tokens 2,45,99] [--max-tokens N] [--gpu-memory-mb M] [--json]
 *
 * MODEL is a folder with config.json + weights, a hub-style base URL, or synthetic:opt-125m:1 (the default is
 * facebook/opt-125m on the Hugging Face hub). Without a sampling option decoding is greedy. --json prints one
 * document: {"tokens": [...], "text": "...", "finishReason": "..."}. --gpu-memory-mb (default 1024) is the memory the
 * engine plans for; its KV cache gets what the weights leave of 90% of it.
 */
import { LLM, TandemError } from 'tandem-webgpu';

function option(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

const model = Deno.args[0] && !Deno.args[0].startsWith('--') ? Deno.args[0] : 'https://huggingface.co/facebook/opt-125m/resolve/main';
const tokens = option('--tokens')?.split(',').map(Number);
const prompt = tokens ? { tokens } : option('--prompt') ?? 'The first time I was in the city, it was';
const maxTokens = Number(option('--max-tokens') ?? 32);
const gpuMemoryBytes = Number(option('--gpu-memory-mb') ?? 1024) * 2 ** 20;
const json = Deno.args.includes('--json');

try {
  const llm = await LLM.create({ model, gpuMemoryBytes, gpuMemoryUtilization: 0.9, maxModelLen: 128 });
  const ids: number[] = [];
  let text = '';
  let finishReason: string | null = null;
  const encoder = new TextEncoder();
  for await (const delta of llm.stream(prompt, { maxTokens, ignoreEos: true })) {
    ids.push(...delta.tokenIds);
    text += delta.text;
    finishReason = delta.finishReason;
    if (!json) await Deno.stdout.write(encoder.encode(delta.text));
  }
  console.log(json ? JSON.stringify({ tokens: ids, text, finishReason }) : '');
} catch (e) {
  console.error(e instanceof TandemError ? `${e.name} (${e.code}): ${e.message}` : e);
  Deno.exit(1);
}
