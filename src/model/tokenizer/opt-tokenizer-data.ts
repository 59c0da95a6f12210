/**
 * The OPT tokenizer (facebook/opt-*: GPT-2 byte-level BPE, 50265 tokens, `</s>` prefix) as shipped in the
 * package. A JSON module import works unbundled in Deno, in Node/Vitest, and bundled by Vite, so no file
 * system or network access is needed. Kept in its own module so that `OptTokenizer.load()` can pull the
 * 3.5 MB table in lazily (bundlers split it into its own chunk).
 */
import optTokenizerJson from './opt-tokenizer.json' with { type: 'json' };

/** The `tokenizer.json` object (Hugging Face `tokenizers` format) of the OPT family. */
const data: object = optTokenizerJson;
export default data;
