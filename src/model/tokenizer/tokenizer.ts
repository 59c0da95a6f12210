/**
 * The OPT tokenizer: GPT-2 byte-level BPE run by @huggingface/tokenizers (a pure-JS port of Hugging Face
 * `tokenizers`, so ids match the Rust/Python library exactly).
 *
 * OPT prepends `</s>` (id 2) to every sequence; the shipped tokenizer.json does it with its TemplateProcessing
 * post-processor, so `encode` relies on that and never adds it a second time (checked at construction).
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { ConfigError, InvalidInputError } from '../../errors.ts';
import {
  type DecodeOptions,
  IncrementalDetokenizer,
  type IncrementalDetokenizerOptions,
  type TokenDecoder,
} from './detokenizer.ts';

export type { DecodeOptions, TokenDecoder };

export interface EncodeOptions {
  /** Add the `</s>` prefix OPT expects (the post-processor's template). Default true. */
  addSpecialTokens?: boolean;
}

/** The special ids of the OPT family (from its config.json and tokenizer). */
export const OPT_BOS_TOKEN_ID = 2;
export const OPT_EOS_TOKEN_ID = 2;
export const OPT_PAD_TOKEN_ID = 1;

let bundled: Promise<OptTokenizer> | undefined;

export class OptTokenizer implements TokenDecoder {
  readonly bosTokenId = OPT_BOS_TOKEN_ID;
  readonly eosTokenId = OPT_EOS_TOKEN_ID;
  readonly padTokenId = OPT_PAD_TOKEN_ID;
  /**
   * Tokens the tokenizer knows (50265 for OPT). The model's embedding table is larger (50272): ids in
   * between have no text and decode to the empty string, as in Hugging Face.
   */
  readonly vocabSize: number;
  private readonly tokenizer: Tokenizer;

  /**
   * @param tokenizerJson a parsed Hugging Face `tokenizer.json` of an OPT model. Use `OptTokenizer.load()`
   *   for the copy shipped with Tandem.
   */
  constructor(tokenizerJson: object) {
    try {
      // clean_up_tokenization_spaces: false so that decode(encode(text)) === text (the Rust library's default).
      this.tokenizer = new Tokenizer(tokenizerJson, { clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new ConfigError(`not a usable tokenizer.json: ${(e as Error).message}`, { cause: e });
    }
    this.vocabSize = this.tokenizer.get_vocab(true).size;
    const probe = this.tokenizer.encode('', { add_special_tokens: true }).ids;
    if (probe.length !== 1 || probe[0] !== OPT_BOS_TOKEN_ID) {
      throw new ConfigError(
        `tokenizer.json does not prefix </s> (id ${OPT_BOS_TOKEN_ID}) as OPT does: encode('') gave [${probe}]`,
      );
    }
  }

  /** The OPT tokenizer shipped with Tandem (loaded once, lazily: the table is 3.5 MB). */
  static load(): Promise<OptTokenizer> {
    bundled ??= import('./opt-tokenizer-data.ts').then(
      (m) => new OptTokenizer(m.default),
      (e: unknown) => {
        bundled = undefined; // let a later call retry
        throw e;
      },
    );
    return bundled;
  }

  /** Token ids of `text`, starting with `</s>` (id 2) unless `addSpecialTokens` is false. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new InvalidInputError(`encode expects a string, got ${typeof text}`);
    return this.tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** Text of `ids`. Unknown ids (e.g. the model's padding rows 50265..50271) decode to nothing. */
  decode(ids: readonly number[] | ArrayLike<number>, options: DecodeOptions = {}): string {
    const list = Array.from(ids);
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0) throw new InvalidInputError(`token id ${id} is not a non-negative integer`);
    }
    if (list.length === 0) return '';
    return this.tokenizer.decode(list, { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  /** The BPE token string of an id (byte-level alphabet, e.g. 'ĠHello'), or undefined. */
  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  /** The id of a BPE token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** A streaming detokenizer over this tokenizer (see IncrementalDetokenizer). */
  detokenizer(options: IncrementalDetokenizerOptions = {}): IncrementalDetokenizer {
    return new IncrementalDetokenizer(this, options);
  }
}
