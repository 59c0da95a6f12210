/**
 * Streaming detokenization, as vLLM does it (vllm/transformers_utils/detokenizer_utils.py).
 *
 * A byte-level BPE token can hold part of a UTF-8 character (an emoji is often 3 tokens), so decoding tokens
 * one by one would print U+FFFD halves. The detokenizer keeps two offsets into the token list:
 *   prefixOffset .. readOffset   tokens whose text was already emitted (kept as left context)
 *   readOffset   .. end          tokens not yet emitted
 * Each push decodes tokens[prefixOffset..] and emits what lies beyond the text of tokens[prefixOffset..readOffset],
 * unless that text ends in U+FFFD (an incomplete character): then it waits for more tokens. The window stays
 * a few tokens long, so each push costs O(window), not O(sequence).
 *
 * Guarantees: no emitted piece ends with half a character, and push(...) pieces + flush() concatenate to
 * decode(all pushed ids) (for a byte-level tokenizer such as OPT's).
 */

export interface DecodeOptions {
  /** Drop special tokens (`</s>`, `<pad>`) from the text. */
  skipSpecialTokens?: boolean;
}

/** What a detokenizer needs from a tokenizer. */
export interface TokenDecoder {
  decode(ids: readonly number[], options?: DecodeOptions): string;
}

export interface IncrementalDetokenizerOptions {
  /**
   * Ids that come before the streamed ones (the prompt). They are never emitted; the last few serve as left
   * context, as some tokenizers decode a token differently at the start of a text.
   */
  promptIds?: ArrayLike<number>;
  /** Drop special tokens from the output. Default true (vLLM's default for generated text). */
  skipSpecialTokens?: boolean;
}

/** How many prompt tokens vLLM keeps as left context (INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET). */
const PROMPT_CONTEXT_TOKENS = 5;
const REPLACEMENT_CHAR = '\uFFFD';

export class IncrementalDetokenizer {
  private readonly ids: number[];
  private readonly promptLength: number;
  private readonly decodeOptions: DecodeOptions;
  private prefixOffset: number;
  private readOffset: number;
  private emitted = '';

  constructor(private readonly tokenizer: TokenDecoder, options: IncrementalDetokenizerOptions = {}) {
    this.ids = Array.from(options.promptIds ?? []);
    this.promptLength = this.ids.length;
    this.decodeOptions = { skipSpecialTokens: options.skipSpecialTokens ?? true };
    this.readOffset = this.ids.length;
    this.prefixOffset = Math.max(this.readOffset - PROMPT_CONTEXT_TOKENS, 0);
    // Never start the context window in the middle of a character.
    while (this.prefixOffset > 0 && this.decodeRange(this.prefixOffset, this.readOffset).startsWith(REPLACEMENT_CHAR)) {
      this.prefixOffset--;
    }
  }

  /** Adds generated ids; returns the newly completed text ('' while a character is still incomplete). */
  push(ids: number | ArrayLike<number>): string {
    if (typeof ids === 'number') this.ids.push(ids);
    else for (let i = 0; i < ids.length; i++) this.ids.push(ids[i]);
    const prefixText = this.decodeRange(this.prefixOffset, this.readOffset);
    const newText = this.decodeRange(this.prefixOffset, this.ids.length);
    if (newText.length <= prefixText.length || newText.endsWith(REPLACEMENT_CHAR)) return '';
    return this.advance(newText.slice(prefixText.length));
  }

  /** Emits whatever is held back (at the end of a stream; may contain U+FFFD if the bytes are truly invalid). */
  flush(): string {
    const prefixText = this.decodeRange(this.prefixOffset, this.readOffset);
    const newText = this.decodeRange(this.prefixOffset, this.ids.length);
    if (this.readOffset === this.ids.length) return '';
    return this.advance(newText.slice(prefixText.length));
  }

  /** All text emitted so far. */
  get text(): string {
    return this.emitted;
  }

  /** The generated ids pushed so far (without the prompt). */
  get generatedIds(): readonly number[] {
    return this.ids.slice(this.promptLength);
  }

  private advance(piece: string): string {
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    this.emitted += piece;
    return piece;
  }

  private decodeRange(start: number, end: number): string {
    return start >= end ? '' : this.tokenizer.decode(this.ids.slice(start, end), this.decodeOptions);
  }
}
