export {
  OPT_BOS_TOKEN_ID,
  OPT_EOS_TOKEN_ID,
  OPT_PAD_TOKEN_ID,
  OptTokenizer,
  type DecodeOptions,
  type EncodeOptions,
  type TokenDecoder,
} from './tokenizer.ts';
export { IncrementalDetokenizer, type IncrementalDetokenizerOptions } from './detokenizer.ts';
