// The <bns-sampler> widget embedded in another site: www/embed.html, copied with its URLs pointed
// at the sampler's server, is served from a second origin under a strict Content-Security-Policy
// (nothing but the sampler's origin, 'wasm-unsafe-eval' and, as the README asks for the worker,
// `worker-src blob: <the sampler's origin>`). The widgets render from their worker, nothing is blocked, nothing is
// requested beyond the widget's files and its attributes' URLs, no global is added, and errors
// show inside the widget. Under the same CSP without that `worker-src` the browser refuses the
// worker and the widgets still render, on the main thread, saying so. A generation that fails
// (a seed out of range, a solve that diverges), first or later, says so in the widget's status,
// keeps its picture or an empty frame, and leaves the button ready.
//
// The first test runs twice: in a Chromium without WebGPU (the CPU path) and with WebGPU
// (SwiftShader, chosen with backend="webgpu"), where the widgets run the WGSL kernels in the
// worker under the host's CSP.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../www/serve.mjs';
import { launch } from './chromium.mjs';
import { ARTIFACTS, DEFAULT_MODEL, SITE, canvasColours, checkPrerequisites } from './harness.mjs';

let site;
let host;
let strictHost;
let strictOrigin;
let strictCsp;
let hostRoot;
let browser;
let gpuBrowser;
let siteOrigin;
let hostOrigin;
let csp;

/** embed.html with its widget module and model folders on the sampler's origin (and with
 * `backend`, that attribute on every widget). */
function embedCopy(backend = null) {
  const html = readFileSync(join(SITE, 'embed.html'), 'utf8');
  const attribute = backend ? ` backend="${backend}"` : '';
  const copy = html
    .replace('<script type="module" src="widget/', `<script type="module" src="${siteOrigin}/widget/`)
    .replaceAll('<bns-sampler model="models/', `<bns-sampler${attribute} model="${siteOrigin}/models/`);
  assert.notEqual(copy, html);
  return copy;
}

before(async () => {
  checkPrerequisites();
  site = await startServer({ root: SITE, cors: true });
  siteOrigin = `http://127.0.0.1:${site.address().port}`;
  strictCsp = `default-src 'none'; script-src ${siteOrigin} 'wasm-unsafe-eval'; connect-src ${siteOrigin}`;
  csp = `${strictCsp}; worker-src blob: ${siteOrigin}`;
  hostRoot = mkdtempSync(join(tmpdir(), 'bns-embed-'));
  writeFileSync(join(hostRoot, 'embed.html'), embedCopy());
  writeFileSync(join(hostRoot, 'embed-webgpu.html'), embedCopy('webgpu'));
  writeFileSync(join(hostRoot, 'bare.html'), '<!doctype html><title>bare</title><p>no widget</p>');
  host = await startServer({ root: hostRoot, csp });
  hostOrigin = `http://127.0.0.1:${host.address().port}`;
  strictHost = await startServer({ root: hostRoot, csp: strictCsp });
  strictOrigin = `http://127.0.0.1:${strictHost.address().port}`;
  browser = await launch({ webgpu: false });
  gpuBrowser = await launch({ webgpu: true });
});

after(async () => {
  await browser?.close();
  await gpuBrowser?.close();
  site?.close();
  host?.close();
  strictHost?.close();
  if (hostRoot) rmSync(hostRoot, { recursive: true, force: true });
});

/** A page that reports CSP violations and the widgets' events on the console (the host's CSP allows no script of the test's own). */
async function hostPage(chromium = browser) {
  const page = await chromium.newPage();
  await page.setViewportSize({ width: 900, height: 800 });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
    for (const type of ['bns-ready', 'bns-generated', 'bns-error']) {
      document.addEventListener(type, (e) => {
        const { values, ...detail } = e.detail;
        console.info(`${type} ${JSON.stringify(detail)}`);
      });
    }
  });
  const log = { errors: [], events: [], requests: [] };
  page.on('console', (m) => {
    const [type, json] = m.text().split(/ (.*)/s);
    if (type.startsWith('bns-')) log.events.push({ type, ...JSON.parse(json) });
    else if (m.type() === 'error') log.errors.push(m.text());
  });
  page.on('pageerror', (e) => log.errors.push(e.message));
  page.on('request', (r) => log.requests.push(r.url()));
  return { page, log };
}

