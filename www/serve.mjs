// Static file server for the site, bound to 127.0.0.1 (used by `make serve` and the browser tests).
//
//   node www/serve.mjs [--port 8080] [--root www] [--csp "<policy>"] [--cors]
//
// `.wasm` is served as application/wasm (needed for streaming compilation); every response
// carries `Cache-Control: no-cache` so a rebuilt module is picked up on reload, and
// `X-Content-Type-Options: nosniff`. Only GET and HEAD are answered (405 otherwise), and a
// symbolic link is followed only if it leads to a file inside the root. `--cors` lets pages of
// other origins use the files (the <bns-sampler> widget embedded elsewhere).

import { createServer } from 'node:http';
import { readFile, realpath, stat } from 'node:fs/promises';
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
  // Every response, errors included, carries these; errors carry the CORS header too, so a page
  // of another origin sees "404" rather than a network failure.
  const common = {
    'X-Content-Type-Options': 'nosniff',
    ...(cors ? { 'Access-Control-Allow-Origin': '*' } : {}),
  };
  const refuse = (res, status, text, extra = {}) =>
    res.writeHead(status, { 'Content-Type': 'text/plain', ...common, ...extra }).end(text);
  const server = createServer(async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      refuse(res, 405, 'method not allowed', { Allow: 'GET, HEAD' });
      return;
    }
    try {
      // The real root, and the real path of the file: a symbolic link may point anywhere.
      const realBase = await realpath(base);
      const inside = (p) => p === realBase || p.startsWith(realBase + sep);
      const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      let file = normalize(join(base, path));
      if (file !== base && !file.startsWith(base + sep)) {
        refuse(res, 403, 'forbidden');
        return;
      }
      let real = await realpath(file);
      if (!inside(real)) {
        refuse(res, 403, 'forbidden');
        return;
      }
      if ((await stat(real)).isDirectory()) {
        real = await realpath(join(real, 'index.html'));
        if (!inside(real)) {
          refuse(res, 403, 'forbidden');
          return;
        }
        file = real;
      }
      const body = await readFile(real);
      const headers = {
        'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
        'Content-Length': body.length,
        'Cache-Control': 'no-cache',
      };
      if (csp) headers['Content-Security-Policy'] = csp;
      res.writeHead(200, { ...headers, ...common });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      refuse(res, 404, 'not found');
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
