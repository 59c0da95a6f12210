/**
 * The Model panel: choose a source (a hub-style URL, a local folder, or synthetic weights), load it with a
 * progress bar for reading and for the upload to the GPU, see what was loaded, and manage the weight cache.
 */
import * as Comlink from 'comlink';
import type { EngineApi, LoadOptions, LoadProgressEvent, ModelSource, ModelSummary, SyntheticPreset } from '../protocol.ts';
import { field, h, segmented } from './dom.ts';
import { errorParts, formatBytes, formatMs } from './format.ts';

export const DEFAULT_MODEL_URL = 'https://huggingface.co/facebook/opt-125m/resolve/main';

type SourceKind = ModelSource['kind'];

const PHASE_WORDS: Record<LoadProgressEvent['phase'], string> = {
  download: 'Downloading',
  cache: 'Reading from cache',
  synthesize: 'Generating weights',
  upload: 'Uploading to the GPU',
  ready: 'Ready',
};

/** Sensible engine sizes per model size: few enough blocks to see each one, enough to batch. */
function defaultKvBlocks(preset: SyntheticPreset | 'url'): number {
  return preset === 'opt-tiny' ? 48 : 256;
}

export interface ModelPanelHooks {
  onLoadStart(): void;
  onLoaded(summary: ModelSummary): void;
  onLoadFailed(): void;
}

