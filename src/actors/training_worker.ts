/// <reference lib="webworker" />
/**
 * Worker entry: a TrainingActor exposed over comlink (Deno and browser dedicated module workers alike).
 *   const a = await spawnActorWorker<TrainingActor>(new URL('./training_worker.ts', import.meta.url), host, attachOpts);
 */
import * as Comlink from 'comlink';
import { TrainingActor } from './training_actor.ts';

Comlink.expose(new TrainingActor());
