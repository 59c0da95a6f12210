import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { IncrementalDetokenizer, OptTokenizer } from '../../src/model/tokenizer/index.ts';
import { ConfigError, InvalidInputError } from '../../src/errors.ts';

// Reference encodings computed by Hugging Face `tokenizers` (Rust). Read at test time, never copied.
const fixturesDir = process.env.TANDEM_FIXTURES ?? new URL('../../../shared/fixtures/', import.meta.url).pathname;
const fixture = JSON.parse(readFileSync(`${fixturesDir.replace(/\/?$/, '/')}tokenizer_opt_encodings.json`, 'utf8')) as {
  cases: { text: string; ids: number[] }[];
};

const MULTIBYTE_TEXTS = [
  'emoji 🤖🚀 test',
  '日本語のテキスト',
  'café naïve résumé',
  '👨‍👩‍👧‍👦 family, 🇯🇵 flag, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math',
  '中文测试：你好，世界！한국어 텍스트 and Ελληνικά',
  '🤖',
  '🚀🚀🚀🚀',
];

let tok: OptTokenizer;
beforeAll(async () => {
  tok = await OptTokenizer.load();
});

describe('OptTokenizer', () => {
  it('has the OPT vocabulary and special ids', () => {
    expect(tok.vocabSize).toBe(50265);
    expect(tok.bosTokenId).toBe(2);
    expect(tok.eosTokenId).toBe(2);
    expect(tok.padTokenId).toBe(1);
    expect(tok.idToToken(2)).toBe('</s>');
    expect(tok.tokenToId('</s>')).toBe(2);
  });

  it('load() returns one shared instance', async () => {
    expect(await OptTokenizer.load()).toBe(tok);
  });

  it(`reproduces the reference encodings (${fixture.cases.length} cases)`, () => {
    expect(fixture.cases.length).toBeGreaterThan(10);
    for (const { text, ids } of fixture.cases) {
      expect(tok.encode(text), JSON.stringify(text)).toEqual(ids);
    }
  });

  it('prefixes </s> exactly once', () => {
    for (const { text } of fixture.cases) {
      const ids = tok.encode(text);
      expect(ids[0]).toBe(2);
      expect(tok.encode(text, { addSpecialTokens: false })).toEqual(ids.slice(1));
    }
  });

  it('round-trips every text', () => {
    for (const { text } of [...fixture.cases, ...MULTIBYTE_TEXTS.map((text) => ({ text }))]) {
      const ids = tok.encode(text);
      expect(tok.decode(ids.slice(1)), JSON.stringify(text)).toBe(text);
      expect(tok.decode(ids)).toBe(`</s>${text}`);
      if (!text.includes('</s>')) expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text);
    }
  });

  it('skips special tokens only when asked', () => {
    const ids = tok.encode('</s> inside text');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(' inside text');
    expect(tok.decode([1, 2, ...tok.encode('a', { addSpecialTokens: false })], { skipSpecialTokens: true })).toBe('a');
    expect(tok.decode([1, 2])).toBe('<pad></s>');
  });

  it('decodes ids past the tokenizer vocabulary (model padding rows) to nothing', () => {
    expect(tok.decode([50265, 50271])).toBe('');
  });

  it('rejects bad input with typed errors', () => {
    expect(() => tok.decode([-1])).toThrow(InvalidInputError);
    expect(() => tok.decode([1.5])).toThrow(InvalidInputError);
    expect(() => tok.encode(42 as unknown as string)).toThrow(InvalidInputError);
    expect(() => new OptTokenizer({})).toThrow(ConfigError);
  });

  it('accepts typed arrays', () => {
    const ids = tok.encode('Hello, my dog is cute');
    expect(tok.decode(Int32Array.from(ids))).toBe(tok.decode(ids));
  });
});

