// Main-thread side of run.html: runs ?module= here or in a dedicated module worker (?context=worker).
import { errorText, type RunReply, type RunRequest, runModule } from './protocol.ts';

interface HarnessWindow {
  __result?: unknown;
  __error?: string;
  __done?: boolean;
}
const w = window as unknown as HarnessWindow;

function runInWorker(request: RunRequest): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./harness.worker.ts', import.meta.url), { type: 'module', name: 'tandem-test' });
    worker.onmessage = (e: MessageEvent<RunReply>) => {
      worker.terminate();
      if (e.data.ok) resolve(e.data.result);
      else reject(new Error(`in the worker: ${e.data.error}`));
    };
    worker.onerror = (e) => {
      e.preventDefault();
      worker.terminate();
      reject(new Error(`worker failed to load or threw: ${e.message || 'unknown error'} (${e.filename}:${e.lineno})`));
    };
    worker.postMessage(request);
  });
}

async function main(): Promise<unknown> {
  const params = Object.fromEntries(new URLSearchParams(location.search));
  const { module, context = 'main' } = params;
  if (!module) throw new Error('usage: run.html?module=/absolute/path/to/module.ts[&context=main|worker]');
  if (context === 'worker') return runInWorker({ module, params });
  if (context !== 'main') throw new Error(`context must be 'main' or 'worker', got '${context}'`);
  return runModule(module, params);
}

const status = document.getElementById('status')!;
const output = document.getElementById('output')!;
main().then(
  (result) => {
    w.__result = result;
    status.textContent = 'done';
    output.textContent = JSON.stringify(result, null, 2);
  },
  (e: unknown) => {
    w.__error = errorText(e);
    status.textContent = 'failed';
    output.textContent = w.__error;
  },
).finally(() => {
  w.__done = true;
});
