//! The U-Net's 3×3 convolutions with stride 1 by Winograd's minimal filtering F(2×2, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each 2×2 block of
//! outputs from its 4×4 window of inputs with 16 products per (output, input) channel pair
//! instead of 36, 2.25× fewer multiplications than the direct convolution (`conv2d.rs`), in a
//! fixed order of plain `f32` operations, so that every kernel variant, native and wasm, gives
//! the same bits.
//!
//! # The order (FORMATS.md §1.3 states it)
//!
//! The image is cut into tiles of 2×2 outputs, tile `(ty, tx)` covering outputs `(2ty + r,
//! 2tx + s)`, `r, s ∈ {0, 1}`, and reading the 4×4 window `d[i][j] = x[2ty + i − 1][2tx + j −
//! 1]` of each input channel (`0` outside the image, the tiles past its last row or column
//! included). In `f32`, each line one rounded operation per value:
//!
//! ```text
//! weights, at load:  U = G·g·Gᵀ of each 3×3 kernel g (output o, input c), in f64, then rounded
//!                    to f32; along each column j of g, then along each row of the result:
//!                      (a, b, c) → (a, ((a + b) + c)·½, ((a − b) + c)·½, c)
//! inputs:            t = Bᵀ·d along each column j, then V = t·B along each row i:
//!                      (d0, d1, d2, d3) → (d0 − d2, d1 + d2, d2 − d1, d1 − d3)
//! products:          M_k[tile, o] = Σ_c V_k[tile, c]·U_k[o, c] for each of the 16 entries
//!                    k = 4i + j: s = 0; s = s + V·U for increasing c (the dense layer's sum)
//! outputs:           S = Aᵀ·M along each column j, then Y = S·A along each row r, then + bias:
//!                      (m0, m1, m2, m3) → ((m0 + m1) + m2, (m1 − m2) − m3)
//! ```
//!
//! # The kernel
//!
//! Activations are position-major (`[h·w, channels]`), so the transforms run over the
//! channels of a tile in SIMD lanes, one independent value per lane (the lanes change the
//! speed, not the bits). The input transform writes `V` as 16 matrices `[tiles, inputs]`, a
//! tile's channels contiguous; the 16 products are then 16 pointwise convolutions over the
//! tiles with `conv2d.rs`'s register tiles, which read each tile's inputs where they lie (no
//! packing), and the weights `U_k` packed once at load as dense layers. The output transform
//! reads the 16 products of a tile, adds the bias and writes the image's outputs. The three
//! steps run on groups of tiles (~128 KiB of `V` and `M`, so they stay in the L2 cache between
//! the steps); the groups change where values wait, not how any output is summed.

use std::ops::Range;

use super::buffers::{at_least, keep};
use super::conv2d::{pad_image, run_tiles_any, Operands};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use super::linear::simd128;
#[cfg(target_arch = "x86_64")]
use super::linear::{avx2, sse2};
use super::linear::{portable, Kernel, Lanes, PackedLinear};

/// Entries of a transformed tile (4×4).
const ENTRIES: usize = 16;

/// About how many floats of `V` and `M` a group of tiles has (128 KiB: in the L2 cache beside
/// the weights of a layer).
const GROUP_FLOATS: usize = 1 << 15;

/// Tiles per group: a multiple of this, the register tiles' rows on every kernel (12, 6, 3, 2).
const GROUP_MULTIPLE: usize = 12;

