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

/** The workers by module URL (and lane, below): one per page, shared by the samplers opened on it. */
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

/**
 * The worker of module `url` in `lane` (0: the samplers' own; 1: the second half of CPU-path
 * batches, below), started once: directly on the document's origin, else from a blob.
 */
function channelFor(url, lane = 0) {
  const key = `${lane} ${url.href}`;
  let channel = workers.get(key);
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
  workers.set(key, channel);
  return channel;
}

/** The calls that set what a sampler runs: both halves of a paired sampler make them. */
const STATE_CALLS = new Set(['loadModel', 'loadSolver', 'useClassical']);

/**
 * A sampler in the first worker and a second one, in a worker of its own, that runs the second
 * half of each batch on the CPU path at the same time, so that the CPU fallback uses two cores.
 * The halves are rows `0 … h−1` and `h … B−1` of the same request (`firstRow`): a sample depends
 * only on the seed, its row and its class (FORMATS.md §6), so the values are those of one
 * sampler, bit for bit; the first worker draws the picture of the whole batch. Every other call
 * (and a batch on WebGPU, or of one sample, or with the 2-D paths) goes to the first sampler
 * alone. If the second fails, it is dropped and the first carries on alone.
 */
class PairedSampler {
  where = 'worker';
  why = '';
  #first;
  #second;
  #shape = null;

  constructor(first, second) {
    this.#first = first;
    this.#second = second;
  }

  /** How many workers share a CPU-path batch. */
  get lanes() {
    return this.#second ? 2 : 1;
  }

  async call(method, args = {}, onProgress = null) {
    if (method === 'free') {
      await this.#second?.call('free').catch(() => {});
      return this.#first.call('free');
    }
    if (STATE_CALLS.has(method)) {
      const [result] = await Promise.all([
        this.#first.call(method, args),
        this.#second?.call(method, args).catch(() => {}),
      ]);
      if (method === 'loadModel') this.#shape = result.spec.data_shape;
      return result;
    }
    if (method === 'generate' && this.#second && (await this.#splits(args))) {
      try {
        return await this.#generateInHalves(args, onProgress);
      } catch (e) {
        if (!(e instanceof SecondHalfError)) throw e;
        this.#drop();
      }
    }
    return this.#first.call(method, args, onProgress);
  }

  /** Whether `generate(args)` runs on the CPU path with rows to share. */
  async #splits({ request, paths = 0 }) {
    if (!this.#shape || paths > 0 || !(request.batch >= 2)) return false;
    if (request.backend === 'cpu') return true;
    if (request.backend === 'webgpu') return false;
    return (await this.#first.call('info')).backend === 'cpu';
  }

  async #generateInHalves({ request, picture = true }, onProgress) {
    const half = Math.ceil(request.batch / 2);
    const done = [0, 0];
    // Once one half has failed, the other's progress (it runs on) is not reported.
    let settled = false;
    const report = (lane) => ({ done: d, total }) => {
      done[lane] = d;
      if (!settled) onProgress?.({ done: Math.floor((done[0] + done[1]) / 2), total });
    };
    const started = performance.now();
    let first;
    let second;
    try {
      [first, second] = await Promise.all([
        this.#first.call('generate', { request: { ...request, batch: half, backend: 'cpu' }, picture: false }, report(0)),
        this.#second.call('generate', { request: { ...request, batch: request.batch - half, firstRow: half, backend: 'cpu' }, picture: false }, report(1))
          .catch((e) => { throw e instanceof WorkerStartError ? new SecondHalfError(e.message) : e; }),
      ]);
    } finally {
      settled = true;
    }
    const values = new Float32Array(first.values.length + second.values.length);
    values.set(first.values);
    values.set(second.values, first.values.length);
    let rgba = null;
    let width = 0;
    if (picture) {
      ({ rgba, width } = await this.#first.call('picture', { values, shape: [request.batch, ...this.#shape], columns: request.columns }));
    }
    const ms = performance.now() - started;
    return { values, ms, backend: 'cpu', rgba, width, paths: null, info: first.info, lanes: 2 };
  }

  #drop() {
    const second = this.#second;
    this.#second = null;
    second?.call('free').catch(() => {});
  }
}

/** The second worker failed (not the request): the first sampler carries on alone. */
class SecondHalfError extends Error {}

/**
 * The CPU path's second worker (lane 1), started with a session of its own (`create`, without a
 * GPU) at the same time as the first: its module compiles while the first worker looks for a
 * GPU. `{ channel, created }` (`created` resolves to whether the session exists), or null where
 * the machine has one core or the worker cannot be made.
 */
function startSecondWorker(workerUrl, session) {
  if (!(navigator.hardwareConcurrency >= 2)) return null;
  try {
    const channel = channelFor(workerUrl, 1);
    const created = channel.send({ session, method: 'create', args: { gpu: false } }).then(() => true, () => false);
    return { channel, created };
  } catch {
    return null;
  }
}

/**
 * `sampler` paired with the second worker's sampler (PairedSampler) when it runs on the CPU path
 * and that worker started; else `sampler` itself, the second worker's session let go (the worker
 * stays, idle, for the next sampler opened on the page).
 */
async function pairIfOnCpu(sampler, second, session) {
  if (!second) return sampler;
  if ((await sampler.call('info')).backend !== 'cpu') {
    second.created.then((made) => made && second.channel.send({ session, method: 'free' }).catch(() => {}));
    return sampler;
  }
  if (!(await second.created)) return sampler;
  return new PairedSampler(sampler, new WorkerSampler(second.channel, session));
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
    const created = channel.send({ session, method: 'create', args: { gpu } });
    const second = startSecondWorker(workerUrl, session);
    await created;
    const sampler = new WorkerSampler(channel, session);
    useClassicalMethods(await sampler.call('classicalMethods'));
    return await pairIfOnCpu(sampler, second, session);
  } catch (e) {
    // A failure of the sampler itself (not of the worker) would fail on the main thread too.
    if (!(e instanceof WorkerStartError) && !(e instanceof DOMException)) throw e;
    why = `no worker could start here (${e.message})`;
  }
  const { SamplerSession } = await import('./sampler-session.js');
  return new InThreadSampler(await SamplerSession.create({ gpu }), why);
}
