// Browser benchmark of the sampler page (not a test): run `node tests/browser/bench.mjs` after
// `make wasm`. In headless Chromium it prints
//   * the time per batch of 64 at NFE 8 (fashion-mnist's published bns-8-w0 solver) on the wasm
//     CPU path (Chromium without WebGPU) and on WebGPU (SwiftShader with --enable-unsafe-webgpu):
//     the median of a few Generate clicks after a warm-up, as the page measures `generate`;
//   * the time from navigation start to the first image of the page as it opens (it generates
//     its default batch on load, no click), on a first visit and on a revisit whose weights come
//     from the Cache API.

import { startServer } from '../../www/serve.mjs';
import { launch } from './chromium.mjs';

const SITE = new URL('../../www/', import.meta.url).pathname;
const QUERY = '?model=fashion-mnist&solver=bns-8-w0.json&seed=1&batch=64';
const RUNS = { cpu: 5, webgpu: 3 };

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x) => `${x.toFixed(0)} ms`;

async function opened(context, url) {
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForFunction(() => window.bnsPage?.ready || window.bnsPage?.error, null, { timeout: 600_000 });
  const state = await page.evaluate(() => ({
    error: window.bnsPage.error,
    firstImageAt: window.bnsPage.firstImageAt,
    backend: window.bnsPage.backend,
    batch: window.bnsPage.lastShape[0],
  }));
  if (state.error) throw new Error(`the page failed: ${state.error}`);
  return { page, ...state };
}

/** Clicks Generate `count` times; the ms of each `generate` as the page measured it. */
async function clicks(page, count) {
  const times = [];
  for (let i = 0; i < count; i++) {
    const before = await page.evaluate(() => window.bnsPage.generated);
    await page.click('#generate');
    await page.waitForFunction((n) => window.bnsPage.generated > n || window.bnsPage.error, before, { timeout: 600_000 });
    times.push(await page.evaluate(() => window.bnsPage.lastMs));
  }
  return times;
}

async function bench(label, webgpu, url) {
  const browser = await launch({ webgpu });
  const context = await browser.newContext();
  const first = await opened(context, url);
  await first.page.close();
  const revisit = await opened(context, url);
  await revisit.page.close();

  // SwiftShader is a software renderer, which "auto" leaves for the CPU path: WebGPU is chosen.
  const { page, backend } = await opened(context, url + QUERY + (webgpu ? '&backend=webgpu' : ''));
  await clicks(page, 1); // warm-up beyond the page's own first generation
  const runs = await clicks(page, RUNS[webgpu ? 'webgpu' : 'cpu']);
  const m = median(runs);
  console.log(`${label} (backend "${backend}"):`);
  console.log(`  batch 64, NFE 8: median ${ms(m)} per batch, ${(m / 64).toFixed(2)} ms per image ` +
    `(${runs.length} runs after a warm-up: ${runs.map(ms).join(', ')})`);
  console.log(`  first image after navigation start (page auto-generates batch ${first.batch} on load, no click): ` +
    `${ms(first.firstImageAt)} first visit, ${ms(revisit.firstImageAt)} revisit (weights from the Cache API)`);
  const version = browser.version();
  await browser.close();
  return version;
}

const server = await startServer({ root: SITE });
const url = `http://127.0.0.1:${server.address().port}/`;
try {
  const cpuVersion = await bench('wasm CPU path (Chromium without WebGPU)', false, url);
  await bench('WebGPU (SwiftShader, --enable-unsafe-webgpu)', true, url);
  console.log(`Chromium ${cpuVersion}, headless; model fashion-mnist, solver bns-8-w0, seed 1.`);
} finally {
  server.close();
}
