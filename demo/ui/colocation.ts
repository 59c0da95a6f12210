/**
 * The colocation panels: placement (virtual GPUs, actors as fractions, memory per budget), the colocate scenario
 * (device ids, handle sync time, the weights-changed check, generations before and after) and the RL loop
 * (reward and loss per iteration, drawn as it runs).
 *
 * Each panel draws ScenarioEvents (protocol.ts) streamed from the scenario worker (worker/scenario.worker.ts),
 * which runs one scenario at a time: its device host and the actors' nested workers do all GPU work, the page
 * only draws. 'placement' events from any scenario go to the placement panel, so it shows the colocate
 * scenario's or the RL loop's actors live while they run.
 */
import * as Comlink from 'comlink';
import type { PlacementGpu, ScenarioApi, ScenarioEvent, ScenarioName } from '../protocol.ts';
import { SCENARIO_AVAILABLE, SCENARIO_TITLES } from '../scenario_info.ts';
import { type Child, field, h } from './dom.ts';
import { errorParts, formatBytes, formatMs } from './format.ts';

const DESCRIPTIONS: Record<ScenarioName, string> = {
  'placement': 'Four virtual GPUs carved from this device and a placement group of one {GPU: 1} bundle each. Each GPU holds a training actor and an engine rank at 0.4 of it; the bars show each actor\'s bytes on the device against its budget, 0.4 of the GPU\'s memory.',
  'colocate': 'vLLM\'s RLHF colocate example in Web Workers: 4 training actors and 2 tensor-parallel engines (2 ranks each) share the 4 virtual GPUs; the trainers change their weights and hand them to the engines by buffer handles, no copies through the CPU.',
  'rl-loop': 'Sample several completions per prompt, score them (share of even token ids), take an advantage-weighted step, hand the weights back by handle, repeat. A trainer and an engine share one virtual GPU.',
};

const RUN_LABELS: Record<ScenarioName, string> = { 'placement': 'Place actors', 'colocate': 'Run colocate scenario', 'rl-loop': 'Run RL loop' };

const ROLE_COLORS: Record<string, string> = { 'trainer': 'var(--trainer)', 'engine rank': 'var(--engine)' };

let scenarioWorker: Comlink.Remote<ScenarioApi> | null = null;
function scenarios(): Comlink.Remote<ScenarioApi> {
  scenarioWorker ??= Comlink.wrap<ScenarioApi>(new Worker(new URL('../worker/scenario.worker.ts', import.meta.url), { type: 'module', name: 'tandem-scenarios' }));
  return scenarioWorker;
}

interface Card {
  name: ScenarioName;
  el: HTMLElement;
  run: HTMLButtonElement;
  status: HTMLElement;
  body: HTMLElement;
  params(): Record<string, string | number | boolean>;
}

export function mountColocation(root: HTMLElement): void {
  const placementView = new PlacementView();
  const cards = (Object.keys(SCENARIO_TITLES) as ScenarioName[]).map((name) => scenarioCard(name, name === 'placement' ? placementView.el : null));
  let running: ScenarioName | null = null;
  for (const card of cards) {
    root.append(card.el);
    card.run.addEventListener('click', async () => {
      if (running) return;
      running = card.name;
      for (const c of cards) c.run.disabled = true;
      for (const c of cards) if (c !== card) c.status.textContent = c.el.dataset.available === 'true' ? `Waiting: the ${SCENARIO_TITLES[card.name]} is running.` : c.status.textContent;
      card.body.replaceChildren();
      card.el.dataset.result = 'running';
      card.el.setAttribute('aria-busy', 'true');
      card.status.textContent = 'Running…';
      const t0 = performance.now();
      const draw = drawer(card.body, (e) => placementView.show(e, SCENARIO_TITLES[card.name]));
      try {
        const { ok } = await scenarios().run(card.name, card.params(), Comlink.proxy(draw));
        card.status.textContent = `${ok ? 'Passed' : 'Finished with failed checks'} in ${formatMs(performance.now() - t0)}.`;
        card.el.dataset.result = ok ? 'pass' : 'fail';
      } catch (e) {
        const { title, message } = errorParts(e);
        card.status.textContent = `${title}: ${message}`;
        card.el.dataset.result = 'error';
      } finally {
        running = null;
        card.el.removeAttribute('aria-busy');
        for (const c of cards) {
          c.run.disabled = c.el.dataset.available !== 'true';
          if (c !== card && c.status.textContent?.startsWith('Waiting')) c.status.textContent = '';
        }
      }
    });
  }
}

