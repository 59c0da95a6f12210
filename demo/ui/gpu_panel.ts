/** The WebGPU panel: the adapter, Tandem's features and limits in use, or what is missing and what to do. */
import type { GpuStatus } from '../protocol.ts';
import { h } from './dom.ts';
import { formatBytes } from './format.ts';

const BYTE_LIMITS = new Set(['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize']);

export function renderGpuPanel(root: HTMLElement, status: GpuStatus): void {
  root.removeAttribute('aria-busy');
  if (!status.available) {
    root.replaceChildren(renderUnavailable(status.reason, status.advice));
    return;
  }
  const a = status.adapter;
  const name = [a.vendor, a.architecture, a.device].filter(Boolean).join(' · ') || 'unnamed adapter';
  const limits = h('table', {},
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Limit in use'), h('th', { scope: 'col' }, 'Value'))),
    h('tbody', {}, ...Object.entries(status.limitsInUse).map(([k, v]) =>
      h('tr', {}, h('td', {}, k), h('td', { class: 'num' }, BYTE_LIMITS.has(k) ? `${formatBytes(v)} (${v.toLocaleString()})` : v.toLocaleString())))));
  root.replaceChildren(
    h('dl', { class: 'facts' },
      h('dt', {}, 'Adapter'), h('dd', { id: 'gpu-adapter' }, name, a.isFallbackAdapter ? h('span', { class: 'badge off' }, ' software') : null),
      a.description ? h('dt', {}, 'Description') : null, a.description ? h('dd', {}, a.description) : null),
    h('h3', {}, 'Features Tandem uses'),
    h('ul', { class: 'checks' }, ...status.tandemFeatures.map((f) =>
      h('li', { class: f.enabled ? '' : 'fail' }, h('b', {}, f.name), ` — ${f.enabled ? f.why : `not available: ${f.why.split(';')[0]} is off`}`))),
    h('h3', {}, 'Limits'),
    limits,
    h('details', {}, h('summary', { class: 'hint' }, `All ${status.features.length} adapter features`),
      h('div', { class: 'features' }, ...status.features.map((f) => h('span', {}, f)))),
  );
}

export function renderUnavailable(reason: string, advice: string[]): HTMLElement {
  return h('div', { class: 'notice warn', role: 'alert', id: 'gpu-unavailable' },
    h('b', {}, 'WebGPU is not available. '), reason,
    h('ul', {}, ...advice.map((t) => h('li', {}, t))),
    h('p', { class: 'hint' }, 'The rest of this page still works for reading; loading a model needs WebGPU.'));
}
