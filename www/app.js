// The sampler page: the wasm runtime on WebGPU (or the CPU path) in the sampler's worker, the
// published models and their solvers, a grid of samples for a seed, and the compare view. The
// form's state is mirrored in the address (?model=…&solver=…&seed=…&batch=…&class=…&guidance=…
// &backend=cpu|webgpu), so a link reproduces a picture; a value there that the form refuses falls
// back to the form's own, with a note. A failed generation or compare run says so in its status
// line and leaves the previous picture and the controls ready for the next try. `window.bnsPage`
// exposes the page's state and actions to the browser tests.

import { openSampler } from './lib/sampler-client.js';
import { fetchModel, fetchOk } from './lib/weights.js';
import {
  classicalAt, classicalLabel, defaultPublished, parseClassical, publishedLabel, publishedNfes,
} from './lib/solvers.js';
import { drawRgba, drawScatter, isPoints } from './lib/draw.js';
import { markStale, showComparison } from './compare.js';
import { showAbout } from './about.js';
import { quoted, shortReason } from './lib/messages.js';
import { setUpDistill } from './distill.js';

const $ = (id) => document.getElementById(id);

/** How many 2-D points get their path drawn. */
const PATHS = 24;
/** Batch of the compare view: a few images, or enough points to see the distribution. */
const COMPARE_BATCH = { images: 4, points: 200 };

const page = {
  /** Whether the page has a model and its first action is over: Generate works from here on,
   * whether or not that first picture could be drawn. */
  ready: false,
  error: null,
  generated: 0,
  lastValues: null,
  lastShape: null,
  lastPaths: null,
  backend: null,
  backendText: '',
  /** ms the last `generate` took, and when the first image was drawn (ms after navigation start). */
  lastMs: null,
  firstImageAt: null,
  model: null,
  lastCompare: null,
  /** Where generation runs: "worker" or "main thread". */
  where: null,
  /** The progress reports of the last generation: [{ done, total }]. */
  progress: [],
  /** Resolves when the actions queued so far (a click of Generate, say) are over. */
  settled: () => queue,
  loadSolverText: (text, name) => act(() => loadSolverText(text, name)),
  compare: () => act(compare),
  loseDevice: () => sampler.call('loseDevice'),
  /** The "Distil a solver" panel's state: { status, curve, baselines, seconds, solverText, … }. */
  distill: {},
  loadModelFile: (bytes, name) => act(() => loadOwnModel(bytes, name)),
};
window.bnsPage = page;

/** The sampler (sampler-client.js): its calls run in the worker. */
let sampler;
/** What the sampler last said of its backend: { backend, note, adapter, software }. */
let backendInfo = null;
/** The loaded model: { name, spec }. */
let model = null;
/** The solver in use (its file's JSON). */
let solver = null;
/** Solver option value → its source: { url, name } (published), { spec } (classical), { text, name } (a file). */
const sources = new Map();
/** The option value of the solver the sampler holds. */
let solverValue = null;
let filesLoaded = 0;
/** Model list value ("file:<name>") → the bytes of a model file the user chose or dropped. */
const ownModels = new Map();
/** The "Distil a solver" panel (distill.js). */
let distill = null;
let queue = Promise.resolve();

const messageOf = (e) => e?.message ?? String(e);

function showError(message) {
  page.error = message;
  $('error').textContent = message;
  $('error').hidden = false;
}

function clearError() {
  page.error = null;
  $('error').hidden = true;
}

/** Disables the controls while an action runs; without a loaded model only the model list stays
 * usable (to pick another one). */
function setBusy(busy) {
  const off = busy || model === null;
  for (const id of ['solver', 'solver-file', 'run-on', 'generate', 'compare']) $(id).disabled = off;
  $('model').disabled = busy || $('model').options.length === 0;
  $('class').disabled = off || model.spec.num_classes === 0;
}

