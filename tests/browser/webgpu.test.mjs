// The sampler page with WebGPU (Chromium's SwiftShader with --enable-unsafe-webgpu): SwiftShader
// is a software renderer, slower than the CPU path, so "auto" takes the CPU path and says why,
// naming the adapter; WebGPU chosen under "Run on" still runs the GPU path, whose samples agree
// with the native CPU path (`bns sample`) to rounding and whose picture is drawn; when its device
// is lost the page says so under the picture it had, and the CPU path still works.
//
// SwiftShader runs WebGPU on the CPU and is slow (seconds per batch), so these use batch 4.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  ARTIFACTS, BNS8, MODEL_DIR, canvasColours, classicalFile, clickGenerate,
  difference, nativeSamples, openPage, pageState, useSite,
} from './harness.mjs';

/** GPU and CPU sum in different orders: values in [−1, 1] agree to ~1e-5; this leaves room. */
const TOLERANCE = 1e-3;

const site = useSite({ webgpu: true });

test('on SwiftShader "auto" takes the CPU path, names the adapter and says why; its samples equal bns sample', async () => {
  const { page, errors } = await openPage(site.browser, site.url, '?batch=4&seed=1');
  const result = await pageState(page);
  assert.equal(result.backend, 'cpu');
  assert.equal(result.where, 'worker');
  assert.match(result.backendText, /^CPU path/);
  assert.match(result.backendText, /the WebGPU adapter is SwiftShader, a software renderer, slower than the CPU path; choose WebGPU to use it anyway/);
  assert.match(result.timing, / · CPU(, 2 workers)?$/);
  const native = nativeSamples(BNS8.name, join(MODEL_DIR, BNS8.file), 1, 4, BNS8.guidance);
  assert.equal(difference(native.values, result.values).differing, 0);
  assert.deepEqual(errors, []);
  await page.close();
});

const CASES = [
  { tag: BNS8.name, query: `?batch=4&seed=1&backend=webgpu`, file: () => join(MODEL_DIR, BNS8.file), guidance: BNS8.guidance },
  // Without guidance one pass of the network; classical solver from the runtime.
  { tag: 'dpmpp2m-edm-8-w0', query: '?batch=4&seed=1&solver=dpmpp2m:edm:8&guidance=0&backend=webgpu', file: () => classicalFile('dpmpp2m', 'edm', 8), guidance: 0 },
];

for (const c of CASES) {
  test(`WebGPU chosen: ${c.tag} at seed 1 agrees with bns sample within ${TOLERANCE} and the picture is drawn`, async (t) => {
    const { page, errors } = await openPage(site.browser, site.url, c.query);
    const result = await pageState(page);
    await page.screenshot({ path: join(ARTIFACTS, `page-webgpu-${c.tag}.png`), fullPage: true });
    assert.equal(result.backend, 'webgpu');
    assert.match(result.backendText, /^WebGPU · swiftshader \(google\)/);
    assert.match(result.backendText, /SwiftShader is a software renderer/);
    assert.match(result.timing, /4 images in \d+ ms, [\d.]+ ms per image · WebGPU/);

    const native = nativeSamples(c.tag, c.file(), 1, 4, c.guidance);
    assert.deepEqual(result.shape, native.shape);
    const { worst, differing } = difference(native.values, result.values);
    t.diagnostic(`max |GPU − CPU| = ${worst.toExponential(2)} (${differing} of ${native.values.length} values differ)`);
    assert.ok(worst < TOLERANCE, `max |Δ| = ${worst}`);
    const spread = Math.max(...result.values) - Math.min(...result.values);
    assert.ok(spread > 0.1, `samples look blank (spread ${spread})`);

    // The GPU drew the picture: 2×2 tiles of 28×28 with 1-pixel gaps, in many grey levels.
    const canvas = await canvasColours(page, '#canvas');
    assert.ok(canvas.width >= 56 && canvas.height >= 56, `canvas ${canvas.width}×${canvas.height}`);
    assert.ok(canvas.colours > 32, `the picture looks blank (${canvas.colours} colours)`);
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test('after the GPU device is lost, WebGPU chosen is an error on the page, said under the picture it had, and the CPU path still works', async () => {
  const { page, errors } = await openPage(site.browser, site.url, '?batch=4&seed=1&backend=webgpu');
  const before = await pageState(page);
  assert.equal(before.backend, 'webgpu');
  const picture = await canvasColours(page, '#canvas');
  await page.evaluate(() => window.bnsPage.loseDevice());
  const failed = await clickGenerate(page);
  assert.match(failed.error, /lost/);
  assert.match(failed.timing, /^Generation failed: .*lost.* \(the picture is the previous one\)$/);
  assert.deepEqual(failed.values, before.values);
  assert.deepEqual(await canvasColours(page, '#canvas'), picture);
  assert.equal(await page.locator('#progress').isHidden(), true);
  assert.equal(await page.isDisabled('#generate'), false);
  await page.screenshot({ path: join(ARTIFACTS, 'page-webgpu-lost-failed.png'), fullPage: true });
  await page.selectOption('#run-on', 'auto');
  const result = await clickGenerate(page);
  assert.equal(result.error, null);
  assert.equal(result.backend, 'cpu');
  assert.match(result.timing, / · CPU(, 2 workers)?$/);
  // Now on the CPU path: bit for bit what bns sample gives.
  const native = nativeSamples(BNS8.name, join(MODEL_DIR, BNS8.file), 1, 4, BNS8.guidance);
  assert.equal(difference(native.values, result.values).differing, 0);
  await page.screenshot({ path: join(ARTIFACTS, 'page-device-lost.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});
