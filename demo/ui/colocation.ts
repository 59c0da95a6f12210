/**
 * The colocation panels: placement (virtual GPUs, actors as fractions, memory per budget), the colocate scenario
 * (device ids, handle sync time, the weights-changed check) and the RL loop (reward and loss per iteration).
 *
 * Each panel draws ScenarioEvents (protocol.ts) from the scenario worker. Until the colocation work registers
 * a scenario (worker/scenarios.ts) its panel says it is coming and what it will show; the drawing code below is
 * ready for the events, so registering the scenario is all it takes.
 */
import * as Comlink from 'comlink';
import type { ScenarioApi, ScenarioEvent, ScenarioName } from '../protocol.ts';
import { SCENARIO_TITLES, SCENARIOS } from '../worker/scenarios.ts';
import { h } from './dom.ts';
import { errorParts, formatBytes, formatMs, requestColor } from './format.ts';

const DESCRIPTIONS: Record<ScenarioName, string> = {
  'placement': 'Virtual GPUs carved from this device, the trainer and inference actors placed on them as fractions, and each actor\'s memory against its budget.',
  'colocate': 'A trainer and an inference engine in separate workers on one device: which device each sees, how long handing over the weights takes, and a check that generation changes when the weights do.',
  'rl-loop': 'Generate, score, train, sync, repeat: reward and loss per iteration, drawn as the loop runs.',
};

const RUN_LABELS: Record<ScenarioName, string> = { 'placement': 'Place actors', 'colocate': 'Run colocate scenario', 'rl-loop': 'Run RL loop' };

let scenarioWorker: Comlink.Remote<ScenarioApi> | null = null;
function scenarios(): Comlink.Remote<ScenarioApi> {
  scenarioWorker ??= Comlink.wrap<ScenarioApi>(new Worker(new URL('../worker/scenario.worker.ts', import.meta.url), { type: 'module', name: 'tandem-scenarios' }));
  return scenarioWorker;
}

export function mountColocation(root: HTMLElement): void {
  for (const name of Object.keys(SCENARIOS) as ScenarioName[]) root.append(scenarioCard(name));
}

function scenarioCard(name: ScenarioName): HTMLElement {
  const available = SCENARIOS[name] !== null;
  const title = SCENARIO_TITLES[name];
  const body = h('div', { class: 'scenario-body' });
  const run = h('button', { type: 'button', disabled: !available }, RUN_LABELS[name]);
  const status = h('div', { role: 'status', class: 'hint' });
  const card = h('section', { class: 'card coming', id: `scenario-${name}`, 'aria-labelledby': `scenario-${name}-title`, 'data-available': String(available) },
    h('h2', { id: `scenario-${name}-title` }, title, available ? null : h('span', { class: 'badge off tag' }, 'coming with the colocation work')),
    h('p', { class: 'lede' }, DESCRIPTIONS[name]),
    available ? null : h('div', { class: 'empty' }, 'Not in this build yet. This panel turns on when the colocation work (cluster, actors, trainer) lands.'),
    body, h('div', { class: 'actions' }, run, status));
  const draw = drawer(body);
  run.addEventListener('click', async () => {
    run.disabled = true;
    body.replaceChildren();
    status.textContent = 'Running…';
    try {
      const { ok } = await scenarios().run(name, {}, Comlink.proxy(draw));
      status.textContent = ok ? 'Passed.' : 'Finished with failed checks.';
      card.dataset.result = ok ? 'pass' : 'fail';
    } catch (e) {
      const { title: t, message } = errorParts(e);
      status.textContent = `${t}: ${message}`;
      card.dataset.result = 'error';
    } finally {
      run.disabled = false;
    }
  });
  return card;
}

