// The sampler page: loads the wasm runtime, a published model and its solvers, and draws the
// samples for a seed on a canvas. The last result is exposed as `window.bnsPage` for the tests.

import init, { Sampler, version } from './pkg/web_sampler.js';

const $ = (id) => document.getElementById(id);
const page = { ready: false, lastValues: null, lastShape: null, backend: null, error: null };
window.bnsPage = page;

function showError(message) {
  page.error = message;
  $('error').textContent = message;
  $('error').hidden = false;
}

function clearError() {
  page.error = null;
  $('error').hidden = true;
}

async function fetchOk(url, what) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: cannot load ${what} (HTTP ${response.status})`);
  return response;
}

let sampler;
let manifest;
let spec;

// Classical solvers the runtime builds itself, offered beside the published ones.
const CLASSICAL = [
  ['euler', 'uniform'], ['midpoint', 'uniform'], ['heun', 'uniform'], ['rk4', 'uniform'],
  ['ab2', 'uniform'], ['ab3', 'uniform'], ['dpmpp2m', 'edm'], ['dpmpp2m', 'uniform'],
];
const STAGES = { euler: 1, midpoint: 2, heun: 2, rk4: 4, ab2: 1, ab3: 1, dpmpp2m: 1 };

async function loadModel(name) {
  const base = `models/${name}/`;
  manifest = await (await fetchOk(`${base}manifest.json`, 'the model manifest')).json();
  const bytes = new Uint8Array(await (await fetchOk(base + manifest.model, 'the model')).arrayBuffer());
  spec = JSON.parse(sampler.loadModel(bytes, base + manifest.model));
  const solverSelect = $('solver');
  const options = [];
  const nfes = [...new Set(manifest.solvers.map((s) => s.nfe))].sort((a, b) => a - b);
  for (const s of manifest.solvers) {
    const label = `${s.kind === 'bns' ? 'BNS' : s.kind} · NFE ${s.nfe} · w=${s.guidance} · ${s.validation_psnr.toFixed(1)} dB`;
    options.push(new Option(label, `file:${s.file}`));
  }
  for (const nfe of nfes.length ? nfes : [8]) {
    for (const [method, grid] of CLASSICAL) {
      if (nfe % STAGES[method] === 0) {
        options.push(new Option(`${method} (${grid} grid) · NFE ${nfe}`, `classical:${method}:${grid}:${nfe}`));
      }
    }
  }
  solverSelect.replaceChildren(...options);
  const classSelect = $('class');
  classSelect.replaceChildren(new Option('all (cycle)', '-1'));
  for (let c = 0; c < spec.num_classes; c++) {
    classSelect.append(new Option(spec.class_names?.[c] ?? `class ${c}`, String(c)));
  }
  $('class').disabled = spec.num_classes === 0;
  const points = spec.data_shape[1] * spec.data_shape[2] === 1;
  $('batch').value = points ? '1000' : '16';
  $('about-model').textContent =
    `${manifest.title ?? name} — ${spec.architecture}, depth ${spec.depth}, width ${spec.hidden_width}, ` +
    `data ${spec.data_shape.join('×')}, ${(bytes.length / 1e6).toFixed(1)} MB; model id ${sampler.modelId().slice(0, 12)}…`;
  await loadSolver(solverSelect.value);
}

async function loadSolver(choice) {
  if (choice.startsWith('classical:')) {
    const [, method, grid, nfe] = choice.split(':');
    sampler.useClassical(method, grid, Number(nfe));
    return;
  }
  const url = `models/${$('model').value}/${choice.slice('file:'.length)}`;
  const text = await (await fetchOk(url, 'the solver')).text();
  sampler.loadSolver(text, url);
  const solver = JSON.parse(sampler.solverJson());
  $('guidance').value = String(solver.guidance);
}

/** 2-D samples `[B, 2, 1, 1]` as a scatter plot, the view fitted to every point. */
function drawPoints(values) {
  const canvas = $('canvas');
  canvas.width = 512;
  canvas.height = 512;
  const g = canvas.getContext('2d');
  g.fillStyle = '#fff';
  g.fillRect(0, 0, 512, 512);
  let limit = 1;
  for (const v of values) if (Number.isFinite(v)) limit = Math.max(limit, Math.abs(v));
  limit *= 1.05;
  g.fillStyle = '#1f5ca0';
  for (let i = 0; i + 1 < values.length; i += 2) {
    const x = ((values[i] / limit + 1) / 2) * 511;
    const y = (1 - (values[i + 1] / limit + 1) / 2) * 511;
    g.fillRect(x - 1, y - 1, 3, 3);
  }
}

function draw(values, shape) {
  const [b, c, h, w] = shape;
  if (h * w === 1) {
    drawPoints(values);
    return;
  }
  const columns = Math.ceil(Math.sqrt(b));
  const rgba = sampler.pictureRgba(columns);
  const width = sampler.pictureWidth(columns);
  const height = rgba.length / 4 / width;
  const canvas = $('canvas');
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer), width, height), 0, 0);
}

async function generate(event) {
  event?.preventDefault();
  clearError();
  const seed = Number($('seed').value);
  const batch = Number($('batch').value);
  const cls = Number($('class').value);
  const guidance = Number($('guidance').value);
  $('generate').disabled = true;
  $('status').textContent = 'Generating…';
  await new Promise((r) => setTimeout(r, 0));
  try {
    const started = performance.now();
    const values = sampler.generate(seed, batch, cls, guidance);
    const ms = performance.now() - started;
    const [c, h, w] = spec.data_shape;
    page.lastValues = values;
    page.lastShape = [batch, c, h, w];
    draw(values, page.lastShape);
    page.backend = sampler.backend();
    $('timing').textContent =
      `seed ${seed}: ${ms.toFixed(0)} ms per batch of ${batch}, ${(ms / batch).toFixed(1)} ms per image, ` +
      `backend ${page.backend}`;
    $('status').textContent = 'Done.';
    page.generated = (page.generated ?? 0) + 1;
  } catch (e) {
    showError(e.message ?? String(e));
    $('status').textContent = 'Failed.';
  } finally {
    $('generate').disabled = false;
  }
}

async function main() {
  try {
    await init();
    sampler = new Sampler();
    const models = await (await fetchOk('models/index.json', 'the model list')).json();
    if (!Array.isArray(models) || models.length === 0) {
      throw new Error('models/index.json: no models are published (run `bns publish`)');
    }
    $('model').replaceChildren(...models.map((m) => new Option(m, m)));
    await loadModel(models[0]);
    $('model').addEventListener('change', () => loadModel($('model').value).catch((e) => showError(e.message)));
    $('solver').addEventListener('change', () => loadSolver($('solver').value).catch((e) => showError(e.message)));
    $('controls').addEventListener('submit', generate);
    $('generate').disabled = false;
    $('status').textContent = `Ready (runtime ${version()}, backend ${sampler.backend()}).`;
    page.ready = true;
  } catch (e) {
    showError(e.message ?? String(e));
    $('status').textContent = 'Could not start.';
  }
}

main();