/// A 3×3, stride-1 convolution's weights transformed and packed: 16 dense layers
/// `[outputs, inputs]`, one per entry `k` of the 4×4 transformed tile.
#[derive(Clone, Debug)]
pub(crate) struct Winograd {
    /// `U_k` packed as dense layers (their biases are zeros and unused).
    products: Vec<PackedLinear>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

/// `(a, b, c) → (a, ((a + b) + c)·½, ((a − b) + c)·½, c)`: one line of `G·g`, in `f64`.
fn kernel_line(a: f64, b: f64, c: f64) -> [f64; 4] {
    [a, ((a + b) + c) * 0.5, ((a - b) + c) * 0.5, c]
}

/// `U = G·g·Gᵀ` of one 3×3 kernel `g` (row-major), in `f64`, rounded to `f32` at the end;
/// `U[4i + j]`.
pub(super) fn transform_kernel(g: &[f32]) -> [f32; ENTRIES] {
    let g = |y: usize, x: usize| f64::from(g[3 * y + x]);
    // Along each column of g: gg[i][x], i = 0..4.
    let columns: [[f64; 4]; 3] = std::array::from_fn(|x| kernel_line(g(0, x), g(1, x), g(2, x)));
    let mut u = [0.0f32; ENTRIES];
    for i in 0..4 {
        let row = kernel_line(columns[0][i], columns[1][i], columns[2][i]);
        for (j, v) in row.into_iter().enumerate() {
            u[4 * i + j] = v as f32;
        }
    }
    u
}

impl Winograd {
    /// Transforms and packs `weight` `[outputs, inputs, 3, 3]` and `bias` `[outputs]`.
    ///
    /// # Panics
    /// If a size is 0 or `weight` is not `[outputs, inputs, 3, 3]` (a bug in the caller).
    pub(crate) fn new(weight: &[f32], bias: &[f32], inputs: usize) -> Winograd {
        let outputs = bias.len();
        assert!(inputs > 0 && outputs > 0, "winograd: empty layer");
        assert_eq!(
            weight.len(),
            outputs * inputs * 9,
            "winograd: weight is not [o, i, 3, 3]"
        );
        let mut transformed = vec![vec![0.0f32; outputs * inputs]; ENTRIES];
        for (pair, g) in weight.chunks_exact(9).enumerate() {
            for (k, u) in transform_kernel(g).into_iter().enumerate() {
                transformed[k][pair] = u;
            }
        }
        let zeros = vec![0.0f32; outputs];
        Winograd {
            products: transformed
                .iter()
                .map(|u| PackedLinear::new(u, &zeros, inputs))
                .collect(),
            bias: bias.to_vec(),
            inputs,
            outputs,
        }
    }

    /// Outputs per position.
    pub(crate) fn fan_out(&self) -> usize {
        self.outputs
    }

