/**
 * Weight arenas: all of a model's weights in one buffer (or as few as the device's maxBufferSize allows), each
 * group of tensors at a 256-byte-aligned offset, in one canonical order. The engine's weights and the trainer's
 * parameters share the order and the alignment, so when every tensor's size is a multiple of 256 bytes (true of
 * every OPT model: widths are multiples of 64) their layouts are byte-identical and a weight sync between them is
 * one copy per arena instead of one per tensor — wgpu spends ~16 µs submitting each copyBufferToBuffer, and
 * OPT-125m has 196 tensors. The same idea as llm.c's single `params_memory` and vLLM's packed weight buckets.
 * Kernels still bind each tensor (group) as a buffer of its own: a sub-buffer of its arena (Gpu.subBuffer).
 */
import { GpuOutOfMemoryError } from '../errors.ts';
import type { Gpu, GpuBuffer } from '../gpu/gpu.ts';
import type { OptConfig } from './config.ts';

/** Group offsets inside an arena: WebGPU's storage-binding offset alignment (and vLLM's bucket slot padding). */
export const ARENA_ALIGNMENT = 256;

/**
 * The model's tensors as the engine stores them, in canonical order: a group is stored back to back and bound
 * as one buffer (q, k and v fused); everything else is a group of one. The trainer keeps the same order with
 * every tensor a group of one.
 */
export function weightGroups(config: OptConfig): string[][] {
  const d = 'model.decoder.';
  const groups: string[][] = [[d + 'embed_tokens.weight'], [d + 'embed_positions.weight']];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `${d}layers.${l}.`, a = `${p}self_attn.`;
    groups.push(
      [`${p}self_attn_layer_norm.weight`], [`${p}self_attn_layer_norm.bias`],
      [`${a}q_proj.weight`, `${a}k_proj.weight`, `${a}v_proj.weight`], [`${a}q_proj.bias`, `${a}k_proj.bias`, `${a}v_proj.bias`],
      [`${a}out_proj.weight`], [`${a}out_proj.bias`],
      [`${p}final_layer_norm.weight`], [`${p}final_layer_norm.bias`],
      [`${p}fc1.weight`], [`${p}fc1.bias`], [`${p}fc2.weight`], [`${p}fc2.bias`],
    );
  }
  if (!config.tieWordEmbeddings) groups.push(['lm_head.weight']);
  if (config.wordEmbedProjDim !== config.hiddenSize) groups.push([d + 'project_in.weight'], [d + 'project_out.weight']);
  if (config.hasFinalLayerNorm) groups.push([d + 'final_layer_norm.weight'], [d + 'final_layer_norm.bias']);
  return groups;
}

/** Where one group sits. */
export interface ArenaSlot {
  arena: number;
  byteOffset: number;
  bytes: number;
}

export interface ArenaPlan {
  /** Size of each arena (its last group's end; groups start aligned). */
  arenaBytes: number[];
  /** One per group, in order. */
  slots: ArenaSlot[];
}

/** Pack groups of these byte sizes in order, aligned, starting a new arena where the next would pass maxBufferSize. */
export function planArenas(groupBytes: readonly number[], maxBufferSize: number): ArenaPlan {
  const arenaBytes: number[] = [];
  const slots: ArenaSlot[] = [];
  let end = 0;
  for (const bytes of groupBytes) {
    let offset = Math.ceil(end / ARENA_ALIGNMENT) * ARENA_ALIGNMENT;
    if (arenaBytes.length === 0 || (offset + bytes > maxBufferSize && end > 0)) {
      if (arenaBytes.length > 0) arenaBytes[arenaBytes.length - 1] = end;
      arenaBytes.push(0);
      offset = 0;
    }
    slots.push({ arena: arenaBytes.length - 1, byteOffset: offset, bytes });
    end = offset + bytes;
  }
  if (arenaBytes.length > 0) arenaBytes[arenaBytes.length - 1] = end;
  return { arenaBytes, slots };
}

/** Bytes a plan allocates (what memory budgets must count: the arenas, padding included). */
export function arenaPlanBytes(plan: ArenaPlan): number {
  return plan.arenaBytes.reduce((s, b) => s + b, 0);
}

/**
 * Allocate a plan's arenas and cut one sub-buffer per group (labelled `labels[i]`). Free with
 * destroyArenas(gpu, arenas): the sub-buffers end with them.
 */
export async function allocateArenas(
  gpu: Gpu, plan: ArenaPlan, labels: readonly string[], arenaLabel: string,
): Promise<{ arenas: GpuBuffer[]; groups: GpuBuffer[] }> {
  const arenas: GpuBuffer[] = [];
  try {
    for (const [i, bytes] of plan.arenaBytes.entries()) {
      if (bytes > gpu.caps.maxBufferSize) {
        throw new GpuOutOfMemoryError(`${arenaLabel}: one tensor group of ${bytes} bytes exceeds this device's maxBufferSize ${gpu.caps.maxBufferSize}`);
      }
      arenas.push(await gpu.createBuffer(Math.max(bytes, 4), plan.arenaBytes.length > 1 ? `${arenaLabel}.${i}` : arenaLabel));
    }
    const groups: GpuBuffer[] = [];
    for (const [i, s] of plan.slots.entries()) groups.push(await gpu.subBuffer(arenas[s.arena], s.byteOffset, Math.max(s.bytes, 4), labels[i]));
    return { arenas, groups };
  } catch (e) {
    destroyArenas(gpu, arenas);
    throw e;
  }
}

export function destroyArenas(gpu: Gpu, arenas: readonly GpuBuffer[]): void {
  for (const a of arenas) gpu.destroyBuffer(a);
}
