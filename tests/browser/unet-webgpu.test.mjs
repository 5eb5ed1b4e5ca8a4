// A random small U-Net on WebGPU (Chromium's SwiftShader with --enable-unsafe-webgpu), forced
// with the wasm API's `backend: "webgpu"`: its samples agree with the native CPU path
// (`bns sample`) to rounding, unguided and with guidance (the conditional and the null pass).
//
// SwiftShader runs WebGPU on the CPU and is slow, so the model and the batch are tiny.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { classicalFile, difference, nativeUnetSamples, openPage, useSite } from './harness.mjs';

/** GPU and CPU sum in different orders: values in [−1, 1] agree to ~1e-5; this leaves room. */
const TOLERANCE = 1e-3;

const site = useSite({ webgpu: true });

const CASES = [
  {
    tag: 'unet-webgpu-1x8x8-classes', guidance: 1.5,
    flags: ['--shape', '1,8,8', '--classes', '3', '--base-channels', '4', '--channel-multipliers', '1,2',
      '--residual-blocks', '1', '--groups', '2', '--attention', 'true', '--embedding-width', '8',
      '--time-embedding', '8', '--seed', '3'],
  },
  {
    tag: 'unet-webgpu-3x8x8', guidance: 0,
    flags: ['--shape', '3,8,8', '--classes', '0', '--base-channels', '6', '--channel-multipliers', '1,2',
      '--residual-blocks', '1', '--groups', '3', '--attention', 'false', '--embedding-width', '8',
      '--prediction', 'velocity', '--seed', '4'],
  },
];

for (const c of CASES) {
  test(`a ${c.tag} U-Net on WebGPU agrees with bns sample within ${TOLERANCE}`, async (t) => {
    const solver = classicalFile('heun', 'uniform', 4);
    const { model, native } = nativeUnetSamples(c.tag, c.flags, solver, 1, 3, c.guidance);
    const { page, errors } = await openPage(site.browser, site.url);
    const result = await page.evaluate(async ({ modelBytes, solverJson, guidance }) => {
      const { default: init, Sampler } = await import('./pkg/web_sampler.js');
      await init();
      const sampler = await Sampler.create();
      const spec = JSON.parse(sampler.loadModel(new Uint8Array(modelBytes), 'unet.safetensors'));
      sampler.loadSolver(solverJson, 'heun-uniform-4.json');
      const { values } = await sampler.generate({ seed: 1, batch: 3, guidance, backend: 'webgpu' });
      return { architecture: spec.architecture, adapter: sampler.adapter(), software: sampler.softwareRenderer(), values: Array.from(values) };
    }, { modelBytes: Array.from(readFileSync(model)), solverJson: readFileSync(solver, 'utf8'), guidance: c.guidance });
    assert.equal(result.architecture, 'unet');
    // backend: "webgpu" runs on the GPU or fails; "auto" would skip SwiftShader (software).
    assert.ok(result.adapter, 'no WebGPU adapter');
    assert.equal(result.software, 'SwiftShader');
    const { worst, differing } = difference(native.values, result.values);
    t.diagnostic(`max |GPU − CPU| = ${worst.toExponential(2)} (${differing} of ${native.values.length} values differ)`);
    assert.ok(worst < TOLERANCE, `max |Δ| = ${worst}`);
    const spread = Math.max(...result.values) - Math.min(...result.values);
    assert.ok(spread > 0.1, `samples look blank (spread ${spread})`);
    assert.deepEqual(errors, []);
    await page.close();
  });
}
