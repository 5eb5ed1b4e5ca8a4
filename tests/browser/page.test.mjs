// The sampler page in a Chromium without WebGPU (no --enable-unsafe-webgpu): it falls back to the
// CPU path and says so; its numbers equal the native CPU path's (`bns sample`) bit for bit;
// generation runs in the worker, with progress and no long task on the main thread; bad solver
// files are reported and leave the page working; the compare view (error maps, conclusion,
// stale marking), the 2-D scatter plot with paths, and the weights cache; values in the address
// that the form refuses fall back with a note, and a failed generation or compare run says so,
// keeps the previous picture (or an empty frame) and leaves Generate ready, with no message
// running out of its box at 1280 and 390 px.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ARTIFACTS, BNS, BNS8, DEFAULT_MODEL, MANIFEST, MODEL_DIR, SITE, canvasColours, classicalFile, clickGenerate,
  difference, nativeSamples, nativeUnetSamples, openPage, pageState, useSite,
} from './harness.mjs';

const site = useSite({ webgpu: false });

const CASES = [
  { tag: BNS8.name, choice: `published:${BNS8.file}`, file: () => join(MODEL_DIR, BNS8.file), guidance: BNS8.guidance },
  { tag: 'dpmpp2m-edm-8', choice: 'classical:dpmpp2m:edm:8', file: () => classicalFile('dpmpp2m', 'edm', 8), guidance: 1.5 },
];

