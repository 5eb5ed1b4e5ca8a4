// Drawing samples on a canvas: images as the runtime's grid picture, 2-D points as a scatter plot
// (with the paths some of them took from the noise).

/** Whether samples of a model with this spec are 2-D points rather than images. */
export function isPoints(spec) {
  const [c, h, w] = spec.data_shape;
  return c === 2 && h * w === 1;
}

/** Pixels between the tiles of a grid picture (the runtime's GRID_GAP). */
const GRID_GAP = 2;

/** Draws an RGBA8 picture `width` pixels wide (pixels 1:1). */
export function drawRgba(canvas, rgba, width) {
  const height = rgba.length / 4 / width;
  canvas.width = width;
  canvas.height = height;
  const image = new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.length), width, height);
  canvas.getContext('2d').putImageData(image, 0, 0);
}

/**
 * The error map of images `values` against `reference` (both [B, C, H, W] as `shape`): per pixel
 * the largest |x − x_ref| over the channels, black at 0 to white at `scale` ("hot" colours), laid
 * out like the runtime's grid picture with `columns` tiles per row.
 */
export function drawErrorMap(canvas, values, reference, shape, columns, scale) {
  const [b, c, h, w] = shape;
  columns = Math.min(Math.max(1, columns), b);
  const rows = Math.ceil(b / columns);
  const width = columns * w + (columns - 1) * GRID_GAP;
  const height = rows * h + (rows - 1) * GRID_GAP;
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < b; i++) {
    const [ty, tx] = [Math.floor(i / columns), i % columns];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let e = 0;
        for (let k = 0; k < c; k++) {
          const at = ((i * c + k) * h + y) * w + x;
          e = Math.max(e, Math.abs(values[at] - reference[at]));
        }
        const t = Math.min(1, e / scale);
        const o = (((ty * (h + GRID_GAP) + y) * width) + tx * (w + GRID_GAP) + x) * 4;
        rgba[o] = Math.round(255 * Math.min(1, 3 * t));
        rgba[o + 1] = Math.round(255 * Math.min(1, Math.max(0, 3 * t - 1)));
        rgba[o + 2] = Math.round(255 * Math.max(0, 3 * t - 2));
        rgba[o + 3] = 255;
      }
    }
  }
  drawRgba(canvas, rgba, width);
}

/** Half the side of a square view holding every coordinate in `arrays`, with a margin. */
export function scatterLimit(...arrays) {
  let limit = 1;
  for (const values of arrays) {
    for (const v of values ?? []) if (Number.isFinite(v)) limit = Math.max(limit, Math.abs(v));
  }
  return limit * 1.05;
}

/**
 * 2-D `points` ([B, 2] flattened) as a scatter plot on a square canvas of `size` pixels, over a
 * grid at integer coordinates. `paths` ([n+1, P, 2] flattened: the states of `pathCount` points
 * after each step) are drawn over the points, from the noise (hollow) to the sample. With
 * `reference` (points from the same noise), those are drawn in blue under `points` in orange,
 * each pair joined by a line: the error.
 */
export function drawScatter(canvas, points, { paths = null, pathCount = 0, size = 512, limit, reference = null } = {}) {
  limit ??= scatterLimit(points, paths);
  canvas.width = size;
  canvas.height = size;
  const g = canvas.getContext('2d');
  const px = (x) => ((x / limit + 1) / 2) * (size - 1);
  const py = (y) => (1 - (y / limit + 1) / 2) * (size - 1);
  g.fillStyle = '#fff';
  g.fillRect(0, 0, size, size);
  g.strokeStyle = '#e6e8eb';
  g.lineWidth = 1;
  for (let k = -Math.floor(limit); k <= limit; k++) {
    g.beginPath();
    g.moveTo(px(k), 0);
    g.lineTo(px(k), size);
    g.moveTo(0, py(k));
    g.lineTo(size, py(k));
    g.stroke();
  }
  const dot = Math.max(2, Math.round(size / 160));
  const dots = (values, colour) => {
    g.fillStyle = colour;
    for (let i = 0; i + 1 < values.length; i += 2) {
      g.fillRect(px(values[i]) - dot / 2, py(values[i + 1]) - dot / 2, dot, dot);
    }
  };
  if (reference) {
    dots(reference, 'rgba(31, 92, 160, 0.55)');
    g.strokeStyle = 'rgba(196, 86, 20, 0.7)';
    g.lineWidth = 1;
    g.beginPath();
    for (let i = 0; i + 1 < points.length; i += 2) {
      g.moveTo(px(reference[i]), py(reference[i + 1]));
      g.lineTo(px(points[i]), py(points[i + 1]));
    }
    g.stroke();
    dots(points, 'rgba(196, 86, 20, 0.85)');
  } else {
    dots(points, 'rgba(31, 92, 160, 0.55)');
  }
  if (paths && pathCount > 0) drawPaths(g, paths, pathCount, px, py);
}

/** `paths` ([n+1, count, 2]): a line per point, hollow at the noise, filled at the sample. */
function drawPaths(g, paths, count, px, py) {
  const steps = paths.length / 2 / count - 1;
  const at = (k, p) => [paths[(k * count + p) * 2], paths[(k * count + p) * 2 + 1]];
  g.lineWidth = 1.5;
  g.strokeStyle = 'rgba(196, 86, 20, 0.8)';
  for (let p = 0; p < count; p++) {
    g.beginPath();
    for (let k = 0; k <= steps; k++) {
      const [x, y] = at(k, p);
      if (k === 0) g.moveTo(px(x), py(y));
      else g.lineTo(px(x), py(y));
    }
    g.stroke();
    const [x0, y0] = at(0, p);
    const [x1, y1] = at(steps, p);
    g.fillStyle = '#fff';
    g.beginPath();
    g.arc(px(x0), py(y0), 3, 0, 2 * Math.PI);
    g.fill();
    g.stroke();
    g.fillStyle = 'rgb(196, 86, 20)';
    g.beginPath();
    g.arc(px(x1), py(y1), 3, 0, 2 * Math.PI);
    g.fill();
  }
}
