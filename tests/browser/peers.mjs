// Browser benchmark of the wasm CPU path against onnxruntime-web (not a test): the browser
// counterpart of `cargo bench -p web-sampler --bench peers`.
//
//   node tests/browser/peers.mjs [--python /path/to/venv/bin/python] [--rounds 7]
//        [--models www/models --model fashion-mnist --solver bns-8-w0.json --batch 64]
//
// It needs `make wasm`, a Python with `onnxruntime`, `onnx` and `numpy` (for the export), and
// installs onnxruntime-web (pinned, tests/browser/peers/package-lock.json) on first use. The
// native benchmark exports the model (default fashion-mnist, bns-8-w0, batch 64, seed 1; an MLP or
// a U-Net, any w = 0 solver) with `--export`:
// the noise, the classes and the NS table (problem.json), the network's graph and the whole
// solve in one graph. In one headless Chromium page, on the main thread, one thread each, it
// then times in turn, round after round:
//   * the project's wasm CPU path (`Sampler.generate`, backend "cpu", the page's call);
//   * onnxruntime-web's wasm execution provider on the network's graph, the NS update in JS;
//   * onnxruntime-web on the whole solve in one graph.
// Before timing, both ONNX contenders must agree with the project within 1e-4 (on the
// project's output range: it returns images clamped to [−1, 1]).

import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../www/serve.mjs';
import { launch } from './chromium.mjs';

const ROOT = new URL('../../', import.meta.url).pathname;
const PEERS = join(ROOT, 'tests/browser/peers');
const AGREEMENT = 1e-4;

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const value = process.argv[i + 1];
  if (value === undefined) {
    console.error(`peers.mjs: ${name} needs a value`);
    process.exit(2);
  }
  return value;
}
const python = option('--python', 'python3');
const rounds = Math.max(1, Number.parseInt(option('--rounds', '7'), 10) || 0);
const MODELS = option('--models', join(ROOT, 'www/models'));
const NAME = option('--model', 'fashion-mnist');
const MODEL = join(MODELS, NAME);
const SOLVER = option('--solver', 'bns-8-w0.json');
const BATCH = option('--batch', '64');

if (!existsSync(join(ROOT, 'www/pkg/web_sampler.js'))) {
  console.error('peers.mjs: www/pkg is missing: run `make wasm` first');
  process.exit(1);
}
if (!existsSync(join(PEERS, 'node_modules/onnxruntime-web'))) {
  console.log('installing onnxruntime-web (npm ci in tests/browser/peers) …');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: PEERS, stdio: 'inherit' });
}
const ortVersion = JSON.parse(readFileSync(join(PEERS, 'node_modules/onnxruntime-web/package.json'), 'utf8')).version;

