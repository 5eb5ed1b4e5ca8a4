// The compare view: one seed through the chosen solver, Euler and midpoint at the same NFE, and a
// reference (RK4 on the uniform grid, 200 NFE), each scored by its mean PSNR against the reference.
//
// It always runs on the CPU path: its batch is small, for which the CPU path is quick on any
// machine (the reference's 200 evaluations of 4 images take about a second), and its numbers are
// the ones `bns sample` gives.

import { psnr } from './pkg/web_sampler.js';
import { fitsNfe } from './lib/solvers.js';
import { drawRgba, drawScatter, scatterLimit } from './lib/draw.js';

export const REFERENCE = { method: 'rk4', grid: 'uniform', nfe: 200 };

/**
 * Runs the comparison on `sampler`, whose current solver is the chosen one (the caller restores
 * it afterwards), for `request` ({ seed, batch, class, guidance }); samples have `dim` values and
 * are 2-D `points` or images.
 * Resolves to rows in display order, the reference first:
 * { label, detail, nfe, values, rgba, width, ms, psnr (mean dB; null for the reference), skipped }.
 */
export async function compareSolvers(sampler, request, { dim, points }) {
  const chosen = JSON.parse(sampler.solverJson());
  const nfe = chosen.nfe;
  const classical = (method, grid, n) => () => sampler.useClassical(method, grid, n);
  // Run order: the chosen solver first, while it is still loaded.
  const runs = [
    { label: chosen.name, detail: chosen.kind === 'bns' ? 'BNS' : chosen.kind, nfe, use: () => {} },
    { label: 'Euler', detail: 'uniform grid', nfe, use: classical('euler', 'uniform', nfe) },
    {
      label: 'Midpoint', detail: 'uniform grid', nfe,
      use: fitsNfe('midpoint', nfe) ? classical('midpoint', 'uniform', nfe) : null,
      skipped: `midpoint takes 2 evaluations per step; NFE ${nfe} is odd`,
    },
    {
      label: 'Reference', detail: 'RK4, uniform grid', nfe: REFERENCE.nfe,
      use: classical(REFERENCE.method, REFERENCE.grid, REFERENCE.nfe),
    },
  ];
  const options = { ...request, columns: Math.ceil(Math.sqrt(request.batch)), backend: 'cpu' };
  const rows = [];
  for (const run of runs) {
    const row = { label: run.label, detail: run.detail, nfe: run.nfe, psnr: null };
    rows.push(row);
    if (!run.use) {
      row.skipped = run.skipped;
      continue;
    }
    run.use();
    const started = performance.now();
    row.values = await sampler.generate(options);
    row.ms = performance.now() - started;
    if (!points) {
      row.rgba = sampler.pictureRgba(options.columns);
      row.width = sampler.pictureWidth(options.columns);
    }
  }
  const reference = rows.pop();
  for (const row of rows) {
    if (!row.values) continue;
    const db = psnr(row.values, reference.values, dim);
    row.psnr = db.reduce((sum, x) => sum + x, 0) / db.length;
  }
  return [reference, ...rows];
}

/** Draws the rows of `compareSolvers` into `container`: a label, the PSNR and the samples. */
export function showComparison(container, rows, { points }) {
  const limit = points ? scatterLimit(...rows.map((r) => r.values)) : undefined;
  container.replaceChildren(
    ...rows.map((row) => {
      const figure = document.createElement('figure');
      figure.className = 'compare-row';
      figure.dataset.label = row.label;
      const caption = document.createElement('figcaption');
      const name = document.createElement('strong');
      name.textContent = row.label;
      const detail = document.createElement('span');
      detail.textContent = `${row.detail} · NFE ${row.nfe}`;
      const score = document.createElement('span');
      score.className = 'psnr';
      score.textContent = scoreText(row);
      caption.append(name, detail, score);
      figure.append(caption);
      if (row.values) {
        const canvas = document.createElement('canvas');
        if (points) drawScatter(canvas, row.values, { size: 220, limit });
        else drawRgba(canvas, row.rgba, row.width);
        canvas.classList.toggle('points', points);
        figure.append(canvas);
      }
      return figure;
    }),
  );
}

function scoreText(row) {
  if (row.skipped) return row.skipped;
  const time = `${row.ms.toFixed(0)} ms`;
  if (row.psnr === null) return `the target · ${time}`;
  const db = Number.isFinite(row.psnr) ? `${row.psnr.toFixed(1)} dB` : 'identical';
  return `PSNR ${db} · ${time}`;
}
