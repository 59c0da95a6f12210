import type { OptConfig } from '../../src/model/config.ts';

export interface DemoEngineSizes {
  kvBlocks: number;
  blockSize: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  dtype: 'f32' | 'f16';
}

/** The longest sequence the demo allows: the model's position table, capped so a small cache still holds one. */
export function demoMaxModelLen(config: OptConfig, kvBlocks: number, blockSize: number): number {
  return Math.min(config.maxPositions, 512, kvBlocks * blockSize);
}