    /// `out` `[h·w, outputs]` = the convolution of `x` `[h·w, inputs]` (padding 1), with
    /// `kernel` (every kernel gives the same bits); `padded` is working memory.
    pub(crate) fn forward_with(
        &self,
        kernel: Kernel,
        x: &[f32],
        (h, w): (usize, usize),
        padded: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let (c, o) = (self.inputs, self.outputs);
        let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
        let tiles = th * tw;
        // The image with a border of zeros: one row and column before it, one or two after it,
        // so that every tile's window lies inside.
        let (hp, wp) = (2 * th + 2, 2 * tw + 2);
        let padded = pad_image(x, (h, w), c, 1, (hp, wp), padded);
        // Tiles in groups whose `V` and `M` stay in the cache between the steps (each output
        // is computed in the same order whatever the group).
        let group = (GROUP_FLOATS / (ENTRIES * (c + o)) / GROUP_MULTIPLE).max(1) * GROUP_MULTIPLE;
        // Every value of both is written before it is read.
        let mut transformed = TRANSFORMED.take();
        let mut products = PRODUCTS.take();
        let mut first = 0;
        while first < tiles {
            let group = first..tiles.min(first + group);
            let count = group.len();
            let v = at_least(&mut transformed, ENTRIES * count * c);
            let m = at_least(&mut products, ENTRIES * count * o);
            transform_inputs(kernel, padded, (th, tw), c, group.clone(), v);
            let column_stride = [0];
            for ((layer, v), m) in self
                .products
                .iter()
                .zip(v.chunks_exact(count * c))
                .zip(m.chunks_exact_mut(count * o))
            {
                // A pointwise convolution over the tiles, as one row of `count` positions.
                let operands = Operands {
                    x: v,
                    y: m,
                    positions: count,
                    ow: count,
                    row_stride: 0,
                    column_stride: c,
                    inputs: c,
                    offsets: &column_stride,
                    outputs: o,
                    panels: &layer.panels,
                    bias: None,
                };
                run_tiles_any(kernel, operands);
            }
            transform_outputs(kernel, m, &self.bias, (h, w), group.clone(), out);
            first = group.end;
        }
        keep(&TRANSFORMED, transformed);
        keep(&PRODUCTS, products);
    }
}

std::thread_local! {
    /// The transformed inputs `V` and the products `M` of the last convolution this thread
    /// ran, kept for the next (no page faults of fresh allocations).
    static TRANSFORMED: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    static PRODUCTS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `$with::<V>(args)` with `kernel`'s vector type `V`: through `$avx2` (`$with` with AVX2's
/// vectors, compiled for AVX2) where the CPU has AVX2, SSE2's vectors on other x86-64 CPUs,
/// `simd128` in wasm with SIMD, four scalar lanes elsewhere.
macro_rules! with_lanes {
    ($kernel:expr, $with:ident, $avx2:ident, ($($arg:expr),*)) => {
        match $kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 | Kernel::Avx2 if std::is_x86_feature_detected!("avx2") => {
                // SAFETY: the CPU has AVX2.
                unsafe { $avx2($($arg),*) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 | Kernel::Avx2 | Kernel::Sse2 => $with::<sse2::Sse2>($($arg),*),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => $with::<simd128::Simd128>($($arg),*),
            Kernel::Portable => $with::<portable::Lanes4>($($arg),*),
        }
    };
}

/// `V = Bᵀ·d·B` of the 4×4 windows of `group`'s tiles (of `th × tw`, row-major) in `padded`
/// `[2·th + 2, 2·tw + 2, c]` into `v` `[16][group's tiles, c]`, with `kernel`'s vectors.
fn transform_inputs(
    kernel: Kernel,
    padded: &[f32],
    size: (usize, usize),
    c: usize,
    group: Range<usize>,
    v: &mut [f32],
) {
    with_lanes!(
        kernel,
        transform_inputs_with,
        transform_inputs_avx2,
        (padded, size, c, group, v)
    )
}

/// [`transform_inputs`] with AVX2's vectors.
///
/// # Safety
/// Only where the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transform_inputs_avx2(
    padded: &[f32],
    size: (usize, usize),
    c: usize,
    group: Range<usize>,
    v: &mut [f32],
) {
    transform_inputs_with::<avx2::Avx2>(padded, size, c, group, v)
}

/// [`transform_inputs`] in vectors `V` over the channels, the channels left over one by one.
#[inline(always)]
fn transform_inputs_with<V: Lanes>(
    padded: &[f32],
    (th, tw): (usize, usize),
    c: usize,
    group: Range<usize>,
    v: &mut [f32],
) {
    let count = group.len();
    let row = (2 * tw + 2) * c;
    assert!(
        group.end <= th * tw && padded.len() >= (2 * th + 2) * row,
        "winograd: the padded input is too small"
    );
    assert_eq!(
        v.len(),
        ENTRIES * count * c,
        "winograd: V is not [16, tiles, c]"
    );
    let full = c / V::WIDTH * V::WIDTH;
    for (n, tile) in group.enumerate() {
        let (ty, tx) = (tile / tw, tile % tw);
        let corner = 2 * ty * row + 2 * tx * c;
        // SAFETY: the window's last value, `corner + 3·row + 3·c + c − 1`, is inside `padded`
        // (`2·ty + 3 < 2·th + 2` rows of `row` values, checked above); the 16 entries' values
        // `((4i + j)·count + n)·c + channel` are inside `v`; the caller runs this only where
        // `V`'s instructions exist.
        unsafe {
            let d = padded.as_ptr().add(corner);
            let out = v.as_mut_ptr().add(n * c);
            let entry = count * c;
            let mut first = 0;
            while first < full {
                input_lanes::<V>(d.add(first), row, c, out.add(first), entry);
                first += V::WIDTH;
            }
            for channel in full..c {
                let (d, out) = (d.add(channel), out.add(channel));
                input_lanes::<portable::Scalar>(d, row, c, out, entry);
            }
        }
    }
}

/// `V = Bᵀ·d·B` of `V::WIDTH` channels of one tile: `d[i][j]` at `d + i·row + j·c`, entry `k`
/// written at `v + k·entry`.
///
/// # Safety
/// Those values are inside their buffers; `V`'s instructions exist here.
#[inline(always)]
unsafe fn input_lanes<V: Lanes>(d: *const f32, row: usize, c: usize, v: *mut f32, entry: usize) {
    // t = Bᵀ·d along each column j: `columns[j][i]` is `t[i][j]`.
    let columns: [[V; 4]; 4] = std::array::from_fn(|j| {
        let at = |i: usize| V::load(d.add(i * row + j * c));
        let (d0, d1, d2, d3) = (at(0), at(1), at(2), at(3));
        [
            V::sub(d0, d2),
            V::add(d1, d2),
            V::sub(d2, d1),
            V::sub(d1, d3),
        ]
    });
    // V = t·B along each row i: entry (i, j) is matrix k = 4i + j.
    for i in 0..4 {
        let [t0, t1, t2, t3] = columns.map(|column| column[i]);
        let k = 4 * i;
        V::sub(t0, t2).store(v.add(k * entry));
        V::add(t1, t2).store(v.add((k + 1) * entry));
        V::sub(t2, t1).store(v.add((k + 2) * entry));
        V::sub(t1, t3).store(v.add((k + 3) * entry));
    }
}

/// `Y = Aᵀ·M·A + bias` of `group`'s tiles (of the `⌈h/2⌉ × ⌈w/2⌉`, row-major), their products
/// `m` `[16][group's tiles, o]`, into `out` `[h·w, o]` (the outputs of the tiles past the
/// image's last row or column dropped), with `kernel`'s vectors.
fn transform_outputs(
    kernel: Kernel,
    m: &[f32],
    bias: &[f32],
    size: (usize, usize),
    group: Range<usize>,
    out: &mut [f32],
) {
    with_lanes!(
        kernel,
        transform_outputs_with,
        transform_outputs_avx2,
        (m, bias, size, group, out)
    )
}

/// [`transform_outputs`] with AVX2's vectors.
///
/// # Safety
/// Only where the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transform_outputs_avx2(
    m: &[f32],
    bias: &[f32],
    size: (usize, usize),
    group: Range<usize>,
    out: &mut [f32],
) {
    transform_outputs_with::<avx2::Avx2>(m, bias, size, group, out)
}

/// [`transform_outputs`] in vectors `V` over the outputs, the outputs left over one by one.
#[inline(always)]
fn transform_outputs_with<V: Lanes>(
    m: &[f32],
    bias: &[f32],
    (h, w): (usize, usize),
    group: Range<usize>,
    out: &mut [f32],
) {
    let o = bias.len();
    let tw = w.div_ceil(2);
    let count = group.len();
    assert!(
        group.end <= h.div_ceil(2) * tw,
        "winograd: a tile outside the image"
    );
    assert_eq!(
        m.len(),
        ENTRIES * count * o,
        "winograd: M is not [16, tiles, o]"
    );
    assert_eq!(out.len(), h * w * o, "winograd: out is not [h·w, o]");
    let full = o / V::WIDTH * V::WIDTH;
    let entry = count * o;
    for (n, tile) in group.enumerate() {
        let (ty, tx) = (tile / tw, tile % tw);
        let place = Place {
            rows: (h - 2 * ty).min(2),
            columns: (w - 2 * tx).min(2),
            row: w * o,
            o,
        };
        // SAFETY: the tile's products `(k·count + n)·o + output` are inside `m`, its outputs
        // inside the image `(2ty + r, 2tx + s)` (`place` keeps only those) inside `out`, `bias`
        // has `o` values (lengths checked above); the caller runs this only where `V`'s
        // instructions exist.
        unsafe {
            let products = m.as_ptr().add(n * o);
            let target = out.as_mut_ptr().add((2 * ty * w + 2 * tx) * o);
            let mut first = 0;
            while first < full {
                let (m, b, y) = (
                    products.add(first),
                    bias.as_ptr().add(first),
                    target.add(first),
                );
                output_lanes::<V>(m, entry, b, &place, y);
                first += V::WIDTH;
            }
            for output in full..o {
                let (m, b, y) = (
                    products.add(output),
                    bias.as_ptr().add(output),
                    target.add(output),
                );
                output_lanes::<portable::Scalar>(m, entry, b, &place, y);
            }
        }
    }
}

/// Where a tile's outputs go: its rows and columns inside the image (1 or 2 each), and the
/// values between two output rows and two output columns.
struct Place {
    rows: usize,
    columns: usize,
    row: usize,
    o: usize,
}

/// `Y = Aᵀ·M·A + bias` of `V::WIDTH` outputs of one tile: entry `k` of `M` at `m + k·entry`,
/// output `(r, s)` written at `y + r·row + s·o`.
///
/// # Safety
/// Those values, and `V::WIDTH` biases at `bias`, are inside their buffers; `V`'s
/// instructions exist here.
#[inline(always)]
unsafe fn output_lanes<V: Lanes>(
    m: *const f32,
    entry: usize,
    bias: *const f32,
    place: &Place,
    y: *mut f32,
) {
    // S = Aᵀ·M along each column j: `columns[j][r]` is `S[r][j]`, rows 0 and 1.
    let columns: [[V; 2]; 4] = std::array::from_fn(|j| {
        let at = |i: usize| V::load(m.add((4 * i + j) * entry));
        let (m0, m1, m2, m3) = (at(0), at(1), at(2), at(3));
        [V::add(V::add(m0, m1), m2), V::sub(V::sub(m1, m2), m3)]
    });
    // Y = S·A along each row r, then the bias.
    let bias = V::load(bias);
    for r in 0..place.rows {
        let [s0, s1, s2, s3] = columns.map(|column| column[r]);
        let target = y.add(r * place.row);
        V::add(V::add(V::add(s0, s1), s2), bias).store(target);
        if place.columns == 2 {
            V::add(V::sub(V::sub(s1, s2), s3), bias).store(target.add(place.o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::conv2d::PackedConv;
    use crate::noise::Noise;

    /// One output of the convolution written plainly in the documented order, scalar: the
    /// window `d` (zero outside the image), `V = Bᵀ·d·B`, `M_k = Σ_c V_k·U_k` (increasing `c`),
    /// `Y = Aᵀ·M·A`, then the bias.
    fn documented_order(
        weight: &[f32],
        bias: &[f32],
        inputs: usize,
        x: &[f32],
        (h, w): (usize, usize),
        (y, x_out, o): (usize, usize, usize),
    ) -> f32 {
        let (ty, tx) = (y / 2, x_out / 2);
        let mut m = [0.0f32; 16];
        for c in 0..inputs {
            let d = |i: usize, j: usize| {
                let (iy, ix) = ((2 * ty + i).wrapping_sub(1), (2 * tx + j).wrapping_sub(1));
                if iy < h && ix < w {
                    x[(iy * w + ix) * inputs + c]
                } else {
                    0.0
                }
            };
            // t = Bᵀ·d, column by column.
            let t = |i: usize, j: usize| match i {
                0 => d(0, j) - d(2, j),
                1 => d(1, j) + d(2, j),
                2 => d(2, j) - d(1, j),
                _ => d(1, j) - d(3, j),
            };
            let u = transform_kernel(&weight[(o * inputs + c) * 9..(o * inputs + c + 1) * 9]);
            for i in 0..4 {
                let v = [
                    t(i, 0) - t(i, 2),
                    t(i, 1) + t(i, 2),
                    t(i, 2) - t(i, 1),
                    t(i, 1) - t(i, 3),
                ];
                for j in 0..4 {
                    m[4 * i + j] += v[j] * u[4 * i + j];
                }
            }
        }
        let r = y % 2;
        let s = |j: usize| {
            if r == 0 {
                (m[j] + m[4 + j]) + m[8 + j]
            } else {
                (m[4 + j] - m[8 + j]) - m[12 + j]
            }
        };
        let value = if x_out % 2 == 0 {
            (s(0) + s(1)) + s(2)
        } else {
            (s(1) - s(2)) - s(3)
        };
        value + bias[o]
    }

    /// `(inputs, outputs, h, w)`: odd sizes (ragged tiles), one position, channels that are
    /// not a multiple of the lanes, ragged panels, the U-Net's sizes.
    const SHAPES: &[(usize, usize, usize, usize)] = &[
        (1, 1, 1, 1),
        (1, 32, 28, 28),
        (3, 5, 7, 5),
        (32, 1, 9, 11),
        (40, 33, 6, 5),
        (13, 20, 3, 4),
        (64, 64, 7, 7),
        (128, 64, 14, 14),
        (96, 32, 28, 28),
        (2, 3, 2, 3),
        (300, 17, 3, 3),
    ];

    #[test]
    fn the_kernel_transform_is_g_g_gt_in_f64() {
        let mut noise = Noise::new(40);
        const G: [[f64; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        for _ in 0..100 {
            let g = noise.gaussian_f32(9);
            let u = transform_kernel(&g);
            for i in 0..4 {
                for j in 0..4 {
                    let mut exact = 0.0f64;
                    for a in 0..3 {
                        for b in 0..3 {
                            exact += G[i][a] * f64::from(g[3 * a + b]) * G[j][b];
                        }
                    }
                    assert!((f64::from(u[4 * i + j]) - exact).abs() <= 1e-7 * exact.abs());
                }
            }
        }
    }

    #[test]
    fn every_kernel_gives_the_documented_order_to_the_bit() {
        let mut noise = Noise::new(41);
        let mut padded = Vec::new();
        for &(inputs, outputs, h, w) in SHAPES {
            let weight = noise.gaussian_f32(outputs * inputs * 9);
            let bias = noise.gaussian_f32(outputs);
            let x = noise.gaussian_f32(h * w * inputs);
            let winograd = Winograd::new(&weight, &bias, inputs);
            let mut expected = vec![0.0f32; h * w * outputs];
            for y in 0..h {
                for x_out in 0..w {
                    for o in 0..outputs {
                        expected[(y * w + x_out) * outputs + o] =
                            documented_order(&weight, &bias, inputs, &x, (h, w), (y, x_out, o));
                    }
                }
            }
            for kernel in Kernel::available() {
                let mut out = vec![f32::NAN; h * w * outputs];
                winograd.forward_with(kernel, &x, (h, w), &mut padded, &mut out);
                for (at, (a, b)) in out.iter().zip(&expected).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{kernel:?}, {inputs}→{outputs}, {h}×{w}: output {at}: {a} ≠ {b}"
                    );
                }
            }
        }
    }

    /// The relative tolerance against the direct convolution: the largest difference over the
    /// largest output of the direct convolution, per layer. Measured at most 1.6e-6 on these
    /// shapes (300 inputs; 1.2e-6 at 128), from Winograd's transforms: a few more roundings of
    /// values a few times the outputs'.
    const TOLERANCE: f32 = 1e-5;

    #[test]
    fn it_agrees_with_the_direct_convolution() {
        let mut noise = Noise::new(42);
        let mut padded = Vec::new();
        for &(inputs, outputs, h, w) in SHAPES {
            let weight = noise.gaussian_f32(outputs * inputs * 9);
            let bias = noise.gaussian_f32(outputs);
            let x = noise.gaussian_f32(h * w * inputs);
            let direct = PackedConv::direct(&weight, &bias, inputs, 3, 1);
            let (mut expected, mut fast) = (Vec::new(), vec![0.0; h * w * outputs]);
            direct.forward(&x, (h, w), &mut padded, &mut expected);
            Winograd::new(&weight, &bias, inputs).forward_with(
                Kernel::best(),
                &x,
                (h, w),
                &mut padded,
                &mut fast,
            );
            let largest = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = expected
                .iter()
                .zip(&fast)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= TOLERANCE * largest,
                "{inputs}→{outputs}, {h}×{w}: |Winograd − direct| = {worst}, largest {largest}"
            );
        }
    }
}
