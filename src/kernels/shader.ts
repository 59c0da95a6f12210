import type { KernelSource } from '../gpu/gpu.ts';
import { SHADERS } from './shaders.gen.ts';

export type ElementType = 'f32' | 'f16';

/**
 * Specialise a WGSL file from shaders/ by named parameters: `{{NAME}}` is replaced by the value, and
 * `{{ENABLE_F16}}` becomes `enable f16;` when any parameter is the type f16. The cache key names the
 * file and every parameter, so each specialisation compiles once.
 */
export function shaderSource(file: string, params: Record<string, string | number | boolean> = {}): KernelSource {
  const key = `${file}(${Object.entries(params).map(([k, v]) => `${k}=${v}`).join(',')})`;
  // Memoised: a training step asks for ~700 kernels, and specialising a long shader each time cost ~50 ms of CPU.
  const hit = specialised.get(key);
  if (hit) return hit;
  const template = SHADERS[file];
  if (template === undefined) throw new Error(`no shader named ${file} in shaders/`);
  const usesF16 = Object.values(params).some((v) => v === 'f16');
  let code = repeat(keepIf(template, params, file), file).replaceAll('{{ENABLE_F16}}', usesF16 ? 'enable f16;' : '');
  for (const [k, v] of Object.entries(params)) code = code.replaceAll(`{{${k}}}`, String(v));
  const missing = code.match(/\{\{[A-Z_0-9]+\}\}/);
  if (missing) throw new Error(`shader ${file}: parameter ${missing[0]} was not given`);
  const source = { key, code };
  specialised.set(key, source);
  return source;
}
const specialised = new Map<string, KernelSource>();

/**
 * Conditional blocks: the lines between `//#if NAME` and `//#endif` (no nesting) stay only when params[NAME] is
 * true. For bindings a variant must not declare at all (WebGPU derives a pipeline's layout from every binding
 * its entry point references, whatever constant guards the reference).
 */
function keepIf(code: string, params: Record<string, string | number | boolean>, file: string): string {
  if (!code.includes('//#if ')) return code;
  const out: string[] = [];
  let keep = true, open: string | null = null;
  for (const line of code.split('\n')) {
    const m = line.match(/^\s*\/\/#if ([A-Z_0-9]+)\s*$/);
    if (m) {
      if (open) throw new Error(`shader ${file}: //#if ${m[1]} inside //#if ${open}`);
      if (!(m[1] in params)) throw new Error(`shader ${file}: parameter ${m[1]} (//#if) was not given`);
      open = m[1];
      keep = params[m[1]] === true;
      continue;
    }
    if (/^\s*\/\/#endif\s*$/.test(line)) {
      if (!open) throw new Error(`shader ${file}: //#endif without //#if`);
      open = null;
      keep = true;
      continue;
    }
    if (keep) out.push(line);
  }
  if (open) throw new Error(`shader ${file}: //#if ${open} is never closed`);
  return out.join('\n');
}

/**
 * Unrolled blocks: the lines between `//#repeat NAME COUNT` and `//#end` (no nesting) appear COUNT times, with
 * `{{NAME}}` replaced by 0, 1, ... COUNT - 1. For loops a kernel unrolls by hand so that its indices are constants
 * (drivers do not reliably unroll, and a dynamic index costs a bounds check and registers).
 */
function repeat(code: string, file: string): string {
  if (!code.includes('//#repeat ')) return code;
  const out: string[] = [];
  let block: { name: string; count: number; lines: string[] } | null = null;
  for (const line of code.split('\n')) {
    const m = line.match(/^\s*\/\/#repeat ([A-Z_0-9]+) (\d+)\s*$/);
    if (m) {
      if (block) throw new Error(`shader ${file}: //#repeat ${m[1]} inside //#repeat ${block.name}`);
      block = { name: m[1], count: Number(m[2]), lines: [] };
      continue;
    }
    if (/^\s*\/\/#end\s*$/.test(line)) {
      if (!block) throw new Error(`shader ${file}: //#end without //#repeat`);
      for (let i = 0; i < block.count; i++) for (const l of block.lines) out.push(l.replaceAll(`{{${block.name}}}`, String(i)));
      block = null;
      continue;
    }
    if (block) block.lines.push(line);
    else out.push(line);
  }
  if (block) throw new Error(`shader ${file}: //#repeat ${block.name} is never closed`);
  return out.join('\n');
}

/** Split a 1-D workgroup count over x and y to stay under the 65535-per-dimension limit (shaders use x + y * 65535). */
export function grid1d(count: number): [number, number] {
  return count <= 65535 ? [count, 1] : [65535, Math.ceil(count / 65535)];
}
