/**
 * `tandem generate --prompts-file F`: serve every request of a JSON file through the engine (continuous
 * batching) and return `[{tokens, text, finishReason}]` in input order. F is a JSON array of `{tokens: [...]}`
 * or `{prompt: "..."}`, each optionally with its own sampling fields (snake_case as in OpenAI's API, or
 * camelCase): max_tokens, temperature, top_k, top_p, min_p, seed, ignore_eos, min_tokens, stop, stop_token_ids,
 * presence_penalty, frequency_penalty, repetition_penalty. The command line's sampling flags are every request's
 * defaults.
 */
import { InvalidInputError } from '../errors.ts';
import type { GenerateSamplingParams, Prompt } from '../engine/llm.ts';

type Json = Record<string, unknown>;

const FIELDS: Array<[keyof GenerateSamplingParams, string[], 'int' | 'num' | 'bool' | 'strings' | 'ints']> = [
  ['maxTokens', ['max_tokens', 'maxTokens'], 'int'],
  ['temperature', ['temperature'], 'num'],
  ['topK', ['top_k', 'topK'], 'int'],
  ['topP', ['top_p', 'topP'], 'num'],
  ['minP', ['min_p', 'minP'], 'num'],
  ['seed', ['seed'], 'int'],
  ['ignoreEos', ['ignore_eos', 'ignoreEos'], 'bool'],
  ['minTokens', ['min_tokens', 'minTokens'], 'int'],
  ['stop', ['stop'], 'strings'],
  ['stopTokenIds', ['stop_token_ids', 'stopTokenIds'], 'ints'],
  ['presencePenalty', ['presence_penalty', 'presencePenalty'], 'num'],
  ['frequencyPenalty', ['frequency_penalty', 'frequencyPenalty'], 'num'],
  ['repetitionPenalty', ['repetition_penalty', 'repetitionPenalty'], 'num'],
];

function fieldValue(v: unknown, kind: string, where: string): unknown {
  const bad = () => { throw new InvalidInputError(`${where} has the wrong type (${JSON.stringify(v)})`); };
  switch (kind) {
    case 'int': if (!Number.isInteger(v)) bad(); return v;
    case 'num': if (typeof v !== 'number' || !Number.isFinite(v)) bad(); return v;
    case 'bool': if (typeof v !== 'boolean') bad(); return v;
    case 'strings': {
      const list = typeof v === 'string' ? [v] : v;
      if (!Array.isArray(list) || list.some((s) => typeof s !== 'string')) bad();
      return list;
    }
    case 'ints': if (!Array.isArray(v) || v.some((s) => !Number.isInteger(s))) bad(); return v;
  }
  return v;
}

/** Parse and check a prompts file; every problem names the request index and the field. */
export function parsePromptsFile(text: string, defaults: GenerateSamplingParams): Array<{ prompt: Prompt; params: GenerateSamplingParams }> {
  let data: unknown;
  try { data = JSON.parse(text); } catch (e) { throw new InvalidInputError(`prompts file is not JSON: ${(e as Error).message}`); }
  if (!Array.isArray(data)) throw new InvalidInputError('prompts file must hold a JSON array of {tokens} or {prompt} objects');
  return data.map((item, i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new InvalidInputError(`request ${i} is not an object`);
    const o = item as Json;
    let prompt: Prompt;
    if (Array.isArray(o.tokens)) {
      if (o.tokens.length === 0 || o.tokens.some((t) => !Number.isInteger(t) || (t as number) < 0)) {
        throw new InvalidInputError(`request ${i}: tokens must be a non-empty array of token ids`);
      }
      prompt = { tokens: o.tokens as number[] };
    } else if (typeof o.prompt === 'string') prompt = { prompt: o.prompt };
    else throw new InvalidInputError(`request ${i} needs "tokens" (an array of ids) or "prompt" (a string)`);
    const params: GenerateSamplingParams = { ...defaults };
    for (const [key, names, kind] of FIELDS) {
      for (const n of names) if (n in o) (params as Record<string, unknown>)[key] = fieldValue(o[n], kind, `request ${i} field "${n}"`);
    }
    return { prompt, params };
  });
}
