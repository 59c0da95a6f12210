// Worker side of run.html?context=worker: runs the requested module's run() inside this dedicated worker.
import { errorText, type RunReply, type RunRequest, runModule } from './protocol.ts';

const scope = self as unknown as DedicatedWorkerGlobalScope;
scope.onmessage = async (e: MessageEvent<RunRequest>) => {
  let reply: RunReply;
  try {
    reply = { ok: true, result: await runModule(e.data.module, e.data.params) };
  } catch (err) {
    reply = { ok: false, error: errorText(err) };
  }
  scope.postMessage(reply);
};
