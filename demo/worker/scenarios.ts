/**
 * The colocation scenarios the demo can run, by name. Each is a module that runs in the scenario worker
 * (scenario.worker.ts) and reports what happens as ScenarioEvents (protocol.ts); the page's panels draw them:
 *
 *   placement  'placement' events: virtual GPUs, actors as fractions of them, memory used against each budget
 *   colocate   'device-table' (which actor runs on which device id), 'timing' (handle sync), 'check' (the
 *              weights-changed check and the scenario's other assertions)
 *   rl-loop    'metric' events, series 'reward' and 'loss', one point per iteration
 *
 * They arrive with the colocation work (src/cluster, src/actors, src/train). To add one, set its loader here,
 * e.g.  colocate: () => import('./scenarios/colocate.ts'),  — the panel turns on by itself.
 */
import type { ScenarioEvent, ScenarioName } from '../protocol.ts';

export interface ScenarioModule {
  /** Run to the end, calling emit as things happen; resolve true when every check passed. */
  run(params: Record<string, string | number | boolean>, emit: (e: ScenarioEvent) => void): Promise<boolean>;
}

export const SCENARIO_TITLES: Record<ScenarioName, string> = {
  'placement': 'Placement',
  'colocate': 'Colocate scenario',
  'rl-loop': 'RL loop',
};

export const SCENARIOS: Record<ScenarioName, (() => Promise<ScenarioModule>) | null> = {
  'placement': null,
  'colocate': null,
  'rl-loop': null,
};
