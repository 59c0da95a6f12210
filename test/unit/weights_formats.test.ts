/**
 * Every checkpoint format in fixtures/opt-tiny/formats loads to the tensors of opt-tiny/model.safetensors:
 * float32 formats bit for bit, float16 / bfloat16 formats bit for bit against our round-to-nearest-even
 * conversion of the float32 reference (the fixtures were rounded by PyTorch, so this also checks that
 * our rounding is PyTorch's).
 */
import { describe, expect, it } from 'vitest';
import { parseOptConfig } from '../../src/model/config.ts';
import { fromFloat32, toFloat32 } from '../../src/model/weights/dtype.ts';
import { normaliseTensorNames } from '../../src/model/weights/names.ts';
import { parsePytorchCheckpoint } from '../../src/model/weights/pytorch.ts';
import { parseSafetensors } from '../../src/model/weights/safetensors.ts';
import { loadCheckpoint } from '../../src/model/weights/sources.ts';
import type { StorageDType, TensorMap } from '../../src/model/weights/types.ts';
import { validateCheckpoint } from '../../src/model/weights/validate.ts';
import { readZipDirectory, readZipEntry } from '../../src/model/weights/zip.ts';
import { FIXTURES, readFixture, readFixtureJson } from './helpers/node.ts';
import { buildZip } from './helpers/torchzip.ts';

const config = parseOptConfig(await readFixtureJson<Record<string, unknown>>('opt-tiny/config.json'));
const reference = parseSafetensors(await readFixture('opt-tiny/model.safetensors'), 'model.safetensors');

/** Expect `tensors` to equal the reference rounded to `dtype`, bit for bit, tensor by tensor. */
function expectRoundedReference(tensors: TensorMap, dtype: StorageDType): void {
  expect([...tensors.keys()].sort()).toEqual([...reference.keys()].sort());
  for (const [name, ref] of reference) {
    const t = tensors.get(name)!;
    expect(t.dtype, name).toBe(dtype);
    expect(t.shape, name).toEqual(ref.shape);
    const want = fromFloat32(toFloat32(ref), ref.shape, dtype).bytes;
    const mismatch = t.bytes.findIndex((b, i) => b !== want[i]);
    expect(mismatch, `${name}: first differing byte`).toBe(-1);
    expect(t.bytes.byteLength, name).toBe(want.byteLength);
  }
}

describe('checkpoint formats of opt-tiny', () => {
  it('model.safetensors is the float32 reference with HF names and no lm_head', () => {
    expect(reference.size).toBe(36);
    expect(reference.has('lm_head.weight')).toBe(false);
    expect(validateCheckpoint(config, reference).size).toBe(36);
  });

  it('pytorch_model.bin (float16, legacy decoder.* names) equals the f16-rounded reference', async () => {
    const raw = await parsePytorchCheckpoint(await readFixture('opt-tiny/formats/pytorch_model.bin'), 'pytorch_model.bin');
    expect([...raw.keys()].every((n) => n.startsWith('decoder.'))).toBe(true);
    const tensors = validateCheckpoint(config, raw);
    expectRoundedReference(tensors, 'F16');
  });

  it('model.bf16.safetensors (bfloat16, explicit lm_head.weight) equals the bf16-rounded reference; lm_head is dropped', async () => {
    const raw = parseSafetensors(await readFixture('opt-tiny/formats/model.bf16.safetensors'), 'model.bf16.safetensors');
    expect(raw.has('lm_head.weight')).toBe(true);
    // The explicit head is the tied embedding: same bits.
    const head = raw.get('lm_head.weight')!.bytes;
    const embed = raw.get('model.decoder.embed_tokens.weight')!.bytes;
    expect(head.byteLength === embed.byteLength && head.every((b, i) => b === embed[i])).toBe(true);
    const tensors = validateCheckpoint(config, raw);
    expect(tensors.has('lm_head.weight')).toBe(false);
    expectRoundedReference(tensors, 'BF16');
  });

  it('sharded/ (3 shards + index) loads through loadCheckpoint to the float32 reference', async () => {
    const events: string[] = [];
    const ckpt = await loadCheckpoint(FIXTURES + 'opt-tiny/formats/sharded', { onProgress: (p) => events.push(p.file) });
    expectRoundedReference(ckpt.tensors, 'F32');
    expect(ckpt.configJson.hidden_size).toBe(64);
    expect(new Set(events)).toEqual(new Set([
      'config.json', 'model.safetensors.index.json',
      'model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors',
    ]));
  });

  it('the opt-tiny directory itself loads (config.json + model.safetensors)', async () => {
    const ckpt = await loadCheckpoint(FIXTURES + 'opt-tiny');
    expectRoundedReference(ckpt.tensors, 'F32');
  });

  it('pytorch_model.bin re-zipped with deflate-compressed entries loads to the same tensors', async () => {
    const original = await readFixture('opt-tiny/formats/pytorch_model.bin');
    const dir = readZipDirectory(original, 'pytorch_model.bin');
    const entries = [];
    for (const e of dir.values()) {
      entries.push({ name: e.name, data: (await readZipEntry(original, e, 'pytorch_model.bin')).slice(), deflate: true });
    }
    const deflated = await buildZip(entries);
    expect(deflated.byteLength).toBeLessThan(original.byteLength);
    const tensors = validateCheckpoint(config, await parsePytorchCheckpoint(deflated, 'deflated.bin'));
    expectRoundedReference(tensors, 'F16');
  });

  it('normaliseTensorNames maps decoder.* to model.decoder.* and keeps order', async () => {
    const raw = await parsePytorchCheckpoint(await readFixture('opt-tiny/formats/pytorch_model.bin'), 'pytorch_model.bin');
    const named = normaliseTensorNames(raw);
    expect([...named.keys()]).toEqual([...raw.keys()].map((n) => 'model.' + n));
  });
});
