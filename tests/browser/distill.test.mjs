// The "Distil a solver" panel: a solver learned in the page's worker on the checkerboard model
// (the curve rises past the classical solvers' lines, no main-thread task over 50 ms, the solver
// joins the menu as the user's and generates), downloaded and measured natively by `bns solver
// measure` on test pairs the page never saw; Cancel; and a malformed model file dropped on the
// page, refused with the file's name and the problem, the page working on.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ARTIFACTS, BNS, SITE, clickGenerate, openPage, useSite } from './harness.mjs';

const site = useSite({ webgpu: false });

const CHECKERBOARD = 'checkerboard';
const manifest = JSON.parse(readFileSync(join(SITE, 'models', CHECKERBOARD, 'manifest.json'), 'utf8'));
/** The checkerboard's file the page loads (the f16 one where published): the solver's model. */
const MODEL_FILE = join(SITE, 'models', CHECKERBOARD, manifest.model_f16 ?? manifest.model);

const state = (page) => page.evaluate(() => ({ ...window.bnsPage.distill }));

/** Waits until the distillation is over (done, cancelled or failed). */
async function finished(page) {
  await page.waitForFunction(() => ['done', 'cancelled', 'failed'].includes(window.bnsPage.distill.status), null, { timeout: 240_000 });
  await page.evaluate(() => window.bnsPage.settled());
  return state(page);
}

test('a solver distilled in the page beats the classical solvers, joins the menu, and bns solver measure accepts the downloaded file', async () => {
  const { page, errors } = await openPage(site.browser, site.url, `?model=${CHECKERBOARD}`);
  await page.evaluate(() => {
    window.longTasks = [];
    new PerformanceObserver((list) => window.longTasks.push(...list.getEntries().map((e) => e.duration)))
      .observe({ type: 'longtask' });
  });
  await page.fill('#distill-nfe', '8');
  await page.fill('#distill-train', '384');
  await page.fill('#distill-validation', '128');
  await page.fill('#distill-iterations', '600');
  await page.click('#distill-start');
  const result = await finished(page);
  // No main-thread task over 50 ms from Distil to the solver in the menu.
  const longTasks = await page.evaluate(() => window.longTasks);
  assert.deepEqual(longTasks, [], `main-thread tasks over 50 ms: ${longTasks.map((d) => d.toFixed(0)).join(', ')} ms`);
  assert.equal(result.status, 'done', result.error);
  assert.equal(result.truth.done, 512);
  // The curve: the init first (iteration 0), then every 10 iterations; it rises above the init
  // and above the best classical solver at NFE 8 on the same validation pairs.
  assert.equal(result.curve[0].iteration, 0);
  assert.equal(result.curve.at(-1).iteration, 600);
  const best = Math.max(...result.curve.map((p) => p.psnr));
  assert.ok(best > result.curve[0].psnr + 5, `the curve did not rise: ${result.curve.map((p) => p.psnr.toFixed(1)).join(' ')}`);
  assert.ok(best > result.baselines[0].psnr, `best ${best} dB vs ${result.baselines[0].label} ${result.baselines[0].psnr} dB`);
  assert.equal(await page.locator('#distill-curve').isVisible(), true);
  // In the menu as the user's, in use, and generating.
  const label = await page.evaluate(() => document.querySelector('#solver').selectedOptions[0].textContent);
  assert.match(label, /^yours · BNS · NFE 8/);
  assert.equal(await page.evaluate(() => document.querySelector('#solver').selectedOptions[0].parentElement.label), 'Distilled here (yours)');
  const after = await clickGenerate(page);
  assert.equal(after.error, null);
  assert.match(after.timing, /bns-8-w0 \(NFE 8\)/);
  // The compare view runs it against Euler, midpoint and the reference.
  await page.evaluate(() => window.bnsPage.compare());
  const compared = await page.evaluate(() => ({ error: window.bnsPage.error, rows: window.bnsPage.lastCompare }));
  assert.equal(compared.error, null);
  assert.equal(compared.rows[1].label, 'bns-8-w0');
  assert.ok(compared.rows[1].psnr > compared.rows[2].psnr, `BNS ${compared.rows[1].psnr} dB vs Euler ${compared.rows[2].psnr} dB`);
  await page.locator('section.distill').screenshot({ path: join(ARTIFACTS, 'distill-checkerboard.png') });

  // The download: an ordinary solver file bound to the model, recording the page's figure.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#distill-download')]);
  const file = join(ARTIFACTS, 'distilled-checkerboard-bns-8-w0.json');
  await download.saveAs(file);
  const solver = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(solver.kind, 'bns');
  assert.equal(solver.nfe, 8);
  assert.equal(solver.model_id, createHash('sha256').update(readFileSync(MODEL_FILE)).digest('hex'));
  const shown = solver.metrics.validation_psnr;
  assert.ok(Math.abs(shown - best) < 1e-9, `the file records ${shown} dB, the page showed ${best} dB`);
  // `bns truth` with the command the file records makes the page's pairs plus 512 test pairs;
  // `bns solver measure` finds the recorded validation PSNR again (to 0.1 dB) and measures the
  // solver on the test pairs.
  const pairs = join(ARTIFACTS, 'distilled-checkerboard-pairs.safetensors');
  const truth = solver.provenance.pairs.split(' ').slice(1);
  execFileSync(BNS, [...truth, '--model', MODEL_FILE, '-o', pairs], { stdio: 'pipe' });
  const out = execFileSync(BNS, ['solver', 'measure', '--model', MODEL_FILE, '--pairs', pairs, file], { encoding: 'utf8' });
  const measured = JSON.parse(readFileSync(file, 'utf8'));
  const test = measured.metrics.test_psnr;
  const classical = measured.metrics.best_classical_test_psnr;
  console.log(`page: ${shown.toFixed(2)} dB on 128 validation pairs; bns solver measure: ${test.toFixed(2)} dB on 512 test pairs (best classical ${classical.toFixed(2)}); ${out.trim()}`);
  assert.ok(test > classical, `test PSNR ${test} vs the best classical ${classical}`);
  assert.ok(Math.abs(test - shown) < 2, `test ${test} dB vs the page's validation ${shown} dB`);
  assert.deepEqual(errors, []);
  await page.close();
});

