import { describe, expect, it } from 'vitest';
import { parsePromptsFile } from '../../src/cli/generate_batch.ts';
import { InvalidInputError } from '../../src/errors.ts';

describe('prompts file', () => {
  it('reads tokens and text prompts with per-request sampling fields over the defaults', () => {
    const r = parsePromptsFile(JSON.stringify([
      { tokens: [2, 5, 6] },
      { prompt: 'Hi', max_tokens: 3, temperature: 0.5, top_k: 4, stop: '\n', ignore_eos: true },
      { tokens: [2], maxTokens: 9, stop_token_ids: [7] },
    ]), { maxTokens: 16, seed: 1 });
    expect(r[0]).toEqual({ prompt: { tokens: [2, 5, 6] }, params: { maxTokens: 16, seed: 1 } });
    expect(r[1]).toEqual({ prompt: { prompt: 'Hi' }, params: { maxTokens: 3, seed: 1, temperature: 0.5, topK: 4, stop: ['\n'], ignoreEos: true } });
    expect(r[2].params).toEqual({ maxTokens: 9, seed: 1, stopTokenIds: [7] });
  });
  it('names the request and field that is wrong', () => {
    expect(() => parsePromptsFile('{', {})).toThrow(InvalidInputError);
    expect(() => parsePromptsFile('{}', {})).toThrow(/JSON array/);
    expect(() => parsePromptsFile('[{"tokens": []}]', {})).toThrow(/request 0: tokens/);
    expect(() => parsePromptsFile('[{"tokens": [2]}, {"text": "x"}]', {})).toThrow(/request 1 needs/);
    expect(() => parsePromptsFile('[{"tokens": [2], "max_tokens": "5"}]', {})).toThrow(/request 0 field "max_tokens"/);
  });
});
