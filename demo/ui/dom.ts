/** A few DOM helpers: the demo is plain DOM, no framework. */

type Attrs = Record<string, string | number | boolean | null | undefined | ((e: Event) => void)>;
export type Child = Node | string | number | null | undefined | false;

/** Create an element: h('button', { class: 'secondary', onclick: fn }, 'Go'). Boolean true sets an empty attribute. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, ...children);
  return el;
}

export function append(el: Element, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

let nextId = 0;
/** A unique id for label/for pairs. */
export function uid(prefix: string): string {
  return `${prefix}-${++nextId}`;
}

/** A labelled form control wrapped in .field. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLDivElement {
  control.id ||= uid('f');
  const children: Child[] = [h('label', { for: control.id }, label), control];
  if (hint) {
    const hintId = uid('hint');
    control.setAttribute('aria-describedby', hintId);
    children.push(h('div', { class: 'hint', id: hintId }, hint));
  }
  return h('div', { class: 'field' }, ...children);
}

/** A segmented radio group (arrow keys move between options, as native radios do). */
export function segmented<T extends string>(
  name: string, legend: string, options: readonly { value: T; label: string }[], initial: T, onChange: (v: T) => void,
): HTMLFieldSetElement {
  const group = h('div', { class: 'segmented' });
  for (const o of options) {
    const id = uid(name);
    const input = h('input', { type: 'radio', name, id, value: o.value, checked: o.value === initial });
    input.addEventListener('change', () => { if (input.checked) onChange(o.value); });
    group.append(input, h('label', { for: id }, o.label));
  }
  return h('fieldset', {}, h('legend', {}, legend), group);
}