const waitFor = async (condition, what, ms = 60_000) => {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

for (const backend of ['cpu', 'webgpu']) {
  test(`the widget renders on another origin under a strict CSP (${backend}), using only its own files, adding no globals`, async () => {
    const chromium = backend === 'webgpu' ? gpuBrowser : browser;
    const { page, log } = await hostPage(chromium);
    const response = await page.goto(`${hostOrigin}/${backend === 'webgpu' ? 'embed-webgpu' : 'embed'}.html`);
    assert.equal(response.headers()['content-security-policy'], csp);
    const generated = () => log.events.filter((e) => e.type === 'bns-generated');
    await waitFor(() => generated().length >= 2 || log.events.some((e) => e.type === 'bns-error'), 'both widgets to draw');
    assert.deepEqual(log.events.filter((e) => e.type === 'bns-error'), []);
    assert.deepEqual(
      generated().map((e) => [e.seed, e.shape.join('×'), e.backend]).sort(),
      [[1, '1000×2×1×1', backend], [1, '16×1×28×28', backend]],
    );
    const ready = log.events.filter((e) => e.type === 'bns-ready');
    assert.deepEqual(ready.map((e) => e.solver).sort(), ['bns-8-w0', 'dpmpp2m-edm-8']);
    const note = backend === 'cpu' ? /WebGPU is not available/ : /SwiftShader, a software renderer/;
    assert.ok(ready.every((e) => note.test(e.note)), JSON.stringify(ready.map((e) => e.note)));
    assert.deepEqual(ready.map((e) => e.where), ['worker', 'worker']);

    for (const n of [1, 2]) {
      const widget = `bns-sampler:nth-of-type(${n})`;
      const { colours, width } = await canvasColours(page, 'canvas', widget);
      assert.ok(colours > 8 && width > 100, `widget ${n} looks blank (${colours} colours, width ${width})`);
      const note = page.locator(`${widget} .note`);
      if (backend === 'cpu') assert.equal(await note.textContent(), 'WebGPU unavailable — running on the CPU');
      else assert.equal(await note.isHidden(), true);
    }
    await page.screenshot({ path: join(ARTIFACTS, `embed-${backend}.png`), fullPage: true });

    assert.deepEqual(log.errors, [], 'no CSP violation, no error');
    const allowed = [
      `${hostOrigin}/embed`, `blob:${hostOrigin}/`,
      `${siteOrigin}/widget/`, `${siteOrigin}/pkg/`, `${siteOrigin}/lib/`,
      `${siteOrigin}/models/fashion-mnist/`, `${siteOrigin}/models/checkerboard/`,
    ];
    const stray = log.requests.filter((u) => !allowed.some((a) => u.startsWith(a)));
    assert.deepEqual(stray, []);

    // No globals: the page's window has the same properties as a page without the widget.
    const names = () => Object.getOwnPropertyNames(window);
    const withWidget = await page.evaluate(names);
    const bare = await chromium.newPage();
    await bare.goto(`${hostOrigin}/bare.html`);
    const without = new Set(await bare.evaluate(names));
    assert.deepEqual(withWidget.filter((n) => !without.has(n)), []);
    await bare.close();

    // The button draws the next seed.
    const before = generated().length;
    await page.locator('bns-sampler:nth-of-type(1) button').click();
    await waitFor(() => generated().length > before, 'the next seed');
    assert.equal(generated().at(-1).seed, 2);
    assert.deepEqual(log.errors, []);
    await page.close();
  });
}

test('under the CSP without worker-src the browser refuses the worker and the widgets render on the main thread, saying so', async () => {
  const { page, log } = await hostPage();
  const response = await page.goto(`${strictOrigin}/embed.html`);
  assert.equal(response.headers()['content-security-policy'], strictCsp);
  const generated = () => log.events.filter((e) => e.type === 'bns-generated');
  await waitFor(() => generated().length >= 2 || log.events.some((e) => e.type === 'bns-error'), 'both widgets to draw');
  assert.deepEqual(log.events.filter((e) => e.type === 'bns-error'), []);
  const ready = log.events.filter((e) => e.type === 'bns-ready');
  assert.deepEqual(ready.map((e) => e.where), ['main thread', 'main thread']);
  for (const n of [1, 2]) {
    const widget = `bns-sampler:nth-of-type(${n})`;
    const { colours } = await canvasColours(page, 'canvas', widget);
    assert.ok(colours > 8, `widget ${n} looks blank (${colours} colours)`);
    assert.match(await page.locator(`${widget} .note`).textContent(), /Generating on the page’s main thread: its CSP allows no worker \(README: worker-src\)/);
  }
  // The browser's refusals of the blob: worker (one per widget) are the only complaints.
  const refusals = log.errors.filter((e) => /worker-src/.test(e) && /blob/.test(e));
  assert.ok(refusals.length >= 1, JSON.stringify(log.errors));
  assert.deepEqual(log.errors.filter((e) => !refusals.includes(e)), []);
  await page.close();
});

test('a widget whose model cannot be loaded shows the error inside itself and sends bns-error', async () => {
  const { page, log } = await hostPage();
  await page.goto(`${hostOrigin}/embed.html`);
  await waitFor(() => log.events.filter((e) => e.type === 'bns-generated').length >= 2, 'both widgets to draw');
  // The test's own script runs through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate((model) => {
    const widget = document.createElement('bns-sampler');
    widget.id = 'broken';
    widget.setAttribute('model', model);
    widget.setAttribute('autoplay', '');
    document.body.append(widget);
  }, `${siteOrigin}/models/no-such-model/`);
  await waitFor(() => log.events.some((e) => e.type === 'bns-error'), 'bns-error');
  const event = log.events.find((e) => e.type === 'bns-error');
  assert.match(event.message, /no-such-model\/manifest\.json: cannot load the model manifest \(HTTP 404\)/);
  const shown = page.locator('#broken .error');
  assert.equal(await shown.isVisible(), true);
  assert.equal(await shown.textContent(), event.message);
  // The other widgets are unaffected.
  await page.locator('bns-sampler:nth-of-type(1) button').click();
  await waitFor(() => log.events.filter((e) => e.type === 'bns-generated').length >= 3, 'the first widget to draw again');
  await page.close();
});