/**
 * `text` as the value of the form's number input `field`, checked as the input checks what is
 * typed (a number within its min, max and step), in the browser's words: `{ value }`, or
 * `{ why, previous }` with the input's previous value kept. The one check for a typed value and
 * for one from the address.
 */
function checkField(field, text) {
  const input = $(field);
  const previous = input.value;
  if (input.value !== text) input.value = text;
  // The input empties itself when given something other than a number ("abc", "0x10").
  const taken = input.value !== '' && Number.isFinite(Number(input.value));
  const why = !taken ? 'Not a number.' : input.checkValidity() ? null : input.validationMessage;
  if (why === null) return { value: Number(input.value) };
  if (input.value !== previous) input.value = previous;
  return { why, previous };
}

/** The form's value of `field` (checkField), or an error naming the field and the problem. */
function checkedValue(field) {
  const text = $(field).value;
  const checked = checkField(field, text);
  if (checked.why) throw new Error(`${fieldLabel(field)}${text ? ` ${quoted(text)}` : ''}: ${checked.why}`);
  return checked.value;
}

/** The note for a value from the address that the form does not take: "Seed 1e308 (from the
 * address): Value must be less than or equal to 9007199254740991. Using 1 instead." */
const addressNote = (label, text, why, used) => `${label} ${quoted(text)} (from the address): ${why} Using ${used} instead.`;

/** Chooses the option `text` of the form's select `field` from the address; without such an
 * option the select keeps its choice and the note says so (`why`: what the value is not). */
function selectFromAddress(field, text, why) {
  const select = $(field);
  if ([...select.options].some((o) => o.value === text)) {
    select.value = text;
    return [];
  }
  return [addressNote(fieldLabel(field), text, why, select.selectedOptions[0]?.textContent ?? select.value)];
}

/** The form's label of the input `field` ("Batch"). */
const fieldLabel = (field) => $(field).closest('label')?.firstChild?.textContent.trim() ?? field;

/** Runs actions one at a time with the controls disabled; a failure is shown on the page. */
function act(action) {
  queue = queue.then(async () => {
    setBusy(true);
    clearError();
    try {
      await action();
    } catch (e) {
      showError(messageOf(e));
    } finally {
      setBusy(false);
      if (started && model) page.ready = true;
    }
  });
  return queue;
}

/** The adapter's name without wgpu's backend ("swiftshader (google)"). */
const adapterName = (info) => (info.adapter ?? '').replace(/\s*\([^()]*\)$/, '');

/** Shows which path generates, on which adapter, and why it is the CPU when WebGPU was wanted. */
function showBackend() {
  const info = backendInfo;
  const choice = $('run-on').value;
  const adapter = info.adapter ? adapterName(info) || 'an unnamed adapter' : null;
  let kind;
  let text;
  let detail = '';
  if (choice === 'cpu') {
    kind = 'cpu';
    text = 'CPU (WebAssembly)';
    detail = `chosen under “Run on”${adapter ? `; the WebGPU adapter is ${adapter}` : ''}`;
  } else if (adapter && (choice === 'webgpu' || info.backend === 'webgpu')) {
    kind = 'webgpu';
    text = `WebGPU · ${adapter}`;
    detail = info.software
      ? `${info.software} is a software renderer: slower than the CPU path (chosen under “Run on”)`
      : '';
  } else if (adapter) {
    kind = 'cpu';
    text = 'CPU path';
    detail = info.note;
  } else {
    kind = 'fallback';
    text = 'WebGPU unavailable — running on the CPU';
    detail = info.note;
  }
  if (sampler.where !== 'worker') detail = `${detail ? `${detail}; ` : ''}on the main thread: ${sampler.why}`;
  const strong = document.createElement('strong');
  strong.textContent = text;
  const small = document.createElement('small');
  small.textContent = detail;
  $('backend').dataset.kind = kind;
  $('backend').replaceChildren(strong, ...(detail ? [small] : []));
  page.backendText = $('backend').textContent;
}

