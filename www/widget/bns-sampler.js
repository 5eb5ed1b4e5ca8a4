// <bns-sampler>: the sampler as a custom element that another site includes with one tag.
//
//   <script type="module" src="https://example.org/bns/widget/bns-sampler.js"></script>
//   <bns-sampler model="https://example.org/bns/models/fashion-mnist/" autoplay controls></bns-sampler>
//
// Attributes (README, "Embed the sampler"): model, solver, seed, batch, class, guidance, columns,
// backend, autoplay, controls. Events (bubbling, composed): bns-ready, bns-generated, bns-error.
//
// It keeps to itself, so it works on any page and under a strict Content-Security-Policy that
// only adds 'wasm-unsafe-eval': everything lives in a shadow root and this module's scope (no
// globals); the styles are a constructed stylesheet (which CSP's style-src does not govern); the
// only requests are for the runtime beside this module (resolved from import.meta.url) and for
// the model and solver named by the attributes (resolved against the host document). Served
// from another origin, those files need CORS.
//
// Generation runs in the sampler's worker (lib/sampler-worker.js, one for every widget on the
// page), so the host page stays responsive; from another origin that worker starts from a blob:
// URL, which needs `worker-src blob: <this module's origin>` in the host's CSP. Where the CSP
// refuses it, the widget generates on the main thread and says so (sampler-client.js).

import { openSampler } from '../lib/sampler-client.js';
import { fetchModel, fetchOk } from '../lib/weights.js';
import { defaultPublished, parseClassical } from '../lib/solvers.js';
import { drawRgba, drawScatter, isPoints } from '../lib/draw.js';
import { quoted, shortReason } from '../lib/messages.js';

/** The sampler's worker, beside this module. */
const WORKER = new URL('../lib/sampler-worker.js', import.meta.url);

/** The solver when the model publishes none and the solver attribute is absent. */
const FALLBACK_SOLVER = 'dpmpp2m:edm:8';

const STYLE = `
:host { display: inline-block; width: 320px; vertical-align: top;
  font: 13px/1.4 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1d1f23; }
:host([hidden]) { display: none; }
.frame { border: 1px solid #dcdfe4; border-radius: 6px; background: #fff; padding: 8px; }
canvas { display: block; width: 100%; height: auto; aspect-ratio: 1; image-rendering: pixelated;
  background: #000; border-radius: 3px; }
canvas.points { background: #fff; }
canvas.drawn { aspect-ratio: auto; }
canvas:not(.drawn) { background: #f5f6f8; border: 1px dashed #b8bec6; box-sizing: border-box; }
.bar { display: flex; align-items: center; gap: 8px; margin-top: 6px; min-height: 26px; }
button { font: inherit; font-weight: 600; padding: 3px 12px; border: 0; border-radius: 4px;
  background: #1f5ca0; color: #fff; cursor: pointer; }
button:disabled { background: #9aa3ad; cursor: default; }
.status { color: #5b616b; font-size: 12px; overflow-wrap: anywhere; }
.note { color: #9a5b00; font-size: 12px; margin: 4px 0 0; }
.error { color: #a40e0e; background: #fdecec; border: 1px solid #f3c2c2; border-radius: 4px;
  padding: 4px 6px; margin: 6px 0 0; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
`;

/** One stylesheet for every instance; a `<style>` only where constructed sheets are missing. */
let sheet = null;
function adoptStyle(root) {
  if ('adoptedStyleSheets' in ShadowRoot.prototype && 'replaceSync' in CSSStyleSheet.prototype) {
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLE);
    }
    root.adoptedStyleSheets = [sheet];
  } else {
    const style = document.createElement('style');
    style.textContent = STYLE;
    root.append(style);
  }
}

/** Attributes that need the model, solver or sampler loaded again. */
const RELOAD = new Set(['model', 'solver', 'backend']);

class BnsSampler extends HTMLElement {
  static observedAttributes = ['model', 'solver', 'seed', 'batch', 'class', 'guidance', 'columns', 'backend', 'controls'];

