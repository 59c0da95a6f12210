/**
 * `tandem colocate [--model SPEC] [--train-steps N] [--packed] [--max-tokens N] [--gpu-memory-gb G] [--json]`:
 * the colocate scenario (src/actors/colocate.ts), vLLM's RLHF colocate example on Tandem: 4 virtual GPUs, 4
 * training actors and 2 tensor-parallel engines as Web Workers, weights handed over by handle. With --json,
 * prints {"trainingActorDeviceIds", "engineDeviceIds", "weightsChanged", "syncMs", "generations", "timingsMs", ...};
 * exits 1 when the weights did not change.
 */
import { InvalidInputError } from '../errors.ts';
import { type ColocateResult, runColocate } from '../actors/colocate.ts';

export const COLOCATE_OPTIONS = {
  'train-steps': { type: 'string' },
  packed: { type: 'boolean', default: false },
  'tensor-parallel-size': { type: 'string' },
} as const;

export const COLOCATE_USAGE = `  colocate [--model SPEC] [--train-steps N] [--packed] [--tensor-parallel-size 2] [--max-tokens 8] [--gpu-memory-gb G] [--json]
           vLLM's RLHF colocate example: 4 virtual GPUs, 4 training actors at 0.4 GPU, 2 engines of 2 tensor-parallel
           ranks on the same GPUs (Web Workers); trainers zero their weights (or train N steps), engines take them by
           handle; prints device ids, weightsChanged, syncMs, generations before/after (default model
           synthetic:opt-125m:1)`;

function int(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < 0) throw new InvalidInputError(`--${name} must be a whole number >= 0, got "${v}"`);
  return n;
}

export async function cmdColocate(v: Record<string, unknown>): Promise<ColocateResult> {
  const gb = v['gpu-memory-gb'] === undefined ? undefined : Number(v['gpu-memory-gb']);
  if (gb !== undefined && !(gb > 0)) throw new InvalidInputError(`--gpu-memory-gb must be a positive number, got "${v['gpu-memory-gb']}"`);
  const result = await runColocate({
    model: v.model as string | undefined,
    trainSteps: int(v['train-steps'], 'train-steps'),
    packed: v.packed === true,
    tensorParallelSize: int(v['tensor-parallel-size'], 'tensor-parallel-size'),
    maxTokens: int(v['max-tokens'], 'max-tokens'),
    gpuMemoryBytes: gb === undefined ? undefined : Math.round(gb * 2 ** 30),
    log: (line) => console.error(`tandem colocate: ${line}`),
  });
  return result;
}

/** The human-readable summary (without --json). */
export function formatColocate(r: ColocateResult): string {
  const short = (u: string) => u.slice(0, 12);
  const lines = [
    `model ${r.model}; ${r.trainSteps > 0 ? `trainers trained ${r.trainSteps} steps` : 'trainers zeroed their weights'}; ${r.packed ? 'packed' : 'per-tensor'} handles`,
    `training actors on: ${r.trainingActorDeviceIds.map(short).join(', ')}`,
    ...r.engineDeviceIds.map((ids, e) => `engine ${e} ranks on: ${ids.map(short).join(', ')}`),
    `colocated: ${r.colocated}; weights changed: ${r.weightsChanged}; sync ${r.syncMs} ms (${r.syncBytes.map((b) => `${(b / 1e6).toFixed(1)} MB`).join(', ')})`,
  ];
  for (const [e, gens] of r.generations.before.entries()) {
    for (const [i, g] of gens.entries()) {
      lines.push(`engine ${e} "${g.prompt}": before ${JSON.stringify(g.text)} -> after ${JSON.stringify(r.generations.after[e][i].text)}`);
    }
  }
  lines.push(`timings (ms): ${Object.entries(r.timingsMs).map(([k, ms]) => `${k} ${ms}`).join(', ')}`);
  return lines.join('\n');
}
