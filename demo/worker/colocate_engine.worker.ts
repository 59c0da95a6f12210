/// <reference lib="webworker" />
/**
 * The colocation scenarios' engine worker: Tandem's engine worker (src/actors/engine_worker.ts, which exposes an
 * EngineWorker over comlink) with the colocate extension bundled in.
 *
 * Why not the extension's own module URL: an engine imports its worker extension by URL inside this worker
 * (`import(url)`), and in the demo's production build a source module has no URL of its own (Vite bundles
 * workers whole, and drops their entries' exports). So this worker carries the class, and the extension spec
 * the scenarios pass (actor_workers.ts, COLOCATE_EXTENSION_SPEC) is a one-line module that hands it over.
 */
import { ColocateWorkerExtension } from '../../src/actors/colocate_extension.ts';
import '../../src/actors/engine_worker.ts';

(globalThis as { TandemColocateExtension?: unknown }).TandemColocateExtension = ColocateWorkerExtension;
