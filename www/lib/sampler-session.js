// One sampler (the wasm runtime's `Sampler`) and the operations the page and the widget ask of
// it, with plain data in and out, so that the same code runs in the sampler's worker
// (sampler-worker.js, the usual place) or, where no worker can start, on the page's main thread
// (sampler-client.js chooses). Long operations take `progress({ done, total, stage })`.

import init, { Sampler, classicalMethods, gridPicture, psnr, version } from '../pkg/web_sampler.js';
import { fitsNfe, useClassicalMethods } from './solvers.js';

/**
 * A model's spec as `loadModel` gives it to the page: the model file's `bns.model` object as the
 * runtime writes it (FORMATS.md §1.1; tests/browser/model-spec.test.mjs holds this list to that
 * table and to a published model). The page reads `data_shape`, `num_classes` and `class_names`.
 * @typedef {object} ModelSpec
 * @property {number} format_version `1`
 * @property {'mlp' | 'unet'} architecture the network
 * @property {number[]} data_shape `[C, H, W]`; 2-D points are `[2, 1, 1]`
 * @property {number} [hidden_width] the MLP's hidden width
 * @property {number} [depth] the MLP's number of hidden layers
 * @property {UnetSizes} [unet] the U-Net's sizes
 * @property {number} time_embedding width of the sinusoidal time embedding
 * @property {number} time_scale the time's scale inside the embedding
 * @property {'velocity' | 'data'} [prediction] what the network outputs; absent: "velocity"
 * @property {number} class_embedding width of the class embedding, 0 when unconditional
 * @property {number} num_classes real classes (the null class not counted), 0 = unconditional
 * @property {'silu'} [activation] the MLP's activation
 * @property {'cond-ot'} path the probability path
 * @property {string} dataset the training data's name
 * @property {number} training_steps optimiser steps trained
 * @property {string[]} [class_names] the classes' names in label order; absent when unnamed
 * @property {string} [rounded_from] the id of the model whose weights these are, rounded to f16
 */

/**
 * The U-Net's sizes (FORMATS.md §1.2).
 * @typedef {object} UnetSizes
 * @property {number} base_channels channels of the first level
 * @property {number[]} channel_multipliers each level's channels as multiples of base_channels
 * @property {number} residual_blocks residual blocks per level
 * @property {number} groups GroupNorm groups
 * @property {boolean} attention self-attention at the lowest resolution
 * @property {number} embedding_width width of the time-embedding MLP
 */

/** The runtime, compiled and initialised once per thread. */
let runtime = null;

/** The reference of the compare view: RK4 on the uniform grid with 200 evaluations. */
export const REFERENCE = { method: 'rk4', grid: 'uniform', nfe: 200 };

/** The NFEs at which the compare view looks for the RK4 that is as close as the chosen solver. */
const RK4_LADDER = [8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160];

export class SamplerSession {
  #sampler;
  /** The name the solver in use was loaded under (what the runtime's errors call it). */
  #solverName = null;

  constructor(sampler) {
    this.#sampler = sampler;
  }

  /** A session on WebGPU when the browser offers an adapter and `gpu` is not false. */
  static async create({ gpu = true } = {}) {
    await (runtime ??= init());
    useClassicalMethods(classicalMethods());
    return new SamplerSession(await Sampler.create({ gpu }));
  }

  /** The classical methods the runtime builds: [{ name, stages, grids }]. */
  classicalMethods() {
    return classicalMethods();
  }

  /** Which path runs "auto" and why: { version, backend, note, adapter, software }. */
  info() {
    const s = this.#sampler;
    return {
      version: version(),
      backend: s.backend(),
      note: s.backendNote(),
      adapter: s.adapter() ?? null,
      software: s.softwareRenderer() ?? null,
    };
  }

