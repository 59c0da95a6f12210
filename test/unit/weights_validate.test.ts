/** validateCheckpoint: missing, misshapen and unexpected tensors; tied heads; config/weights mismatch. */
import { describe, expect, it } from 'vitest';
import { WeightMismatchError } from '../../src/errors.ts';
import { parseOptConfig } from '../../src/model/config.ts';
import { canonicalTensorName, normaliseTensorNames } from '../../src/model/weights/names.ts';
import { parseSafetensors, serializeSafetensors } from '../../src/model/weights/safetensors.ts';
import { loadCheckpoint } from '../../src/model/weights/sources.ts';
import type { TensorMap } from '../../src/model/weights/types.ts';
import { validateCheckpoint } from '../../src/model/weights/validate.ts';
import { fsp, readFixture, readFixtureJson, tempDir } from './helpers/node.ts';

const configJson = await readFixtureJson<Record<string, unknown>>('opt-tiny/config.json');
const config = parseOptConfig(configJson);
const fresh = async (): Promise<TensorMap> => parseSafetensors(await readFixture('opt-tiny/model.safetensors'), 'model.safetensors');

function mismatch(fn: () => unknown): string {
  try { fn(); } catch (e) {
    expect(e).toBeInstanceOf(WeightMismatchError);
    return (e as Error).message;
  }
  throw new Error('expected a WeightMismatchError');
}

describe('validateCheckpoint', () => {
  it('accepts the reference and returns tensors in expectedTensors order', async () => {
    const out = validateCheckpoint(config, await fresh());
    expect(out.size).toBe(36);
    expect([...out.keys()][0]).toBe('model.decoder.embed_tokens.weight');
  });

  it('lists missing, misshapen and unexpected tensors together', async () => {
    const t = await fresh();
    t.delete('model.decoder.layers.1.fc2.bias');
    const fc1 = t.get('model.decoder.layers.0.fc1.weight')!;
    t.set('model.decoder.layers.0.fc1.weight', { ...fc1, shape: [fc1.shape[1], fc1.shape[0]] });
    t.set('model.decoder.layers.2.fc1.bias', t.get('model.decoder.layers.0.fc1.bias')!);
    const msg = mismatch(() => validateCheckpoint(config, t));
    expect(msg).toContain('missing tensors (1)');
    expect(msg).toContain(`model.decoder.layers.1.fc2.bias [${config.hiddenSize}]`);
    expect(msg).toContain('tensors with the wrong shape (1)');
    expect(msg).toContain(`model.decoder.layers.0.fc1.weight: expected [${config.ffnDim}, ${config.hiddenSize}], got [${config.hiddenSize}, ${config.ffnDim}]`);
    expect(msg).toContain('unexpected tensors (1)');
    expect(msg).toContain('model.decoder.layers.2.fc1.bias');
  });

  it('flags a tensor whose bytes do not match its shape', async () => {
    const t = await fresh();
    const b = t.get('model.decoder.final_layer_norm.bias')!;
    t.set('model.decoder.final_layer_norm.bias', { ...b, bytes: b.bytes.subarray(0, 8) });
    expect(mismatch(() => validateCheckpoint(config, t))).toMatch(/final_layer_norm\.bias: 8 bytes/);
  });

  it('accepts legacy decoder.* names and rejects a tensor stored under both names', async () => {
    const legacy: TensorMap = new Map([...(await fresh())].map(([n, t]) => [n.replace(/^model\./, ''), t]));
    expect(validateCheckpoint(config, legacy).has('model.decoder.embed_tokens.weight')).toBe(true);
    legacy.set('model.decoder.embed_tokens.weight', legacy.get('decoder.embed_tokens.weight')!);
    expect(mismatch(() => validateCheckpoint(config, legacy))).toMatch(/twice/);
    expect(canonicalTensorName('decoder.layers.0.fc1.weight')).toBe('model.decoder.layers.0.fc1.weight');
    expect(canonicalTensorName('lm_head.weight')).toBe('lm_head.weight');
    expect(normaliseTensorNames(new Map()).size).toBe(0);
  });

  it('tied embeddings: an explicit lm_head.weight is dropped, but a misshapen one is an error', async () => {
    const t = await fresh();
    const embed = t.get('model.decoder.embed_tokens.weight')!;
    t.set('lm_head.weight', embed);
    expect(validateCheckpoint(config, t).has('lm_head.weight')).toBe(false);
    t.set('lm_head.weight', { ...embed, shape: [embed.shape[1], embed.shape[0]] });
    expect(mismatch(() => validateCheckpoint(config, t))).toMatch(/lm_head\.weight: expected/);
  });

  it('untied embeddings: lm_head.weight is required and kept', async () => {
    const untied = parseOptConfig({ ...configJson, tie_word_embeddings: false });
    const t = await fresh();
    expect(mismatch(() => validateCheckpoint(untied, t))).toMatch(/missing tensors \(1\):\n {2}lm_head\.weight \[/);
    t.set('lm_head.weight', t.get('model.decoder.embed_tokens.weight')!);
    expect(validateCheckpoint(untied, t).has('lm_head.weight')).toBe(true);
  });

  it('config/weights mismatch: opt-tiny weights under the post-LN config', async () => {
    const postln = parseOptConfig(await readFixtureJson<Record<string, unknown>>('opt-tiny-postln/config.json'));
    const tiny = await fresh();
    const msg = mismatch(() => validateCheckpoint(postln, tiny));
    expect(msg).toContain('missing tensors');
    expect(msg).toContain('model.decoder.project_in.weight');
    expect(msg).toContain('tensors with the wrong shape');
    expect(msg).toContain('unexpected tensors');
    expect(msg).toContain('model.decoder.final_layer_norm.weight'); // post-LN has no final layer norm
    expect(msg).toMatch(/post-LN/);
    expect(mismatch(() => validateCheckpoint(config, new Map()))).toContain(`missing tensors (${tiny.size})`);
  });

  it('loadCheckpoint rejects a directory whose config does not fit its weights', async () => {
    const tmp = await tempDir();
    try {
      const fs = await fsp();
      await fs.writeFile(`${tmp.path}/config.json`, new TextDecoder().decode(await readFixture('opt-tiny-postln/config.json')));
      await fs.writeFile(`${tmp.path}/model.safetensors`, serializeSafetensors(await fresh()));
      await expect(loadCheckpoint(tmp.path)).rejects.toThrow(WeightMismatchError);
    } finally {
      await tmp.cleanup();
    }
  });
});
