/**
 * Start actor workers and device-host workers, and wire an actor to its host: attach the actor on the host
 * (which gives a MessagePort), transfer the port into the actor's worker, and connect there. Terminating an
 * actor through the returned object also detaches it on the host, which frees its buffers and invalidates the
 * handles it exported: the worker itself can no longer say goodbye.
 */
import * as Comlink from 'comlink';
import type { AttachOptions, HostControl } from './device_host.ts';
import type { HostWorkerApi } from './host_worker.ts';

/** What a worker entry exposes at least: connect(port) to the device host. */
export interface Connectable {
  connect(port: MessagePort): Promise<unknown>;
}

export interface ActorWorker<T> {
  api: Comlink.Remote<T>;
  worker: Worker;
  clientId: number;
  /** What the actor's connect() returned. */
  info: unknown;
  /** Kill the worker (mid-work or not) and detach it from the host. */
  terminate(): Promise<void>;
  /**
   * Resolves with the error message if the worker dies of an uncaught error; it is then already detached from
   * the host (buffers freed, handles invalidated). Calls still in flight to it never answer: race them with this.
   */
  crashed: Promise<string>;
}

export async function spawnActorWorker<T extends Connectable>(url: URL | string, host: HostControl, opts: AttachOptions): Promise<ActorWorker<T>> {
  const worker = new Worker(url, { type: 'module', name: opts.actorId });
  const api = Comlink.wrap<T>(worker);
  let clientId = -1;
  try {
    const attached = await host.attach(opts);
    clientId = attached.clientId;
    const info = await (api as unknown as Comlink.Remote<Connectable>).connect(Comlink.transfer(attached.port, [attached.port]));
    let terminated = false;
    let onCrash: (message: string) => void = () => {};
    const crashed = new Promise<string>((resolve) => (onCrash = resolve));
    worker.addEventListener('error', (ev) => {
      // Keep the error from taking the parent down with it (Deno's default); the host cleans up after the actor.
      ev.preventDefault();
      if (terminated) return;
      terminated = true;
      worker.terminate();
      void Promise.resolve(host.detach(clientId, `crashed: ${ev.message}`)).then(() => onCrash(ev.message));
    });
    return {
      api, worker, clientId, info, crashed,
      async terminate() {
        if (terminated) return;
        terminated = true;
        api[Comlink.releaseProxy]();
        worker.terminate();
        await host.detach(clientId, 'was terminated');
      },
    };
  } catch (e) {
    worker.terminate();
    if (clientId >= 0) await host.detach(clientId, 'failed to start');
    throw e;
  }
}

export interface HostWorker {
  control: Comlink.Remote<HostWorkerApi>;
  worker: Worker;
  /** Adapter description of the device the host acquired. */
  adapter: string;
  /** Detach every actor, destroy the device, end the worker. */
  terminate(): Promise<void>;
}

/** Run a device host in a dedicated worker; its `control` is a HostControl for spawnActorWorker. */
export async function startHostWorker(url: URL | string = new URL('./host_worker.ts', import.meta.url)): Promise<HostWorker> {
  const worker = new Worker(url, { type: 'module', name: 'device-host' });
  const control = Comlink.wrap<HostWorkerApi>(worker);
  const adapter = await control.start();
  return {
    control, worker, adapter,
    async terminate() {
      await control.destroy();
      control[Comlink.releaseProxy]();
      worker.terminate();
    },
  };
}