function scenarioCard(name: ScenarioName, extra: HTMLElement | null): Card {
  const available = SCENARIO_AVAILABLE[name];
  const title = SCENARIO_TITLES[name];
  const body = h('div', { class: 'scenario-body' });
  const run = h('button', { type: 'button', disabled: !available }, RUN_LABELS[name]);
  const status = h('div', { role: 'status', class: 'hint', 'aria-live': 'polite' });
  const { controls, params } = scenarioControls(name);
  const el = h('section', { class: `card scenario${available ? '' : ' coming'}`, id: `scenario-${name}`, 'aria-labelledby': `scenario-${name}-title`, 'data-available': String(available) },
    h('h2', { id: `scenario-${name}-title` }, title, available ? null : h('span', { class: 'badge off tag' }, 'coming with the colocation work')),
    h('p', { class: 'lede' }, DESCRIPTIONS[name]),
    available ? null : h('div', { class: 'empty' }, 'Not in this build.'),
    controls, h('div', { class: 'actions' }, run, status), extra, body);
  return { name, el, run, status, body, params };
}

/** The few settings each scenario takes, as labelled form controls. */
function scenarioControls(name: ScenarioName): { controls: HTMLElement | null; params: () => Record<string, string | number | boolean> } {
  if (name === 'colocate') {
    const steps = h('input', { type: 'number', min: 0, max: 20, step: 1, value: 0, inputmode: 'numeric' });
    const packed = h('input', { type: 'checkbox' });
    packed.id = `colocate-packed`;
    return {
      controls: h('div', { class: 'controls' },
        field('Train steps', steps, '0: the trainers zero their weights, as vLLM\'s example does'),
        h('div', { class: 'field check' }, packed, h('label', { for: packed.id }, 'Packed handles'), h('div', { class: 'hint' }, 'one buffer per actor instead of one handle per tensor'))),
      params: () => ({ trainSteps: Number(steps.value) || 0, packed: packed.checked }),
    };
  }
  if (name === 'rl-loop') {
    const iterations = h('input', { type: 'number', min: 2, max: 40, step: 1, value: 12, inputmode: 'numeric' });
    const samples = h('select', {}, ...[4, 8, 16].map((n) => h('option', { value: n, selected: n === 8 }, String(n))));
    return {
      controls: h('div', { class: 'controls' },
        field('Iterations', iterations, '2 to 40; each samples every prompt, then takes one step'),
        field('Samples per prompt', samples, 'the group whose mean reward is the baseline')),
      params: () => ({ iterations: Number(iterations.value) || 12, samplesPerPrompt: Number(samples.value) }),
    };
  }
  return { controls: null, params: () => ({}) };
}

