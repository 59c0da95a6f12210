/**
 * What one OptTrainingModel.forwardBackward records, without a GPU: dispatches per kernel, FLOPs of the
 * matmuls, and the bytes the model allocates (parameters, gradients, saved activations, scratch), for a
 * given config and batch. Runs the real recording code against a counting Gpu, so the figures are exact.
 * Usage: deno run -A bench/train_plan.ts [--batch 8 --len 512] [--binding-mib 2048]
 * (opt-125m config with synthetic-shaped zero weights; nothing is computed.)
 */
import type { BufferBinding, Gpu, GpuBuffer, GpuStats, Kernel, KernelSource, Recording } from '../src/gpu/gpu.ts';
import type { GpuCaps } from '../src/gpu/device.ts';
import { OPT_125M_CONFIG_JSON, expectedTensors, parseOptConfig } from '../src/model/config.ts';
import type { TensorMap } from '../src/model/weights/types.ts';
import { OptTrainingModel } from '../src/train/training_model.ts';

const args = Deno.args;
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const B = opt('batch', 8), L = opt('len', 512), bindingMiB = opt('binding-mib', 2048);

class CountingGpu implements Gpu {
  caps: GpuCaps = {
    adapterDescription: 'counting stub', isFallbackAdapter: false, shaderF16: false, subgroups: false, timestampQuery: false,
    maxStorageBindingSize: bindingMiB * 1024 * 1024, maxBufferSize: 2 ** 40, maxWorkgroupStorageSize: 32768,
    maxInvocationsPerWorkgroup: 1024, maxStorageBuffersPerStage: 16, minStorageOffsetAlignment: 256, maxWorkgroupsPerDimension: 65535,
  };
  private next = 1;
  bytes = 0;
  peak = 0;
  dispatches = new Map<string, { count: number; workgroups: number }>();
  matmulFlops = 0;
  private kernels = new Map<number, string>();
  createBuffer(size: number, label: string): Promise<GpuBuffer> {
    this.bytes += Math.ceil(size / 16) * 16;
    this.peak = Math.max(this.peak, this.bytes);
    return Promise.resolve({ id: this.next++, size, label });
  }
  subBuffer(parent: GpuBuffer, byteOffset: number, byteLength: number, label: string): Promise<GpuBuffer> {
    return Promise.resolve({ id: this.next++, size: byteLength, label, parent, parentOffset: byteOffset });
  }
  destroyBuffer(b: GpuBuffer): void { if (!b.parent) this.bytes -= Math.ceil(b.size / 16) * 16; }
  write(): void {}
  read(): Promise<ArrayBuffer> { return Promise.resolve(new ArrayBuffer(4)); }
  kernel(src: KernelSource): Kernel {
    const id = this.next++;
    this.kernels.set(id, `${src.key.replace(/\(.*\)/, '')}${src.entryPoint ? '#' + src.entryPoint : ''}`);
    return { id, key: src.key };
  }
  dispatch(k: Kernel, _b: ReadonlyArray<GpuBuffer | BufferBinding>, params: Uint32Array | null, wg: readonly [number, number?, number?]): void {
    const name = this.kernels.get(k.id)!;
    const e = this.dispatches.get(name) ?? { count: 0, workgroups: 0 };
    e.count++;
    e.workgroups += wg[0] * (wg[1] ?? 1) * (wg[2] ?? 1);
    this.dispatches.set(name, e);
    // train_matmul params: M, N, K first; batch count is the z dimension (or the number of k slices).
    if (name === 'train_matmul' && params) {
      const split = params[22] > 0;
      this.matmulFlops += 2 * params[0] * params[1] * params[2] * (split ? 1 : (wg[2] ?? 1));
    }
    if (name === 'linear' && params) this.matmulFlops += 2 * params[0] * params[1] * params[2];
  }
  copy(): void {}
  capture(record: () => void): Recording { record(); return { id: 0, dispatches: 0 }; }
  replay(): void {}
  releaseRecording(): void {}
  flush(): void {}
  sync(): Promise<void> { return Promise.resolve(); }
  stats(): GpuStats {
    return { bytesAllocated: this.bytes, peakBytesAllocated: this.peak, buffers: 0, kernels: 0, bindGroups: 0, uniformBuffers: 0, dispatches: 0, submits: 0 };
  }
  destroy(): void {}
}

const config = parseOptConfig(OPT_125M_CONFIG_JSON);
const tensors: TensorMap = new Map();
let paramCount = 0;
for (const [name, shape] of expectedTensors(config)) {
  const n = shape.reduce((a, b) => a * b, 1);
  paramCount += n;
  tensors.set(name, { dtype: 'F32', shape, bytes: new Uint8Array(n * 4) });
}
const gpu = new CountingGpu();
const model = await OptTrainingModel.create(gpu, config, tensors, { maxBatchTokens: B * L });
const afterCreate = gpu.bytes;
const ids = Array.from({ length: B }, (_, b) => Array.from({ length: L }, (_, i) => (b * 7919 + i * 104729) % config.vocabSize));
model.zeroGrads();
gpu.dispatches.clear();
gpu.matmulFlops = 0;
model.forwardBackward({ ids });
const MiB = (x: number) => `${(x / 2 ** 20).toFixed(1)} MiB`;
const rows = [...gpu.dispatches].sort((a, b) => b[1].count - a[1].count);
console.log(`OPT-125m forwardBackward, ${B} x ${L} tokens (${paramCount} parameters), binding limit ${bindingMiB} MiB`);
console.log(`logit rows per chunk: ${model.logitRows}`);
console.log(`dispatches: ${rows.reduce((s, r) => s + r[1].count, 0)}`);
for (const [name, e] of rows) console.log(`  ${name.padEnd(34)} ${String(e.count).padStart(5)} dispatches, ${e.workgroups} workgroups`);
console.log(`matmul FLOPs (tiles above the causal diagonal excluded only where skipped): ${(gpu.matmulFlops / 1e12).toFixed(3)} TFLOP`);
console.log(`memory: parameters ${MiB(paramCount * 4)}, gradients ${MiB(paramCount * 4)}, activations + scratch ${MiB(model.activationBytes())}; total allocated ${MiB(afterCreate)}`);
console.log(`(+ AdamW state, 2 x parameters = ${MiB(paramCount * 8)}, held by the optimizer)`);
