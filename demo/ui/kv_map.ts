/**
 * The paged KV cache as a live block map: one square per block, coloured by the request that holds it, a dot on
 * blocks shared by several requests (prefix caching), an outline on free blocks that still hold a cached prefix
 * (reusable without recomputing), plain grey for free ones. Polls the engine worker while requests run.
 */
import type * as Comlink from 'comlink';
import type { EngineApi, KvSnapshot } from '../protocol.ts';
import { h } from './dom.ts';
import { requestColor } from './format.ts';

/** A request's colour index: its engine id's number (req-7 → 7), so the playground's swatches match the map. */
export function colorIndex(requestId: string): number {
  const m = /(\d+)$/.exec(requestId);
  if (m) return Number(m[1]);
  let x = 0;
  for (const ch of requestId) x = (x * 31 + ch.charCodeAt(0)) >>> 0;
  return x;
}

const POLL_MS = 120;

export class KvMap {
  private readonly canvas = h('canvas', { role: 'img', 'aria-label': 'KV-cache block map: no model loaded' });
  private readonly tip = h('div', { class: 'kv-tip' });
  private readonly stats = h('div', { class: 'stats', 'aria-live': 'off' });
  private readonly empty = h('div', { class: 'empty' }, 'Load a model to see its KV cache.');
  private readonly wrap = h('div', { class: 'kv-wrap', hidden: true }, this.canvas, this.tip);
  private snap: KvSnapshot | null = null;
  private layout = { cell: 12, gap: 2, cols: 1 };
  private active = 0;
  private polling: Promise<void> | null = null;

  constructor(private readonly root: HTMLElement, private readonly engine: Comlink.Remote<EngineApi>) {
    const legend = h('div', { class: 'kv-legend' },
      h('span', {}, h('i', { style: `background:${requestColor(1)}` }), 'held by a request (one colour each)'),
      h('span', {}, h('i', { style: `background:${requestColor(2)};box-shadow:inset 0 0 0 3px ${requestColor(2)}, inset 0 0 0 5px #fff` }), 'shared (prefix cache)'),
      h('span', {}, h('i', { style: 'background:var(--free);box-shadow:inset 0 0 0 1.5px var(--accent)' }), 'free, prefix still cached'),
      h('span', {}, h('i', { style: 'background:var(--free)' }), 'free'));
    root.append(this.empty, this.wrap, this.stats, legend);
    this.canvas.addEventListener('mousemove', (e) => this.hover(e));
    this.canvas.addEventListener('mouseleave', () => { this.tip.style.display = 'none'; });
    new ResizeObserver(() => this.draw()).observe(this.wrap);
  }

  /** Poll while at least one caller is interested (a stream or a batch running). */
  start(): void {
    this.active++;
    this.polling ??= this.poll();
  }

  stop(): void {
    this.active = Math.max(0, this.active - 1);
  }

  async refresh(): Promise<void> {
    this.update(await this.engine.kvSnapshot());
  }

