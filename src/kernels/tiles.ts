/**
 * Output tiles of the tiled GEMMs (linear.wgsl, train_matmul.wgsl): a workgroup computes TM rows x TN columns,
 * 128 or 64 each, 8 x 8 per thread. No result depends on the tile (each output is one fma chain over k in a fixed
 * order), so the choice is speed alone.
 */

/** A workgroup's output tile. */
export interface Tile {
  tm: number;
  tn: number;
}

/**
 * SMs of the GPU the tile and split-K choices were tuned on (an H100: WebGPU does not expose the SM count).
 * One 256-thread workgroup of a 128 x 128 tile fits an SM at a time (its 8 x 8 register block and operand
 * fragments need ~160 registers a thread), so a call runs in waves of SMS such workgroups and a fractional last
 * wave idles part of the GPU: M = 4096, N = 768 is 192 tiles, 1.45 waves.
 */
export const TUNED_SMS = 132;
export const LARGE_TILE: Tile = { tm: 128, tn: 128 };
const NARROW_TILE: Tile = { tm: 128, tn: 64 };
/** 128 x 128 tiles below which a call takes 64 x 128 tiles instead (four waves). */
const LARGE_TILE_MIN = 4 * TUNED_SMS;

/**
 * train_matmul.wgsl's tile for an M x N product (measured on the H100, bench/matmul_bench.ts): 64 x 128 tiles
 * (128 threads, two per SM) run the 4096 x 768 products of the backward at 23-29 TFLOP/s where 128 x 128 tiles
 * (1.45 waves) reach 19-25; with four waves or more 128 x 128 (unrolled, see the shader) is faster: 32-37
 * TFLOP/s on the LM head's products. Products at most 64 wide (attention's P V, dQ, dK, dV: N = head size)
 * take 128 x 64 tiles: a 128-wide tile would compute as many columns again for nothing. Products with K <= 64
 * (attention's scores Q K^T, dP = dO V^T: four k steps a tile) take 64 x 128 tiles (6% faster there). `batch`
 * entries count as that many more tiles. (Calls that may split K take 128 x 128 tiles whatever their count: see
 * train/kernels/matmul.ts.)
 */
export function matmulTile(M: number, N: number, batch = 1, K = Infinity): Tile {
  if (N <= 64) return NARROW_TILE;
  if (K <= 64) return { tm: 64, tn: 128 };
  const tiles = Math.ceil(M / 128) * Math.ceil(N / 128) * batch;
  return tiles >= LARGE_TILE_MIN ? LARGE_TILE : { tm: 64, tn: 128 };
}
