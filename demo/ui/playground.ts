/**
 * The Playground: one streamed completion with time to first token and tokens/s, or a batch of prompts sent at
 * once, one live row per request (waiting → running → done, preempted when the cache runs short), which is
 * continuous batching made visible. Generation runs in the engine worker; this only draws its updates.
 */
import * as Comlink from 'comlink';
import type { EngineApi, SamplingSettings, StreamUpdate } from '../protocol.ts';
import { field, h, segmented } from './dom.ts';
import { errorParts, formatMs, formatRate, requestColor } from './format.ts';
import { colorIndex, type KvMap } from './kv_map.ts';

export const DEFAULT_PROMPT = 'The first time I was in the city, it was';
const SHARED = 'The first year of the company, the team said that there were a lot of people who';
export const DEFAULT_BATCH = [
  `${SHARED} had`, `${SHARED} would`, `${SHARED} could`, `${SHARED} did`,
  DEFAULT_PROMPT, 'The police said on Friday that the man', 'I think one of the best things about the school is', 'The government said that it will',
].join('\n');

type Mode = 'single' | 'batch';

export interface Playground {
  setReady(ready: boolean): void;
}

export function mountPlayground(root: HTMLElement, engine: Comlink.Remote<EngineApi>, kv: KvMap): Playground {
  let mode: Mode = 'single';
  let ready = false;
  let running: string[] = [];

  // ── sampling controls (shared by both modes) ──
  const num = (value: number, min: number, max: number, step: number) =>
    h('input', { type: 'number', value: String(value), min: String(min), max: String(max), step: String(step) });
  const maxTokens = num(48, 1, 2048, 1);
  const temperature = num(0.8, 0, 2, 0.05);
  const topP = num(0.95, 0.01, 1, 0.01);
  const topK = num(50, 0, 50272, 1);
  const seed = num(1, 0, 2 ** 31 - 1, 1);
  const controls = h('div', { class: 'controls' },
    field('Max tokens', maxTokens), field('Temperature', temperature), field('Top-p', topP), field('Top-k', topK), field('Seed', seed));
  const settings = (): SamplingSettings => ({
    maxTokens: Math.max(1, Math.trunc(Number(maxTokens.value) || 1)),
    temperature: Math.max(0, Number(temperature.value) || 0),
    topP: Math.min(1, Math.max(0.01, Number(topP.value) || 1)),
    topK: Math.max(0, Math.trunc(Number(topK.value) || 0)),
    seed: Math.max(0, Math.trunc(Number(seed.value) || 0)),
  });

  // ── single ──
  const prompt = h('textarea', { rows: 3, spellcheck: 'false' });
  prompt.value = DEFAULT_PROMPT;
  const output = h('div', { class: 'output', id: 'stream-output', 'aria-live': 'polite', 'aria-label': 'Completion' });
  const stat = (label: string) => { const b = h('b', {}, '—'); return [h('span', {}, `${label} `, b), b] as const; };
  const [ttftBox, ttftValue] = stat('time to first token');
  const [rateBox, rateValue] = stat('tokens/s');
  const [countBox, countValue] = stat('tokens');
  const [finishBox, finishValue] = stat('finish');
  const stats = h('div', { class: 'stats', id: 'stream-stats' }, ttftBox, rateBox, countBox, finishBox);
  const singleBox = h('div', {}, field('Prompt', prompt, 'Ctrl+Enter generates, Escape stops.'), output, stats);

  // ── batch ──
  const batchPrompts = h('textarea', { rows: 6, spellcheck: 'false' });
  batchPrompts.value = DEFAULT_BATCH;
  const rows = h('tbody', {});
  const table = h('div', { class: 'batch-table', hidden: true },
    h('table', { id: 'batch-table' },
      h('thead', {}, h('tr', {}, ...['Request', 'State', 'Tokens', 'Tokens/s', 'TTFT', 'Text'].map((t) => h('th', { scope: 'col' }, t)))),
      rows));
  const batchSummary = h('div', { class: 'stats', id: 'batch-stats' });
  const batchBox = h('div', { hidden: true },
    field('Prompts, one per line', batchPrompts, 'All are sent at once. The first four share a prefix: their first block is computed once and shared.'),
    table, batchSummary);

  // ── actions ──
  const go = h('button', { type: 'button', disabled: true }, 'Generate');
  const stop = h('button', { type: 'button', class: 'secondary', disabled: true }, 'Stop');
  const errorBox = h('div', { class: 'error', role: 'alert', hidden: true });
  const modeSwitch = segmented<Mode>('mode', 'Playground mode', [{ value: 'single', label: 'Stream' }, { value: 'batch', label: 'Batch' }], mode, (m) => {
    mode = m;
    singleBox.hidden = m !== 'single';
    batchBox.hidden = m !== 'batch';
    go.textContent = m === 'single' ? 'Generate' : 'Send batch';
  });
  const hint = h('span', { class: 'hint' }, 'Load a model first.');
  root.append(modeSwitch, singleBox, batchBox, controls, h('div', { class: 'actions' }, go, stop, hint), errorBox);

  const showError = (e: unknown) => {
    const { title, message } = errorParts(e);
    errorBox.replaceChildren(h('b', {}, title), message);
    errorBox.hidden = false;
  };
  const setRunning = (ids: string[]) => {
    running = ids;
    go.disabled = !ready || ids.length > 0;
    stop.disabled = ids.length === 0;
    root.dataset.running = String(ids.length > 0);
  };

  const runSingle = async () => {
    const text = prompt.value;
    output.replaceChildren(h('span', { class: 'prompt' }, text));
    const generated = h('span', { class: 'generated' });
    output.append(generated);
    output.classList.add('running');
    for (const v of [ttftValue, rateValue, countValue, finishValue]) v.textContent = '—';
    kv.start();
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const onUpdate = (u: StreamUpdate) => {
      generated.append(u.text);
      output.scrollTop = output.scrollHeight;
      ttftValue.textContent = formatMs(u.ttftMs);
      rateValue.textContent = formatRate(u.tokensPerSecond);
      countValue.textContent = String(u.numTokens);
      if (u.error) showError(Object.assign(new Error(u.error), { name: 'engine' }));
      if (u.finishReason) {
        finishValue.textContent = u.finishReason;
        done();
      }
    };
    try {
      const id = await engine.stream(text, settings(), Comlink.proxy(onUpdate));
      setRunning([id]);
      await finished;
    } finally {
      output.classList.remove('running');
      kv.stop();
    }
  };

  const runBatch = async () => {
    const prompts = batchPrompts.value.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
    rows.replaceChildren();
    table.hidden = false;
    const byId = new Map<string, { state: HTMLElement; tokens: HTMLElement; rate: HTMLElement; ttft: HTMLElement; text: HTMLElement; done: boolean }>();
    const pending: StreamUpdate[] = [];
    let remaining = prompts.length;
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const t0 = performance.now();
    let totalTokens = 0;
    const apply = (u: StreamUpdate) => {
      const row = byId.get(u.requestId);
      if (!row) { pending.push(u); return; } // an update that beat batch()'s reply
      row.text.append(u.text);
      row.text.title = row.text.textContent ?? '';
      row.tokens.textContent = String(u.numTokens);
      row.rate.textContent = formatRate(u.tokensPerSecond);
      row.ttft.textContent = formatMs(u.ttftMs);
      if (u.error) showError(Object.assign(new Error(u.error), { name: 'engine' }));
      if (u.finishReason && !row.done) {
        row.done = true;
        totalTokens += u.numTokens;
        row.state.textContent = u.finishReason === 'abort' ? 'stopped' : 'done';
        row.state.className = 'status done';
        if (--remaining === 0) done();
      }
    };
    // Row states (waiting/running/preempted) come from the KV snapshots, which the map polls anyway.
    const stateTimer = setInterval(() => {
      for (const [id, row] of byId) {
        if (row.done) continue;
        const s = kv.requestStatus(id);
        const state = s ? s.status : 'waiting';
        row.state.textContent = s && s.numPreemptions > 0 && state !== 'preempted' ? `${state} (preempted ${s.numPreemptions}×)` : state;
        row.state.className = `status ${state}`;
      }
    }, 100);
    kv.start();
    try {
      const ids = await engine.batch(prompts, settings(), Comlink.proxy(apply));
      ids.forEach((id, i) => {
        const cells = { state: h('span', { class: 'status' }, 'waiting'), tokens: h('td', { class: 'num' }, '0'), rate: h('td', { class: 'num' }, '—'), ttft: h('td', { class: 'num' }, '—'), text: h('td', { class: 'text' }) };
        rows.append(h('tr', { 'data-request': id },
          h('td', {}, h('span', { class: 'swatch', style: `background:${requestColor(colorIndex(id))}` }), id),
          h('td', {}, cells.state), cells.tokens, cells.rate, cells.ttft, cells.text));
        cells.text.title = prompts[i];
        byId.set(id, { ...cells, done: false });
      });
      setRunning(ids);
      for (const u of pending.splice(0)) apply(u);
      await finished;
      const seconds = (performance.now() - t0) / 1000;
      batchSummary.replaceChildren(
        h('span', {}, 'requests ', h('b', {}, String(ids.length))),
        h('span', {}, 'tokens ', h('b', {}, String(totalTokens))),
        h('span', {}, 'wall time ', h('b', {}, formatMs(seconds * 1000))),
        h('span', {}, 'throughput ', h('b', {}, `${formatRate(totalTokens / seconds)} tokens/s`)));
    } finally {
      clearInterval(stateTimer);
      kv.stop();
    }
  };

  const start = async () => {
    if (!ready || running.length > 0) return;
    errorBox.hidden = true;
    go.disabled = true;
    try {
      await (mode === 'single' ? runSingle() : runBatch());
    } catch (e) {
      showError(e);
    } finally {
      setRunning([]);
    }
  };
  go.addEventListener('click', () => void start());
  stop.addEventListener('click', () => { for (const id of running) void engine.abort(id); });
  for (const area of [prompt, batchPrompts]) {
    area.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); void start(); }
    });
  }
  root.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && running.length > 0) { for (const id of running) void engine.abort(id); }
  });

  return {
    setReady(r: boolean) {
      ready = r;
      go.disabled = !r || running.length > 0;
      hint.textContent = r ? '' : 'Load a model first.';
    },
  };
}
