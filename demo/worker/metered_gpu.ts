/**
 * A Gpu that counts the bytes written to it: how the page shows progress of the weights' upload, which the
 * library does inside LLM.create without a callback. Everything else goes straight to the wrapped Gpu.
 */
import type { Gpu } from '../../src/gpu/gpu.ts';

export function meteredGpu(inner: Gpu, onWrite: (bytes: number) => void): Gpu {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'write') {
        return (buffer: Parameters<Gpu['write']>[0], data: ArrayBufferView, byteOffset?: number) => {
          target.write(buffer, data, byteOffset);
          onWrite(data.byteLength);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
