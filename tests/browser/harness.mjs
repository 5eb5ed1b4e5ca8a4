// The browser tests' harness: paths, the native reference (`bns sample`), opening the page,
// comparing sample values and checking that a canvas shows something.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, after } from 'node:test';
import { startServer } from '../../www/serve.mjs';
import { CHROMIUM, launch } from './chromium.mjs';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const SITE = join(ROOT, 'www');
export const ARTIFACTS = join(ROOT, 'tests/browser/artifacts');
export const BNS = join(ROOT, process.env.BNS ?? 'target/debug/bns');

/** The model the page opens with, its folder and manifest. */
export const DEFAULT_MODEL = JSON.parse(readFileSync(join(SITE, 'models/index.json'), 'utf8'))[0];
export const MANIFEST = JSON.parse(readFileSync(join(SITE, 'models', DEFAULT_MODEL, 'manifest.json'), 'utf8'));
export const MODEL_DIR = join(SITE, 'models', DEFAULT_MODEL);
/** The default model's file the page loads: the f16 one where the manifest offers it. */
export const PAGE_MODEL = join(MODEL_DIR, MANIFEST.model_f16 ?? MANIFEST.model);

/** Fails early, with the command to run, when Chromium or the bns binary is missing. */
export function checkPrerequisites() {
  mkdirSync(ARTIFACTS, { recursive: true });
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: run 'make setup' (as root) or 'apt-get install chromium'`);
  assert.ok(existsSync(BNS), `${BNS} not found: build it with 'cargo build -p distiller'`);
}

/**
 * Native reference: `bns sample --values` of the default model as the page loads it (or of the
 * model file `model`) for a solver file, seed and batch.
 */
export function nativeSamples(tag, solverFile, seed, batch, guidance, model = PAGE_MODEL) {
  const out = join(ARTIFACTS, `native-${tag}-seed${seed}-batch${batch}.json`);
  execFileSync(BNS, [
    'sample', '--model', model, '--solver', solverFile,
    '--seed', String(seed), '--batch', String(batch), '--guidance', String(guidance),
    '--values', out, '-o', join(ARTIFACTS, `native-${tag}-seed${seed}-batch${batch}.png`),
  ]);
  return JSON.parse(readFileSync(out, 'utf8'));
}

/**
 * A random U-Net model written by `bns model init --arch unet` with `flags`, and its native
 * samples (`bns sample --values`) with `solverFile` at `seed`, `batch`, `guidance`.
 */
export function nativeUnetSamples(tag, flags, solverFile, seed, batch, guidance) {
  const model = join(ARTIFACTS, `${tag}.safetensors`);
  execFileSync(BNS, ['model', 'init', '--arch', 'unet', ...flags, '-o', model]);
  const out = join(ARTIFACTS, `native-${tag}-seed${seed}-batch${batch}.json`);
  execFileSync(BNS, [
    'sample', '--model', model, '--solver', solverFile, '--seed', String(seed),
    '--batch', String(batch), '--guidance', String(guidance), '--values', out,
    '-o', join(ARTIFACTS, `native-${tag}-seed${seed}-batch${batch}.png`),
  ]);
  return { model, native: JSON.parse(readFileSync(out, 'utf8')) };
}

/** A classical solver file written by `bns solver new` (what the page builds with useClassical). */
export function classicalFile(method, grid, nfe) {
  const out = join(ARTIFACTS, `${method}-${grid}-${nfe}.json`);
  execFileSync(BNS, ['solver', 'new', '--method', method, '--grid', grid, '--nfe', String(nfe), '-o', out]);
  return out;
}

/** The published guided BNS solver at NFE 8 of the default model, a class-conditional one: the
 * page's default (www/lib/solvers.js, defaultPublished). */
export const BNS8 = MANIFEST.solvers.find((s) => s.kind === 'bns' && s.nfe === 8 && s.guidance > 0);

/** Largest |a − b| over two sample arrays (the native JSON holds f32 values printed exactly) and how many differ. */
export function difference(native, values) {
  assert.equal(values.length, native.length);
  let worst = 0;
  let differing = 0;
  for (let i = 0; i < native.length; i++) {
    const d = Math.abs(Math.fround(native[i]) - values[i]);
    if (d > 0) differing++;
    worst = Math.max(worst, d);
  }
  return { worst, differing };
}

/**
 * Opens the sampler page (with `query`) in a browser or context and waits for its first samples,
 * or, with `mayFail`, for its first samples or an error on the page. `prepare(page)` runs before
 * the page is loaded (e.g. to intercept requests).
 */
export async function openPage(target, url, query = '', { prepare = null, mayFail = false } = {}) {
  const page = await target.newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  if (prepare) await prepare(page);
  await page.goto(url + query);
  await page.waitForFunction(() => window.bnsPage?.ready || window.bnsPage?.error, null, { timeout: 120_000 });
  if (!mayFail) assert.equal(await page.evaluate(() => window.bnsPage.error), null);
  return { page, errors };
}

/** Clicks Generate and waits for the page to finish, drawn or failed (an earlier failure's
 * message does not count): resolves to the page's state afterwards. */
export async function clickGenerate(page) {
  await page.click('#generate');
  await page.evaluate(() => window.bnsPage.settled());
  return pageState(page);
}

export function pageState(page) {
  return page.evaluate(() => ({
    error: window.bnsPage.error,
    generated: window.bnsPage.generated,
    shape: window.bnsPage.lastShape,
    values: Array.from(window.bnsPage.lastValues ?? []),
    backend: window.bnsPage.backend,
    backendText: document.querySelector('#backend').textContent,
    timing: document.querySelector('#timing').textContent,
    where: window.bnsPage.where,
  }));
}

/**
 * How many distinct colours the canvas `selector` shows, and its size (a blank canvas has one
 * colour). With `host`, the canvas is looked up in that element's shadow root.
 */
export function canvasColours(page, selector, host = null) {
  return page.evaluate(({ selector, host }) => {
    const root = host ? document.querySelector(host).shadowRoot : document;
    const canvas = root.querySelector(selector);
    const { width, height } = canvas;
    const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
    const colours = new Set();
    for (let i = 0; i < data.length; i += 4) colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    return { width, height, colours: colours.size };
  }, { selector, host });
}

/**
 * Serves the site and launches Chromium (`webgpu`: with --enable-unsafe-webgpu) around the
 * calling file's tests. The returned object's `browser` and `url` are set once `before` has run.
 */
export function useSite({ webgpu }) {
  const site = { browser: null, url: null, server: null };
  before(async () => {
    checkPrerequisites();
    site.server = await startServer({ root: SITE });
    site.url = `http://127.0.0.1:${site.server.address().port}/`;
    site.browser = await launch({ webgpu });
  });
  after(async () => {
    await site.browser?.close();
    site.server?.close();
  });
  return site;
}