/**
 * The first model's download, started with the page (`start`) so that it overlaps the workers'
 * start: `{ name, fetched }` (fetchModel's promise), taken by the first `loadModel` of that name.
 */
let prefetched = null;

/** Starts downloading the model the page will open with: the address's, else the list's first. */
function prefetchFirstModel(modelList, wanted) {
  const fetched = modelList.then((models) => {
    const name = Array.isArray(models) && models.includes(wanted.get('model')) ? wanted.get('model') : models?.[0];
    if (typeof name !== 'string') return null;
    const manifestUrl = new URL(`models/${name}/manifest.json`, document.baseURI).href;
    return { name, fetched: fetchModel(manifestUrl) };
  });
  // Failures surface where the download is awaited (loadModel), not as unhandled rejections.
  fetched.then((p) => p?.fetched.catch(() => {}), () => {});
  return fetched;
}

async function loadModel(name, wanted = new URLSearchParams()) {
  if (ownModels.has(name)) return loadOwnModel(ownModels.get(name), name.slice('file:'.length));
  const base = new URL(`models/${name}/`, document.baseURI);
  const early = prefetched?.name === name ? prefetched.fetched : null;
  prefetched = null;
  const { manifest, url, bytes, cached, f16 } = await (early ?? fetchModel(new URL('manifest.json', base).href));
  const loaded = await sampler.call('loadModel', { bytes, name: url });
  const { spec } = loaded;
  backendInfo = loaded.info;
  model = { name, spec, manifest, base, bytes, modelId: loaded.modelId, title: manifest.title ?? name };
  distill?.modelChanged(model);
  page.model = { name, cached };
  fillSolvers(manifest, base);
  fillClasses(spec);
  $('batch').value = isPoints(spec) ? '1000' : '16';
  $('about-model').textContent =
    `${manifest.title ?? name} (${loaded.summary}; ` +
    `data ${spec.data_shape.join('×')}); ` +
    `${(bytes.length / 1e6).toFixed(1)} MB${f16 ? ' (f16 weights)' : ''} ` +
    `${cached ? 'from the browser cache' : 'downloaded'}; ` +
    `model id ${loaded.modelId.slice(0, 12)}…`;
  const published = defaultPublished(manifest, spec);
  showAbout($('about'), { manifest, base, spec }).catch(() => {});
  // Values from the address go through the form's own checks; a refused one is named and the
  // form's value kept.
  const notes = [];
  const wantedSolver = wanted.get('solver');
  const requested = solverValueOf(wantedSolver);
  await useSolver(requested ?? (published ? `published:${published.file}` : $('solver').value));
  if (wantedSolver && !requested) notes.push(addressNote('Solver', wantedSolver, `Not a solver of ${name}.`, solver.name));
  for (const field of ['seed', 'batch', 'guidance']) {
    const text = wanted.get(field)?.trim();
    if (!text) continue;
    const checked = checkField(field, text);
    if (checked.why) notes.push(addressNote(fieldLabel(field), text, checked.why, checked.previous));
  }
  const wantedClass = wanted.get('class');
  if (wantedClass) notes.push(...selectFromAddress('class', wantedClass, `Not a class of ${name}.`));
  return notes;
}

/** The option value for a solver named in the address: a published file or a classical spec. */
function solverValueOf(name) {
  if (!name) return null;
  const value = parseClassical(name) ? `classical:${name}` : `published:${name}`;
  return sources.has(value) ? value : null;
}

function fillSolvers(manifest, base) {
  sources.clear();
  const published = document.createElement('optgroup');
  published.label = 'Published with the model';
  for (const entry of manifest.solvers) {
    const value = `published:${entry.file}`;
    sources.set(value, { url: new URL(entry.file, base).href, name: entry.file });
    published.append(new Option(publishedLabel(entry), value));
  }
  const classical = document.createElement('optgroup');
  classical.label = 'Classical, built by the runtime';
  for (const nfe of publishedNfes(manifest)) {
    for (const spec of classicalAt(nfe)) {
      sources.set(`classical:${spec}`, { spec });
      classical.append(new Option(classicalLabel(spec), `classical:${spec}`));
    }
  }
  const files = document.createElement('optgroup');
  files.label = 'Loaded from a file';
  files.id = 'solver-files';
  files.hidden = true;
  $('solver').replaceChildren(...(manifest.solvers.length ? [published] : []), classical, files);
}

