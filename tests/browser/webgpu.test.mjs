// The sampler page on WebGPU (Chromium's SwiftShader with --enable-unsafe-webgpu): the page uses
// the GPU path, its samples agree with the native CPU path (`bns sample`) to rounding, the picture
// is drawn; after the device is lost it says so and falls back to the CPU path.
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

const CASES = [
  { tag: BNS8.name, query: `?batch=4&seed=1`, file: () => join(MODEL_DIR, BNS8.file), guidance: BNS8.guidance },
  // Guidance runs the conditional and the null pass of the network on the GPU.
  { tag: 'dpmpp2m-edm-8-w1.5', query: '?batch=4&seed=1&solver=dpmpp2m:edm:8&guidance=1.5', file: () => classicalFile('dpmpp2m', 'edm', 8), guidance: 1.5 },
];

for (const c of CASES) {
  test(`on WebGPU, ${c.tag} at seed 1 agrees with bns sample within ${TOLERANCE} and the picture is drawn`, async (t) => {
    const { page, errors } = await openPage(site.browser, site.url, c.query);
    const result = await pageState(page);
    await page.screenshot({ path: join(ARTIFACTS, `page-webgpu-${c.tag}.png`), fullPage: true });
    assert.equal(result.backend, 'webgpu');
    assert.match(result.backendText, /^WebGPU/);
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

test('after the GPU device is lost the page falls back to the CPU path and says so', async () => {
  const { page, errors } = await openPage(site.browser, site.url, '?batch=4&seed=1');
  assert.equal((await pageState(page)).backend, 'webgpu');
  await page.evaluate(() => window.bnsPage.loseDevice());
  const result = await clickGenerate(page);
  assert.equal(result.error, null);
  assert.equal(result.backend, 'cpu');
  assert.match(result.backendText, /WebGPU unavailable — running on the CPU/);
  assert.match(result.backendText, /WebGPU failed/);
  assert.match(result.timing, / · CPU$/);
  // Now on the CPU path: bit for bit what bns sample gives.
  const native = nativeSamples(BNS8.name, join(MODEL_DIR, BNS8.file), 1, 4, BNS8.guidance);
  assert.equal(difference(native.values, result.values).differing, 0);
  await page.screenshot({ path: join(ARTIFACTS, 'page-device-lost.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});
