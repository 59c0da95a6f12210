/** Numbers for people. */

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${i === 0 ? n : n.toFixed(n >= 100 ? 0 : 1)} ${units[i]}`;
}

export function formatMs(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '—';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`;
}

export function formatRate(perSecond: number | null): string {
  return perSecond === null || !Number.isFinite(perSecond) ? '—' : perSecond >= 100 ? perSecond.toFixed(0) : perSecond.toFixed(1);
}

/** A distinct, stable colour per request index (golden-angle hues). */
export function requestColor(index: number, alpha = 1): string {
  return `hsl(${(index * 137.508 + 210) % 360} 68% 56% / ${alpha})`;
}

/** An error from a worker as a heading (from its TandemError code, carried as its name) and a message. */
export function errorParts(e: unknown): { title: string; message: string } {
  const err = e instanceof Error ? e : new Error(String(e));
  const titles: Record<string, string> = {
    model_source: 'Could not read the model',
    checkpoint_format: 'The checkpoint is damaged or not in a supported format',
    weight_mismatch: 'The weights do not match config.json',
    config: 'config.json is not a supported OPT config',
    invalid_input: 'Invalid input',
    webgpu_unavailable: 'WebGPU is not available',
    gpu_out_of_memory: 'Out of GPU memory',
    gpu_device_lost: 'The GPU device was lost',
    kv_cache_too_small: 'The KV cache is too small',
    engine_config: 'The engine settings are not valid',
  };
  return { title: titles[err.name] ?? 'Something went wrong', message: err.message };
}