  private async poll(): Promise<void> {
    try {
      while (this.active > 0) {
        await this.refresh();
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
      await this.refresh(); // the state after the last request finished
    } finally {
      this.polling = null;
    }
  }

  /** Status per request id from the latest snapshot (for the batch table). */
  requestStatus(requestId: string): KvSnapshot['requests'][number] | undefined {
    return this.snap?.requests.find((r) => r.requestId === requestId);
  }

  update(snap: KvSnapshot | null): void {
    this.snap = snap;
    this.empty.hidden = snap !== null;
    this.wrap.hidden = snap === null;
    if (!snap) return;
    const used = snap.numBlocks - snap.numFree;
    const d = this.root.dataset;
    d.used = String(used);
    d.free = String(snap.numFree);
    d.shared = String(snap.numShared);
    d.cachedFree = String(snap.numCachedFree);
    d.preemptions = String(snap.preemptions);
    d.version = String(snap.version);
    d.requests = String(snap.requests.length);
    const stat = (label: string, value: string) => h('span', {}, `${label} `, h('b', {}, value));
    this.stats.replaceChildren(
      stat('in use', `${used} / ${snap.numBlocks}`),
      stat('requests', String(snap.requests.length)),
      stat('shared', String(snap.numShared)),
      stat('cached free', String(snap.numCachedFree)),
      stat('preemptions', String(snap.preemptions)),
      stat('prefix hits', `${(snap.prefixCacheHitRate * 100).toFixed(0)}%`),
      stat('block', `${snap.blockSize} tokens`));
    this.canvas.setAttribute('aria-label',
      `KV-cache block map: ${used} of ${snap.numBlocks} blocks in use by ${snap.requests.length} requests, ${snap.numShared} shared, ${snap.preemptions} preemptions`);
    this.draw();
  }

  private draw(): void {
    const snap = this.snap;
    if (!snap || this.wrap.hidden) return;
    const width = this.wrap.clientWidth;
    if (width === 0) return;
    const n = snap.numBlocks;
    // Squares as large as fit in ~18 rem of height, between 5 and 22 px.
    const maxHeight = 300;
    let cell = Math.floor(Math.sqrt((width * maxHeight) / Math.max(n, 1))) - 2;
    cell = Math.max(5, Math.min(22, cell));
    const gap = cell >= 10 ? 3 : 1;
    const cols = Math.max(1, Math.floor((width + gap) / (cell + gap)));
    const rows = Math.ceil(n / cols);
    const height = rows * (cell + gap) - gap;
    this.layout = { cell, gap, cols };
    const dpr = globalThis.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.canvas.style.height = `${height}px`;
    const ctx = this.canvas.getContext('2d')!;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const css = getComputedStyle(this.root);
    const free = css.getPropertyValue('--free').trim() || '#e9ecf1';
    const accent = css.getPropertyValue('--accent').trim() || '#4f46e5';
    const radius = Math.min(3, cell / 4);
    for (let i = 0; i < n; i++) {
      const x = (i % cols) * (cell + gap), y = Math.floor(i / cols) * (cell + gap);
      const o = snap.owner[i];
      ctx.beginPath();
      ctx.roundRect(x, y, cell, cell, radius);
      ctx.fillStyle = o >= 0 ? requestColor(colorIndex(snap.requests[o].requestId)) : free;
      ctx.fill();
      if (o < 0 && snap.cached[i]) {
        ctx.lineWidth = 1.5;
        ctx.strokeStyle = accent;
        ctx.beginPath();
        ctx.roundRect(x + 0.75, y + 0.75, cell - 1.5, cell - 1.5, radius);
        ctx.stroke();
      }
      if (snap.refCount[i] > 1) {
        ctx.fillStyle = '#fff';
        ctx.beginPath();
        ctx.arc(x + cell / 2, y + cell / 2, Math.max(1.5, cell / 5), 0, Math.PI * 2);
        ctx.fill();
      }
    }
  }

  private hover(e: MouseEvent): void {
    const snap = this.snap;
    if (!snap) return;
    const rect = this.canvas.getBoundingClientRect();
    const { cell, gap, cols } = this.layout;
    const cx = e.clientX - rect.left, cy = e.clientY - rect.top;
    const col = Math.floor(cx / (cell + gap)), row = Math.floor(cy / (cell + gap));
    const i = row * cols + col;
    if (col >= cols || i < 0 || i >= snap.numBlocks) { this.tip.style.display = 'none'; return; }
    const o = snap.owner[i];
    const who = o >= 0 ? `${snap.requests[o].requestId} (${snap.requests[o].status})` : snap.cached[i] ? 'free, cached prefix' : 'free';
    const refs = snap.refCount[i] > 1 ? ` · shared by ${snap.refCount[i]}` : '';
    this.tip.textContent = `block ${i} · ${who}${refs}`;
    this.tip.style.display = 'block';
    this.tip.style.left = `${(col + 0.5) * (cell + gap)}px`;
    this.tip.style.top = `${row * (cell + gap)}px`;
  }
}
