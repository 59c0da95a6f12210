import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { expectedTensors, parseOptConfig } from '../../src/model/config.ts';
import { planWeightArenas } from '../../src/model/gpu_weights.ts';
import { ARENA_ALIGNMENT, planArenas, weightGroups } from '../../src/model/weight_arena.ts';

const fixturesDir = process.env.TANDEM_FIXTURES ?? new URL('../../../shared/fixtures/', import.meta.url).pathname;
const config = (name: string) => parseOptConfig(JSON.parse(readFileSync(`${fixturesDir.replace(/\/?$/, '/')}${name}/config.json`, 'utf8')));

/** The trainer's plan: the same order, every tensor a group of its own (src/train/training_model.ts). */
function trainerPlan(name: string, maxBufferSize: number) {
  const c = config(name);
  const shapes = expectedTensors(c);
  const order = weightGroups(c).flat();
  return { order, plan: planArenas(order.map((n) => shapes.get(n)!.reduce((a, b) => a * b, 1) * 4), maxBufferSize) };
}

describe('weight arenas', () => {
  it('packs groups in order at aligned offsets, starting a new arena where the next would pass maxBufferSize', () => {
    const plan = planArenas([100, 300, 256, 600, 10], 1024);
    expect(plan.slots).toEqual([
      { arena: 0, byteOffset: 0, bytes: 100 },
      { arena: 0, byteOffset: 256, bytes: 300 },
      { arena: 0, byteOffset: 768, bytes: 256 }, // ends exactly at the limit
      { arena: 1, byteOffset: 0, bytes: 600 }, // 1024 + 600 would pass it
      { arena: 1, byteOffset: 768, bytes: 10 },
    ]);
    expect(plan.arenaBytes).toEqual([1024, 778]);
    // A group larger than the limit gets an arena of its own (the allocation then reports it).
    expect(planArenas([10, 5000, 10], 1024).slots.map((s) => s.arena)).toEqual([0, 1, 2]);
  });

  it('covers every tensor of the model exactly once, in every variant', () => {
    for (const name of ['opt-tiny', 'opt-tiny-postln', 'opt-125m-synth']) {
      const c = config(name);
      expect(weightGroups(c).flat().sort()).toEqual([...expectedTensors(c).keys()].sort());
    }
  });

  it("OPT-125m: the trainer's parameter layout is the engine's weight layout byte for byte (one copy syncs them)", () => {
    const c = config('opt-125m-synth');
    for (const maxBufferSize of [2 ** 40, 256 * 2 ** 20]) {
      const engine = planWeightArenas(c, 'f32', { rank: 0, size: 1 }, maxBufferSize);
      const trainer = trainerPlan('opt-125m-synth', maxBufferSize);
      expect(trainer.plan.arenaBytes).toEqual(engine.arenaBytes);
      // Where each tensor starts: the engine's fused q/k/v groups hold their three tensors back to back.
      const shapes = expectedTensors(c);
      const engineStarts: number[] = [];
      weightGroups(c).forEach((names, g) => {
        let off = engine.slots[g].byteOffset;
        for (const n of names) { engineStarts.push(engine.slots[g].arena * 2 ** 40 + off); off += shapes.get(n)!.reduce((a, b) => a * b, 1) * 4; }
      });
      expect(trainer.plan.slots.map((s) => s.arena * 2 ** 40 + s.byteOffset)).toEqual(engineStarts);
      expect(engine.slots.every((s) => s.byteOffset % ARENA_ALIGNMENT === 0)).toBe(true);
    }
    // One arena when the device allows (an H100's maxBufferSize does); 501 MB of f32 weights.
    expect(planWeightArenas(c, 'f32', { rank: 0, size: 1 }, 2 ** 40).arenaBytes.length).toBe(1);
  });
});
