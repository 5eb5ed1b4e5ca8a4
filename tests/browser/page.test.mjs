// The sampler page end to end: it loads the wasm runtime and the default model, generates for
// seed 1, and its numbers equal the native CPU path's (`bns sample`) for the same model, solver
// and seed, bit for bit.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../../www/serve.mjs';
import { launch, CHROMIUM } from './chromium.mjs';

const ROOT = new URL('../../', import.meta.url).pathname;
const ARTIFACTS = join(ROOT, 'tests/browser/artifacts');
const BNS = join(ROOT, process.env.BNS ?? 'target/debug/bns');
const SITE = join(ROOT, 'www');
// The model the page opens with, and its manifest.
const DEFAULT = JSON.parse(readFileSync(join(SITE, 'models/index.json'), 'utf8'))[0];
const MANIFEST = JSON.parse(readFileSync(join(SITE, 'models', DEFAULT, 'manifest.json'), 'utf8'));
const MODEL = join(SITE, 'models', DEFAULT, MANIFEST.model);

let server;
let browser;
let url;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: run 'make setup' (as root) or 'apt-get install chromium'`);
  assert.ok(existsSync(BNS), `${BNS} not found: build it with 'cargo build -p distiller'`);
  server = await startServer({ root: join(ROOT, 'www') });
  url = `http://127.0.0.1:${server.address().port}/`;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
});

/** Native reference: `bns sample --values` for the same model, solver file, seed and batch. */
function nativeSamples(tag, solverFile, seed, batch, guidance) {
  const out = join(ARTIFACTS, `native-${tag}-seed${seed}.json`);
  execFileSync(BNS, [
    'sample', '--model', MODEL, '--solver', solverFile, '--seed', String(seed),
    '--batch', String(batch), '--guidance', String(guidance), '--values', out,
    '-o', join(ARTIFACTS, `native-${tag}-seed${seed}.png`),
  ]);
  return JSON.parse(readFileSync(out, 'utf8'));
}

/** A classical solver file written by `bns solver new` (what the page builds with useClassical). */
function classicalFile(method, grid, nfe) {
  const out = join(ARTIFACTS, `${method}-${grid}-${nfe}.json`);
  execFileSync(BNS, ['solver', 'new', '--method', method, '--grid', grid, '--nfe', String(nfe), '-o', out]);
  return out;
}

const bns = MANIFEST.solvers.find((s) => s.kind === 'bns' && s.guidance === 0) ?? MANIFEST.solvers[0];
const CASES = [
  { tag: bns.name, choice: `file:${bns.file}`, file: () => join(SITE, 'models', DEFAULT, bns.file), guidance: bns.guidance },
  { tag: 'dpmpp2m-edm-8', choice: 'classical:dpmpp2m:edm:8', file: () => classicalFile('dpmpp2m', 'edm', 8), guidance: 1.5 },
];

for (const c of CASES) {
  test(`page generates seed 1 with ${c.tag} and matches the native CPU path bit for bit`, async () => {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForFunction(() => window.bnsPage?.ready || window.bnsPage?.error, null, { timeout: 60_000 });
    assert.equal(await page.evaluate(() => window.bnsPage.error), null);
    await page.selectOption('#solver', c.choice);
    await page.waitForFunction(() => !document.querySelector('#generate').disabled);
    await page.fill('#guidance', String(c.guidance));
    await page.fill('#seed', '1');
    await page.fill('#batch', '4');
    await page.click('#generate');
    await page.waitForFunction(() => window.bnsPage.generated >= 1 || window.bnsPage.error, null, { timeout: 120_000 });
    const result = await page.evaluate(() => ({
      error: window.bnsPage.error,
      shape: window.bnsPage.lastShape,
      values: Array.from(window.bnsPage.lastValues),
      backend: window.bnsPage.backend,
      timing: document.querySelector('#timing').textContent,
    }));
    await page.screenshot({ path: join(ARTIFACTS, `page-${c.tag}.png`), fullPage: true });
    assert.equal(result.error, null);
    assert.equal(result.backend, 'cpu');
    assert.match(result.timing, /ms per batch of 4/);

    const native = nativeSamples(c.tag, c.file(), 1, 4, c.guidance);
    assert.deepEqual(result.shape, native.shape);
    assert.equal(result.values.length, native.values.length);
    let worst = 0;
    let differing = 0;
    for (let i = 0; i < native.values.length; i++) {
      // JSON holds the f32 values printed exactly (shortest round-trip form); compare as f32.
      const d = Math.abs(Math.fround(native.values[i]) - result.values[i]);
      if (d > 0) differing++;
      worst = Math.max(worst, d);
    }
    assert.equal(differing, 0, `wasm and native differ in ${differing} values (max |Δ| = ${worst})`);
    // The samples are not constant: a blank result would also "match" a blank reference.
    const spread = Math.max(...result.values) - Math.min(...result.values);
    assert.ok(spread > 0.1, `samples look blank (spread ${spread})`);
    assert.deepEqual(errors, []);
    await page.close();
  });
}
