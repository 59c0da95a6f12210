/// <reference lib="webworker" />
/**
 * Worker entry: a device host that owns the GPUDevice inside its own dedicated worker. Its control calls
 * (attach, detach, stats, destroy) are exposed over comlink; actors talk to it over the ports attach() returns.
 * Exposed at once (calls wait for the device), so no early message is lost.
 */
import * as Comlink from 'comlink';
import type { AcquireOptions } from '../gpu/device.ts';
import { type Attached, type AttachOptions, DeviceHost, type HostStats } from './device_host.ts';

let host: Promise<DeviceHost> | null = null;
const ready = (): Promise<DeviceHost> => (host ??= DeviceHost.create());

export const hostWorkerApi = {
  async start(opts: Omit<AcquireOptions, 'gpu'> = {}): Promise<string> {
    host ??= DeviceHost.create(opts);
    return (await host).gpu.caps.adapterDescription;
  },
  async attach(opts: AttachOptions): Promise<Attached> {
    const a = (await ready()).attach(opts);
    return Comlink.transfer(a, [a.port]);
  },
  async detach(clientId: number, reason?: string): Promise<void> {
    (await ready()).detach(clientId, reason);
  },
  async stats(): Promise<HostStats> {
    return (await ready()).stats();
  },
  async destroy(): Promise<void> {
    (await ready()).destroy();
  },
};
export type HostWorkerApi = typeof hostWorkerApi;

Comlink.expose(hostWorkerApi);
