/**
 * Synthetic checkpoints as a file source: config.json plus a model.safetensors made on demand from the fixtures'
 * weight formula (src/model/weights/synthetic.ts). Serving them as files lets every source take the same path
 * through LLM.create, with the same progress reporting.
 */
import { OPT_125M_CONFIG_JSON, parseOptConfig } from '../../src/model/config.ts';
import { serializeSafetensors } from '../../src/model/weights/safetensors.ts';
import type { ModelFileReader } from '../../src/model/weights/sources.ts';
import { syntheticTensors } from '../../src/model/weights/synthetic.ts';
import type { SyntheticPreset } from '../protocol.ts';
import tinyConfig from '../models/opt-tiny/config.json';

/**
 * The demo's small model: the architecture of the fixtures' opt-tiny set (vocabulary cut to OPT's first 512
 * tokens, which are common words and punctuation). Small enough for a CPU WebGPU (SwiftShader) to stream
 * quickly; its text is word salad, as synthetic weights must be. The config is a file (models/opt-tiny/) because
 * the colocation scenarios' workers load models by URL (worker/actor_workers.ts).
 */
export const OPT_TINY_CONFIG_JSON: Record<string, unknown> = tinyConfig;

export function presetConfig(preset: SyntheticPreset): Record<string, unknown> {
  return preset === 'opt-125m' ? structuredClone(OPT_125M_CONFIG_JSON) : structuredClone(OPT_TINY_CONFIG_JSON);
}

export function syntheticReader(preset: SyntheticPreset, seed: number): ModelFileReader {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`the seed must be an integer, got ${seed}`);
  const configJson = presetConfig(preset);
  const files: Record<string, () => Uint8Array> = {
    'config.json': () => new TextEncoder().encode(JSON.stringify(configJson)),
    'model.safetensors': () => serializeSafetensors(syntheticTensors(parseOptConfig(configJson), seed)),
  };
  const where = `synthetic:${preset}:${seed}`;
  return {
    description: where,
    locate: (name) => `${where}/${name}`,
    read(name, options = {}) {
      const make = files[name];
      if (!make) return Promise.resolve(null); // only optional probes ask for anything else
      const bytes = make();
      options.onProgress?.({ file: name, loadedBytes: bytes.byteLength, totalBytes: bytes.byteLength });
      return Promise.resolve(bytes);
    },
    list: () => Promise.resolve(Object.keys(files)),
  };
}
