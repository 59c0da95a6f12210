// The OPT tokenizer in the browser (page or worker): encodes the reference texts from /fixtures and streams
// them back through the incremental detokenizer.
import { OptTokenizer } from '../../../src/model/tokenizer/index.ts';

export async function run(): Promise<{ cases: number; mismatches: string[]; loadMs: number }> {
  const response = await fetch('/fixtures/tokenizer_opt_encodings.json');
  if (!response.ok) throw new Error(`fixture: HTTP ${response.status}`);
  const fixture = (await response.json()) as { cases: { text: string; ids: number[] }[] };
  const t0 = performance.now();
  const tok = await OptTokenizer.load();
  const loadMs = performance.now() - t0;
  const mismatches: string[] = [];
  for (const { text, ids } of fixture.cases) {
    const got = tok.encode(text);
    if (JSON.stringify(got) !== JSON.stringify(ids)) mismatches.push(`encode ${JSON.stringify(text)}: ${got}`);
    const detok = tok.detokenizer({ skipSpecialTokens: false });
    const streamed = got.map((id) => detok.push(id)).join('') + detok.flush();
    if (streamed !== `</s>${text}`) mismatches.push(`stream ${JSON.stringify(text)}: ${JSON.stringify(streamed)}`);
  }
  return { cases: fixture.cases.length, mismatches, loadMs };
}
