//! The dense layer `y = x·Wᵀ + b` of the CPU forward, with a fixed summation order so that it
//! gives bit-identical results natively and in wasm.
//!
//! Every output is one dot product over the inner dimension `n`, always summed the same way,
//! whatever the tiling, the batch size or the row's position in the batch:
//!
//! 1. eight lane accumulators, lane `l` summing `x[i]·w[i]` for `i ≡ l (mod 8)`, `i < 8⌊n/8⌋`,
//!    in increasing `i` (each product rounded to `f32`, then added: Rust never fuses them);
//! 2. the lanes combined as `((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7))`;
//! 3. the remaining `n mod 8` products added in increasing `i`;
//! 4. the bias added last.
//!
//! IEEE `f32` addition and multiplication are exactly specified and LLVM does not reorder them,
//! so this order is the result on every platform; it also auto-vectorizes (the eight lanes are
//! one or two SIMD registers). No BLAS: its order depends on the machine.
//!
//! For speed, tiles of [`TILE_ROWS`] input rows × [`TILE_OUTPUTS`] weight rows are computed
//! together (each loaded chunk is used several times), and the weight rows are the outer loop so
//! that a tile's weights stay in L1 while the whole batch passes over them.

/// Lane accumulators per dot product.
const LANES: usize = 8;
/// Input rows per tile.
const TILE_ROWS: usize = 4;
/// Weight rows (outputs) per tile.
const TILE_OUTPUTS: usize = 4;

/// `y[r, o] = bias[o] + Σ_i x[r, i]·weight[o, i]` for `rows` rows: `x` `[rows, n]`,
/// `weight` `[out, n]` (PyTorch layout), `bias` `[out]`, `y` `[rows, out]`, all row-major.
///
/// # Panics
/// If a slice length disagrees with `rows`, `n` and `bias.len()` (a bug in the caller; the
/// model's shapes are checked when it is loaded).
pub(crate) fn linear(x: &[f32], weight: &[f32], bias: &[f32], n: usize, y: &mut [f32]) {
    let out = bias.len();
    assert!(n > 0 && out > 0, "linear: empty layer");
    assert_eq!(weight.len(), out * n, "linear: weight is not [out, n]");
    assert_eq!(x.len() % n, 0, "linear: x is not [rows, n]");
    let rows = x.len() / n;
    assert_eq!(y.len(), rows * out, "linear: y is not [rows, out]");

    let mut o = 0;
    while o < out {
        if out - o >= TILE_OUTPUTS {
            tile_column::<TILE_OUTPUTS>(x, weight, bias, n, out, o, y);
            o += TILE_OUTPUTS;
        } else {
            tile_column::<1>(x, weight, bias, n, out, o, y);
            o += 1;
        }
    }
}

/// Outputs `o..o+C` for every row.
#[inline(always)]
fn tile_column<const C: usize>(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    n: usize,
    out: usize,
    o: usize,
    y: &mut [f32],
) {
    let ws: [&[f32]; C] = std::array::from_fn(|c| &weight[(o + c) * n..(o + c + 1) * n]);
    let bs: [f32; C] = std::array::from_fn(|c| bias[o + c]);
    let rows = x.len() / n;
    let mut r = 0;
    while r < rows {
        if rows - r >= TILE_ROWS {
            let xs: [&[f32]; TILE_ROWS] = std::array::from_fn(|k| &x[(r + k) * n..(r + k + 1) * n]);
            let sums = dot_tile(&xs, &ws, &bs);
            for (k, row_sums) in sums.iter().enumerate() {
                y[(r + k) * out + o..(r + k) * out + o + C].copy_from_slice(row_sums);
            }
            r += TILE_ROWS;
        } else {
            let xs: [&[f32]; 1] = [&x[r * n..(r + 1) * n]];
            let sums = dot_tile(&xs, &ws, &bs);
            y[r * out + o..r * out + o + C].copy_from_slice(&sums[0]);
            r += 1;
        }
    }
}

/// The `R × C` dot products of rows `xs` with rows `ws` (all of one length), plus `bias`.
#[inline(always)]
fn dot_tile<const R: usize, const C: usize>(
    xs: &[&[f32]; R],
    ws: &[&[f32]; C],
    bias: &[f32; C],
) -> [[f32; C]; R] {
    let n = xs.first().map_or(0, |row| row.len());
    let full = n - n % LANES;
    let mut lanes = [[[0.0f32; LANES]; C]; R];
    let mut i = 0;
    while i < full {
        let xv: [[f32; LANES]; R] = std::array::from_fn(|r| load(xs[r], i));
        let wv: [[f32; LANES]; C] = std::array::from_fn(|c| load(ws[c], i));
        for r in 0..R {
            for c in 0..C {
                for l in 0..LANES {
                    lanes[r][c][l] += xv[r][l] * wv[c][l];
                }
            }
        }
        i += LANES;
    }
    let mut sums = [[0.0f32; C]; R];
    for r in 0..R {
        for c in 0..C {
            let mut sum = combine(&lanes[r][c]);
            for (a, b) in xs[r][full..].iter().zip(&ws[c][full..]) {
                sum += a * b;
            }
            sums[r][c] = sum + bias[c];
        }
    }
    sums
}

/// The eight values of `row` starting at `start` (the caller keeps `start + 8 ≤ row.len()`).
#[inline(always)]
fn load(row: &[f32], start: usize) -> [f32; LANES] {
    let mut chunk = [0.0f32; LANES];
    chunk.copy_from_slice(&row[start..start + LANES]);
    chunk
}

/// The fixed pairwise combination of the lane accumulators.
#[inline(always)]
fn combine(l: &[f32; LANES]) -> f32 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// The reference order of one output, written plainly (for tests).
#[cfg(test)]
fn dot_reference_order(x: &[f32], w: &[f32], bias: f32) -> f32 {
    let full = x.len() - x.len() % LANES;
    let mut lanes = [0.0f32; LANES];
    for i in 0..full {
        lanes[i % LANES] += x[i] * w[i];
    }
    let mut sum = combine(&lanes);
    for i in full..x.len() {
        sum += x[i] * w[i];
    }
    sum + bias
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::Noise;

    fn random(noise: &mut Noise, len: usize) -> Vec<f32> {
        noise.gaussian_f32(len)
    }

    #[test]
    fn every_output_has_the_documented_order() {
        let mut noise = Noise::new(11);
        for &(rows, n, out) in &[(1, 1, 1), (3, 7, 5), (5, 8, 4), (4, 19, 9), (7, 33, 13)] {
            let x = random(&mut noise, rows * n);
            let w = random(&mut noise, out * n);
            let b = random(&mut noise, out);
            let mut y = vec![0.0; rows * out];
            linear(&x, &w, &b, n, &mut y);
            for r in 0..rows {
                for o in 0..out {
                    let expected =
                        dot_reference_order(&x[r * n..(r + 1) * n], &w[o * n..(o + 1) * n], b[o]);
                    assert_eq!(
                        y[r * out + o].to_bits(),
                        expected.to_bits(),
                        "row {r} out {o}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_the_batch() {
        let mut noise = Noise::new(12);
        let (rows, n, out) = (9, 45, 11);
        let x = random(&mut noise, rows * n);
        let w = random(&mut noise, out * n);
        let b = random(&mut noise, out);
        let mut all = vec![0.0; rows * out];
        linear(&x, &w, &b, n, &mut all);
        for r in 0..rows {
            let mut one = vec![0.0; out];
            linear(&x[r * n..(r + 1) * n], &w, &b, n, &mut one);
            assert_eq!(one[..], all[r * out..(r + 1) * out]);
        }
    }
}
