// Browser benchmark of the sampler page (not a test): run `node tests/browser/bench.mjs` after
// `make wasm`. In headless Chromium it prints
//   * the time per batch of 64 at NFE 8 (fashion-mnist's published bns-8-w0 solver) on the wasm
//     CPU path (Chromium without WebGPU) and on WebGPU (SwiftShader with --enable-unsafe-webgpu):
//     the median of a few Generate clicks after a warm-up, as the page measures `generate`;
//   * the time from navigation start to the first image of the page as it opens (it generates
//     its default batch on load, no click), on a first visit and on a revisit whose weights come
//     from the Cache API.
//
// `node tests/browser/bench.mjs --unet DIR` does the same for a U-Net published by `bns publish`
// into DIR (a folder `<site>/models/<name>` with its manifest and its solver `bns-8-w2.json`):
// the site is copied to a scratch folder with that model as the one the page opens with, and
// each path is timed at batches of 16 and 64 (fewer runs: SwiftShader takes a minute a batch).
// `--cpu` times the wasm CPU path only (SwiftShader's minutes left out).

import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { startServer } from '../../www/serve.mjs';
import { launch } from './chromium.mjs';

const WWW = new URL('../../www/', import.meta.url).pathname;

function usage(problem) {
  console.error(`bench.mjs: ${problem}\nusage: node tests/browser/bench.mjs [--cpu] [--unet MODEL_DIR]`);
  process.exit(2);
}

const ARGS = process.argv.slice(2);
const CPU_ONLY = ARGS.includes('--cpu');

/** What to time: the default MLP, or the U-Net given with --unet. */
function setting(args) {
  if (args.length === 0) {
    return {
      site: WWW, scratch: null, model: 'fashion-mnist', solver: 'bns-8-w0.json', batches: [64],
      runs: { cpu: 5, webgpu: 3 },
    };
  }
  if (args.length !== 2 || args[0] !== '--unet') usage(`unexpected arguments: ${args.join(' ')}`);
  const dir = resolve(args[1]);
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  } catch (e) {
    usage(`${join(dir, 'manifest.json')}: ${e.message}`);
  }
  const solver = manifest.solvers.find((s) => s.kind === 'bns' && s.nfe === 8);
  if (!solver) usage(`${join(dir, 'manifest.json')} lists no BNS solver at NFE 8`);
  const scratch = mkdtempSync(join(tmpdir(), 'bns-bench-site-'));
  try {
    cpSync(WWW, scratch, { recursive: true, dereference: true });
    cpSync(dir, join(scratch, 'models', manifest.name), { recursive: true, dereference: true });
    const index = JSON.parse(readFileSync(join(WWW, 'models/index.json'), 'utf8'));
    writeFileSync(join(scratch, 'models/index.json'),
      JSON.stringify([manifest.name, ...index.filter((n) => n !== manifest.name)]));
  } catch (e) {
    // No half-built copy of the site left behind.
    rmSync(scratch, { recursive: true, force: true });
    usage(`copying the site and ${dir} into a scratch folder: ${e.message}`);
  }
  return {
    site: scratch, scratch, model: manifest.name, solver: solver.file, batches: [16, 64],
    runs: { cpu: 3, webgpu: 1 }, bytes: manifest.model_bytes, from: basename(dir),
  };
}

const SETTING = setting(ARGS.filter((a) => a !== '--cpu'));

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

  console.log(`${label}:`);
  for (const batch of SETTING.batches) {
    // SwiftShader is a software renderer, which "auto" leaves for the CPU path: WebGPU is forced.
    const query = `?model=${SETTING.model}&solver=${SETTING.solver}&seed=1&batch=${batch}` +
      (webgpu ? '&backend=webgpu' : '');
    const { page, backend } = await opened(context, url + query);
    await clicks(page, 1); // warm-up beyond the page's own first generation
    const runs = await clicks(page, SETTING.runs[webgpu ? 'webgpu' : 'cpu']);
    const m = median(runs);
    const workers = /2 workers/.test(await page.textContent('#timing')) ? ', 2 workers' : '';
    console.log(`  batch ${batch}, NFE 8 (backend "${backend}"${workers}): median ${ms(m)} per batch, ` +
      `${(m / batch).toFixed(2)} ms per image (${runs.length} runs after a warm-up: ${runs.map(ms).join(', ')})`);
    await page.close();
  }
  console.log(`  first image after navigation start (page auto-generates batch ${first.batch} on load, no click): ` +
    `${ms(first.firstImageAt)} first visit, ${ms(revisit.firstImageAt)} revisit (weights from the Cache API)`);
  const version = browser.version();
  await browser.close();
  return version;
}

let server;
try {
  server = await startServer({ root: SETTING.site });
  const url = `http://127.0.0.1:${server.address().port}/`;
  const cpuVersion = await bench('wasm CPU path in the worker (Chromium without WebGPU)', false, url);
  if (!CPU_ONLY) await bench('WebGPU (SwiftShader, --enable-unsafe-webgpu)', true, url);
  console.log(`Chromium ${cpuVersion}, headless; model ${SETTING.model}` +
    `${SETTING.bytes ? ` (${SETTING.bytes} bytes, from ${SETTING.from})` : ''}, solver ${SETTING.solver}, seed 1.`);
} finally {
  server?.close();
  if (SETTING.scratch) rmSync(SETTING.scratch, { recursive: true, force: true });
}
