/**
 * `tandem serve --model SPEC [--port 8000] [--host 127.0.0.1]`: the OpenAI-compatible HTTP server
 * (src/engine/openai.ts) on the serving engine. Loopback only unless --host says otherwise. Logs to stderr,
 * including the address it listens on (with --port 0, the port the system chose); stops on SIGINT/SIGTERM.
 */
import { InvalidInputError } from '../errors.ts';
import { LLM } from '../engine/llm.ts';
import { createOpenAIHandler } from '../engine/openai.ts';

export const SERVE_OPTIONS = {
  port: { type: 'string' },
  host: { type: 'string' },
  'served-model-name': { type: 'string' },
} as const;

export const SERVE_USAGE = `  serve    --model SPEC [--port 8000] [--host 127.0.0.1] [--served-model-name NAME] [--dtype f32|f16]
           [--gpu-memory-utilization U --gpu-memory-gb G] [--block-size B]
           OpenAI-compatible HTTP server: POST /v1/completions (SSE with "stream": true), GET /v1/models, GET /health`;

function num(v: unknown, name: string, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new InvalidInputError(`--${name} must be ${integer ? 'an integer' : 'a number'}, got "${v}"`);
  }
  return n;
}

/** Runs until SIGINT/SIGTERM (or `signal`), then closes the server and returns. */
export async function cmdServe(v: Record<string, unknown>, signal?: AbortSignal): Promise<Record<string, unknown>> {
  const model = v.model as string | undefined;
  if (!model) throw new InvalidInputError('--model SPEC is required');
  const dtype = v.dtype ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'f16') throw new InvalidInputError(`--dtype must be f32 or f16, got "${dtype}"`);
  const port = num(v.port, 'port', true) ?? 8000;
  if (port < 0 || port > 65535) throw new InvalidInputError(`--port must be in [0, 65535], got ${port}`);
  const hostname = (v.host as string | undefined) ?? '127.0.0.1';
  const gb = num(v['gpu-memory-gb'], 'gpu-memory-gb', false);
  const llm = await LLM.create({
    model, dtype, blockSize: num(v['block-size'], 'block-size', true),
    gpuMemoryUtilization: num(v['gpu-memory-utilization'], 'gpu-memory-utilization', false),
    gpuMemoryBytes: gb === undefined ? undefined : gb * 1024 ** 3,
    servedModelName: v['served-model-name'] as string | undefined,
  });
  console.error(`tandem: engine ready: ${llm.memory.numBlocks} KV blocks (${(llm.memory.kvCache / 1e6).toFixed(1)} MB)`);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const signals: Deno.Signal[] = Deno.build.os === 'windows' ? ['SIGINT'] : ['SIGINT', 'SIGTERM'];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  signal?.addEventListener('abort', onSignal);
  try {
    const server = Deno.serve({
      hostname, port, signal: stop.signal,
      onListen: (a) => console.error(`tandem: serving ${llm.modelName} on http://${a.hostname}:${a.port} (POST /v1/completions, GET /v1/models, GET /health)`),
      onError: (e) => {
        console.error('tandem serve: internal error:', e);
        return new Response(JSON.stringify({ error: { message: 'internal error', type: 'internal_error', param: null, code: 'internal' } }), { status: 500 });
      },
    }, createOpenAIHandler(llm));
    await server.finished;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    await llm.dispose();
  }
  console.error('tandem: server stopped');
  return {};
}