const scratch = mkdtempSync(join(tmpdir(), 'bns-browser-peers-'));
try {
  const problemDir = join(scratch, 'problem');
  execFileSync('cargo', ['bench', '-q', '-p', 'web-sampler', '--bench', 'peers', '--',
    '--python', python, '--export', problemDir, '--batch', BATCH, '--models', MODELS, '--model', NAME,
    '--solver', SOLVER], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  // The page's root: the runtime, the model and its solver, the ONNX files, onnxruntime-web.
  const site = join(scratch, 'site');
  cpSync(join(ROOT, 'www/pkg'), join(site, 'pkg'), { recursive: true });
  cpSync(join(MODEL, 'model.safetensors'), join(site, 'model.safetensors'));
  cpSync(join(MODEL, SOLVER), join(site, 'solver.json'));
  for (const f of ['problem.json', 'network.onnx', 'solve.onnx']) cpSync(join(problemDir, f), join(site, f));
  const dist = join(PEERS, 'node_modules/onnxruntime-web/dist');
  for (const f of ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm']) {
    cpSync(join(dist, f), join(site, 'ort', f));
  }
  writeFileSync(join(site, 'index.html'), '<!doctype html><title>peers</title><link rel="icon" href="data:,">');

  const server = await startServer({ root: site });
  const browser = await launch({ webgpu: false });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => { if (m.type() === 'error') console.error(`page: ${m.text()}`); });
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    const result = await page.evaluate(runInPage, { rounds, agreement: AGREEMENT });
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const project = median(result.times.project);
    console.log(`\nwasm CPU path against onnxruntime-web ${ortVersion} (wasm EP, SIMD, 1 thread), ` +
      `Chromium ${browser.version()} headless, main thread;`);
    console.log(`${NAME}, ${SOLVER}, batch ${BATCH}, seed 1, ${rounds} interleaved rounds after a warm-up; ` +
      `agreement with the project: loop ${result.agree.loop.toExponential(1)}, graph ${result.agree.graph.toExponential(1)}\n`);
    console.log('| contender | threads | median ms | ONNX RT / project |');
    console.log('|---|---:|---:|---:|');
    for (const [key, label] of [['project', 'this project, wasm CPU path'],
      ['loop', 'onnxruntime-web, network graph, loop in JS'],
      ['graph', 'onnxruntime-web, whole solve in one graph']]) {
      const m = median(result.times[key]);
      console.log(`| ${label} | 1 | ${m.toFixed(1)} | ${(m / project).toFixed(2)} |`);
    }
  } finally {
    await browser.close();
    server.close();
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

/** Runs in the page: loads both runtimes, checks agreement, times the contenders in turn. */
async function runInPage({ rounds, agreement }) {
  const { default: init, Sampler } = await import('./pkg/web_sampler.js');
  await init();
  const ort = await import('./ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = '/ort/';
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.simd = true;
  const fetched = async (f) => new Uint8Array(await (await fetch(f)).arrayBuffer());
  const problem = JSON.parse(new TextDecoder().decode(await fetched('problem.json')));
  const sampler = new Sampler();
  sampler.loadModel(await fetched('model.safetensors'), 'model.safetensors');
  sampler.loadSolver(new TextDecoder().decode(await fetched('solver.json')), 'solver.json');
  const options = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
  const network = await ort.InferenceSession.create(await fetched('network.onnx'), options);
  const solve = await ort.InferenceSession.create(await fetched('solve.onnx'), options);

  const { dim, times, a, b } = problem;
  const rows = problem.classes.length;
  const x0 = Float32Array.from(problem.x0);
  const classes = BigInt64Array.from(problem.classes.map(BigInt));
  const classTensor = new ort.Tensor('int64', classes, [rows]);

  const contenders = {
    project: async () => (await sampler.generate({ seed: 1, batch: rows, guidance: 0, backend: 'cpu' })).values,
    async loop() {
      const xs = [x0];
      const us = [];
      for (let i = 0; i < a.length; i++) {
        const out = await network.run({
          x: new ort.Tensor('float32', xs[xs.length - 1], [rows, dim]),
          t: new ort.Tensor('float32', new Float32Array(rows).fill(times[i]), [rows]),
          class: classTensor,
        });
        us.push(out[network.outputNames[0]].data);
        const x = new Float32Array(rows * dim);
        for (const [coefficients, vectors] of [[a[i], xs], [b[i], us]]) {
          coefficients.forEach((c, j) => {
            if (c === 0) return;
            const v = vectors[j];
            const cf = Math.fround(c);
            for (let k = 0; k < x.length; k++) x[k] = Math.fround(x[k] + Math.fround(cf * v[k]));
          });
        }
        xs.push(x);
      }
      return xs[xs.length - 1];
    },
    async graph() {
      const out = await solve.run({ x0: new ort.Tensor('float32', x0, [rows, dim]), class: classTensor });
      return out[solve.outputNames[0]].data;
    },
  };

  const reference = await contenders.project();
  const agree = {};
  for (const key of ['loop', 'graph']) {
    const values = await contenders[key]();
    let worst = 0;
    for (let k = 0; k < reference.length; k++) {
      worst = Math.max(worst, Math.abs(Math.min(1, Math.max(-1, values[k])) - reference[k]));
    }
    if (!(worst <= agreement)) throw new Error(`${key} disagrees with the project: max |Δ| = ${worst}`);
    agree[key] = worst;
  }
  const timesMs = { project: [], loop: [], graph: [] };
  for (let r = 0; r <= rounds; r++) {
    for (const key of Object.keys(contenders)) {
      const start = performance.now();
      await contenders[key]();
      if (r > 0) timesMs[key].push(performance.now() - start); // round 0 is the warm-up
    }
  }
  return { times: timesMs, agree };
}
