/**
 * The colocation scenarios by name, as the page lists them: titles, and whether this build has each (a scenario
 * module registered in worker/scenarios.ts). Kept apart from worker/scenarios.ts so the page's bundle does not
 * pull in the scenarios themselves (they run in the scenario worker).
 */
import type { ScenarioName } from './protocol.ts';

export const SCENARIO_TITLES: Record<ScenarioName, string> = {
  'placement': 'Placement',
  'colocate': 'Colocate scenario',
  'rl-loop': 'RL loop',
};

export const SCENARIO_AVAILABLE: Record<ScenarioName, boolean> = {
  'placement': true,
  'colocate': true,
  'rl-loop': true,
};