test('while a distillation runs the sampler generates; Cancel stops it and adds no solver', async () => {
  const { page, errors } = await openPage(site.browser, site.url, `?model=${CHECKERBOARD}`);
  await page.fill('#distill-iterations', '5000');
  await page.click('#distill-start');
  await page.waitForFunction(() => window.bnsPage.distill.curve.length > 2, null, { timeout: 120_000 });
  // The sampler runs in another worker: Generate works meanwhile.
  const during = await clickGenerate(page);
  assert.equal(during.error, null);
  assert.equal(await page.evaluate(() => window.bnsPage.distill.status), 'training');
  await page.click('#distill-cancel');
  const result = await finished(page);
  assert.equal(result.status, 'cancelled');
  assert.equal(await page.locator('#solver-distilled').count(), 0);
  assert.match(await page.textContent('#distill-status'), /Cancelled/);
  assert.equal(await page.isEnabled('#distill-start'), true);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a malformed model file gets an error naming it and the problem; the page keeps working', async () => {
  const { page, errors } = await openPage(site.browser, site.url, `?model=${CHECKERBOARD}`);
  const bytes = readFileSync(MODEL_FILE);
  // Cut short (the tensors' bytes are missing), and dropped on the page.
  await page.evaluate((cut) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([new Uint8Array(cut)], 'broken.safetensors'));
    document.querySelector('canvas').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, [...bytes.subarray(0, bytes.length - 100)]);
  await page.evaluate(() => window.bnsPage.settled());
  const error = await page.evaluate(() => window.bnsPage.error);
  assert.match(error, /^Model not loaded: broken\.safetensors: /);
  assert.match(error, /previous model is still in use/);
  assert.doesNotMatch(error, /\bat \w+ \(|wasm-function|RuntimeError/);
  assert.equal(await page.inputValue('#model'), CHECKERBOARD);
  const again = await clickGenerate(page);
  assert.equal(again.error, null);
  // A good file, chosen under "Your own model", is the user's model with the classical solvers.
  await page.setInputFiles('#model-file', { name: 'mine.safetensors', mimeType: 'application/octet-stream', buffer: bytes });
  await page.evaluate(() => window.bnsPage.settled());
  assert.equal(await page.evaluate(() => window.bnsPage.error), null);
  assert.equal(await page.inputValue('#model'), 'file:mine.safetensors');
  assert.match(await page.textContent('#about-model'), /sent nowhere/);
  const mine = await clickGenerate(page);
  assert.equal(mine.error, null);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a U-Net in view: the panel says it distils MLPs only and offers no Distil button; an MLP again brings it back', async () => {
  const model = join(ARTIFACTS, 'distill-unet.safetensors');
  execFileSync(BNS, ['model', 'init', '--arch', 'unet', '--shape', '1,8,8', '--classes', '3',
    '--base-channels', '4', '--channel-multipliers', '1,2', '--residual-blocks', '1', '--groups', '2',
    '--embedding-width', '8', '--time-embedding', '8', '--seed', '3', '-o', model]);
  const { page, errors } = await openPage(site.browser, site.url, `?model=${CHECKERBOARD}`);
  assert.equal(await page.isDisabled('#distill-start'), false);
  await page.setInputFiles('#model-file', { name: 'unet.safetensors', mimeType: 'application/octet-stream', buffer: readFileSync(model) });
  await page.evaluate(() => window.bnsPage.settled());
  assert.equal(await page.evaluate(() => window.bnsPage.error), null);
  assert.equal(await page.isDisabled('#distill-start'), true);
  const said = await page.textContent('#distill-status');
  assert.match(said, /MLP models only \(the unet network has no vector–Jacobian product/);
  assert.match(said, /bns distill/);
  assert.equal((await state(page)).status, 'idle', 'nothing was started');
  await page.selectOption('#model', CHECKERBOARD);
  await page.evaluate(() => window.bnsPage.settled());
  assert.equal(await page.isDisabled('#distill-start'), false);
  assert.equal(await page.textContent('#distill-status'), '');
  assert.deepEqual(errors, []);
  await page.close();
});