/** Draws a scenario's events into `body`, each kind into its own region. */
function drawer(body: HTMLElement): (e: ScenarioEvent) => void {
  const region = (key: string) => {
    let el = body.querySelector<HTMLElement>(`[data-region="${key}"]`);
    if (!el) body.append((el = h('div', { 'data-region': key })));
    return el;
  };
  const series = new Map<string, { iteration: number; value: number }[]>();
  const checks: HTMLElement[] = [];
  return (e) => {
    switch (e.kind) {
      case 'placement':
        region('placement').replaceChildren(...e.gpus.map((g) =>
          h('div', { class: 'field' },
            h('div', { class: 'label' }, `${g.id} · ${formatBytes(g.memoryBytes)}`),
            h('div', { class: 'bar', style: 'display:flex' }, ...g.actors.map((a, i) => h('span', { style: `width:${a.fraction * 100}%;background:${requestColor(i + 1)}`, title: `${a.name}: ${(a.fraction * 100).toFixed(0)}%` }))),
            ...g.actors.map((a, i) => h('div', { class: 'hint' },
              h('span', { class: 'swatch', style: `background:${requestColor(i + 1)}` }),
              `${a.name} (${a.role}) ${(a.fraction * 100).toFixed(0)}% · ${formatBytes(a.usedBytes)} of ${formatBytes(a.budgetBytes)}`,
              h('div', { class: 'bar' }, h('span', { style: `width:${Math.min(100, (a.usedBytes / Math.max(1, a.budgetBytes)) * 100)}%` })))))));
        break;
      case 'device-table':
        region('table').replaceChildren(h('table', {},
          h('thead', {}, h('tr', {}, ...e.columns.map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, ...e.rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, String(c))))))));
        break;
      case 'timing':
        region('timings').append(h('div', { class: 'stats' }, h('span', {}, `${e.name} `, h('b', {}, formatMs(e.ms)))));
        break;
      case 'check':
        checks.push(h('li', { class: e.ok ? '' : 'fail' }, h('b', {}, e.name), ` — ${e.detail}`));
        region('checks').replaceChildren(h('ul', { class: 'checks' }, ...checks));
        break;
      case 'metric': {
        const points = series.get(e.series) ?? [];
        points.push({ iteration: e.iteration, value: e.value });
        series.set(e.series, points);
        region(`chart-${e.series}`).replaceChildren(lineChart(e.series, points));
        break;
      }
      case 'log':
        region('log').append(h('div', { class: 'hint' }, e.text));
        break;
    }
  };
}

/** A small SVG line chart of one series against the iteration. */
export function lineChart(label: string, points: { iteration: number; value: number }[]): HTMLElement {
  const W = 320, H = 140, pad = 28;
  const xs = points.map((p) => p.iteration), ys = points.map((p) => p.value);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x: number) => pad + ((x - x0) / (x1 - x0)) * (W - pad - 8);
  const sy = (y: number) => H - pad + 8 - ((y - y0) / (y1 - y0)) * (H - pad);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${label} over ${points.length} iterations, last ${ys[ys.length - 1]?.toPrecision(4)}`);
  const el = (tag: string, attrs: Record<string, string | number>) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    svg.append(n);
    return n;
  };
  el('line', { x1: pad, y1: H - 20, x2: W - 8, y2: H - 20, stroke: 'currentColor', 'stroke-opacity': 0.2 });
  el('polyline', { points: points.map((p) => `${sx(p.iteration)},${sy(p.value)}`).join(' '), fill: 'none', stroke: 'var(--accent)', 'stroke-width': 2 });
  el('text', { x: pad, y: 12, 'font-size': 11, fill: 'currentColor' }).textContent = `${label}: ${ys[ys.length - 1]?.toPrecision(4) ?? ''}`;
  el('text', { x: 2, y: sy(y1) + 4, 'font-size': 9, fill: 'currentColor', 'fill-opacity': 0.6 }).textContent = y1.toPrecision(3);
  el('text', { x: 2, y: sy(y0), 'font-size': 9, fill: 'currentColor', 'fill-opacity': 0.6 }).textContent = y0.toPrecision(3);
  return h('div', { class: 'chart' }, svg as unknown as HTMLElement);
}