for (const c of CASES) {
  test(`without WebGPU the page says it runs on the CPU, and ${c.tag} at seed 1 equals bns sample bit for bit`, async () => {
    const { page, errors } = await openPage(site.browser, site.url);
    await page.selectOption('#solver', c.choice);
    await page.fill('#guidance', String(c.guidance));
    await page.fill('#seed', '1');
    await page.fill('#batch', '4');
    const result = await clickGenerate(page);
    await page.screenshot({ path: join(ARTIFACTS, `page-cpu-${c.tag}.png`), fullPage: true });
    assert.equal(result.error, null);
    assert.equal(result.backend, 'cpu');
    assert.match(result.backendText, /WebGPU unavailable — running on the CPU/);
    assert.match(result.backendText, /no GPU adapter/);
    assert.match(result.timing, /4 images in \d+ ms, [\d.]+ ms per image · CPU/);
    assert.equal(result.where, 'worker');
    // With two cores or more the batch's halves run in two workers (the values below are still
    // bns sample's, bit for bit).
    if (await page.evaluate(() => navigator.hardwareConcurrency >= 2)) assert.match(result.timing, /· CPU, 2 workers/);

    const native = nativeSamples(c.tag, c.file(), 1, 4, c.guidance);
    assert.deepEqual(result.shape, native.shape);
    const { worst, differing } = difference(native.values, result.values);
    assert.equal(differing, 0, `wasm and native differ in ${differing} values (max |Δ| = ${worst})`);
    // A blank result would also "match" a blank reference.
    const spread = Math.max(...result.values) - Math.min(...result.values);
    assert.ok(spread > 0.1, `samples look blank (spread ${spread})`);
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test('where the manifest offers f16 weights the page downloads those, shows their PSNR, and its images equal bns sample with them bit for bit', async () => {
  // The default model rounded by `bns model convert`, offered as a manifest of `bns publish --f16` would.
  const f16 = join(ARTIFACTS, `${DEFAULT_MODEL}.f16.safetensors`);
  execFileSync(BNS, ['model', 'convert', join(MODEL_DIR, MANIFEST.model), '--dtype', 'f16', '-o', f16]);
  const bytes = readFileSync(f16);
  const manifest = {
    ...MANIFEST,
    model_f16: 'model.f16.safetensors',
    model_f16_id: createHash('sha256').update(bytes).digest('hex'),
    model_f16_bytes: bytes.length,
    solvers: MANIFEST.solvers.map((s) => ({ ...s, test_psnr_f16: s.test_psnr - 0.25 })),
  };
  const weights = [];
  const { page, errors } = await openPage(site.browser, site.url, '', {
    prepare: async (p) => {
      p.on('request', (r) => r.url().endsWith('.safetensors') && weights.push(new URL(r.url()).pathname));
      await p.route(`**/models/${DEFAULT_MODEL}/manifest.json`, (route) => route.fulfill({ json: manifest }));
      await p.route(`**/models/${DEFAULT_MODEL}/model.f16.safetensors`, (route) =>
        route.fulfill({ body: bytes, contentType: 'application/octet-stream' }));
    },
  });
  assert.deepEqual(weights, [`/models/${DEFAULT_MODEL}/model.f16.safetensors`]);
  assert.match(await page.textContent('#about-model'), /MB \(f16 weights\) downloaded/);
  await page.selectOption('#solver', `published:${BNS8.file}`);
  const shown = (BNS8.test_psnr - 0.25).toFixed(1);
  const option = await page.textContent(`#solver option[value="published:${BNS8.file}"]`);
  assert.ok(option.includes(`${shown} dB`), `the solver list shows ${option}, not the f16 PSNR ${shown} dB`);
  await page.fill('#guidance', String(BNS8.guidance));
  await page.fill('#seed', '1');
  await page.fill('#batch', '4');
  const result = await clickGenerate(page);
  assert.equal(result.error, null);
  const native = nativeSamples(`${BNS8.name}-f16`, join(MODEL_DIR, BNS8.file), 1, 4, BNS8.guidance, f16);
  const { worst, differing } = difference(native.values, result.values);
  assert.equal(differing, 0, `wasm and native differ in ${differing} values (max |Δ| = ${worst})`);
  // The f16 model is another model: its images are close to the f32 model's, not equal.
  const wide = nativeSamples(`${BNS8.name}-f32`, join(MODEL_DIR, BNS8.file), 1, 4, BNS8.guidance, join(MODEL_DIR, MANIFEST.model));
  const apart = difference(wide.values, result.values);
  assert.ok(apart.differing > 0 && apart.worst < 0.1, `f16 vs f32 images: max |Δ| = ${apart.worst}`);
  assert.deepEqual(errors, []);
  await page.close();
});

/** Long tasks (> 50 ms) on the main thread from now on, gathered in `window.longTasks`. */
const watchLongTasks = (page) => page.evaluate(() => {
  window.longTasks = [];
  new PerformanceObserver((list) => window.longTasks.push(...list.getEntries().map((e) => e.duration)))
    .observe({ type: 'longtask' });
});

test('the model list shows each published model by its manifest\'s title, its value the folder name', async () => {
  const { page, errors } = await openPage(site.browser, site.url);
  const names = JSON.parse(readFileSync(join(SITE, 'models/index.json'), 'utf8'));
  const titles = names.map((n) => JSON.parse(readFileSync(join(SITE, 'models', n, 'manifest.json'), 'utf8')).title);
  assert.ok(titles.every((t) => typeof t === 'string' && t.length > 0), 'every published model has a title');
  await page.waitForFunction((expected) => [...document.querySelectorAll('#model option')].map((o) => o.textContent).join('\n') === expected.join('\n'), titles);
  assert.deepEqual(await page.evaluate(() => [...document.querySelectorAll('#model option')].map((o) => o.value)), names);
  assert.equal(await page.inputValue('#model'), DEFAULT_MODEL);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a CPU generation of 64 images runs in the worker: progress is shown and no main-thread task exceeds 50 ms', async (t) => {
  const { page, errors } = await openPage(site.browser, site.url, '?batch=64&seed=3');
  await watchLongTasks(page);
  const result = await clickGenerate(page);
  assert.equal(result.error, null);
  assert.equal(result.where, 'worker');
  assert.deepEqual(result.shape, [64, 1, 28, 28]);
  const progress = await page.evaluate(() => window.bnsPage.progress);
  // The CPU path reports every evaluation: 0, 1, …, 8 of 8 (the first twice: the page's own).
  assert.deepEqual([...new Set(progress.map((p) => `${p.done}/${p.total}`))], Array.from({ length: 9 }, (_, k) => `${k}/8`));
  assert.equal(await page.locator('#progress').isHidden(), true);
  await page.waitForTimeout(100);
  const longTasks = await page.evaluate(() => window.longTasks);
  assert.deepEqual(longTasks, [], `main-thread tasks over 50 ms: ${longTasks.map((d) => d.toFixed(0)).join(', ')} ms`);
  // The observer does see the same generation run on the main thread.
  await page.evaluate(async (name) => {
    const { default: init, Sampler } = await import('./pkg/web_sampler.js');
    await init();
    const sampler = new Sampler();
    const manifest = await (await fetch(`models/${name}/manifest.json`)).json();
    const file = manifest.model_f16 ?? manifest.model;
    const bytes = new Uint8Array(await (await fetch(`models/${name}/${file}`)).arrayBuffer());
    sampler.loadModel(bytes, 'model.safetensors');
    sampler.useClassical('euler', 'uniform', 8);
    await sampler.generate({ seed: 3, batch: 64, backend: 'cpu' });
    await new Promise((r) => setTimeout(r, 100));
  }, DEFAULT_MODEL);
  const blocking = await page.evaluate(() => window.longTasks);
  t.diagnostic(`in the worker: no long task (${result.timing}); on the main thread: ${blocking.map((d) => d.toFixed(0)).join(', ')} ms`);
  assert.ok(blocking.some((d) => d > 50), `on the main thread the same work should be a long task: ${blocking}`);
  assert.deepEqual(errors, []);
  await page.close();
});

const UNET_CASES = [
  {
    tag: 'unet-1x8x8-classes', guidance: 1.5,
    flags: ['--shape', '1,8,8', '--classes', '3', '--base-channels', '4', '--channel-multipliers', '1,2',
      '--residual-blocks', '1', '--groups', '2', '--embedding-width', '8', '--time-embedding', '8', '--seed', '3'],
  },
  {
    tag: 'unet-3x16x16', guidance: 0,
    flags: ['--shape', '3,16,16', '--classes', '0', '--base-channels', '8', '--channel-multipliers', '1,2,2',
      '--residual-blocks', '2', '--groups', '4', '--attention', 'false', '--embedding-width', '16',
      '--prediction', 'velocity', '--seed', '4'],
  },
];

for (const c of UNET_CASES) {
  test(`a ${c.tag} U-Net sampled with the page's wasm module equals bns sample bit for bit`, async () => {
    const solver = classicalFile('heun', 'uniform', 4);
    const { model, native } = nativeUnetSamples(c.tag, c.flags, solver, 1, 3, c.guidance);
    const { page, errors } = await openPage(site.browser, site.url);
    const result = await page.evaluate(async ({ modelBytes, solverJson, guidance }) => {
      const { default: init, Sampler } = await import('./pkg/web_sampler.js');
      await init();
      const sampler = new Sampler();
      const spec = JSON.parse(sampler.loadModel(new Uint8Array(modelBytes), 'unet.safetensors'));
      sampler.loadSolver(solverJson, 'heun-uniform-4.json');
      const { values } = await sampler.generate({ seed: 1, batch: 3, guidance, backend: 'cpu' });
      return { architecture: spec.architecture, summary: sampler.modelSummary(), values: Array.from(values) };
    }, { modelBytes: Array.from(readFileSync(model)), solverJson: readFileSync(solver, 'utf8'), guidance: c.guidance });
    assert.equal(result.architecture, 'unet');
    assert.match(result.summary, /base \d+ × \[/);
    const { worst, differing } = difference(native.values, result.values);
    assert.equal(differing, 0, `wasm and native differ in ${differing} values (max |Δ| = ${worst})`);
    const spread = Math.max(...result.values) - Math.min(...result.values);
    assert.ok(spread > 0.1, `samples look blank (spread ${spread})`);
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test('the runtime lists its classical methods with their stages and grids, and each generate answers with the path that ran and its own picture', async () => {
  const { page, errors } = await openPage(site.browser, site.url);
  const result = await page.evaluate(async (name) => {
    const { default: init, Sampler, classicalMethods, gridPicture } = await import('./pkg/web_sampler.js');
    await init();
    const methods = classicalMethods();
    const sampler = new Sampler();
    const manifest = await (await fetch(`models/${name}/manifest.json`)).json();
    const bytes = new Uint8Array(await (await fetch(`models/${name}/${manifest.model}`)).arrayBuffer());
    const shape = JSON.parse(sampler.loadModel(bytes, 'model.safetensors')).data_shape;
    // Each method builds at its stages on every grid it lists, and refuses one more evaluation
    // where that is not a multiple of its stages.
    const builds = methods.map(({ name: method, stages, grids }) => ({
      method,
      built: grids.every((grid) => {
        sampler.useClassical(method, grid, stages);
        return sampler.solverJson() !== undefined;
      }),
      refused: stages === 1 || (() => {
        try {
          sampler.useClassical(method, grids[0], stages + 1);
          return false;
        } catch (e) {
          return e.message.includes(`multiple of ${stages}`);
        }
      })(),
    }));
    sampler.useClassical('euler', 'uniform', 4);
    const first = await sampler.generate({ seed: 1, batch: 4, columns: 2, backend: 'cpu' });
    const firstRgba = Array.from(first.picture.rgba);
    const second = await sampler.generate({ seed: 2, batch: 9, backend: 'cpu' });
    // Rows 1 and 2 of the first batch on their own, and the first batch's picture drawn again
    // from its values: the same numbers and pixels.
    const rows = await sampler.generate({ seed: 1, batch: 2, firstRow: 1, backend: 'cpu' });
    const d = first.values.length / 4;
    const redrawn = gridPicture(first.values, [4, ...shape], 2);
    const refusals = [];
    for (const call of [
      () => sampler.generate({ seed: 1, batch: 2, firstRow: 1024 }),
      () => gridPicture(first.values, [5, ...shape], 2),
      () => gridPicture(first.values, shape, 2),
    ]) {
      try {
        await call();
        refusals.push(null);
      } catch (e) {
        refusals.push(e.message);
      }
    }
    return {
      methods, builds, shape, refusals,
      rowsEqual: rows.values.every((v, i) => Object.is(v, first.values[d + i])) && rows.values.length === 2 * d,
      redrawnEqual: redrawn.width === first.picture.width && redrawn.rgba.every((v, i) => v === firstRgba[i]),
      first: { backend: first.backend, width: first.picture.width, height: first.picture.height, values: first.values.length },
      second: { backend: second.backend, width: second.picture.width },
      firstKept: Array.from(first.picture.rgba).every((v, i) => v === firstRgba[i]),
      differ: firstRgba.length !== second.picture.rgba.length,
    };
  }, DEFAULT_MODEL);
  assert.deepEqual(result.methods.map((m) => m.name), ['euler', 'midpoint', 'heun', 'rk4', 'ab2', 'ab3', 'dpmpp2m']);
  for (const m of result.methods) assert.deepEqual(m.grids, ['uniform', 'edm'], m.name);
  for (const b of result.builds) assert.ok(b.built && b.refused, JSON.stringify(b));
  const [c, h, w] = result.shape;
  assert.equal(result.first.backend, 'cpu');
  assert.equal(result.second.backend, 'cpu');
  assert.equal(result.first.values, 4 * c * h * w);
  // Tiles with gaps between them: 2 per row as asked for 4 samples, 3 per row by default for 9.
  const between = (size, tiles, tile) => size > tiles * tile && size < (tiles + 1) * tile;
  assert.ok(between(result.first.width, 2, w) && between(result.first.height, 2, h), JSON.stringify(result.first));
  assert.ok(between(result.second.width, 3, w), JSON.stringify(result.second));
  // The second call left the first one's picture as it was.
  assert.ok(result.firstKept && result.differ);
  assert.ok(result.rowsEqual, 'rows 1–2 of a batch asked for on their own differ from the batch');
  assert.ok(result.redrawnEqual, 'gridPicture differs from the picture generate drew');
  assert.match(result.refusals[0], /firstRow must be a whole number from 0 to 1023, got 1024/);
  assert.match(result.refusals[1], /gridPicture: \d+ values are not a batch of shape \[5, /);
  assert.match(result.refusals[2], /gridPicture: the shape must be \[B, C, H, W\], got 3 numbers/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a corrupt solver file and a solver of another model are reported, and the page keeps working', async () => {
  const { page, errors } = await openPage(site.browser, site.url, '?batch=4');
  const before = await pageState(page);
  const load = async (name, buffer) => {
    await page.setInputFiles('#solver-file', { name, mimeType: 'application/json', buffer });
    await page.waitForFunction((n) => window.bnsPage.error?.includes(n), name, { timeout: 10_000 });
    return page.evaluate(() => ({
      error: window.bnsPage.error,
      shown: document.querySelector('#error').textContent,
      visible: !document.querySelector('#error').hidden,
      solver: document.querySelector('#solver').value,
    }));
  };

  const corrupt = await load('corrupt.json', Buffer.from('{"format_version": 1, "times": [0, 0.5'));
  assert.ok(corrupt.visible);
  assert.equal(corrupt.shown, corrupt.error);
  assert.match(corrupt.error, /^Solver not loaded: corrupt\.json: .*JSON/);
  assert.match(corrupt.error, /previous solver is still in use/);
  assert.equal(corrupt.solver, `published:${BNS8.file}`);

  const garbage = await load('garbage.json', Buffer.from([0xff, 0xfe, 0x00, 0x13, 0x37]));
  assert.match(garbage.error, /^Solver not loaded: garbage\.json/);

  const other = readFileSync(join(SITE, 'models/checkerboard/bns-8-w0.json'));
  const foreign = await load('checkerboard-bns-8.json', other);
  assert.match(foreign.error, /checkerboard-bns-8\.json/);
  assert.match(foreign.error, /model/);

  // The page still works, with the solver it had: the same numbers as before.
  const after = await clickGenerate(page);
  assert.equal(after.error, null);
  assert.equal(await page.locator('#error').isHidden(), true);
  assert.equal(after.generated, before.generated + 1);
  assert.deepEqual(after.values, before.values);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a solver file from disk is added to the solver list and used', async () => {
  const { page, errors } = await openPage(site.browser, site.url, '?batch=4');
  const file = classicalFile('midpoint', 'uniform', 6);
  await page.setInputFiles('#solver-file', file);
  await page.waitForFunction(() => document.querySelector('#solver').value.startsWith('file:'));
  const label = await page.evaluate(() => document.querySelector('#solver').selectedOptions[0].textContent);
  assert.match(label, /midpoint-uniform-6\.json · midpoint · NFE 6/);
  const result = await clickGenerate(page);
  assert.equal(result.error, null);
  assert.match(result.timing, /^midpoint-uniform-6 \(NFE 6\)/);
  const native = nativeSamples('midpoint-uniform-6', file, 1, 4, 0);
  assert.equal(difference(native.values, result.values).differing, 0);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the compare view scores BNS, Euler and midpoint against an RK4 reference, then restores the solver', async () => {
  const { page, errors } = await openPage(site.browser, site.url, '?batch=4');
  const before = await pageState(page);
  await page.click('#compare');
  await page.waitForFunction(() => window.bnsPage.lastCompare || window.bnsPage.error, null, { timeout: 120_000 });
  const rows = await page.evaluate(() => window.bnsPage.lastCompare);
  assert.equal(await page.evaluate(() => window.bnsPage.error), null);
  assert.deepEqual(rows.map((r) => [r.label, r.nfe]), [['Reference', 200], [BNS8.name, 8], ['Euler', 8], ['Midpoint', 8]]);
  const [reference, bns, euler, midpoint] = rows;
  assert.equal(reference.psnr, null);
  for (const row of [bns, euler, midpoint]) assert.ok(row.psnr > 10 && row.psnr < 100, `${row.label}: ${row.psnr} dB`);
  // The claim of the method: at the same NFE the learned solver is closer to the truth.
  assert.ok(bns.psnr > euler.psnr + 3, `BNS ${bns.psnr} dB vs Euler ${euler.psnr} dB`);
  assert.ok(bns.psnr > midpoint.psnr, `BNS ${bns.psnr} dB vs midpoint ${midpoint.psnr} dB`);
  const shown = await page.locator('.compare-row').count();
  assert.equal(shown, 4);
  for (let i = 1; i <= 4; i++) {
    const { colours } = await canvasColours(page, `.compare-row:nth-child(${i}) canvas`);
    assert.ok(colours > 16, `compare row ${i} looks blank (${colours} colours)`);
  }
  // An error map under each solver (not the reference), on one scale: Euler's is brighter.
  assert.equal(await page.locator('.compare-row canvas.error-map').count(), 3);
  const brightness = await page.evaluate(() => [...document.querySelectorAll('.compare-row')].slice(1).map((row) => {
    const map = row.querySelector('canvas.error-map');
    const data = map.getContext('2d').getImageData(0, 0, map.width, map.height).data;
    let sum = 0;
    for (let i = 0; i < data.length; i += 4) sum += data[i] + data[i + 1] + data[i + 2];
    return sum / (data.length / 4);
  }));
  const [bnsMap, eulerMap] = brightness;
  assert.ok(eulerMap > 2 * bnsMap && eulerMap > 10, `error maps: BNS ${bnsMap}, Euler ${eulerMap}`);
  // The scale is the largest error of any solver: at most 2 (the [−1, 1] range), and Euler's at
  // 8 NFE on a guided U-Net exceeds 1.
  const legend = (await page.textContent('.compare-legend')).match(/white = an error of (\d\.\d{3}) \((\d+) % of the \[−1, 1\] range\)/);
  assert.ok(legend, await page.textContent('.compare-legend'));
  const scale = Number(legend[1]);
  assert.ok(scale >= 1 / 255 && scale <= 2, `error map scale ${scale}`);
  assert.ok(Math.abs(Number(legend[2]) - 50 * scale) <= 0.53, legend[0]); // both rounded
  const conclusion = await page.textContent('.compare-conclusion');
  assert.match(conclusion, new RegExp(`^${BNS8.name} \\(BNS\\) at 8 NFE \\(${bns.psnr.toFixed(1)} dB\\) is (as close to the 200-NFE reference as RK4 with \\d+ to \\d+ NFE|closer to the 200-NFE reference than RK4 at any NFE tried)`));
  await page.screenshot({ path: join(ARTIFACTS, 'page-compare.png'), fullPage: true });
  // A change of guidance makes the results stale, and says so.
  assert.equal(await page.locator('.compare-stale').isVisible(), false);
  await page.fill('#guidance', '0');
  assert.equal(await page.locator('.compare-stale').isVisible(), true);
  assert.equal(await page.evaluate(() => window.bnsPage.compareStale), true);
  await page.fill('#guidance', String(BNS8.guidance));
  // A compare run that fails says so under the button and leaves the results it had.
  await page.fill('#guidance', '1e308');
  await page.click('#compare');
  await page.evaluate(() => window.bnsPage.settled());
  assert.match(await page.evaluate(() => window.bnsPage.error), new RegExp(`^${BNS8.file.replaceAll('.', '\\.')}: the solve diverged: .*w = 1e308`));
  assert.equal(await page.locator('#compare-status').isVisible(), true);
  assert.match(await page.textContent('#compare-status'),
    /^Compare failed: .*the solve diverged.* \(the results below are the previous ones\)$/);
  assert.equal(await page.locator('.compare-row').count(), 4);
  assert.equal(await page.locator('#compare-progress').isHidden(), true);
  assert.equal(await page.isDisabled('#generate'), false);
  assert.equal(await page.isDisabled('#compare'), false);
  await assertFitsAt(page, 'page-compare-failed');
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.fill('#guidance', String(BNS8.guidance));
  // The page's own solver is back: Generate gives what it gave before.
  const after = await clickGenerate(page);
  assert.deepEqual(after.values, before.values);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a 2-D model is drawn as a scatter plot with the paths of some points, which end at their samples', async () => {
  const { page, errors } = await openPage(site.browser, site.url, '?model=checkerboard&batch=200');
  const result = await page.evaluate(() => {
    const p = window.bnsPage;
    return { shape: p.lastShape, values: Array.from(p.lastValues), paths: Array.from(p.lastPaths) };
  });
  assert.deepEqual(result.shape, [200, 2, 1, 1]);
  const pathCount = 24;
  const states = result.paths.length / (pathCount * 2);
  assert.equal(states, 9, 'NFE 8 BNS: 8 steps, 9 states');
  // The last state of each path is that point's sample; the first is noise, elsewhere.
  assert.deepEqual(result.paths.slice(-pathCount * 2), result.values.slice(0, pathCount * 2));
  assert.notDeepEqual(result.paths.slice(0, pathCount * 2), result.values.slice(0, pathCount * 2));
  const canvas = await canvasColours(page, '#canvas');
  assert.deepEqual([canvas.width, canvas.height], [512, 512]);
  assert.ok(canvas.colours > 8, `scatter plot looks blank (${canvas.colours} colours)`);
  await page.screenshot({ path: join(ARTIFACTS, 'page-checkerboard.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('a revisit takes the weights from the Cache API instead of downloading them again', async () => {
  const context = await site.browser.newContext();
  const weights = [];
  context.on('request', (r) => r.url().endsWith('.safetensors') && weights.push(r.url()));
  const first = await openPage(context, site.url, '?batch=1');
  assert.equal(weights.length, 1);
  assert.deepEqual(await first.page.evaluate(() => window.bnsPage.model), { name: DEFAULT_MODEL, cached: false });
  await first.page.close();

  const second = await openPage(context, site.url, '?batch=1');
  assert.equal(weights.length, 1, `downloaded again: ${weights}`);
  assert.deepEqual(await second.page.evaluate(() => window.bnsPage.model), { name: DEFAULT_MODEL, cached: true });
  assert.match(await second.page.textContent('#about-model'), /from the browser cache/);
  await context.close();
});

/** Opens the page with `query`, waiting for its first samples or an error. */
const openUntilSettled = (query, prepare = null) => openPage(site.browser, site.url, query, { prepare, mayFail: true });

test('a model in the address that fails to load is reported, and the model list stays usable', async () => {
  const { page, errors } = await openUntilSettled('?model=mnist&batch=2', (p) =>
    p.route('**/models/mnist/model*.safetensors', (route) => route.fulfill({ status: 500, body: 'broken' })));
  const error = await page.evaluate(() => window.bnsPage.error);
  assert.match(error, /mnist/);
  assert.match(error, /Choose another model/);
  assert.equal(await page.isDisabled('#model'), false);
  assert.notEqual(await page.textContent('#timing'), 'The sampler could not start.');
  // Another model from the list loads and draws.
  const before = await page.evaluate(() => window.bnsPage.generated);
  await page.selectOption('#model', 'checkerboard');
  await page.waitForFunction((n) => window.bnsPage.generated > n, before, { timeout: 120_000 });
  assert.equal(await page.evaluate(() => window.bnsPage.error), null);
  assert.equal(await page.evaluate(() => window.bnsPage.model.name), 'checkerboard');
  assert.equal(await page.isDisabled('#generate'), false);
  assert.deepEqual(errors, []);
  await page.close();
});

test('values in the address are checked like the form\'s, in words, and the page still draws', async () => {
  for (const [query, field, words] of [
    ['?batch=5000', 'Batch 5000', /less than or equal to 1024/],
    ['?batch=-1', 'Batch -1', /greater than or equal to 1/],
    ['?seed=2.5', 'Seed 2.5', /valid value/],
  ]) {
    const { page, errors } = await openUntilSettled(query);
    const error = await page.evaluate(() => window.bnsPage.error);
    assert.ok(error?.startsWith(field), `${query}: ${error}`);
    assert.match(error, words);
    assert.match(error, /\(from the address\): .* Using \d+ instead\./);
    assert.doesNotMatch(error, /invalid type|expected usize|floating point/);
    // The page started and drew with the form's value.
    assert.ok((await page.evaluate(() => window.bnsPage.generated)) >= 1, query);
    assert.equal(await page.isDisabled('#generate'), false);
    assert.deepEqual(errors, []);
    await page.close();
  }
  // The words are the form's own: what the browser says of the same value typed in.
  const { page } = await openUntilSettled('?batch=5000');
  const error = await page.evaluate(() => window.bnsPage.error);
  await page.fill('#batch', '5000');
  const typed = await page.evaluate(() => document.querySelector('#batch').validationMessage);
  assert.ok(typed && error.includes(typed), `${error} / ${typed}`);
  await page.close();
});

/** The page at a viewport `width` px wide: which of the boxes `selectors` (shown ones) hold text
 * wider than themselves (scrollWidth > clientWidth), and whether the page scrolls sideways; a
 * full-page screenshot goes to ARTIFACTS as `<tag>-<width>.png`. */
async function layoutAt(page, width, tag, selectors = ['#error', '#timing', '#compare-status']) {
  await page.setViewportSize({ width, height: 900 });
  await page.screenshot({ path: join(ARTIFACTS, `${tag}-${width}.png`), fullPage: true });
  return page.evaluate((selectors) => ({
    overflowing: selectors.filter((s) => {
      const box = document.querySelector(s);
      return box && !box.hidden && box.scrollWidth > box.clientWidth;
    }),
    sideways: document.documentElement.scrollWidth > document.documentElement.clientWidth,
  }), selectors);
}

const assertFitsAt = async (page, tag) => {
  for (const width of [1280, 390]) {
    assert.deepEqual(await layoutAt(page, width, tag), { overflowing: [], sideways: false }, `${tag} at ${width} px`);
  }
};

/** Whether the main canvas shows a picture, and its background (an empty frame before one). */
const canvasState = (page) => page.evaluate(() => {
  const canvas = document.querySelector('#canvas');
  return { drawn: canvas.classList.contains('drawn'), background: getComputedStyle(canvas).backgroundColor };
});

test('a seed out of range in the address falls back with a note like the others, quoting at most 40 characters; nothing overflows at 1280 and 390 px', async () => {
  const { page, errors } = await openUntilSettled('?seed=1e308&backend=cpu');
  await page.waitForFunction(() => window.bnsPage.ready);
  const error = await page.evaluate(() => window.bnsPage.error);
  assert.match(error, /^Seed 1e308 \(from the address\): .*less than or equal to 9007199254740991\. Using 1 instead\.$/);
  assert.equal(await page.inputValue('#seed'), '1');
  assert.equal(await page.evaluate(() => window.bnsPage.generated), 1);
  assert.match(await page.textContent('#timing'), /· seed 1 · 16 images in \d+ ms/);
  assert.equal((await canvasState(page)).drawn, true);
  assert.equal(await page.isDisabled('#generate'), false);
  await assertFitsAt(page, 'page-seed-1e308');
  assert.deepEqual(errors, []);
  await page.close();

  // The same number written out: 309 digits in the address, 40 characters in the note.
  const digits = `1${'0'.repeat(308)}`;
  const long = await openUntilSettled(`?seed=${digits}&backend=cpu`);
  await long.page.waitForFunction(() => window.bnsPage.ready);
  const note = await long.page.evaluate(() => window.bnsPage.error);
  assert.ok(note.startsWith(`Seed ${digits.slice(0, 39)}… (from the address): `), note);
  assert.doesNotMatch(note, /\d{41}/);
  assert.match(note, /Using 1 instead\.$/);
  await assertFitsAt(long.page, 'page-seed-309-digits');
  assert.deepEqual(long.errors, []);
  await long.page.close();
});

test('a model, solver, class or backend in the address that the form does not offer falls back with a note', async () => {
  const junk = 'x'.repeat(200);
  const { page, errors } = await openUntilSettled(`?model=nope&solver=${junk}&class=99&backend=gpu&batch=4`);
  await page.waitForFunction(() => window.bnsPage.ready);
  const notes = (await page.evaluate(() => window.bnsPage.error)).split('\n');
  const defaultSolver = BNS8.name;
  assert.deepEqual(notes.map((n) => n.replace(/\(from the address\): .*/, '').trim()), [
    'Run on gpu', 'Model nope', `Solver ${'x'.repeat(39)}…`, 'Class 99',
  ]);
  assert.match(notes[0], /Not one of auto, cpu, webgpu\. Using Auto .* instead\.$/);
  assert.match(notes[1], new RegExp(`Not a published model\\. Using ${DEFAULT_MODEL} instead\\.$`));
  assert.match(notes[2], new RegExp(`Not a solver of ${DEFAULT_MODEL}\\. Using ${defaultSolver.replaceAll('.', '\\.')} instead\\.$`));
  assert.match(notes[3], /Not a class of .*\. Using all \(cycle\) instead\.$/);
  assert.equal(await page.evaluate(() => window.bnsPage.generated), 1);
  assert.equal(await page.inputValue('#solver'), `published:${BNS8.file}`);
  await assertFitsAt(page, 'page-address-notes');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a guidance in the address that makes the solve diverge: the page names the solver, says the generation failed, shows an empty frame and is ready', async () => {
  const { page, errors } = await openUntilSettled('?guidance=1e308&backend=cpu');
  await page.waitForFunction(() => window.bnsPage.ready);
  const error = await page.evaluate(() => window.bnsPage.error);
  assert.match(error, new RegExp(`^${BNS8.file.replaceAll('.', '\\.')}: the solve diverged: \\d+ values are NaN or infinite.*\\(w = 1e308\\)`));
  const timing = await page.textContent('#timing');
  assert.match(timing, new RegExp(`^Generation failed: ${BNS8.file.replaceAll('.', '\\.')}: the solve diverged: [^(]*$`));
  assert.ok(timing.length < 120, timing);
  assert.equal(await page.locator('#progress').isHidden(), true);
  assert.equal(await page.evaluate(() => window.bnsPage.generated), 0);
  // No picture yet: an empty frame, not a black square.
  const canvas = await canvasState(page);
  assert.equal(canvas.drawn, false);
  assert.notEqual(canvas.background, 'rgb(0, 0, 0)');
  assert.equal(await page.isDisabled('#generate'), false);
  await assertFitsAt(page, 'page-guidance-1e308');
  // Corrected, Generate draws.
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.fill('#guidance', String(BNS8.guidance));
  const result = await clickGenerate(page);
  assert.equal(result.error, null);
  assert.equal(result.generated, 1);
  assert.match(result.timing, /16 images in \d+ ms/);
  assert.equal((await canvasState(page)).drawn, true);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a later generation that fails keeps the previous picture, says why under it, and Generate works again', async () => {
  const { page, errors } = await openPage(site.browser, site.url, '?batch=4&backend=cpu');
  const before = await pageState(page);
  const picture = await canvasColours(page, '#canvas');
  const fail = async (field, value) => {
    await page.fill(field, value);
    const state = await clickGenerate(page);
    assert.ok(state.error, `${field} = ${value} was not refused`);
    assert.equal(state.generated, before.generated);
    assert.deepEqual(state.values, before.values);
    assert.deepEqual(await canvasColours(page, '#canvas'), picture);
    assert.equal(await page.isDisabled('#generate'), false);
    assert.equal(await page.evaluate(() => window.bnsPage.ready), true);
    return state;
  };
  // The solve diverges.
  const diverged = await fail('#guidance', '1e308');
  assert.match(diverged.error, /the solve diverged/);
  assert.match(diverged.timing, /^Generation failed: .*the solve diverged.* \(the picture is the previous one\)$/);
  await assertFitsAt(page, 'page-later-failure');
  await page.setViewportSize({ width: 1280, height: 900 });
  // Pressed again, the same failure is reported again.
  const again = await fail('#guidance', '1e308');
  assert.equal(again.error, diverged.error);
  // Corrected, the same picture as before.
  await page.fill('#guidance', String(BNS8.guidance));
  const after = await clickGenerate(page);
  assert.equal(after.error, null);
  assert.deepEqual(after.values, before.values);
  assert.match(after.timing, /4 images in \d+ ms/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('WebGPU asked for in the address of a browser without it: the first generation fails, said under an empty frame, and the CPU path draws after', async () => {
  const { page, errors } = await openUntilSettled('?backend=webgpu&batch=4');
  await page.waitForFunction(() => window.bnsPage.ready);
  const state = await pageState(page);
  assert.match(state.error, /^no GPU: WebGPU is not available/);
  assert.match(state.timing, /^Generation failed: no GPU: WebGPU is not available/);
  assert.ok(state.timing.length < 120, state.timing);
  assert.equal(state.generated, 0);
  assert.equal((await canvasState(page)).drawn, false);
  assert.equal(await page.isDisabled('#generate'), false);
  await assertFitsAt(page, 'page-webgpu-unavailable');
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.selectOption('#run-on', 'cpu');
  const result = await clickGenerate(page);
  assert.equal(result.error, null);
  assert.match(result.timing, /4 images in \d+ ms, [\d.]+ ms per image · CPU(, 2 workers)?$/);
  assert.equal((await canvasState(page)).drawn, true);
  assert.deepEqual(errors, []);
  await page.close();
});
