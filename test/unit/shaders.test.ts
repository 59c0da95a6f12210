// src/kernels/shaders.gen.ts embeds shaders/*.wgsl (the library reads WGSL from it, unbundled in Deno and bundled
// in browsers). A shader edited without regenerating would silently run the old code: fail instead, with the fix.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderShaderModule } from '../../scripts/gen-shaders.mjs';

const GENERATED = new URL('../../src/kernels/shaders.gen.ts', import.meta.url);

describe('src/kernels/shaders.gen.ts', () => {
  it('is up to date with shaders/*.wgsl', () => {
    const expected: string = renderShaderModule();
    const actual = readFileSync(GENERATED, 'utf8');
    if (actual !== expected) {
      const names = (s: string) => new Map([...s.matchAll(/^ {2}("[^"]+"): (".*"),$/gm)].map((m) => [m[1], m[2]]));
      const want = names(expected), have = names(actual);
      const stale = [...new Set([...want.keys(), ...have.keys()])].filter((k) => want.get(k) !== have.get(k));
      expect.fail(
        `src/kernels/shaders.gen.ts is stale (differs for ${stale.join(', ') || 'its header'}): ` +
          'run `npm run gen:shaders` and commit the result.',
      );
    }
  });
});
