/**
 * OpenAI's completions API over an `LLM`, as vLLM's OpenAI-compatible server offers it:
 *
 *   - `llm.completions.create({prompt, max_tokens, temperature, top_p, top_k, seed, stop, stream, ...})` returns
 *     OpenAI's `text_completion` object, or with `stream: true` an async iterable of chunks of the same shape.
 *   - `createOpenAIHandler(llm)` is a fetch handler (`(req: Request) => Promise<Response>`, for `Deno.serve`) for
 *     `POST /v1/completions` (JSON, or server-sent events with `stream: true`), `GET /v1/models` and
 *     `GET /health`. Bad requests get HTTP 400 with `{error: {message, type, param, code}}`; it never throws.
 *
 * Like vLLM, unknown request fields are ignored; known OpenAI fields this engine does not implement (echo,
 * suffix, logit_bias, best_of other than n) are rejected with a message naming them, rather than silently
 * producing something else. Defaults are OpenAI's: max_tokens 16, temperature 1, top_p 1, n 1.
 *
 * `n` samples per prompt come back as choices `prompt_index * n + sample_index` (OpenAI's order). `logprobs: k`
 * gives OpenAI's legacy logprobs object per choice: `tokens` (each token decoded on its own), `token_logprobs`,
 * `top_logprobs` (the k most likely tokens of each step, plus the sampled one, as vLLM does) and `text_offset`
 * (character offsets into the choice's text). They are raw logprobs (vLLM v1's default): log-softmax of the
 * model's logits before penalties and temperature.
 */
import { InvalidInputError, TandemError } from '../errors.ts';
import type { FinishReason } from './request.ts';
import type { LLM, StreamSamplingParams } from './llm.ts';
import type { TokenLogprobs } from './llm_engine.ts';
import { MAX_TOP_LOGPROBS } from '../kernels/sample.ts';

/** A request parameter is missing, of the wrong type, or out of range; `param` names it (OpenAI's `param`). */
export class InvalidRequestError extends InvalidInputError {
  readonly param: string | null;
  constructor(param: string | null, message: string) {
    super(param ? `${param}: ${message}` : message);
    this.param = param;
  }
}

export interface CompletionCreateParams {
  /** A text, one prompt's token ids, several texts, or several prompts' token ids (one choice each). */
  prompt: string | number[] | string[] | number[][];
  model?: string;
  /** Default 16 (OpenAI); null: up to the model's context length. */
  max_tokens?: number | null;
  /** Default 1 (OpenAI); 0 = greedy. */
  temperature?: number | null;
  top_p?: number | null;
  /** vLLM's extra sampling parameter: keep tokens with probability >= min_p * the most likely one's. */
  min_p?: number | null;
  /** vLLM's extension; -1 or 0 = off. */
  top_k?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  /** Samples per prompt (default 1). */
  n?: number | null;
  /** Top logprobs per token (0..20): OpenAI's legacy logprobs object on each choice. */
  logprobs?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  /** vLLM's extension (1 = off). */
  repetition_penalty?: number | null;
  /** vLLM's extensions. */
  ignore_eos?: boolean | null;
  min_tokens?: number | null;
  stop_token_ids?: number[] | null;
  user?: string;
  [unknown: string]: unknown;
}

/** OpenAI's legacy (completions) logprobs object. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Array<Record<string, number>>;
  text_offset: number[];
}

export interface CompletionChoice {
  index: number;
  text: string;
  finish_reason: FinishReason | null;
  logprobs: CompletionLogprobs | null;
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: CompletionChoice[];
  usage: CompletionUsage;
}

/** A streamed chunk: one choice's new text; the last chunk of a choice has its finish_reason. */
export interface CompletionChunk {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: CompletionChoice[];
  /** Only with `stream_options: {include_usage: true}`: null on every chunk but a last one with no choices. */
  usage?: CompletionUsage | null;
}