export function mountModelPanel(root: HTMLElement, engine: Comlink.Remote<EngineApi>, hooks: ModelPanelHooks): { setF16(available: boolean): void } {
  let kind: SourceKind = 'url';
  let files: File[] = [];

  // ── source choice ──
  const urlInput = h('input', { type: 'url', value: DEFAULT_MODEL_URL, spellcheck: 'false', autocomplete: 'off' });
  const urlBox = h('div', {}, field('Base URL (laid out like the Hugging Face hub)', urlInput, 'config.json and model.safetensors or pytorch_model.bin are read from here, then kept in this browser\'s cache.'));

  const fileInput = h('input', { type: 'file', multiple: true, class: 'sr-only', accept: '.json,.safetensors,.bin' });
  const folderInput = h('input', { type: 'file', multiple: true, class: 'sr-only', webkitdirectory: true });
  const fileLabelId = 'model-files-label';
  const fileButton = h('button', { type: 'button', class: 'secondary', 'aria-describedby': fileLabelId }, 'Choose files…');
  const folderButton = h('button', { type: 'button', class: 'secondary', 'aria-describedby': fileLabelId }, 'Choose folder…');
  fileButton.addEventListener('click', () => fileInput.click());
  folderButton.addEventListener('click', () => folderInput.click());
  fileInput.setAttribute('aria-label', 'Model files');
  folderInput.setAttribute('aria-label', 'Model folder');
  const fileList = h('div', { class: 'file-list', 'aria-live': 'polite' }, 'No files chosen.');
  const dropzone = h('div', { class: 'dropzone' },
    h('div', { id: fileLabelId }, 'Drop a model folder here, or config.json with model.safetensors / pytorch_model.bin'),
    h('div', { class: 'actions' }, fileButton, folderButton),
    fileInput, folderInput);
  const setFiles = (list: File[]) => {
    // Keep the files a checkpoint can use; a dropped folder may hold tokenizer files, READMEs, ...
    files = list.filter((f) => /\.(json|safetensors|bin)$/i.test(f.name));
    fileList.textContent = files.length === 0 ? 'No usable files (need config.json and weights).' : files.map((f) => `${f.name}  ${formatBytes(f.size)}`).join('\n');
    fileList.style.whiteSpace = 'pre';
  };
  fileInput.addEventListener('change', () => setFiles([...(fileInput.files ?? [])]));
  folderInput.addEventListener('change', () => setFiles([...(folderInput.files ?? [])]));
  dropzone.addEventListener('dragover', (e) => { e.preventDefault(); dropzone.classList.add('over'); });
  dropzone.addEventListener('dragleave', () => dropzone.classList.remove('over'));
  dropzone.addEventListener('drop', (e) => {
    e.preventDefault();
    dropzone.classList.remove('over');
    void droppedFiles(e.dataTransfer).then(setFiles);
  });
  const filesBox = h('div', { hidden: true }, dropzone, fileList);

  const presetSelect = h('select', {},
    h('option', { value: 'opt-tiny' }, 'opt-tiny — 2 layers, 0.1 M parameters (fast anywhere)'),
    h('option', { value: 'opt-125m' }, 'opt-125m — the real architecture, 125 M parameters'));
  const seedInput = h('input', { type: 'number', value: '1', step: '1' });
  const syntheticBox = h('div', { hidden: true },
    h('div', { class: 'row' }, field('Architecture', presetSelect), field('Seed', seedInput)),
    h('p', { class: 'hint' }, 'Deterministic weights from the reference formula: no download, nonsense text, real engine.'));

  // ── engine settings ──
  const blocksInput = h('input', { type: 'number', value: String(defaultKvBlocks('url')), min: '8', max: '4096', step: '1' });
  const blockSizeSelect = h('select', {}, ...[8, 16, 32].map((n) => h('option', { value: String(n), selected: n === 16 }, `${n} tokens`)));
  const seqsInput = h('input', { type: 'number', value: '16', min: '1', max: '256', step: '1' });
  const dtypeSelect = h('select', {}, h('option', { value: 'f32' }, 'f32'), h('option', { value: 'f16', disabled: true }, 'f16 (needs shader-f16)'));
  presetSelect.addEventListener('change', () => { blocksInput.value = String(defaultKvBlocks(presetSelect.value as SyntheticPreset)); });
  const advanced = h('details', {},
    h('summary', { class: 'hint' }, 'Engine settings'),
    h('div', { class: 'controls' },
      field('KV-cache blocks', blocksInput),
      field('Block size', blockSizeSelect),
      field('Max sequences', seqsInput),
      field('Precision', dtypeSelect)),
    h('p', { class: 'hint' }, 'Fewer blocks than a batch needs makes the scheduler preempt requests: watch it in the KV map.'));

  const sourceSwitch = segmented<SourceKind>('source', 'Model source', [
    { value: 'url', label: 'URL' },
    { value: 'files', label: 'Local folder' },
    { value: 'synthetic', label: 'Synthetic' },
  ], kind, (v) => {
    kind = v;
    urlBox.hidden = v !== 'url';
    filesBox.hidden = v !== 'files';
    syntheticBox.hidden = v !== 'synthetic';
    if (v === 'synthetic') blocksInput.value = String(defaultKvBlocks(presetSelect.value as SyntheticPreset));
  });

  // ── load, progress, result ──
  const loadButton = h('button', { type: 'button' }, 'Load model');
  const progress = h('progress', { max: '1', value: '0', 'aria-label': 'Loading progress' });
  const progressWhat = h('span', {});
  const progressHow = h('span', {});
  const progressBox = h('div', { class: 'progress', hidden: true }, progress, h('div', { class: 'hint' }, progressWhat, progressHow));
  const errorBox = h('div', { class: 'error', role: 'alert', hidden: true });
  const summaryBox = h('div', {});

  const cacheText = h('span', { id: 'cache-size' }, 'Weight cache: …');
  const clearButton = h('button', { type: 'button', class: 'secondary' }, 'Clear cache');
  const cacheLine = h('div', { class: 'cache-line' }, cacheText, clearButton);
  const refreshCache = async () => {
    const info = await engine.cacheInfo();
    cacheText.textContent = info.available
      ? `Weight cache: ${info.files === 0 ? 'empty' : `${info.files} file${info.files === 1 ? '' : 's'}, ${formatBytes(info.bytes)}`}`
      : 'Weight cache: not available in this browser';
    clearButton.disabled = !info.available || info.files === 0;
  };
  clearButton.addEventListener('click', async () => {
    await engine.clearCache();
    await refreshCache();
  });

  root.append(sourceSwitch, urlBox, filesBox, syntheticBox, advanced, h('div', { class: 'actions' }, loadButton), progressBox, errorBox, summaryBox, cacheLine);
  void refreshCache();

  const showProgress = (e: LoadProgressEvent) => {
    progressBox.hidden = false;
    progressWhat.textContent = `${PHASE_WORDS[e.phase]}${e.file && e.phase !== 'upload' ? ` ${e.file}` : ''}`;
    if (e.totalBytes && e.totalBytes > 0) {
      progress.value = Math.min(1, e.loadedBytes / e.totalBytes);
      progressHow.textContent = `${formatBytes(e.loadedBytes)} of ${formatBytes(e.totalBytes)}`;
    } else if (e.phase === 'ready') {
      progress.value = 1;
      progressHow.textContent = '';
    } else {
      progress.removeAttribute('value'); // indeterminate while the size is unknown
      progressHow.textContent = formatBytes(e.loadedBytes);
    }
    progressBox.dataset.phase = e.phase;
  };

  const source = (): ModelSource => {
    if (kind === 'url') return { kind, baseUrl: urlInput.value.trim() };
    if (kind === 'files') return { kind, files };
    return { kind, preset: presetSelect.value as SyntheticPreset, seed: Math.trunc(Number(seedInput.value) || 0) };
  };

  loadButton.addEventListener('click', async () => {
    const options: LoadOptions = {
      kvBlocks: Math.max(1, Math.trunc(Number(blocksInput.value) || 0)),
      blockSize: Number(blockSizeSelect.value) as LoadOptions['blockSize'],
      maxNumSeqs: Math.max(1, Math.trunc(Number(seqsInput.value) || 1)),
      dtype: dtypeSelect.value as LoadOptions['dtype'],
    };
    errorBox.hidden = true;
    summaryBox.replaceChildren();
    loadButton.disabled = true;
    root.setAttribute('aria-busy', 'true');
    hooks.onLoadStart();
    showProgress({ phase: kind === 'synthetic' ? 'synthesize' : 'download', loadedBytes: 0 });
    // Progress messages may still be in flight when load() answers: only this load's, and only until then.
    let live = true;
    const onProgress = (e: LoadProgressEvent) => { if (live) showProgress(e); };
    try {
      const summary = await engine.load(source(), options, Comlink.proxy(onProgress)).finally(() => { live = false; });
      showProgress({ phase: 'ready', loadedBytes: 0 });
      progressWhat.textContent = summary.fromCache ? 'Loaded from the cache' : 'Loaded';
      progressBox.dataset.phase = 'ready';
      summaryBox.replaceChildren(renderSummary(summary));
      hooks.onLoaded(summary);
    } catch (e) {
      progressBox.hidden = true;
      const { title, message } = errorParts(e);
      errorBox.replaceChildren(h('b', {}, title), message);
      errorBox.hidden = false;
      hooks.onLoadFailed();
    } finally {
      loadButton.disabled = false;
      root.removeAttribute('aria-busy');
      void refreshCache();
    }
  });

  return {
    setF16(available: boolean) {
      const opt = dtypeSelect.querySelector<HTMLOptionElement>('option[value=f16]')!;
      opt.disabled = !available;
      opt.textContent = available ? 'f16 (half the memory)' : 'f16 (needs shader-f16)';
    },
  };
}

