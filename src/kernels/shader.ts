import type { KernelSource } from '../gpu/gpu.ts';
import { SHADERS } from './shaders.gen.ts';

export type ElementType = 'f32' | 'f16';

/**
 * Specialise a WGSL file from shaders/ by named parameters: `{{NAME}}` is replaced by the value, and
 * `{{ENABLE_F16}}` becomes `enable f16;` when any parameter is the type f16. The cache key names the
 * file and every parameter, so each specialisation compiles once.
 */
export function shaderSource(file: string, params: Record<string, string | number | boolean> = {}): KernelSource {
  const template = SHADERS[file];
  if (template === undefined) throw new Error(`no shader named ${file} in shaders/`);
  const usesF16 = Object.values(params).some((v) => v === 'f16');
  let code = template.replaceAll('{{ENABLE_F16}}', usesF16 ? 'enable f16;' : '');
  for (const [k, v] of Object.entries(params)) code = code.replaceAll(`{{${k}}}`, String(v));
  const missing = code.match(/\{\{[A-Z_0-9]+\}\}/);
  if (missing) throw new Error(`shader ${file}: parameter ${missing[0]} was not given`);
  const key = `${file}(${Object.entries(params).map(([k, v]) => `${k}=${v}`).join(',')})`;
  return { key, code };
}

/** Split a 1-D workgroup count over x and y to stay under the 65535-per-dimension limit (shaders use x + y * 65535). */
export function grid1d(count: number): [number, number] {
  return count <= 65535 ? [count, 1] : [65535, Math.ceil(count / 65535)];
}
