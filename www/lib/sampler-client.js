// Opening a sampler for the page or a widget: in the sampler's worker (sampler-worker.js) when
// one can start, else on the main thread, saying why. Either way it answers the same calls
// (SamplerSession's methods) as promises: `sampler.call(method, args, onProgress)`.
//
// Browsers start a worker only from a script of the document's own origin. The page is on the
// worker's origin; a widget embedded in another site is not, so there the worker starts from a
// blob: URL holding one line (`import "<the worker's URL>"`), which the host's
// Content-Security-Policy must allow: `worker-src blob: <the worker's origin>` (Chromium checks
// the modules a worker imports against worker-src too; README "Embed the sampler"). Where it does
// not, the browser refuses the worker and the sampler runs on the main thread.

import { useClassicalMethods } from './solvers.js';

/** The workers by module URL: one per page, shared by the samplers opened on it. */
const workers = new Map();
let sessions = 0;

/** A sampler whose calls run in a worker. */
class WorkerSampler {
  where = 'worker';
  why = '';
  #channel;
  #session;

  constructor(channel, session) {
    this.#channel = channel;
    this.#session = session;
  }

  call(method, args = {}, onProgress = null) {
    return this.#channel.send({ session: this.#session, method, args }, onProgress);
  }
}

/** A sampler whose calls run on the main thread (no worker could start). */
class InThreadSampler {
  where = 'main thread';
  #session;

  constructor(session, why) {
    this.#session = session;
    this.why = why;
  }

  async call(method, args = {}, onProgress = null) {
    if (method === 'free') return this.#session.free();
    return this.#session[method](args, onProgress ?? (() => {}));
  }
}

/** A worker and its pending calls; `failed` holds why it could not start, once it is known. */
class WorkerChannel {
  #worker;
  #pending = new Map();
  #next = 0;
  #blobUrl;
  failed = null;

  constructor(worker, blobUrl) {
    this.#worker = worker;
    this.#blobUrl = blobUrl;
    worker.onmessage = ({ data }) => {
      this.#started();
      const call = this.#pending.get(data.id);
      if (!call) return;
      if ('progress' in data) {
        call.onProgress?.(data.progress);
        return;
      }
      this.#pending.delete(data.id);
      if ('error' in data) call.reject(new Error(data.error));
      else call.resolve(data.result);
    };
    // An error event (not a message) is the worker failing to start or load its modules.
    worker.onerror = (event) => {
      event.preventDefault?.();
      this.failed = event.message || 'the worker did not start';
      for (const call of this.#pending.values()) call.reject(new WorkerStartError(this.failed));
      this.#pending.clear();
    };
  }

  #started() {
    if (this.#blobUrl) URL.revokeObjectURL(this.#blobUrl);
    this.#blobUrl = null;
  }

  send(message, onProgress) {
    if (this.failed) return Promise.reject(new WorkerStartError(this.failed));
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#worker.postMessage({ id, ...message });
    });
  }
}

class WorkerStartError extends Error {}

/** The worker of module `url`, started once: directly on the document's origin, else from a blob. */
function channelFor(url) {
  let channel = workers.get(url.href);
  if (channel && !channel.failed) return channel;
  if (url.origin === location.origin) {
    channel = new WorkerChannel(new Worker(url, { type: 'module' }));
  } else {
    const blobUrl = URL.createObjectURL(new Blob([`import ${JSON.stringify(url.href)};\n`], { type: 'text/javascript' }));
    try {
      channel = new WorkerChannel(new Worker(blobUrl, { type: 'module' }), blobUrl);
    } catch (e) {
      URL.revokeObjectURL(blobUrl);
      throw e;
    }
  }
  workers.set(url.href, channel);
  return channel;
}

/**
 * Opens a sampler (`gpu`: try WebGPU) in the worker of module `workerUrl` (a URL), or on the
 * main thread when that worker cannot start; `where` and `why` say which and why. The runtime's
 * classical methods are then known to solvers.js on this thread too.
 */
export async function openSampler({ gpu = true, workerUrl }) {
  let why;
  try {
    const channel = channelFor(workerUrl);
    const session = ++sessions;
    await channel.send({ session, method: 'create', args: { gpu } });
    const sampler = new WorkerSampler(channel, session);
    useClassicalMethods(await sampler.call('classicalMethods'));
    return sampler;
  } catch (e) {
    // A failure of the sampler itself (not of the worker) would fail on the main thread too.
    if (!(e instanceof WorkerStartError) && !(e instanceof DOMException)) throw e;
    why = `no worker could start here (${e.message})`;
  }
  const { SamplerSession } = await import('./sampler-session.js');
  return new InThreadSampler(await SamplerSession.create({ gpu }), why);
}
