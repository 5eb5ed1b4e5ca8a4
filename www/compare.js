// The compare view: one seed through the chosen solver, Euler and midpoint at the same NFE, and a
// reference (RK4 on the uniform grid, 200 NFE), each scored by its mean PSNR against the
// reference, with its error map (|x − x_ref|, on one scale for every solver) or, for 2-D models,
// its points over the reference's; and one sentence: the NFE at which RK4 gets as close.
//
// The numbers come from SamplerSession.compare, which runs in the sampler's worker on the CPU
// path: its batch is small, and its numbers are the ones `bns sample` gives.

import { drawErrorMap, drawRgba, drawScatter, scatterLimit } from './lib/draw.js';

export { REFERENCE } from './lib/sampler-session.js';

/**
 * Draws the result of SamplerSession.compare (`rows`, `rk4`) into `container`: for each row a
 * label, the PSNR and the samples, with the error map (images, `shape` [B, C, H, W]) or the
 * reference's points (2-D); a legend; and the conclusion, which it returns. `about` names the
 * settings the results are for (shown when they go stale).
 */
export function showComparison(container, { rows, rk4 }, { points, shape, about }) {
  const reference = rows[0];
  const limit = points ? scatterLimit(...rows.map((r) => r.values)) : undefined;
  const columns = Math.ceil(Math.sqrt(shape[0]));
  // One scale for every error map: the largest error any solver makes (at least 1/255).
  let scale = 1 / 255;
  for (const row of rows.slice(1)) {
    if (!row.values) continue;
    for (let i = 0; i < row.values.length; i++) scale = Math.max(scale, Math.abs(row.values[i] - reference.values[i]));
  }
  const figures = rows.map((row) => {
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
    if (!row.values) return figure;
    const canvas = document.createElement('canvas');
    canvas.className = 'samples';
    if (points) {
      const over = row === reference ? {} : { reference: reference.values };
      drawScatter(canvas, row.values, { size: 220, limit, ...over });
    } else {
      drawRgba(canvas, row.rgba, row.width);
    }
    canvas.classList.toggle('points', points);
    figure.append(canvas);
    if (!points && row !== reference) {
      const map = document.createElement('canvas');
      map.className = 'error-map';
      map.title = `|x − x_ref| per pixel; white = ${scale.toFixed(3)}`;
      drawErrorMap(map, row.values, reference.values, shape, columns, scale);
      figure.append(map);
    }
    return figure;
  });
  const legend = document.createElement('p');
  legend.className = 'compare-legend';
  legend.textContent = points
    ? 'Each solver’s points (orange) over the reference’s (blue), the same noise joined by a line: the line is the error.'
    : `Under each solver: its error map |x − x_ref| per pixel against the reference, black = 0, white = an error of ${scale.toFixed(3)} ` +
      `(${(50 * scale).toFixed(0)} % of the [−1, 1] range), the same scale for every solver.`;
  const conclusion = document.createElement('p');
  conclusion.className = 'compare-conclusion';
  conclusion.textContent = conclusionText(rows[1], rk4);
  const stale = document.createElement('p');
  stale.className = 'compare-stale';
  stale.textContent = `These results are for ${about} and an earlier choice of model or solver: press Compare again.`;
  const grid = document.createElement('div');
  grid.className = 'compare-grid';
  grid.append(...figures);
  container.replaceChildren(stale, conclusion, grid, legend);
  container.classList.remove('stale');
  return conclusion.textContent;
}

/** Marks the results in `container` stale; returns whether there were any. */
export function markStale(container) {
  if (!container.querySelector('.compare-grid')) return false;
  container.classList.add('stale');
  return true;
}

/** "bns-8-w0 (BNS) at 8 NFE (47.7 dB) is as close to the 200-NFE reference as RK4 with 24 to 32 NFE (…)." */
function conclusionText(chosen, rk4) {
  const who = `${chosen.label} (${chosen.detail}) at ${chosen.nfe} NFE (${chosen.psnr.toFixed(1)} dB)`;
  const db = (x) => `${x.psnr.toFixed(1)} dB at ${x.nfe}`;
  if (rk4.nfe === null) {
    const below = rk4.below ? `: RK4 reaches ${db(rk4.below)} NFE` : '';
    return `${who} is closer to the 200-NFE reference than RK4 at any NFE tried${below}.`;
  }
  if (!rk4.below) return `${who} is no closer to the 200-NFE reference than RK4 at ${rk4.nfe} NFE (${db(rk4)}).`;
  return `${who} is as close to the 200-NFE reference as RK4 with ${rk4.below.nfe} to ${rk4.nfe} NFE ` +
    `(RK4: ${db(rk4.below)}, ${db(rk4)} NFE).`;
}

function scoreText(row) {
  if (row.skipped) return row.skipped;
  const time = `${row.ms.toFixed(0)} ms`;
  if (row.psnr === null) return `the target · ${time}`;
  const db = Number.isFinite(row.psnr) ? `${row.psnr.toFixed(1)} dB` : 'identical';
  return `PSNR ${db} · ${time}`;
}