type Json = Record<string, unknown>;

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const given = (v: unknown) => v !== undefined && v !== null;

function optNumber(body: Json, name: string, check: (v: number) => boolean, range: string): number | undefined {
  const v = body[name];
  if (!given(v)) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidRequestError(name, `must be a number, got ${JSON.stringify(v)}`);
  if (!check(v)) throw new InvalidRequestError(name, `must be ${range}, got ${v}`);
  return v;
}

function optInt(body: Json, name: string, min: number): number | undefined {
  const v = body[name];
  if (!given(v)) return undefined;
  if (!isInt(v)) throw new InvalidRequestError(name, `must be an integer, got ${JSON.stringify(v)}`);
  if (v < min) throw new InvalidRequestError(name, `must be >= ${min}, got ${v}`);
  return v;
}

function optBool(body: Json, name: string): boolean | undefined {
  const v = body[name];
  if (!given(v)) return undefined;
  if (typeof v !== 'boolean') throw new InvalidRequestError(name, `must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

/** A validated request: prompts as token ids, engine sampling parameters. */
interface Parsed {
  prompts: number[][];
  params: StreamSamplingParams;
  stream: boolean;
  includeUsage: boolean;
}

function parseRequest(llm: LLM, body: unknown): Parsed {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new InvalidRequestError(null, 'the request body must be a JSON object');
  const b = body as Json;
  const n = optInt(b, 'n', 1) ?? 1;
  if (n > MAX_N) throw new InvalidRequestError('n', `must be <= ${MAX_N}, got ${n}`);
  // Known OpenAI fields that are not implemented: reject a non-default value rather than ignore it.
  const unsupported: Array<[string, (v: unknown) => boolean, string]> = [
    ['best_of', (v) => v === 1 || v === n, `only best_of = n (${n}) is supported: every sample is returned`],
    ['echo', (v) => v === false, 'echo (returning the prompt with the completion) is not supported: leave it out'],
    ['suffix', (v) => v === '', 'suffix (insertion) is not supported: leave it out'],
    ['logit_bias', (v) => typeof v === 'object' && v !== null && Object.keys(v).length === 0, 'logit_bias is not supported: leave it out'],
  ];
  for (const [name, isDefault, why] of unsupported) {
    const v = b[name];
    if (given(v) && !isDefault(v)) throw new InvalidRequestError(name, `${JSON.stringify(v)}: ${why}`);
  }
  const logprobs = optInt(b, 'logprobs', 0);
  if (logprobs !== undefined && logprobs > MAX_TOP_LOGPROBS) throw new InvalidRequestError('logprobs', `must be <= ${MAX_TOP_LOGPROBS}, got ${logprobs}`);
  const presencePenalty = optNumber(b, 'presence_penalty', (v) => v >= -2 && v <= 2, 'in [-2, 2]');
  const frequencyPenalty = optNumber(b, 'frequency_penalty', (v) => v >= -2 && v <= 2, 'in [-2, 2]');
  const repetitionPenalty = optNumber(b, 'repetition_penalty', (v) => v > 0 && v <= 2, 'in (0, 2]');
  if (given(b.model) && typeof b.model !== 'string') throw new InvalidRequestError('model', `must be a string, got ${JSON.stringify(b.model)}`);

  // prompt: string | number[] | string[] | number[][]
  const p = b.prompt;
  const vocab = llm.engine.config.vocabSize;
  const tokensOf = (ids: unknown[], where: string): number[] => {
    if (ids.length === 0) throw new InvalidRequestError('prompt', `${where.replace(/: $/, '') || 'the prompt'} is empty`);
    ids.forEach((t, i) => {
      if (!isInt(t) || t < 0) throw new InvalidRequestError('prompt', `${where}token ${i} is ${JSON.stringify(t)}, not a token id`);
      if (t >= vocab) throw new InvalidRequestError('prompt', `${where}token ${i} is ${t}, outside the model's vocabulary [0, ${vocab})`);
    });
    return ids as number[];
  };
  const encode = (s: string, where: string): number[] => {
    if (s.length === 0) throw new InvalidRequestError('prompt', `${where.replace(/: $/, '') || 'the prompt'} is empty`);
    const ids = llm.tokenizer.encode(s);
    const bad = ids.findIndex((t) => t >= vocab);
    if (bad >= 0) {
      throw new InvalidRequestError('prompt', `${where}the text encodes to token ${ids[bad]}, outside the model's vocabulary [0, ${vocab}) ` +
        `(the model's vocabulary is smaller than the tokenizer's: send token ids)`);
    }
    return ids;
  };
  let prompts: number[][];
  if (typeof p === 'string') prompts = [encode(p, '')];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'number')) prompts = [tokensOf(p, '')];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'string')) prompts = p.map((s, i) => encode(s as string, `prompt ${i}: `));
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => Array.isArray(x))) prompts = p.map((ids, i) => tokensOf(ids as unknown[], `prompt ${i}: `));
  else if (!given(p)) throw new InvalidRequestError('prompt', 'is required');
  else if (Array.isArray(p) && p.length === 0) throw new InvalidRequestError('prompt', 'is empty');
  else throw new InvalidRequestError('prompt', 'must be a string, an array of token ids, an array of strings, or an array of token-id arrays');

  const maxTokens = b.max_tokens === null ? undefined : optInt(b, 'max_tokens', 1) ?? 16;
  const maxLen = llm.engine.scheduler.maxModelLen;
  prompts.forEach((ids, i) => {
    const need = ids.length + (maxTokens ?? 0);
    if (need > maxLen) {
      throw new InvalidRequestError(maxTokens && ids.length < maxLen ? 'max_tokens' : 'prompt', `this model's maximum context length is ${maxLen} tokens, ` +
        `but prompt ${i} has ${ids.length} tokens` + (maxTokens ? ` and max_tokens is ${maxTokens}` : ''));
    }
  });
  const temperature = optNumber(b, 'temperature', (v) => v >= 0 && v <= 2, 'in [0, 2]') ?? 1;
  const topP = optNumber(b, 'top_p', (v) => v > 0 && v <= 1, 'in (0, 1]');
  const minP = optNumber(b, 'min_p', (v) => v >= 0 && v <= 1, 'in [0, 1]');
  const topKRaw = optInt(b, 'top_k', -1);
  const seedRaw = b.seed;
  let seed: number | undefined;
  if (given(seedRaw)) {
    if (!isInt(seedRaw) || !Number.isSafeInteger(seedRaw)) throw new InvalidRequestError('seed', `must be an integer, got ${JSON.stringify(seedRaw)}`);
    seed = Number(BigInt.asUintN(32, BigInt(seedRaw)));
  }
  let stop: string[] | undefined;
  if (typeof b.stop === 'string') stop = [b.stop];
  else if (Array.isArray(b.stop) && b.stop.every((s) => typeof s === 'string')) stop = b.stop as string[];
  else if (given(b.stop)) throw new InvalidRequestError('stop', `must be a string or an array of strings, got ${JSON.stringify(b.stop)}`);
  if (stop?.some((s) => s.length === 0)) throw new InvalidRequestError('stop', 'stop strings must not be empty');
  const stream = optBool(b, 'stream') ?? false;
  let includeUsage = false;
  if (given(b.stream_options)) {
    const so = b.stream_options;
    if (typeof so !== 'object' || Array.isArray(so)) throw new InvalidRequestError('stream_options', 'must be an object');
    if (!stream) throw new InvalidRequestError('stream_options', 'is only allowed with stream: true');
    includeUsage = optBool(so as Json, 'include_usage') ?? false;
  }
  const ignoreEos = optBool(b, 'ignore_eos');
  const minTokens = optInt(b, 'min_tokens', 0);
  if (minTokens !== undefined && maxTokens !== undefined && minTokens > maxTokens) {
    throw new InvalidRequestError('min_tokens', `(${minTokens}) exceeds max_tokens (${maxTokens})`);
  }
  let stopTokenIds: number[] | undefined;
  if (given(b.stop_token_ids)) {
    const s = b.stop_token_ids;
    if (!Array.isArray(s) || !s.every((t) => isInt(t) && t >= 0)) throw new InvalidRequestError('stop_token_ids', 'must be an array of token ids');
    stopTokenIds = s as number[];
  }
  const params: StreamSamplingParams = { temperature, n };
  if (logprobs !== undefined) params.logprobs = logprobs;
  if (presencePenalty !== undefined) params.presencePenalty = presencePenalty;
  if (frequencyPenalty !== undefined) params.frequencyPenalty = frequencyPenalty;
  if (repetitionPenalty !== undefined) params.repetitionPenalty = repetitionPenalty;
  if (maxTokens !== undefined) params.maxTokens = maxTokens;
  if (topP !== undefined) params.topP = topP;
  if (minP !== undefined) params.minP = minP;
  if (topKRaw !== undefined && topKRaw > 0) params.topK = topKRaw;
  if (seed !== undefined) params.seed = seed;
  if (stop?.length) params.stop = stop;
  if (ignoreEos !== undefined) params.ignoreEos = ignoreEos;
  if (minTokens !== undefined) params.minTokens = minTokens;
  if (stopTokenIds) params.stopTokenIds = stopTokenIds;
  return { prompts, params, stream, includeUsage };
}

