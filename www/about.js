// The "what is this" panel: BNS in three sentences, with the headline figure of the model in
// view (its published BNS solver's test PSNR against the adaptive solver, and the best classical
// solver's at the same NFE, from the solver file's metrics and provenance, FORMATS.md §2), and
// what a dB means here.

import { fetchOk } from './lib/weights.js';

/** The solver the headline is about: unguided BNS at NFE 8 when published, else the lowest NFE. */
function headlineSolver(manifest) {
  const bns = manifest.solvers.filter((s) => s.kind === 'bns');
  const unguided = bns.filter((s) => s.guidance === 0);
  const pool = unguided.length ? unguided : bns;
  return pool.find((s) => s.nfe === 8) ?? [...pool].sort((a, b) => a.nfe - b.nfe)[0] ?? null;
}

/** Fills `#about-figure` in `panel` for the model (`manifest` at `base`). */
export async function showAbout(panel, { manifest, base }) {
  const figure = panel.querySelector('#about-figure');
  const entry = headlineSolver(manifest);
  const title = manifest.title ?? manifest.name;
  if (!entry) {
    figure.textContent = `${title} has no BNS solver published with it.`;
    return;
  }
  figure.textContent =
    `On ${title}: ${entry.nfe} network evaluations of its BNS solver reproduce the adaptive ` +
    `solver's samples to ${entry.test_psnr.toFixed(1)} dB on held-out test noise` +
    (entry.guidance > 0 ? ` (guidance w = ${entry.guidance})` : '') + '.';
  // The solver file has the baseline and how the truth was computed.
  const file = await (await fetchOk(new URL(entry.file, base).href, 'the solver')).json();
  const best = file.metrics?.best_classical_test_psnr;
  const bestName = file.provenance?.best_classical;
  const rtol = file.provenance?.pairs_rtol;
  const pairs = file.provenance?.test_pairs;
  if (!Number.isFinite(best)) return;
  figure.textContent =
    `On ${title}: ${entry.nfe} network evaluations of its BNS solver reproduce the adaptive ` +
    `solver's samples (Dormand–Prince${rtol ? `, tolerance ${rtol.toExponential()}` : ''}, which takes many more) to ` +
    `${entry.test_psnr.toFixed(1)} dB on ${pairs ?? 'the'} held-out test noises; the best classical ` +
    `solver with ${entry.nfe} evaluations${bestName ? ` (${bestName.replace('-', ', ')} grid)` : ''} ` +
    `reaches ${best.toFixed(1)} dB.`;
}