function fillClasses(spec) {
  $('class').replaceChildren(new Option('all (cycle)', '-1'));
  for (let c = 0; c < spec.num_classes; c++) {
    $('class').append(new Option(spec.class_names?.[c] ?? `class ${c}`, String(c)));
  }
  $('class').disabled = spec.num_classes === 0;
  $('guidance').disabled = spec.num_classes === 0;
  if (spec.num_classes === 0) $('guidance').value = '0';
}

/** Gives the sampler the solver of option `value`; on failure the previous one stays. */
async function useSolver(value) {
  const source = sources.get(value);
  if (!source) throw new Error(`no solver ${value}`);
  if (source.spec) {
    solver = await sampler.call('useClassical', parseClassical(source.spec));
  } else {
    source.text ??= await (await fetchOk(source.url, 'the solver')).text();
    solver = await sampler.call('loadSolver', { text: source.text, name: source.name });
    // A solver file records the guidance it was made for.
    if (model.spec.num_classes > 0) $('guidance').value = String(solver.guidance);
  }
  solverValue = value;
  $('solver').value = value;
}

/**
 * A model file the user chose or dropped (`bytes`, its file name): checked by the runtime as
 * every loader checks a model; on success it joins the model list (as the user's) with the
 * classical solvers, and a refusal names the file and the problem, the previous model staying.
 */
async function loadOwnModel(bytes, fileName) {
  let loaded;
  try {
    loaded = await sampler.call('loadModel', { bytes, name: fileName });
  } catch (e) {
    throw new Error(`Model not loaded: ${messageOf(e)}. The previous model is still in use.`);
  }
  const { spec } = loaded;
  backendInfo = loaded.info;
  const value = `file:${fileName}`;
  ownModels.set(value, bytes);
  const title = `${fileName} (your file)`;
  const manifest = { name: fileName, title, solvers: [] };
  model = { name: value, spec, manifest, base: null, bytes, modelId: loaded.modelId, title };
  page.model = { name: value, cached: false, own: true };
  if (![...$('model').options].some((o) => o.value === value)) $('model').append(new Option(title, value));
  $('model').value = value;
  fillSolvers(manifest, null);
  fillClasses(spec);
  $('batch').value = isPoints(spec) ? '1000' : '16';
  $('about-model').textContent =
    `${title} (${loaded.summary}; data ${spec.data_shape.join('×')}); ` +
    `${(bytes.length / 1e6).toFixed(1)} MB, read in this browser and sent nowhere; model id ${loaded.modelId.slice(0, 12)}…`;
  showAbout($('about'), { manifest, base: null, spec }).catch(() => {});
  await useSolver($('solver').value);
  distill?.modelChanged(model);
  return [];
}

/**
 * A solver distilled on this page (`text`, the file name it downloads as): added to the solver
 * list under "Distilled here (yours)" and used. The list forgets it when the model changes.
 */
async function addDistilledSolver(text, name) {
  const file = await sampler.call('loadSolver', { text, name });
  solver = file;
  const value = `file:${++filesLoaded}`;
  sources.set(value, { text, name });
  let group = $('solver-distilled');
  if (!group) {
    group = document.createElement('optgroup');
    group.label = 'Distilled here (yours)';
    group.id = 'solver-distilled';
    $('solver').prepend(group);
  }
  const psnr = file.metrics?.validation_psnr;
  group.append(new Option(`yours · BNS · NFE ${file.nfe} · w = ${file.guidance}${Number.isFinite(psnr) ? ` · ${psnr.toFixed(1)} dB (validation)` : ''}`, value));
  await useSolver(value);
}

