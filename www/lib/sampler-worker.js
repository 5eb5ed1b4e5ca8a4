// The sampler's worker (a module worker): generation runs here, off the page's main thread, so
// the page stays responsive and shows progress. It holds one SamplerSession per sampler that
// the page (or each <bns-sampler>) opened, and compiles the wasm runtime once for all of them.
//
// Messages in: { id, session, method, args } (method "create" opens `session`, "free" closes
// it, the others are SamplerSession's). Messages out: { id, progress } while a call runs, then
// { id, result } or { id, error }; typed arrays in a result are transferred, not copied.

import { SamplerSession } from './sampler-session.js';

const sessions = new Map();

/** The buffers of the typed arrays in `value` (a result: an object, or rows of objects). */
function buffers(value, found = new Set()) {
  if (ArrayBuffer.isView(value)) found.add(value.buffer);
  else if (Array.isArray(value)) for (const v of value) buffers(v, found);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) buffers(v, found);
  return [...found];
}

async function answer({ id, session, method, args }) {
  if (method === 'create') {
    sessions.set(session, await SamplerSession.create(args));
    return null;
  }
  const target = sessions.get(session);
  if (!target) throw new Error(`no sampler ${session} in the worker`);
  if (method === 'free') {
    sessions.delete(session);
    target.free();
    return null;
  }
  if (typeof SamplerSession.prototype[method] !== 'function') throw new Error(`the sampler has no call ${method}`);
  return target[method](args ?? {}, (progress) => postMessage({ id, progress }));
}

// One call at a time, in order: a sampler is single-threaded, and the callers wait anyway.
let queue = Promise.resolve();
self.onmessage = ({ data }) => {
  queue = queue.then(async () => {
    try {
      const result = await answer(data);
      postMessage({ id: data.id, result }, buffers(result));
    } catch (e) {
      postMessage({ id: data.id, error: e?.message ?? String(e) });
    }
  });
};
