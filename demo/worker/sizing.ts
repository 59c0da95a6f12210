import type { OptConfig } from '../../src/model/config.ts';

/** The longest sequence the demo allows: the model's position table, capped so a small cache still holds one. */
export function demoMaxModelLen(config: OptConfig, kvBlocks: number, blockSize: number): number {
  return Math.min(config.maxPositions, 512, kvBlocks * blockSize);
}
