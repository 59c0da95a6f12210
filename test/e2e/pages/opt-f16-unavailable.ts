// dtype 'f16' where the adapter lacks shader-f16 (SwiftShader): OptModel.load must refuse with the typed
// WebGPUUnavailableError before it fetches any weights. The error crosses to Playwright as plain data.
import { LocalGpu, OptModel, TandemError } from '../../../src/index.ts';

export interface F16Result {
  shaderF16: boolean;
  loaded: boolean;
  error: null | { name: string; code: string | null; isTandemError: boolean; message: string };
}

export async function run(params: Record<string, string>): Promise<F16Result> {
  const set = params.set ?? 'opt-tiny';
  const gpu = await LocalGpu.create();
  try {
    const model = await OptModel.load(gpu, new URL(`/fixtures/${set}/`, location.href).href, { dtype: 'f16' });
    model.release();
    return { shaderF16: gpu.caps.shaderF16, loaded: true, error: null };
  } catch (e) {
    const err = e as Error;
    return {
      shaderF16: gpu.caps.shaderF16,
      loaded: false,
      error: { name: err.name, code: e instanceof TandemError ? e.code : null, isTandemError: e instanceof TandemError, message: err.message },
    };
  } finally {
    gpu.destroy();
  }
}
