// The static server on its own (no browser): what it sends and what it refuses.
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startServer } from '../../www/serve.mjs';

let dir, server, url;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bns-serve-'));
  const root = join(dir, 'site');
  mkdirSync(root);
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>x</title>');
  writeFileSync(join(root, 'runtime.wasm'), Buffer.from([0, 97, 115, 109]));
  writeFileSync(join(dir, 'secret.txt'), 'outside the root');
  symlinkSync(join(dir, 'secret.txt'), join(root, 'leak.txt'));
  symlinkSync(dir, join(root, 'up'));
  writeFileSync(join(root, 'inside.txt'), 'inside');
  symlinkSync(join(root, 'inside.txt'), join(root, 'alias.txt'));
  server = await startServer({ root });
  url = `http://127.0.0.1:${server.address().port}`;
});
after(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('GET and HEAD serve files with their type and nosniff', async () => {
  const page = await fetch(`${url}/`);
  assert.equal(page.status, 200);
  assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
  const wasm = await fetch(`${url}/runtime.wasm`, { method: 'HEAD' });
  assert.equal(wasm.status, 200);
  assert.equal(wasm.headers.get('content-type'), 'application/wasm');
  assert.equal(wasm.headers.get('content-length'), '4');
  assert.equal((await wasm.arrayBuffer()).byteLength, 0, 'HEAD has no body');
  const missing = await fetch(`${url}/nothing-here.js`);
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get('x-content-type-options'), 'nosniff');
});

test('methods other than GET and HEAD are refused with 405', async () => {
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
    const response = await fetch(`${url}/index.html`, { method, body: method === 'DELETE' ? undefined : 'x' });
    assert.equal(response.status, 405, method);
    assert.equal(response.headers.get('allow'), 'GET, HEAD', method);
  }
});

test('symbolic links are followed only inside the root', async () => {
  assert.equal((await fetch(`${url}/leak.txt`)).status, 403);
  assert.equal((await fetch(`${url}/up/secret.txt`)).status, 403);
  const alias = await fetch(`${url}/alias.txt`);
  assert.equal(alias.status, 200);
  assert.equal(await alias.text(), 'inside');
  assert.equal((await fetch(`${url}/..%2fsecret.txt`)).status, 403);
});
