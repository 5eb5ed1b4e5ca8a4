// Static file server for the site, bound to 127.0.0.1 (used by `make serve` and the browser tests).
//
//   node www/serve.mjs [--port 8080] [--root www] [--csp "<policy>"] [--cors]
//
// `.wasm` is served as application/wasm (needed for streaming compilation); every response
// carries `Cache-Control: no-cache` so a rebuilt module is picked up on reload. `--cors` lets
// pages of other origins use the files (the <bns-sampler> widget embedded elsewhere).

import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.safetensors': 'application/octet-stream',
  '.ts': 'text/plain; charset=utf-8',
};

/** Starts a server for `root` on 127.0.0.1:`port` (0 picks a free port); resolves to the server. */
export function startServer({ root, port = 0, csp = null, cors = false }) {
  const base = resolve(root);
  // Errors carry the CORS header too, so a page of another origin sees "404" rather than a
  // network failure.
  const cross = cors ? { 'Access-Control-Allow-Origin': '*' } : {};
  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      let file = normalize(join(base, path));
      if (file !== base && !file.startsWith(base + sep)) {
        res.writeHead(403, { 'Content-Type': 'text/plain', ...cross }).end('forbidden');
        return;
      }
      if ((await stat(file).catch(() => null))?.isDirectory()) file = join(file, 'index.html');
      const body = await readFile(file);
      const headers = {
        'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
        'Cache-Control': 'no-cache',
      };
      if (csp) headers['Content-Security-Policy'] = csp;
      res.writeHead(200, { ...headers, ...cross }).end(body);
    } catch {
      res.writeHead(404, { 'Content-Type': 'text/plain', ...cross }).end('not found');
    }
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok(server));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const option = (name, fallback) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
  };
  const root = option('root', fileURLToPath(new URL('.', import.meta.url)));
  const port = Number(option('port', process.env.PORT ?? 8080));
  startServer({ root, port, csp: option('csp', null), cors: args.includes('--cors') })
    .then((server) => {
      const { port } = server.address();
      console.log(`Serving ${root} at http://127.0.0.1:${port}/  (Ctrl-C to stop)`);
    })
    .catch((e) => {
      console.error(`error: cannot serve on 127.0.0.1:${port}: ${e.message}`);
      process.exit(1);
    });
}