  #parts;
  /** The sampler (sampler-client.js), and what it last said of its backend. */
  #sampler = null;
  #info = null;
  /** { spec, solver (the solver file's JSON) } once loaded. */
  #loaded = null;
  /** Presses of the button since the seed attribute was set: each draws the next seed. */
  #presses = 0;
  #drawn = false;
  #queue = Promise.resolve();
  /** Whether a load was ever scheduled (so moving the element does not load again). */
  #started = false;
  #reloadPending = false;

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    adoptStyle(root);
    const frame = element('div', 'frame');
    const canvas = element('canvas');
    canvas.setAttribute('part', 'canvas');
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', 'samples');
    const button = element('button', '', 'Generate');
    button.setAttribute('part', 'button');
    button.type = 'button';
    button.disabled = true;
    const status = element('span', 'status', 'Loading…');
    status.setAttribute('part', 'status');
    const note = element('p', 'note');
    note.hidden = true;
    const error = element('p', 'error');
    error.setAttribute('role', 'alert');
    error.hidden = true;
    const bar = element('div', 'bar');
    bar.append(button, status);
    frame.append(canvas, bar, note, error);
    root.append(frame);
    this.#parts = { canvas, button, status, note, error };
    button.addEventListener('click', () => {
      this.#presses += 1;
      this.generate().catch(() => {});
    });
  }

  connectedCallback() {
    this.#parts.button.hidden = !this.hasAttribute('controls');
    if (!this.#started) this.#scheduleReload();
  }

  attributeChangedCallback(name, previous, value) {
    if (previous === value || !this.isConnected) return;
    if (name === 'controls') this.#parts.button.hidden = value === null;
    else if (RELOAD.has(name)) this.#scheduleReload();
    else {
      if (name === 'seed') this.#presses = 0;
      if (this.#drawn) this.generate().catch(() => {});
    }
  }

  /** Draws samples for the current seed; resolves to the values `[B, C, H, W]`. */
  generate() {
    return this.#run('Generation', async () => {
      if (!this.#loaded) throw new Error('the sampler has not loaded a model');
      const { spec } = this.#loaded;
      const points = isPoints(spec);
      const batch = this.#number('batch', points ? 1000 : 16);
      const cls = this.#number('class', -1);
      const columns = this.#number('columns', Math.ceil(Math.sqrt(batch)));
      const request = {
        seed: this.#number('seed', 1) + this.#presses,
        batch,
        class: cls >= 0 ? cls : null,
        guidance: this.#number('guidance', this.#loaded.solver.guidance ?? 0),
        columns,
        backend: this.#backendChoice(),
      };
      this.#parts.status.textContent = 'Generating…';
      const out = await this.#sampler.call('generate', { request, picture: !points }, ({ done, total }) => {
        this.#parts.status.textContent = `Generating… evaluation ${done} of ${total}`;
      });
      const { values, ms, backend } = out;
      this.#info = out.info;
      const { canvas } = this.#parts;
      if (points) drawScatter(canvas, values, { size: 480 });
      else drawRgba(canvas, out.rgba, out.width);
      canvas.classList.toggle('points', points);
      canvas.classList.add('drawn');
      this.#drawn = true;
      this.#showBackend();
      const classLabel = request.class === null ? '' : `${spec.class_names?.[request.class] ?? `class ${request.class}`} · `;
      this.#parts.status.textContent =
        `${this.#loaded.solver.name} · ${classLabel}seed ${request.seed} · ${ms.toFixed(0)} ms · ` +
        (backend === 'webgpu' ? 'WebGPU' : 'CPU');
      this.#emit('bns-generated', { seed: request.seed, batch, ms, backend, shape: [batch, ...spec.data_shape], values });
      return values;
    });
  }

  /** Runs one action at a time; a failure is shown in the element (the status line says `what`
   * failed; the picture stays) and sent as bns-error. */
  #run(what, action) {
    const result = this.#queue.then(async () => {
      this.#parts.button.disabled = true;
      this.#parts.error.hidden = true;
      try {
        return await action();
      } catch (e) {
        const message = e?.message ?? String(e);
        this.#parts.error.textContent = message;
        this.#parts.error.hidden = false;
        this.#parts.status.textContent = `${what} failed: ${shortReason(message)}`;
        this.#emit('bns-error', { message });
        throw e;
      } finally {
        this.#parts.button.disabled = !this.#loaded;
      }
    });
    this.#queue = result.catch(() => {});
    return result;
  }

  /** Loads once for a burst of attribute changes (a host setting several at once). */
  #scheduleReload() {
    if (this.#reloadPending) return;
    this.#started = true;
    this.#reloadPending = true;
    queueMicrotask(() => {
      this.#reloadPending = false;
      this.#reload().catch(() => {});
    });
  }

  async #reload() {
    await this.#run('Loading', async () => {
      this.#loaded = null;
      this.#parts.status.textContent = 'Loading…';
      const modelAttribute = this.getAttribute('model');
      if (!modelAttribute) throw new Error('<bns-sampler>: the model attribute is missing (the URL of a model folder or its manifest.json)');
      const previous = this.#sampler;
      this.#sampler = null;
      await previous?.call('free').catch(() => {});
      this.#sampler = await openSampler({ gpu: this.getAttribute('backend') !== 'cpu', workerUrl: WORKER });
      const manifestUrl = manifestUrlOf(modelAttribute);
      const { manifest, url, bytes } = await fetchModel(manifestUrl);
      const { spec, modelId, info } = await this.#sampler.call('loadModel', { bytes, name: url });
      this.#info = info;
      const solver = await this.#useSolver(this.getAttribute('solver') ?? defaultPublished(manifest, spec)?.file ?? FALLBACK_SOLVER, manifestUrl);
      this.#loaded = { spec, solver };
      this.#showBackend();
      this.#parts.status.textContent = 'Ready';
      this.#emit('bns-ready', {
        backend: this.#backendChoice() === 'auto' ? info.backend : this.#backendChoice(),
        note: info.note,
        adapter: info.adapter,
        where: this.#sampler.where,
        modelId,
        solver: solver.name,
      });
    });
    if (this.hasAttribute('autoplay') || this.#drawn) await this.generate();
  }

  /** A classical spec ("dpmpp2m:edm:8") or a solver file's URL, relative to the manifest;
   * resolves to the solver file's JSON. */
  async #useSolver(solver, manifestUrl) {
    const classical = parseClassical(solver);
    if (classical) return this.#sampler.call('useClassical', classical);
    const url = new URL(solver, manifestUrl).href;
    return this.#sampler.call('loadSolver', { text: await (await fetchOk(url, 'the solver')).text(), name: url });
  }

  /** The backend attribute as generate's choice: "cpu", "webgpu" or "auto". */
  #backendChoice() {
    const wanted = this.getAttribute('backend');
    return wanted === 'cpu' || wanted === 'webgpu' ? wanted : 'auto';
  }

  /** Says when the CPU runs although WebGPU was wanted, and why, and when generation runs on
   * the page's main thread. */
  #showBackend() {
    const { note } = this.#parts;
    const info = this.#info;
    const cpu = this.#backendChoice() === 'auto' && info.backend === 'cpu';
    const lines = [];
    if (cpu) lines.push(info.software ? `CPU path: the WebGPU adapter is ${info.software}, a software renderer` : 'WebGPU unavailable — running on the CPU');
    if (this.#sampler.where !== 'worker') lines.push('Generating on the page’s main thread: its CSP allows no worker (README: worker-src)');
    note.hidden = lines.length === 0;
    note.textContent = lines.join('. ');
    note.title = [cpu ? info.note : '', this.#sampler.why ?? ''].filter(Boolean).join('; ');
  }

  /** A numeric attribute, or `fallback` when it is absent; a malformed one is an error. */
  #number(name, fallback) {
    const text = this.getAttribute(name);
    if (text === null || text.trim() === '') return fallback;
    const value = Number(text);
    if (!Number.isFinite(value)) throw new Error(`<bns-sampler>: ${name}="${quoted(text)}" is not a number`);
    return value;
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }
}

/** The manifest's URL for a model attribute: a manifest.json, or a model folder. */
function manifestUrlOf(attribute) {
  const url = new URL(attribute, document.baseURI);
  if (url.pathname.endsWith('.json')) return url.href;
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return new URL('manifest.json', url).href;
}

function element(tag, className = '', text = '') {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

if (!customElements.get('bns-sampler')) customElements.define('bns-sampler', BnsSampler);
