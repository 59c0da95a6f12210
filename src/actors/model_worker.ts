/// <reference lib="webworker" />
/**
 * Worker entry: a ModelActor exposed over comlink (Deno and browser dedicated module workers alike).
 *   const a = await spawnActorWorker<ModelActor>(new URL('./model_worker.ts', import.meta.url), host, attachOpts);
 */
import * as Comlink from 'comlink';
import { ModelActor } from './model_actor.ts';

Comlink.expose(new ModelActor());