/** A solver file's text (from the file input, or a test): added to the solver list and used. */
async function loadSolverText(text, name) {
  let file;
  try {
    file = await sampler.call('loadSolver', { text, name });
  } catch (e) {
    throw new Error(`Solver not loaded: ${messageOf(e)}. The previous solver is still in use.`);
  }
  solver = file;
  const value = `file:${++filesLoaded}`;
  sources.set(value, { text, name });
  const group = $('solver-files');
  group.hidden = false;
  group.append(new Option(`${name} · ${file.kind} · NFE ${file.nfe}`, value));
  await useSolver(value);
}

function readRequest() {
  const cls = Number($('class').value);
  return {
    seed: checkedValue('seed'),
    batch: checkedValue('batch'),
    class: cls >= 0 ? cls : null,
    guidance: checkedValue('guidance'),
    backend: $('run-on').value,
  };
}

/**
 * Shows a call's progress in `#progress`: the evaluations done of `total` (the CPU path reports
 * each), or a moving bar while WebGPU runs them in one go. `null` hides it.
 */
function showProgress(report, { gpu = false, stage = '' } = {}) {
  const bar = $('progress');
  if (report) page.progress.push(report);
  if (!report) {
    bar.hidden = true;
    return;
  }
  bar.hidden = false;
  const meter = bar.querySelector('progress');
  const { done, total } = report;
  if (gpu && done < total) meter.removeAttribute('value');
  else {
    meter.max = total;
    meter.value = done;
  }
  const what = report.stage ?? stage;
  bar.querySelector('span').textContent =
    `${what ? `${what}: ` : ''}${gpu && done < total ? `${total} evaluations on WebGPU…` : `evaluation ${done} of ${total}`}`;
}

/** Generates and draws the form's request; a failure leaves the picture as it was and says so
 * in the status line under it (the whole message goes to the error box). */
async function generate() {
  try {
    await draw();
  } catch (e) {
    $('timing').textContent = `Generation failed: ${shortReason(messageOf(e))}` +
      ($('canvas').classList.contains('drawn') ? ' (the picture is the previous one)' : '');
    throw e;
  }
}

async function draw() {
  const request = readRequest();
  const points = isPoints(model.spec);
  request.columns = Math.ceil(Math.sqrt(request.batch));
  const gpu = request.backend === 'webgpu' || (request.backend === 'auto' && backendInfo.backend === 'webgpu');
  $('timing').textContent = `Generating ${request.batch} ${points ? 'points' : 'images'}…`;
  page.progress = [];
  showProgress({ done: 0, total: solver.nfe }, { gpu });
  let out;
  try {
    out = await sampler.call('generate', { request, paths: points ? PATHS : 0, picture: !points },
      (report) => showProgress(report, { gpu }));
  } finally {
    showProgress(null);
  }
  const { values, ms } = out;
  backendInfo = out.info;
  page.backend = out.backend;
  if (points) {
    const pathCount = Math.min(PATHS, request.batch);
    page.lastPaths = out.paths;
    drawScatter($('canvas'), values, { paths: page.lastPaths, pathCount });
  } else {
    drawRgba($('canvas'), out.rgba, out.width);
  }
  $('canvas').classList.add('drawn');
  page.lastMs = ms;
  page.firstImageAt ??= performance.now();
  const path = page.backend === 'webgpu' ? 'WebGPU' : out.lanes === 2 ? 'CPU, 2 workers' : 'CPU';
  $('timing').textContent =
    `${solver.name} (NFE ${solver.nfe}) · seed ${request.seed} · ${request.batch} ` +
    `${points ? 'points' : 'images'} in ${ms.toFixed(0)} ms, ${(ms / request.batch).toFixed(2)} ms ` +
    `per ${points ? 'point' : 'image'} · ${path}` +
    (points ? ` · lines: the paths of ${Math.min(PATHS, request.batch)} points from the noise` : '');
  page.lastValues = values;
  page.lastShape = [request.batch, ...model.spec.data_shape];
  page.generated += 1;
  showBackend();
  rememberInAddress(request);
}

