// The sampler page opened from a file (file://), where browsers run no modules: it says on the
// page to serve it with `make serve` instead of waiting at "Loading the runtime…".

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ARTIFACTS, SITE, checkPrerequisites } from './harness.mjs';
import { launch } from './chromium.mjs';

test('opened from file://, the page says to run make serve', async () => {
  checkPrerequisites();
  const browser = await launch({ webgpu: false });
  try {
    const page = await browser.newPage();
    await page.goto(pathToFileURL(join(SITE, 'index.html')).href);
    await page.waitForSelector('#error:not([hidden])', { timeout: 30_000 });
    const error = await page.textContent('#error');
    assert.match(error, /opened from a file/);
    assert.match(error, /make serve/);
    assert.match(error, /http:\/\/127\.0\.0\.1:8080\//);
    assert.equal(await page.textContent('#timing'), 'The runtime did not load.');
    await page.screenshot({ path: join(ARTIFACTS, 'page-file-url.png'), fullPage: true });
  } finally {
    await browser.close();
  }
});
