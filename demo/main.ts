/**
 * The demo page. It only draws: the engine (GPU device, model, KV cache) lives in a Web Worker
 * (worker/engine.worker.ts) reached through Comlink, so the page stays responsive while the GPU works.
 */
import * as Comlink from 'comlink';
import { NO_WEBGPU_ADVICE } from './advice.ts';
import type { EngineApi } from './protocol.ts';
import { mountColocation } from './ui/colocation.ts';
import { byId } from './ui/dom.ts';
import { renderGpuPanel, renderUnavailable } from './ui/gpu_panel.ts';
import { KvMap } from './ui/kv_map.ts';
import { mountModelPanel } from './ui/model_panel.ts';
import { mountPlayground } from './ui/playground.ts';

const pill = byId('model-pill');
function setPill(text: string, state: 'idle' | 'busy' | 'ready'): void {
  pill.textContent = text;
  pill.className = `pill ${state === 'idle' ? '' : state}`;
}

function start(): void {
  const gpuPanel = byId('gpu-panel');
  let engine: Comlink.Remote<EngineApi>;
  try {
    engine = Comlink.wrap<EngineApi>(new Worker(new URL('./worker/engine.worker.ts', import.meta.url), { type: 'module', name: 'tandem-engine' }));
  } catch (e) {
    gpuPanel.replaceChildren(renderUnavailable(`This browser cannot start module Web Workers (${(e as Error).message}).`, NO_WEBGPU_ADVICE));
    return;
  }
  const kv = new KvMap(byId('kv-panel'), engine);
  const playground = mountPlayground(byId('playground-panel'), engine, kv);
  const model = mountModelPanel(byId('model-panel'), engine, {
    onLoadStart() {
      playground.setReady(false);
      setPill('Loading…', 'busy');
    },
    onLoaded(s) {
      playground.setReady(true);
      setPill(`${s.label} · ${s.memory.numBlocks} KV blocks`, 'ready');
      void kv.refresh();
    },
    onLoadFailed() {
      setPill('No model loaded', 'idle');
    },
  });
  mountColocation(byId('colocation-panel'));

  if (!('gpu' in navigator)) {
    // Say so at once; the worker would say the same a moment later.
    gpuPanel.replaceChildren(renderUnavailable('This browser does not offer WebGPU here (navigator.gpu is missing).', NO_WEBGPU_ADVICE));
    gpuPanel.removeAttribute('aria-busy');
    setPill('WebGPU unavailable', 'idle');
    return;
  }
  engine.gpuStatus().then(
    (status) => {
      renderGpuPanel(gpuPanel, status);
      if (status.available) model.setF16(status.tandemFeatures.some((f) => f.name === 'shader-f16' && f.enabled));
      else setPill('WebGPU unavailable', 'idle');
    },
    (e: unknown) => {
      gpuPanel.replaceChildren(renderUnavailable(`Asking for the GPU failed: ${(e as Error).message}`, NO_WEBGPU_ADVICE));
      gpuPanel.removeAttribute('aria-busy');
    },
  );
}

start();