/** Puts the form's state in the address, so the link reproduces the picture. */
function rememberInAddress(request) {
  const params = new URLSearchParams({ model: model.name });
  const source = sources.get(solverValue);
  if (source.spec || source.url) params.set('solver', source.spec ?? source.name);
  params.set('seed', String(request.seed));
  params.set('batch', String(request.batch));
  if (request.class !== null) params.set('class', String(request.class));
  if (model.spec.num_classes > 0) params.set('guidance', String(request.guidance));
  if (request.backend !== 'auto') params.set('backend', request.backend);
  history.replaceState(null, '', `?${params}`);
}

/** What the compare view's results depend on besides the solver: they are stale when it changes. */
const COMPARE_INPUTS = ['model', 'solver', 'class', 'guidance', 'seed'];

/** Runs the compare view; a failure leaves the previous results (if any) and says so in the
 * view's status line. */
async function compare() {
  const status = $('compare-status');
  status.hidden = false;
  status.classList.remove('failed');
  status.textContent = 'Computing…';
  try {
    await compareRun();
    status.hidden = true;
  } catch (e) {
    const previous = $('compare-results').querySelector('.compare-grid') ? ' (the results below are the previous ones)' : '';
    status.textContent = `Compare failed: ${shortReason(messageOf(e))}${previous}`;
    status.classList.add('failed');
    throw e;
  }
}

async function compareRun() {
  const points = isPoints(model.spec);
  const request = readRequest();
  request.batch = points ? COMPARE_BATCH.points : COMPARE_BATCH.images;
  const [c, h, w] = model.spec.data_shape;
  const shape = [request.batch, c, h, w];
  try {
    const { rows, rk4 } = await sampler.call('compare', { request, dim: c * h * w, points }, (report) => showCompareProgress(report));
    const classLabel = request.class === null ? 'every class in turn' : (model.spec.class_names?.[request.class] ?? `class ${request.class}`);
    const about = `${model.manifest.title ?? model.name} · seed ${request.seed} · ` +
      (model.spec.num_classes > 0 ? `${classLabel} · w = ${request.guidance}` : 'unconditional');
    page.lastCompare = rows.map(({ label, nfe, psnr, ms, skipped }) => ({ label, nfe, psnr, ms, skipped }));
    page.lastCompareConclusion = showComparison($('compare-results'), { rows, rk4 }, { points, shape, about });
    page.compareStale = false;
  } finally {
    $('compare-progress').hidden = true;
  }
}

function showCompareProgress({ stage, done, total }) {
  const bar = $('compare-progress');
  bar.hidden = false;
  bar.querySelector('progress').max = total;
  bar.querySelector('progress').value = done;
  bar.querySelector('span').textContent = `${stage}: evaluation ${done} of ${total}`;
}

/** Marks the compare view's results stale (they were for other settings). */
function compareInputChanged() {
  if (markStale($('compare-results'))) page.compareStale = true;
}