const newId = () => `cmpl-${crypto.randomUUID().replaceAll('-', '')}`;

/** Most samples per prompt in one request. */
const MAX_N = 64;

/**
 * OpenAI's legacy logprobs object for `entries` (tokens in order), with text offsets counted from `offset`.
 * Each token is decoded on its own (a token holding part of a UTF-8 character decodes to U+FFFD, as in vLLM);
 * `top_logprobs` maps decoded tokens to logprobs: the step's top-k plus the sampled token.
 */
function toCompletionLogprobs(llm: LLM, entries: readonly TokenLogprobs[], offset = 0): CompletionLogprobs {
  const decode = (id: number) => llm.tokenizer.decode([id]);
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const e of entries) {
    const tok = decode(e.tokenId);
    out.tokens.push(tok);
    out.token_logprobs.push(e.logprob);
    const top: Record<string, number> = {};
    for (const t of e.top) top[decode(t.tokenId)] ??= t.logprob;
    top[tok] ??= e.logprob;
    out.top_logprobs.push(top);
    out.text_offset.push(offset);
    offset += tok.length;
  }
  return out;
}

/** `llm.completions`: OpenAI's `client.completions` over an LLM. */
export class Completions {
  constructor(private readonly llm: LLM) {}

  create(body: CompletionCreateParams & { stream: true }): Promise<AsyncIterable<CompletionChunk>>;
  create(body: CompletionCreateParams & { stream?: false | null }): Promise<Completion>;
  create(body: CompletionCreateParams): Promise<Completion | AsyncIterable<CompletionChunk>>;
  /** Validates everything (InvalidRequestError naming the field) before anything is queued. */
  async create(body: CompletionCreateParams): Promise<Completion | AsyncIterable<CompletionChunk>> {
    const { prompts, params, stream, includeUsage } = parseRequest(this.llm, body);
    const id = newId();
    const created = Math.floor(Date.now() / 1000);
    const model = this.llm.modelName;
    const promptTokens = prompts.reduce((s, p) => s + p.length, 0);
    const usage = (completion: number): CompletionUsage => ({ prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion });
    if (!stream) {
      const outs = await this.llm.generate(prompts.map((tokens) => ({ tokens })), prompts.map((_, i) => ({ ...params, requestId: `${id}-${i}` })));
      const samples = outs.flatMap((o) => o.outputs);
      return {
        id, object: 'text_completion', created, model,
        choices: samples.map((o, index) => ({
          index, text: o.text, finish_reason: o.finishReason, logprobs: o.logprobs ? toCompletionLogprobs(this.llm, o.logprobs) : null,
        })),
        usage: usage(samples.reduce((s, o) => s + o.tokenIds.length, 0)),
      };
    }
    return this.streamChunks(prompts, params, { id, created, model, includeUsage, usage });
  }