  /**
   * Loads a model file: { spec, summary, modelId, info }.
   * @returns {{ spec: ModelSpec, summary: string, modelId: string, info: object }}
   */
  loadModel({ bytes, name }) {
    const spec = JSON.parse(this.#sampler.loadModel(bytes, name));
    return { spec, summary: this.#sampler.modelSummary(), modelId: this.#sampler.modelId(), info: this.info() };
  }

  /** Loads a solver file's text; resolves to the solver file (JSON). */
  loadSolver({ text, name }) {
    this.#sampler.loadSolver(text, name);
    this.#solverName = name;
    return this.solver();
  }

  /** Uses a classical solver built by the runtime; resolves to its solver file (JSON). */
  useClassical({ method, grid, nfe }) {
    this.#sampler.useClassical(method, grid, nfe);
    this.#solverName = null;
    return this.solver();
  }

  /** The solver in use, as its file's JSON. */
  solver() {
    return JSON.parse(this.#sampler.solverJson());
  }

  /**
   * Generates `request` (Sampler.generate's options). Resolves to { values, rgba, width (the
   * picture, for images, unless `picture` is false), paths (the states of the first `paths`
   * samples after each step, for 2-D points), ms, backend (the path that ran), info }.
   */
  async generate({ request, paths = 0, picture = true }, progress = () => {}) {
    const started = performance.now();
    const generated = await this.#sampler.generate(request, (done, total) => progress({ done, total }));
    const ms = performance.now() - started;
    const { values, backend } = generated;
    const out = { values, ms, backend, rgba: null, width: 0, paths: null, info: this.info() };
    if (picture && generated.picture) {
      out.rgba = generated.picture.rgba;
      out.width = generated.picture.width;
    }
    if (paths > 0) {
      out.paths = new Float32Array(this.#sampler.trajectories({ ...request, batch: Math.min(paths, request.batch), backend: 'cpu' }));
    }
    return out;
  }

  /**
   * The compare view's numbers, on the CPU path: the chosen solver (the one in use), Euler and
   * midpoint at its NFE and the reference, each scored by its mean PSNR against the reference;
   * then the smallest NFE on `RK4_LADDER` at which RK4 is as close as the chosen solver. The
   * chosen solver is in use again afterwards. Resolves to
   * { rows: [{ label, detail, nfe, values, rgba, width, ms, psnr, skipped }] (the reference
   *   first, its psnr null), rk4: { nfe, psnr, below } | null (below: the PSNR one rung lower) }.
   */
  async compare({ request, dim, points }, progress = () => {}) {
    const chosen = this.solver();
    const chosenText = this.#sampler.solverJson();
    const chosenName = this.#solverName ?? chosen.name;
    const nfe = chosen.nfe;
    const options = { ...request, columns: Math.ceil(Math.sqrt(request.batch)), backend: 'cpu' };
    const run = async (label) => {
      const started = performance.now();
      const generated = await this.#sampler.generate(options, (done, total) => progress({ stage: label, done, total }));
      const ms = performance.now() - started;
      const picture = points ? {} : { rgba: generated.picture.rgba, width: generated.picture.width };
      return { values: generated.values, ms, ...picture };
    };
    const score = (values, reference) => {
      const db = psnr(values, reference, dim);
      return db.reduce((sum, x) => sum + x, 0) / db.length;
    };
    try {
      const mine = { label: chosen.name, detail: chosen.kind === 'bns' ? 'BNS' : chosen.kind, nfe, ...(await run(chosen.name)) };
      this.useClassical({ method: 'euler', grid: 'uniform', nfe });
      const euler = { label: 'Euler', detail: 'uniform grid', nfe, ...(await run('Euler')) };
      const midpoint = { label: 'Midpoint', detail: 'uniform grid', nfe };
      if (fitsNfe('midpoint', nfe)) {
        this.useClassical({ method: 'midpoint', grid: 'uniform', nfe });
        Object.assign(midpoint, await run('Midpoint'));
      } else {
        midpoint.skipped = `midpoint takes 2 evaluations per step; NFE ${nfe} is odd`;
      }
      this.useClassical(REFERENCE);
      const reference = { label: 'Reference', detail: 'RK4, uniform grid', nfe: REFERENCE.nfe, psnr: null, ...(await run('Reference')) };
      const rows = [reference, mine, euler, midpoint];
      for (const row of rows.slice(1)) row.psnr = row.values ? score(row.values, reference.values) : null;
      // The RK4 as close as the chosen solver: up the ladder until it is.
      let rk4 = null;
      let below = null;
      for (const n of RK4_LADDER.filter((n) => n < REFERENCE.nfe)) {
        this.useClassical({ method: 'rk4', grid: 'uniform', nfe: n });
        const db = score((await run(`RK4 at NFE ${n}`)).values, reference.values);
        if (db >= mine.psnr) {
          rk4 = { nfe: n, psnr: db, below };
          break;
        }
        below = { nfe: n, psnr: db };
      }
      return { rows, rk4: rk4 ?? { nfe: null, psnr: null, below } };
    } finally {
      this.loadSolver({ text: chosenText, name: chosenName });
    }
  }

  /**
   * The picture of image samples `values` `[B, C, H, W]` (`shape`) in `columns` tiles per row,
   * as `generate` draws it on the CPU path: { rgba, width }.
   */
  picture({ values, shape, columns }) {
    const picture = gridPicture(values, shape, columns);
    return { rgba: picture.rgba, width: picture.width };
  }

  /** Destroys the GPU device (tests of the fallback). */
  loseDevice() {
    this.#sampler.loseDevice();
  }

  free() {
    this.#sampler.free();
  }
}