function wire() {
  $('controls').addEventListener('submit', (event) => {
    event.preventDefault();
    act(generate);
  });
  $('model').addEventListener('change', () =>
    act(async () => {
      try {
        await loadModel($('model').value);
      } finally {
        // A model that failed to load left the previous one (if any) in the sampler.
        if (model) $('model').value = model.name;
      }
      await generate();
    }),
  );
  $('solver').addEventListener('change', () =>
    act(async () => {
      const previous = solverValue;
      try {
        await useSolver($('solver').value);
      } catch (e) {
        $('solver').value = previous;
        throw e;
      }
    }),
  );
  $('solver-file').addEventListener('change', () => {
    const file = $('solver-file').files[0];
    $('solver-file').value = '';
    if (file) act(async () => loadSolverText(await file.text(), file.name));
  });
  $('run-on').addEventListener('change', showBackend);
  $('model-file').addEventListener('change', () => {
    const file = $('model-file').files[0];
    $('model-file').value = '';
    if (file) act(async () => loadOwnModel(new Uint8Array(await file.arrayBuffer()), file.name));
  });
  // A model file dropped anywhere on the page.
  document.addEventListener('dragover', (event) => {
    if (![...(event.dataTransfer?.types ?? [])].includes('Files')) return;
    event.preventDefault();
    document.body.classList.add('drop-target');
  });
  document.addEventListener('dragleave', (event) => {
    if (event.relatedTarget === null) document.body.classList.remove('drop-target');
  });
  document.addEventListener('drop', (event) => {
    document.body.classList.remove('drop-target');
    const file = event.dataTransfer?.files?.[0];
    if (!file) return;
    event.preventDefault();
    act(async () => loadOwnModel(new Uint8Array(await file.arrayBuffer()), file.name));
  });
  distill = setUpDistill({
    current: () => model,
    addSolver: (text, name) => act(() => addDistilledSolver(text, name)),
    state: page.distill,
  });
  if (model) distill.modelChanged(model);
  $('compare').addEventListener('click', () => act(compare));
  for (const id of COMPARE_INPUTS) {
    $(id).addEventListener('change', compareInputChanged);
    $(id).addEventListener('input', compareInputChanged);
  }
}

async function start() {
  const wanted = new URLSearchParams(location.search);
  // The model list and the first model download while the workers start.
  const modelList = fetchOk('models/index.json', 'the model list').then((response) => response.json());
  modelList.catch(() => {});
  const first = prefetchFirstModel(modelList, wanted);
  sampler = await openSampler({ workerUrl: new URL('./lib/sampler-worker.js', import.meta.url) });
  page.where = sampler.where;
  backendInfo = await sampler.call('info');
  $('version').textContent = `runtime ${backendInfo.version}`;
  // The notes on values from the address that the form refused, shown once the page runs.
  const notes = [];
  const backend = wanted.get('backend');
  if (backend) notes.push(...selectFromAddress('run-on', backend, 'Not one of auto, cpu, webgpu.'));
  showBackend();
  const models = await modelList;
  prefetched = await first.catch(() => null);
  if (!Array.isArray(models) || models.length === 0) {
    throw new Error('models/index.json: no models are published (run `bns publish`)');
  }
  $('model').replaceChildren(...models.map((m) => new Option(m, m)));
  showModelTitles();
  const wantedModel = wanted.get('model');
  if (wantedModel) notes.push(...selectFromAddress('model', wantedModel, 'Not a published model.'));
  const name = $('model').value;
  // From here on the page runs: a model that fails to load, a refused value from the address or
  // a failed first picture is an error on the page, with the controls (at least the model list)
  // usable.
  wire();
  started = true;
  try {
    notes.push(...await loadModel(name, wanted));
  } catch (e) {
    notes.push(`The model “${name}” could not be loaded: ${messageOf(e)}. Choose another model.`);
    throw new Error(notes.join('\n'));
  }
  try {
    await generate();
  } catch (e) {
    notes.push(messageOf(e));
  }
  if (notes.length > 0) throw new Error(notes.join('\n'));
}

/**
 * Labels each published model in the list with its manifest's title ("Fashion-MNIST,
 * class-conditional U-Net") as the manifests arrive; the list shows the names until then (the
 * address's notes, made before, name them so).
 */
function showModelTitles() {
  for (const option of $('model').options) {
    const url = new URL(`models/${option.value}/manifest.json`, document.baseURI).href;
    fetchOk(url, 'the manifest')
      .then((response) => response.json())
      .then((manifest) => {
        if (typeof manifest?.title === 'string' && manifest.title.trim()) option.textContent = manifest.title;
      })
      .catch(() => {}); // the name stays; loading that model reports the problem
  }
}

/** Whether the page got as far as its controls (after that, failures are errors on the page). */
let started = false;
act(start).then(() => {
  if (!started) $('timing').textContent = 'The sampler could not start.';
});
