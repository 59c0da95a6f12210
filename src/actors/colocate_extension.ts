/**
 * The colocate worker extension (vLLM's `rlhf_utils.ColocateWorkerExtension`): mixed into every rank of an
 * InferenceEngine (`workerExtension: COLOCATE_EXTENSION_URL`), called through `collectiveRpc`:
 * - `reportDeviceId()`: the rank's virtual GPU uuid;
 * - `updateWeightsFromIpcHandles(handles)`: the rank picks the handles exported on its own virtual GPU (keyed by
 *   uuid, as the training actors give them), opens them (zero-copy views of the trainer's memory; kept open for
 *   the next sync with the same handles, as a trainer's are for its lifetime) and copies them on the GPU into
 *   its (possibly sharded) weights — one copy per arena from a packed export of the same layout; the prefix
 *   cache is reset. It returns once the device host has queued the copies, not when the GPU has run them: the
 *   device has one queue, so every later command of any actor (the engine's next step, the trainer's next
 *   update of the same memory) runs after them. That is what torch.cuda.synchronize() guarantees in the
 *   reference, without waiting (a completion wait costs ~11 ms in Deno however small the work: its mapAsync
 *   polls, then sleeps 10 ms before it looks again);
 * - `checkWeightsChanged(handles?)`: without handles, every weight of the rank is zero (what the reference
 *   checks after its trainers zeroed theirs); with handles, every weight of the rank equals its shard of the
 *   trainer's tensor, bit for bit (for trainers that trained instead of zeroing). Read back on the CPU: a check,
 *   not a fast path.
 */
import { InvalidInputError } from '../errors.ts';
import { parseSafetensors } from '../model/weights/safetensors.ts';
import { shardTensor } from '../model/tensor_parallel.ts';
import { closeTensors, copyIntoWeights, type ExportedTensors, type OpenedTensors, openTensors } from './handles.ts';
import type { EngineRank } from './extensions.ts';
import type { WeightHandles } from './training_actor.ts';

/** Opened handles per rank, by what was opened: a trainer exports the same handles for its whole life. */
const openedByRank = new WeakMap<EngineRank, { key: string; opened: OpenedTensors }>();

async function openCached(rank: EngineRank, exported: ExportedTensors): Promise<OpenedTensors> {
  // Handles name (buffer, generation, range): a generation is never reused, so equal handles mean the same memory
  // (and, from one exporter, the same index).
  const handles = exported.kind === 'packed' ? exported.buckets : Object.values(exported.handles);
  const key = `${exported.kind}|${Object.keys(exported.kind === 'packed' ? exported.index : exported.handles).length}|` +
    handles.map((h) => `${h.bufferId}:${h.generation}:${h.byteOffset}:${h.byteLength}`).join(',');
  const hit = openedByRank.get(rank);
  if (hit?.key === key) return hit.opened;
  dropCached(rank);
  const opened = await openTensors(rank.gpu, exported);
  openedByRank.set(rank, { key, opened });
  return opened;
}

function dropCached(rank: EngineRank): void {
  const hit = openedByRank.get(rank);
  if (!hit) return;
  openedByRank.delete(rank);
  closeTensors(rank.gpu, hit.opened);
}

/** What one rank's weight sync did: tensors and bytes copied, copy commands, and where its time went (ms). */
export interface SyncResult {
  tensors: number;
  bytes: number;
  copies: number;
  ms: { open: number; record: number; queued: number };
}

/** This module, for InferenceEngine's `workerExtension` option. */
export const COLOCATE_EXTENSION_URL: string = new URL('./colocate_extension.ts', import.meta.url).href;

export class ColocateWorkerExtension {
  reportDeviceId(this: EngineRank): string {
    return this.virtualGpuUuid;
  }

  async updateWeightsFromIpcHandles(this: EngineRank, handles: WeightHandles): Promise<SyncResult> {
    const exported = handles[this.virtualGpuUuid];
    if (!exported) {
      throw new InvalidInputError(
        `rank ${this.rank} on virtual GPU ${this.virtualGpuUuid} got no handles from that GPU (handles from: ${Object.keys(handles).join(', ') || 'none'})`,
      );
    }
    const t0 = performance.now();
    const opened = await openCached(this, exported);
    try {
      const t1 = performance.now();
      const { bytes, copies } = copyIntoWeights(this.gpu, opened, this.weights);
      // Cached prefix blocks hold keys and values of the old weights.
      this.llm.engine.kv.resetPrefixCache();
      const t2 = performance.now();
      // Queued on the device, after everything sent before and before anything sent after (see above); an error
      // of the copies (a stale handle: the trainer freed its memory) surfaces here, typed.
      await this.gpu.executed();
      const ms = { open: t1 - t0, record: t2 - t1, queued: performance.now() - t2 };
      return { tensors: opened.tensors.size, bytes, copies, ms };
    } catch (e) {
      dropCached(this);
      throw e;
    }
  }

  /**
   * The CPU staging path, for comparison (bench/colocate_bench.ts): weights as safetensors bytes (what a trainer's
   * saveWeights gives), written to every rank by LLM.updateWeights. Only rank 0 does it, for all ranks.
   */
  async updateWeightsFromSafetensors(this: EngineRank, bytes: Uint8Array): Promise<{ tensors: number }> {
    if (this.rank !== 0) return { tensors: 0 };
    const tensors = this.llm.updateWeights(parseSafetensors(bytes, 'trainer weights'));
    this.llm.engine.kv.resetPrefixCache();
    await Promise.all(this.llm.engine.ranks.map((r) => r.gpu.sync()));
    return { tensors };
  }

  async checkWeightsChanged(this: EngineRank, handles?: WeightHandles): Promise<boolean> {
    const weights = this.weights;
    if (!handles) {
      for (const loc of weights.locations.values()) {
        const words = new Uint32Array(await this.gpu.read(loc.buffer, loc.byteOffset, loc.byteLength));
        // +0 and -0 both count as zero (torch.allclose(p, zeros) in the reference).
        if (words.some((w) => (w & 0x7fffffff) !== 0)) return false;
      }
      return true;
    }
    const exported = handles[this.virtualGpuUuid];
    if (!exported) throw new InvalidInputError(`rank ${this.rank}: no handles from virtual GPU ${this.virtualGpuUuid}`);
    const opened = await openTensors(this.gpu, exported);
    try {
      const storage = weights.dtype === 'f16' ? 'F16' : 'F32';
      for (const [name, loc] of weights.locations) {
        const src = opened.tensors.get(name);
        if (!src) return false;
        const full = new Uint8Array(await this.gpu.read(src.buffer, src.offset, src.size));
        const want = shardTensor(name, { dtype: 'F32', shape: src.shape, bytes: full }, this.tensorParallel, storage).bytes;
        const got = new Uint8Array(await this.gpu.read(loc.buffer, loc.byteOffset, loc.byteLength));
        if (got.length !== want.length || got.some((b, i) => b !== want[i])) return false;
      }
      return true;
    } finally {
      closeTensors(this.gpu, opened);
    }
  }
}

