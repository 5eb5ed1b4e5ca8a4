// The distillation's worker (a module worker of its own, so that the sampler's worker keeps
// generating while a solver is learned): the wasm runtime's `Distiller` advanced one piece at a
// time — a batch of ground truth, the baselines, one Adam iteration — with a turn of the event
// loop between pieces, so that a Cancel is heard within one piece.
//
// Messages in: { type: "start", bytes, name, options } (Distiller's options) and
// { type: "cancel" }. Messages out: { type: "step", step, seconds } after each piece
// (`step`: Distiller.advance()'s report), then one of { type: "done", solver (the solver
// file's text), truthCommand, seconds }, { type: "cancelled" } or { type: "error", message }.

import init, { Distiller } from '../pkg/web_sampler.js';

let runtime = null;
let cancelled = false;
let running = false;

/** A turn of the event loop (a message task, which unlike a timer is not clamped to 4 ms). */
function nextTurn() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

async function run({ bytes, name, options }) {
  running = true;
  cancelled = false;
  let distiller = null;
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  try {
    await (runtime ??= init());
    distiller = new Distiller(bytes, name, options);
    while (!distiller.finished()) {
      await nextTurn();
      if (cancelled) {
        postMessage({ type: 'cancelled' });
        return;
      }
      const step = distiller.advance();
      postMessage({ type: 'step', step, seconds: seconds() });
    }
    const time = seconds();
    postMessage({ type: 'done', solver: distiller.solverJson(time), truthCommand: distiller.truthCommand(512), seconds: time });
  } catch (e) {
    postMessage({ type: 'error', message: e?.message ?? String(e) });
  } finally {
    distiller?.free();
    running = false;
  }
}

self.onmessage = ({ data }) => {
  if (data.type === 'cancel') cancelled = true;
  else if (data.type === 'start') {
    if (running) postMessage({ type: 'error', message: 'a distillation is already running' });
    else run(data);
  }
};