describe('IncrementalDetokenizer', () => {
  const texts = [...MULTIBYTE_TEXTS, ...fixture.cases.map((c) => c.text)];

  it('token by token: concatenation equals full decode, no U+FFFD, no split characters', () => {
    for (const text of texts) {
      const ids = tok.encode(text);
      for (const skipSpecialTokens of [true, false]) {
        const detok = new IncrementalDetokenizer(tok, { skipSpecialTokens });
        const pieces = ids.map((id) => detok.push(id));
        pieces.push(detok.flush());
        for (const piece of pieces) {
          expect(piece.includes('\uFFFD'), `${JSON.stringify(text)} piece ${JSON.stringify(piece)}`).toBe(false);
          // A piece never ends with a lone high surrogate (half of an astral code point either).
          if (piece.length > 0) expect(/[\uD800-\uDBFF]$/.test(piece)).toBe(false);
        }
        expect(pieces.join('')).toBe(tok.decode(ids, { skipSpecialTokens }));
        expect(detok.text).toBe(pieces.join(''));
        expect(detok.generatedIds).toEqual(ids);
      }
    }
  });

  it('random id streams (as a model with random weights emits): concatenation equals full decode', () => {
    // Bias towards tokens that are bare bytes >= 0x80, which make broken and split UTF-8 sequences.
    const byteTokens = Array.from({ length: 50265 }, (_, id) => id).filter((id) => {
      const t = tok.idToToken(id);
      return t !== undefined && t.length === 1 && t.charCodeAt(0) >= 0xa1;
    });
    let seed = 12345;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let trial = 0; trial < 200; trial++) {
      const ids = Array.from({ length: 1 + Math.floor(rand() * 24) }, () =>
        rand() < 0.6 ? byteTokens[Math.floor(rand() * byteTokens.length)] : Math.floor(rand() * 50272),
      );
      const detok = tok.detokenizer();
      let out = '';
      for (const id of ids) out += detok.push(id);
      out += detok.flush();
      expect(out, JSON.stringify(ids)).toBe(tok.decode(ids, { skipSpecialTokens: true }));
    }
  });

  it('holds back a split emoji until its last token arrives', () => {
    const ids = tok.encode('🤖', { addSpecialTokens: false });
    expect(ids.length).toBeGreaterThan(1); // the emoji really is split across tokens
    const detok = tok.detokenizer();
    for (const id of ids.slice(0, -1)) expect(detok.push(id)).toBe('');
    expect(detok.push(ids[ids.length - 1])).toBe('🤖');
    expect(detok.flush()).toBe('');
  });

  it('accepts ids in chunks of any size', () => {
    for (const text of MULTIBYTE_TEXTS) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      for (const chunk of [2, 3, 5]) {
        const detok = tok.detokenizer();
        let out = '';
        for (let i = 0; i < ids.length; i += chunk) {
          const piece = detok.push(ids.slice(i, i + chunk));
          expect(piece.includes('\uFFFD')).toBe(false);
          out += piece;
        }
        out += detok.flush();
        expect(out).toBe(text);
      }
    }
  });

  it('streams a continuation after a prompt', () => {
    for (const [prompt, continuation] of [
      ['Hello, my name is', ' Tandem 🤖 and I speak 日本語'],
      ['emoji 🤖', '🚀🚀 done'],
      ['日本語', 'のテキスト'],
    ]) {
      const promptIds = tok.encode(prompt);
      const all = tok.encode(prompt + continuation);
      // Only meaningful where the prompt's tokens are a prefix of the whole text's tokens.
      expect(all.slice(0, promptIds.length)).toEqual(promptIds);
      const generated = all.slice(promptIds.length);
      const detok = new IncrementalDetokenizer(tok, { promptIds });
      let out = '';
      for (const id of generated) {
        const piece = detok.push(id);
        expect(piece.includes('\uFFFD')).toBe(false);
        out += piece;
      }
      out += detok.flush();
      expect(out).toBe(continuation);
      expect(detok.generatedIds).toEqual(generated);
    }
  });

  it('flush emits a truly incomplete tail, so nothing is lost', () => {
    const ids = tok.encode('🤖', { addSpecialTokens: false });
    const detok = tok.detokenizer();
    expect(detok.push(ids.slice(0, 1))).toBe('');
    const tail = detok.flush();
    expect(tail).toBe(tok.decode(ids.slice(0, 1)));
    expect(tail.includes('\uFFFD')).toBe(true);
  });

  it('skips special tokens by default', () => {
    const detok = tok.detokenizer();
    let out = '';
    for (const id of [...tok.encode('Hi there', { addSpecialTokens: false }), 2]) out += detok.push(id);
    out += detok.flush();
    expect(out).toBe('Hi there');
  });
});
