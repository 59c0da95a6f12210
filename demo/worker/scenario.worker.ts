/// <reference lib="webworker" />
// The scenario worker: runs one colocation scenario at a time (scenarios.ts) and streams its events to the page.
// Scenarios start their own actor workers (nested dedicated workers) as the colocation work defines them.
import * as Comlink from 'comlink';
import type { ScenarioApi, ScenarioEvent, ScenarioInfo, ScenarioName } from '../protocol.ts';
import { SCENARIO_TITLES, SCENARIOS } from './scenarios.ts';

const api: ScenarioApi = {
  list(): ScenarioInfo[] {
    return (Object.keys(SCENARIOS) as ScenarioName[]).map((name) => ({ name, title: SCENARIO_TITLES[name], available: SCENARIOS[name] !== null }));
  },
  async run(name, params, onEvent) {
    const load = SCENARIOS[name];
    if (!load) throw new Error(`The ${SCENARIO_TITLES[name] ?? name} is not part of this build yet: it comes with the colocation work.`);
    const mod = await load();
    const emit = (e: ScenarioEvent) => void Promise.resolve(onEvent(e)).catch(() => {});
    return { ok: await mod.run(params, emit) };
  },
};

Comlink.expose(api);