  private streamChunks(
    prompts: number[][], params: StreamSamplingParams,
    m: { id: string; created: number; model: string; includeUsage: boolean; usage: (n: number) => CompletionUsage },
  ): AsyncIterable<CompletionChunk> {
    const llm = this.llm;
    const streams: ReturnType<LLM['stream']>[] = [];
    try {
      prompts.forEach((tokens, i) => streams.push(llm.stream({ tokens }, { ...params, requestId: `${m.id}-${i}` })));
    } catch (e) {
      for (const s of streams) llm.abort(s.requestId);
      throw e;
    }
    // Merge the choices' streams into one queue of chunks, in the order the engine produces them.
    const queue: CompletionChunk[] = [];
    let wake: (() => void) | null = null;
    let remaining = streams.length;
    let failure: { e: unknown } | null = null;
    let completionTokens = 0;
    const signal = () => { const w = wake; wake = null; w?.(); };
    const head = { id: m.id, object: 'text_completion' as const, created: m.created, model: m.model };
    const extra = m.includeUsage ? { usage: null } : {};
    const n = params.n ?? 1;
    // Per choice: text offset of the next token (logprobs' text_offset continues across chunks).
    const offsets = new Map<number, number>();
    streams.forEach(async (s, promptIndex) => {
      try {
        for await (const d of s) {
          completionTokens += d.tokenIds.length;
          const index = promptIndex * n + d.index;
          let logprobs: CompletionLogprobs | null = null;
          if (d.logprobs) {
            logprobs = toCompletionLogprobs(llm, d.logprobs, offsets.get(index) ?? 0);
            offsets.set(index, (offsets.get(index) ?? 0) + logprobs.tokens.reduce((a, t) => a + t.length, 0));
          }
          if (d.text === '' && d.finishReason === null && !logprobs?.tokens.length) continue;
          queue.push({ ...head, choices: [{ index, text: d.text, finish_reason: d.finishReason, logprobs }], ...extra });
          signal();
        }
      } catch (e) {
        failure ??= { e };
      }
      remaining--;
      if (remaining === 0 && m.includeUsage && !failure) queue.push({ ...head, choices: [], usage: m.usage(completionTokens) });
      signal();
    });
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      for (const s of streams) llm.abort(s.requestId);
    };
    return {
      [Symbol.asyncIterator]: () => ({
        async next(): Promise<IteratorResult<CompletionChunk>> {
          for (;;) {
            if (queue.length) return { value: queue.shift()!, done: false };
            if (failure) { close(); throw failure.e; }
            if (remaining === 0 || closed) return { value: undefined, done: true };
            await new Promise<void>((r) => { wake = r; });
          }
        },
        return(): Promise<IteratorResult<CompletionChunk>> {
          close();
          return Promise.resolve({ value: undefined, done: true });
        },
      }),
    };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

export interface OpenAIHandlerOptions {
  /** The model id in /v1/models and responses (default: `llm.modelName`). */
  modelName?: string;
  /** Called with unexpected (non-user) errors; default: console.error. */
  onError?: (e: unknown) => void;
}

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | number };
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
}