/** Draws a scenario's events into `body`, each kind into its own region; placement events go to `onPlacement`. */
function drawer(body: HTMLElement, onPlacement: (e: ScenarioEvent & { kind: 'placement' }) => void): (e: ScenarioEvent) => void {
  const order = ['checks', 'table', 'timings', 'charts', 'generations', 'log'];
  const region = (key: string) => {
    let el = body.querySelector<HTMLElement>(`:scope > [data-region="${key}"]`);
    if (!el) {
      el = h('div', { 'data-region': key, class: `region region-${key}` });
      const next = [...body.children].find((c) => order.indexOf((c as HTMLElement).dataset.region ?? '') > order.indexOf(key));
      body.insertBefore(el, next ?? null);
    }
    return el;
  };
  const series = new Map<string, { iteration: number; value: number }[]>();
  const checks: HTMLElement[] = [];
  const timings = new Map<string, HTMLElement>();
  let logLines: HTMLElement | null = null;
  return (e) => {
    switch (e.kind) {
      case 'placement':
        onPlacement(e);
        break;
      case 'device-table':
        region('table').replaceChildren(h('h3', {}, 'Device ids'), h('table', { class: 'device-table' },
          h('thead', {}, h('tr', {}, ...e.columns.map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, ...e.rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, cell(c))))))));
        break;
      case 'timing': {
        let el = timings.get(e.name);
        if (!el) {
          el = h('span', { 'data-timing': e.name });
          timings.set(e.name, el);
          const stats = region('timings').querySelector('.stats') ?? region('timings').appendChild(h('div', { class: 'stats' }));
          // The handle sync is what the scenario is about: first, and marked.
          if (e.name === 'handle sync') { el.classList.add('key'); stats.prepend(el); } else stats.append(el);
        }
        el.dataset.ms = String(e.ms);
        el.replaceChildren(`${e.name} `, h('b', {}, e.ms < 10 ? `${e.ms.toFixed(1)} ms` : formatMs(e.ms)));
        break;
      }
      case 'check':
        checks.push(h('li', { class: e.ok ? '' : 'fail', 'data-check': e.name, 'data-ok': String(e.ok) }, h('b', {}, e.name), ` — ${e.detail}`));
        region('checks').replaceChildren(h('ul', { class: 'checks', 'aria-label': 'Checks' }, ...checks));
        break;
      case 'metric': {
        const points = series.get(e.series) ?? [];
        points.push({ iteration: e.iteration, value: e.value });
        series.set(e.series, points);
        const charts = region('charts');
        let slot = charts.querySelector<HTMLElement>(`[data-series="${e.series}"]`);
        if (!slot) charts.append((slot = h('div', { 'data-series': e.series })));
        slot.dataset.values = JSON.stringify(points.map((p) => p.value));
        slot.replaceChildren(lineChart(e.series, points));
        break;
      }
      case 'generations':
        region('generations').append(h('h3', {}, `Generations ${e.label}`), h('table', { class: 'generations', 'data-label': e.label },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Engine'), h('th', { scope: 'col' }, 'Prompt'), h('th', { scope: 'col' }, 'Text'), h('th', { scope: 'col' }, 'Token ids'))),
          h('tbody', {}, ...e.rows.map((r) => h('tr', {}, h('td', {}, r.engine), h('td', {}, r.prompt), h('td', { class: 'text' }, JSON.stringify(r.text)), h('td', { class: 'num' }, r.tokenIds.join(' ')))))));
        break;
      case 'log':
        if (!logLines) {
          logLines = h('div', { class: 'log' });
          region('log').append(h('details', {}, h('summary', {}, 'Log'), logLines));
        }
        logLines.append(h('div', {}, e.text));
        break;
    }
  };
}

/** A device id (virtual GPU uuid) shortened, the whole of it on hover and for screen readers. */
function cell(value: string | number): Child {
  const s = String(value);
  const m = /^(GPU-)?[0-9a-f]{8}-[0-9a-f-]{27}$/i.exec(s);
  if (!m) return s;
  return h('code', { title: s, 'aria-label': s, 'data-uuid': s }, `${s.slice(0, (m[1]?.length ?? 0) + 8)}…`);
}

/**
 * The placement view: one row per virtual GPU. The wide bar is the GPU, split into the actors' fractions
 * (trainers and engine ranks in their colours, the bundle's unplaced rest striped, unreserved space plain);
 * under it, each actor's bytes in use against its memory budget.
 */
class PlacementView {
  readonly el = h('div', { class: 'placement', 'aria-live': 'off' },
    h('div', { class: 'empty' }, 'Nothing placed yet. Place the actors here, or run the colocate scenario or the RL loop and watch them here.'));

  show(e: ScenarioEvent & { kind: 'placement' }, source: string): void {
    this.el.dataset.source = source;
    this.el.dataset.gpus = String(e.gpus.length);
    this.el.dataset.actors = String(e.gpus.reduce((n, g) => n + g.actors.length, 0));
    const legend = h('div', { class: 'kv-legend' },
      h('span', {}, h('i', { style: `background:${ROLE_COLORS.trainer}` }), 'training actor'),
      h('span', {}, h('i', { style: `background:${ROLE_COLORS['engine rank']}` }), 'engine rank'),
      h('span', {}, h('i', { class: 'reserved-swatch' }), 'reserved by the bundle, unplaced'),
      h('span', {}, h('i', { style: 'background:var(--free)' }), 'free'));
    this.el.replaceChildren(
      h('div', { class: 'hint placement-source' }, `${source}${e.stage ? ` · ${e.stage}` : ''}`),
      h('div', { class: 'gpus' }, ...e.gpus.map((g) => this.gpu(g))), legend);
  }