test('a widget whose generation fails says so in its status, keeps its picture or an empty frame, and draws again once corrected', async () => {
  const { page, log } = await hostPage();
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto(`${hostOrigin}/bare.html`);
  // The test's own script runs through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(async ({ module, model }) => {
    await import(module);
    for (const [id, attribute, value] of [['seed', 'seed', '1e308'], ['guidance', 'guidance', '1e308']]) {
      const widget = document.createElement('bns-sampler');
      widget.id = id;
      for (const [name, v] of [['model', model], ['batch', '4'], ['backend', 'cpu'], ['autoplay', ''], ['controls', ''], [attribute, value]]) {
        widget.setAttribute(name, v);
      }
      document.body.append(widget);
    }
  }, { module: `${siteOrigin}/widget/bns-sampler.js`, model: `${siteOrigin}/models/${DEFAULT_MODEL}/` });
  const failures = () => log.events.filter((e) => e.type === 'bns-error');
  await waitFor(() => failures().length >= 2, 'both widgets to fail');
  /** A widget's status, error box, whether its error box holds text wider than itself, its canvas and button. */
  const state = (id) => page.evaluate((id) => {
    const root = document.getElementById(id).shadowRoot;
    const error = root.querySelector('.error');
    const canvas = root.querySelector('canvas');
    return {
      status: root.querySelector('.status').textContent,
      error: error.hidden ? null : error.textContent,
      overflowing: error.scrollWidth > error.clientWidth,
      drawn: canvas.classList.contains('drawn'),
      background: getComputedStyle(canvas).backgroundColor,
      disabled: root.querySelector('button').disabled,
    };
  }, id);

  const seed = await state('seed');
  assert.equal(seed.error, 'seed must be a whole number from 0 to 9007199254740991, got 1e308');
  assert.equal(seed.status, `Generation failed: ${seed.error}`);
  const guidance = await state('guidance');
  assert.match(guidance.error, new RegExp(`^${siteOrigin}/models/${DEFAULT_MODEL}/bns-8-w\\d+\\.json: the solve diverged: .*\\(w = 1e308\\)`));
  assert.match(guidance.status, /^Generation failed: .*bns-8-w\d+\.json: the solve diverged/);
  for (const widget of [seed, guidance]) {
    assert.equal(widget.overflowing, false);
    assert.equal(widget.drawn, false);
    assert.notEqual(widget.background, 'rgb(0, 0, 0)', 'an empty frame, not a black square');
    assert.equal(widget.disabled, false);
  }
  await page.screenshot({ path: join(ARTIFACTS, 'widget-failed-390.png'), fullPage: true });

  // Corrected, the button draws (the next seed after the attribute's).
  const drawn = () => log.events.filter((e) => e.type === 'bns-generated');
  await page.evaluate(() => document.getElementById('seed').setAttribute('seed', '1'));
  await page.locator('#seed button').click();
  await waitFor(() => drawn().length >= 1, 'the seed widget to draw');
  assert.equal(drawn()[0].seed, 2);
  const picture = await canvasColours(page, 'canvas', '#seed');
  assert.ok(picture.colours > 8, `the widget looks blank (${picture.colours} colours)`);
  assert.match((await state('seed')).status, / · seed 2 · \d+ ms · CPU$/);

  // A later failure keeps the picture.
  await page.evaluate(() => document.getElementById('seed').setAttribute('guidance', '1e308'));
  await waitFor(() => failures().length >= 3, 'the later failure');
  const later = await state('seed');
  assert.match(later.status, /^Generation failed: .*the solve diverged/);
  assert.equal(later.drawn, true);
  assert.equal(later.overflowing, false);
  assert.equal(later.disabled, false);
  assert.deepEqual(await canvasColours(page, 'canvas', '#seed'), picture);
  await page.screenshot({ path: join(ARTIFACTS, 'widget-later-failure-390.png'), fullPage: true });
  assert.deepEqual(log.errors, []);
  await page.close();
});
