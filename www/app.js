// The sampler page: the wasm runtime on WebGPU (or the CPU path) in the sampler's worker, the
// published models and their solvers, a grid of samples for a seed, and the compare view. The
// form's state is mirrored in the address (?model=…&solver=…&seed=…&batch=…&class=…&guidance=…
// &backend=cpu|webgpu), so a link reproduces a picture. `window.bnsPage` exposes the page's state
// and actions to the browser tests.

import { openSampler } from './lib/sampler-client.js';
import { fetchModel, fetchOk } from './lib/weights.js';
import {
  classicalAt, classicalLabel, defaultPublished, parseClassical, publishedLabel, publishedNfes,
} from './lib/solvers.js';
import { drawRgba, drawScatter, isPoints } from './lib/draw.js';
import { markStale, showComparison } from './compare.js';
import { showAbout } from './about.js';

const $ = (id) => document.getElementById(id);

/** How many 2-D points get their path drawn. */
const PATHS = 24;
/** Batch of the compare view: a few images, or enough points to see the distribution. */
const COMPARE_BATCH = { images: 4, points: 200 };

const page = {
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
  loadSolverText: (text, name) => act(() => loadSolverText(text, name)),
  compare: () => act(compare),
  loseDevice: () => sampler.call('loseDevice'),
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

/** The form's value of `field` as its input checks it (min, max, step): the same words for a
 * typed value and for one from the address. */
function checkedValue(field) {
  const input = $(field);
  if (!input.checkValidity()) throw new Error(`${fieldLabel(field)} ${input.value}: ${input.validationMessage}`);
  return Number(input.value);
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

async function loadModel(name, wanted = new URLSearchParams()) {
  const base = new URL(`models/${name}/`, document.baseURI);
  const { manifest, url, bytes, cached, f16 } = await fetchModel(new URL('manifest.json', base).href);
  const loaded = await sampler.call('loadModel', { bytes, name: url });
  const { spec } = loaded;
  backendInfo = loaded.info;
  model = { name, spec, manifest, base };
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
  const requested = solverValueOf(wanted.get('solver'));
  await useSolver(requested ?? (published ? `published:${published.file}` : $('solver').value));
  // Values from the address go through the form's own checks; a refused one is named and the
  // form's value kept.
  const refused = [];
  for (const field of ['seed', 'batch', 'guidance']) {
    const text = wanted.get(field)?.trim();
    if (!text) continue;
    const previous = $(field).value;
    $(field).value = text;
    const why = !Number.isFinite(Number(text)) ? 'Not a number.' : $(field).checkValidity() ? null : $(field).validationMessage;
    if (why) {
      $(field).value = previous;
      refused.push(`${fieldLabel(field)} ${text} (from the address): ${why} Using ${previous} instead.`);
    }
  }
  if ([...$('class').options].some((o) => o.value === wanted.get('class'))) $('class').value = wanted.get('class');
  return refused;
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

async function generate() {
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
  page.lastMs = ms;
  page.firstImageAt ??= performance.now();
  const path = page.backend === 'webgpu' ? 'WebGPU' : 'CPU';
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

async function compare() {
  const points = isPoints(model.spec);
  const request = readRequest();
  request.batch = points ? COMPARE_BATCH.points : COMPARE_BATCH.images;
  const [c, h, w] = model.spec.data_shape;
  $('compare-results').textContent = 'Computing…';
  $('compare-results').classList.remove('stale');
  page.compareStale = false;
  const shape = [request.batch, c, h, w];
  try {
    const { rows, rk4 } = await sampler.call('compare', { request, dim: c * h * w, points }, (report) => showCompareProgress(report));
    const classLabel = request.class === null ? 'every class in turn' : (model.spec.class_names?.[request.class] ?? `class ${request.class}`);
    const about = `${model.manifest.title ?? model.name} · seed ${request.seed} · ` +
      (model.spec.num_classes > 0 ? `${classLabel} · w = ${request.guidance}` : 'unconditional');
    page.lastCompare = rows.map(({ label, nfe, psnr, ms, skipped }) => ({ label, nfe, psnr, ms, skipped }));
    page.lastCompareConclusion = showComparison($('compare-results'), { rows, rk4 }, { points, shape, about });
  } catch (e) {
    $('compare-results').textContent = '';
    throw e;
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
  $('compare').addEventListener('click', () => act(compare));
  for (const id of COMPARE_INPUTS) {
    $(id).addEventListener('change', compareInputChanged);
    $(id).addEventListener('input', compareInputChanged);
  }
}

async function start() {
  sampler = await openSampler({ workerUrl: new URL('./lib/sampler-worker.js', import.meta.url) });
  page.where = sampler.where;
  backendInfo = await sampler.call('info');
  $('version').textContent = `runtime ${backendInfo.version}`;
  const wanted = new URLSearchParams(location.search);
  if (['cpu', 'webgpu'].includes(wanted.get('backend'))) $('run-on').value = wanted.get('backend');
  showBackend();
  const models = await (await fetchOk('models/index.json', 'the model list')).json();
  if (!Array.isArray(models) || models.length === 0) {
    throw new Error('models/index.json: no models are published (run `bns publish`)');
  }
  $('model').replaceChildren(...models.map((m) => new Option(m, m)));
  const name = models.includes(wanted.get('model')) ? wanted.get('model') : models[0];
  $('model').value = name;
  // From here on the page runs: a model that fails to load, a refused value from the address or
  // a failed first picture is an error on the page, with the controls (at least the model list)
  // usable.
  wire();
  started = true;
  let refused;
  try {
    refused = await loadModel(name, wanted);
  } catch (e) {
    throw new Error(`The model “${name}” could not be loaded: ${messageOf(e)}. Choose another model.`);
  }
  await generate();
  page.ready = true;
  if (refused.length > 0) throw new Error(refused.join(' '));
}

/** Whether the page got as far as its controls (after that, failures are errors on the page). */
let started = false;
act(start).then(() => {
  if (!started) $('timing').textContent = 'The sampler could not start.';
});
