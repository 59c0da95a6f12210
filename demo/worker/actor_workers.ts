/**
 * Where the colocation scenarios' actors come from, in the dev server and in the production build alike:
 * Vite bundles each worker entry (`?worker&url` gives the built script's URL), which src/actors' defaults
 * (`new URL('./training_worker.ts', import.meta.url)`, raw TypeScript) cannot be once bundled.
 */
import trainingWorkerUrl from '../../src/actors/training_worker.ts?worker&url';
import engineWorkerUrl from './colocate_engine.worker.ts?worker&url';
import tinyConfigUrl from '../models/opt-tiny/config.json?url&no-inline';

/**
 * The colocate extension for InferenceEngine's `workerExtension`: a module evaluated inside the engine worker
 * that exports the class colocate_engine.worker.ts put there (that file says why it is not a file URL).
 */
export const COLOCATE_EXTENSION_SPEC = 'data:text/javascript,export default globalThis.TandemColocateExtension;';

/** workerUrls for runColocate / runRlLoop. */
export function actorWorkerUrls(): { training: string; engine: string; extension: string } {
  return { training: absolute(trainingWorkerUrl), engine: absolute(engineWorkerUrl), extension: COLOCATE_EXTENSION_SPEC };
}

/**
 * opt-tiny as a model spec every actor worker can load on its own: synthetic weights (the fixtures' formula;
 * seed 1 gives the fixtures' opt-tiny bit for bit) for the config file this build serves.
 */
export function optTinySpec(seed = 1): string {
  return `synthetic:${absolute(tinyConfigUrl)}:${seed}`;
}

/** Worker URLs resolved against this worker's own location (actors are nested workers; loaders want http URLs). */
function absolute(url: string): string {
  return new URL(url, self.location.href).href;
}
