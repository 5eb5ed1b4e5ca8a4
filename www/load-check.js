// What the page says when its modules cannot run. A classic script, not a module: browsers load
// classic scripts from file:// but refuse modules and WebAssembly there (a CORS error in the
// console only), and a module that fails to load (e.g. www/pkg not built) says nothing on the
// page. Without this the page would wait at "Loading the runtime…" for ever.
(() => {
  const SERVE = 'Run `make serve` in the repository and open http://127.0.0.1:8080/.';

  function show(text) {
    const error = document.getElementById('error');
    error.textContent = text;
    error.hidden = false;
    document.getElementById('timing').textContent = 'The runtime did not load.';
    const backend = document.getElementById('backend');
    backend.dataset.kind = 'fallback';
    backend.textContent = 'Not started';
  }

  if (location.protocol === 'file:') {
    document.addEventListener('DOMContentLoaded', () => show(
      'This page was opened from a file. Browsers do not run its modules and its WebAssembly ' +
      `runtime from a file:// address: it needs a web server. ${SERVE}`,
    ));
    return;
  }
  // A module script that fails to load fires `error` on its element; it does not bubble, so it
  // is heard in the capture phase.
  window.addEventListener('error', (event) => {
    const script = event.target;
    if (script instanceof HTMLScriptElement && script.type === 'module') {
      show(`The page's scripts did not load (${script.src} or a module it imports: is www/pkg ` +
        `built?). ${SERVE}`);
    }
  }, true);
})();