function renderSummary(s: ModelSummary): HTMLElement {
  const c = s.config;
  const params = estimateParams(s);
  return h('dl', { class: 'facts', id: 'model-summary', 'data-downloaded-bytes': s.downloadedBytes, 'data-from-cache': String(s.fromCache) },
    h('dt', {}, 'Source'), h('dd', {}, s.label, ' ', s.fromCache ? h('span', { class: 'badge ok' }, 'from cache') : null),
    h('dt', {}, 'Architecture'), h('dd', {}, `${c.numLayers} layers × ${c.hiddenSize} wide, ${c.numHeads} heads, vocabulary ${c.vocabSize.toLocaleString()}`),
    h('dt', {}, 'Weights'), h('dd', {}, `${formatBytes(s.memory.weights)} on the GPU (${s.dtype}), ~${params}`),
    h('dt', {}, 'KV cache'), h('dd', {}, `${s.memory.numBlocks} blocks × ${s.memory.blockSize} tokens, ${formatBytes(s.memory.kvCache)}`),
    h('dt', {}, 'Longest request'), h('dd', {}, `${s.maxModelLen} tokens`),
    h('dt', {}, 'Downloaded'), h('dd', {}, s.downloadedBytes > 0 ? formatBytes(s.downloadedBytes) : 'nothing'),
    h('dt', {}, 'Load time'), h('dd', {}, formatMs(s.loadMs)));
}

function estimateParams(s: ModelSummary): string {
  const n = s.memory.weights / (s.dtype === 'f16' ? 2 : 4);
  return n >= 1e6 ? `${(n / 1e6).toFixed(0)} M parameters` : `${(n / 1e3).toFixed(0)} K parameters`;
}

/** Files of a drop: plain files, and the files inside dropped folders (one level of nesting is enough for a model). */
async function droppedFiles(dt: DataTransfer | null): Promise<File[]> {
  if (!dt) return [];
  const entries = [...dt.items].map((i) => i.webkitGetAsEntry?.()).filter((e): e is FileSystemEntry => !!e);
  if (entries.length === 0) return [...dt.files];
  const out: File[] = [];
  const walk = async (entry: FileSystemEntry, depth: number): Promise<void> => {
    if (entry.isFile) {
      out.push(await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej)));
    } else if (entry.isDirectory && depth < 2) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
        if (batch.length === 0) break;
        for (const e of batch) await walk(e, depth + 1);
      }
    }
  };
  for (const e of entries) await walk(e, 0);
  return out;
}