function errorResponse(status: number, type: string, message: string, code: string | number, param: string | null = null, headers: Record<string, string> = {}): Response {
  const body: ErrorBody = { error: { message, type, param, code } };
  return json(body, status, headers);
}

/** An error as OpenAI's error object: user errors are 400 invalid_request_error, anything else 500. */
function errorFor(e: unknown, onError: (e: unknown) => void): Response {
  if (e instanceof InvalidInputError) {
    return errorResponse(400, 'invalid_request_error', e.message, e.code, e instanceof InvalidRequestError ? e.param : null);
  }
  onError(e);
  const code = e instanceof TandemError ? e.code : 'internal';
  return errorResponse(500, 'internal_error', e instanceof Error ? e.message : String(e), code);
}

/**
 * The OpenAI-compatible server as a fetch handler: `Deno.serve({port, hostname}, createOpenAIHandler(llm))`.
 * Resolves every request to a Response (400 / 404 / 405 / 500 with an OpenAI error body); never rejects.
 */
export function createOpenAIHandler(llm: LLM, opts: OpenAIHandlerOptions = {}): (req: Request) => Promise<Response> {
  const modelName = opts.modelName ?? llm.modelName;
  const onError = opts.onError ?? ((e: unknown) => console.error('tandem serve: internal error:', e));
  const startedAt = Math.floor(Date.now() / 1000);
  const routes: Record<string, Record<string, (req: Request) => Promise<Response>>> = {
    '/health': { GET: () => Promise.resolve(new Response(null, { status: 200 })) },
    '/v1/models': {
      GET: () => Promise.resolve(json({
        object: 'list',
        data: [{ id: modelName, object: 'model', created: startedAt, owned_by: 'tandem', root: modelName, parent: null, max_model_len: llm.engine.scheduler.maxModelLen }],
      })),
    },
    '/v1/completions': { POST: (req) => completions(req) },
  };

  async function completions(req: Request): Promise<Response> {
    let body: unknown;
    const text = await req.text();
    try {
      body = JSON.parse(text);
    } catch (e) {
      return errorResponse(400, 'invalid_request_error', `malformed JSON body: ${(e as Error).message}`, 'invalid_json');
    }
    if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
      const m = (body as Json).model;
      if (typeof m === 'string' && m !== modelName) {
        return errorResponse(404, 'NotFoundError', `the model \`${m}\` does not exist (this server serves \`${modelName}\`)`, 'model_not_found', 'model');
      }
    }
    const result = await llm.completions.create(body as CompletionCreateParams);
    if (!(Symbol.asyncIterator in result)) return json(result);
    const it = result[Symbol.asyncIterator]();
    const enc = new TextEncoder();
    let cancelled = false;
    const sse = new ReadableStream<Uint8Array>({
      async pull(ctrl) {
        let tail: string;
        try {
          const r = await it.next();
          if (cancelled) return;
          if (!r.done) {
            ctrl.enqueue(enc.encode(`data: ${JSON.stringify(r.value)}\n\n`));
            return;
          }
          tail = 'data: [DONE]\n\n';
        } catch (e) {
          if (cancelled) return;
          // The status line is sent: report the failure as an event, as vLLM does, then end the stream.
          tail = `data: ${await errorFor(e, onError).text()}\n\ndata: [DONE]\n\n`;
        }
        ctrl.enqueue(enc.encode(tail));
        ctrl.close();
      },
      async cancel() {
        // The client went away: abort its requests (their blocks are freed now).
        cancelled = true;
        await it.return?.();
      },
    });
    return new Response(sse, { headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' } });
  }

  return async (req: Request): Promise<Response> => {
    try {
      const path = new URL(req.url).pathname.replace(/\/+$/, '') || '/';
      const route = routes[path];
      if (!route) return errorResponse(404, 'NotFoundError', `no route ${req.method} ${path}`, 'not_found');
      const h = route[req.method];
      if (!h) {
        return errorResponse(405, 'invalid_request_error', `${req.method} is not allowed on ${path} (use ${Object.keys(route).join(', ')})`,
          'method_not_allowed', null, { allow: Object.keys(route).join(', ') });
      }
      return await h(req);
    } catch (e) {
      return errorFor(e, onError);
    }
  };
}
