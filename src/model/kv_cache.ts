import { GpuOutOfMemoryError } from '../errors.ts';
import type { Gpu } from '../gpu/gpu.ts';
import type { KvCacheLayer } from '../kernels/paged_attention.ts';
import type { ElementType } from '../kernels/shader.ts';
import type { OptConfig } from './config.ts';
import { NO_TENSOR_PARALLEL, type TensorParallel } from './tensor_parallel.ts';

export const SUPPORTED_BLOCK_SIZES = [8, 16, 32] as const;

/**
 * The paged KV cache's GPU memory: per layer, keys and values as [numBlocks * blockSize, numHeads * headDim]
 * (this rank's heads only under tensor parallelism).
 */
export interface PagedKvCache {
  blockSize: number;
  numBlocks: number;
  dtype: ElementType;
  layers: KvCacheLayer[];
  bytes: number;
}

export function kvCacheBytesPerBlock(config: OptConfig, blockSize: number, dtype: ElementType, tp: TensorParallel = NO_TENSOR_PARALLEL): number {
  return 2 * config.numLayers * blockSize * (config.hiddenSize / tp.size) * (dtype === 'f16' ? 2 : 4);
}

export async function allocateKvCache(
  gpu: Gpu, config: OptConfig, a: { blockSize: number; numBlocks: number; dtype: ElementType; tp?: TensorParallel },
): Promise<PagedKvCache> {
  const width = config.hiddenSize / (a.tp ?? NO_TENSOR_PARALLEL).size;
  if (!(SUPPORTED_BLOCK_SIZES as readonly number[]).includes(a.blockSize)) {
    throw new RangeError(`block size ${a.blockSize} is not supported (use ${SUPPORTED_BLOCK_SIZES.join(', ')})`);
  }
  const layerBytes = a.numBlocks * a.blockSize * width * (a.dtype === 'f16' ? 2 : 4);
  if (layerBytes > gpu.caps.maxStorageBindingSize) {
    throw new GpuOutOfMemoryError(
      `KV cache of ${a.numBlocks} blocks needs ${layerBytes} bytes per layer, over this device's ${gpu.caps.maxStorageBindingSize}-byte binding limit`,
    );
  }
  const layers: KvCacheLayer[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    layers.push({ key: await gpu.createBuffer(layerBytes, `kv.${l}.key`), value: await gpu.createBuffer(layerBytes, `kv.${l}.value`) });
  }
  return { blockSize: a.blockSize, numBlocks: a.numBlocks, dtype: a.dtype, layers, bytes: 2 * config.numLayers * layerBytes };
}