  private gpu(g: PlacementGpu): HTMLElement {
    const placed = g.actors.reduce((s, a) => s + a.fraction, 0);
    const reservedRest = Math.max(0, (g.reservedFraction ?? 0) - placed);
    const pct = (f: number) => `${(f * 100).toFixed(2)}%`;
    const segments = g.actors.map((a) => h('span', {
      class: 'share', style: `width:${pct(a.fraction)};background:${ROLE_COLORS[a.role] ?? 'var(--accent)'}`,
      title: `${a.name} (${a.role}): ${a.fraction} of the GPU`, 'data-actor': a.name, 'data-fraction': String(a.fraction),
    }, h('span', { class: 'share-label' }, `${a.name} · ${a.fraction}`)));
    if (reservedRest > 1e-9) segments.push(h('span', { class: 'share reserved', style: `width:${pct(reservedRest)}`, title: `reserved by the placement group, unplaced: ${reservedRest.toFixed(2)}` }));
    return h('div', { class: 'gpu', 'data-uuid': g.uuid ?? '' },
      h('div', { class: 'gpu-head' }, h('b', {}, g.id), h('span', { class: 'hint' }, `${formatBytes(g.memoryBytes)} · ${placed.toFixed(1)} of 1 placed`)),
      g.uuid ? h('div', { class: 'hint gpu-uuid' }, h('code', { title: g.uuid }, g.uuid)) : null,
      h('div', { class: 'gpu-bar', role: 'img', 'aria-label': `${g.id}: ${g.actors.map((a) => `${a.name} ${a.fraction}`).join(', ') || 'empty'}` }, ...segments),
      ...g.actors.map((a) => {
        const used = Math.min(1, a.usedBytes / Math.max(1, a.budgetBytes));
        return h('div', { class: 'mem', 'data-actor': a.name, 'data-used': String(a.usedBytes), 'data-budget': String(a.budgetBytes) },
          h('span', { class: 'mem-name' }, h('span', { class: 'swatch', style: `background:${ROLE_COLORS[a.role] ?? 'var(--accent)'}` }), a.name),
          h('div', { class: `bar${a.usedBytes > a.budgetBytes ? ' over' : ''}`, role: 'meter', 'aria-label': `${a.name} memory`, 'aria-valuemin': 0, 'aria-valuemax': a.budgetBytes, 'aria-valuenow': a.usedBytes, 'aria-valuetext': `${formatBytes(a.usedBytes)} of ${formatBytes(a.budgetBytes)}` },
            h('span', { style: `width:${(used * 100).toFixed(1)}%;background:${ROLE_COLORS[a.role] ?? 'var(--accent)'}` })),
          h('span', { class: 'mem-text' }, `${formatBytes(a.usedBytes)} / ${formatBytes(a.budgetBytes)}`));
      }));
  }
}

/** A small SVG line chart of one series against the iteration. */
export function lineChart(label: string, points: { iteration: number; value: number }[]): HTMLElement {
  const W = 320, H = 150, left = 46, right = 8, top = 20, bottom = 22;
  const xs = points.map((p) => p.iteration), ys = points.map((p) => p.value);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const sx = (x: number) => left + ((x - x0) / (x1 - x0)) * (W - left - right);
  const sy = (y: number) => top + (1 - (y - y0) / (y1 - y0)) * (H - top - bottom);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  const last = ys[ys.length - 1];
  svg.setAttribute('aria-label', `${label} over ${points.length} iterations: first ${ys[0]?.toPrecision(3)}, last ${last?.toPrecision(3)}`);
  const el = (tag: string, attrs: Record<string, string | number>) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    svg.append(n);
    return n;
  };
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    el('line', { x1: left, y1: sy(y), x2: W - right, y2: sy(y), stroke: 'currentColor', 'stroke-opacity': 0.12 });
    el('text', { x: left - 4, y: sy(y) + 3, 'font-size': 9, 'text-anchor': 'end', fill: 'currentColor', 'fill-opacity': 0.6 }).textContent = y.toPrecision(3);
  }
  el('text', { x: left, y: H - 6, 'font-size': 9, fill: 'currentColor', 'fill-opacity': 0.6 }).textContent = `iteration ${x0}`;
  el('text', { x: W - right, y: H - 6, 'font-size': 9, 'text-anchor': 'end', fill: 'currentColor', 'fill-opacity': 0.6 }).textContent = String(x1);
  el('polyline', { points: points.map((p) => `${sx(p.iteration)},${sy(p.value)}`).join(' '), fill: 'none', stroke: 'var(--accent)', 'stroke-width': 2, 'stroke-linejoin': 'round' });
  for (const p of points) el('circle', { cx: sx(p.iteration), cy: sy(p.value), r: 2.5, fill: 'var(--accent)' });
  el('text', { x: left, y: 12, 'font-size': 11, 'font-weight': 600, fill: 'currentColor' }).textContent = `${label}: ${last?.toPrecision(3) ?? ''}`;
  return h('div', { class: 'chart' }, svg as unknown as HTMLElement);
}
