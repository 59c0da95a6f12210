/**
 * The colocation scenarios the demo can run, by name. Each is a module that runs in the scenario worker
 * (scenario.worker.ts) and reports what happens as ScenarioEvents (protocol.ts); the page's panels draw them:
 *
 *   placement  'placement' events: virtual GPUs, actors as fractions of them, memory used against each budget
 *              (the colocate layout, placed and loaded, then taken down)
 *   colocate   runColocate (src/actors/colocate.ts) on opt-tiny: 'placement' at each step, 'device-table' (which
 *              actor runs on which device id), 'timing' (each step, the handle sync), 'generations', 'check'
 *   rl-loop    runRlLoop (src/actors/rl_loop.ts) on opt-tiny: 'metric' events, series 'mean reward' and 'loss',
 *              one point per iteration, and a 'check' that the mean reward rose
 *
 * The actors they start are nested workers of the scenario worker (worker/actor_workers.ts); the device host
 * lives in the scenario worker, so no GPU work touches the page. A loader set to null (and scenario_info.ts's
 * SCENARIO_AVAILABLE false) shows its panel as "coming" with its Run button off.
 */
import type { ScenarioEvent, ScenarioName } from '../protocol.ts';

export interface ScenarioModule {
  /** Run to the end, calling emit as things happen; resolve true when every check passed. */
  run(params: Record<string, string | number | boolean>, emit: (e: ScenarioEvent) => void): Promise<boolean>;
}

export { SCENARIO_TITLES } from '../scenario_info.ts';

export const SCENARIOS: Record<ScenarioName, (() => Promise<ScenarioModule>) | null> = {
  'placement': () => import('./scenarios/placement.ts'),
  'colocate': () => import('./scenarios/colocate.ts'),
  'rl-loop': () => import('./scenarios/rl_loop.ts'),
};
