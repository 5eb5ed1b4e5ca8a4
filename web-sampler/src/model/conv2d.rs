//! The U-Net's 2-D convolution on the CPU, in the dense layer's fixed order (`linear.rs`) and
//! with its register tiles, but without im2col: the tiles read their inputs straight from a
//! zero-padded copy of the activation.
//!
//! # The order
//!
//! A convolution with weights `[outputs, inputs, k, k]` (PyTorch layout) is the dense layer of
//! the im2col rows: output position `p`, fan-in index `i = (c·k + ky)·k + kx` (channel-major,
//! then the kernel's row, then its column), the input `x[iy, ix, c]` with
//! `iy = oy·stride + ky − k/2`, `ix = ox·stride + kx − k/2`, and `0` outside the image. Each
//! output is summed exactly as `linear.rs` documents: `s = 0; s = s + x[i]·w[i]` for increasing
//! `i`, each product rounded, no fused multiply-add, then `s + bias`. The padding's zeros are
//! added as products too, as im2col's were, so the bits are those of im2col followed by the
//! dense layer, on every kernel variant.
//!
//! # The kernel
//!
//! The weights are packed once, as a dense layer of fan-in `inputs·k·k` (`PackedLinear`). A
//! call copies the activation `[h·w, inputs]` (position-major) into a buffer with a zero border
//! of `k/2` positions, so that every input a tile reads exists. A register tile is `R`
//! consecutive output positions × `PANEL` outputs; row `r` of the tile reads input `i` at
//! `base_r + offset(ky, kx) + c`, one broadcast from memory, so the tile does the same work
//! per input as the dense layer's tile without the cost of writing and re-reading im2col rows
//! (9× the activation for a 3×3 kernel). Inputs are taken in passes of about `KC` (whole
//! channels), the running sums waiting in the output as `f32` between passes, so a pass's
//! slice of a weight panel stays in the L1 cache.
//!
//! A pointwise convolution with stride 1 is the dense layer itself (`PackedLinear::forward`).
//! A 3×3 convolution with stride 1 is not computed here but by Winograd's F(2×2, 3×3)
//! (`winograd.rs`, another order of the sums), whose 16 products run on these register tiles.

use super::buffers::{at_least, with_len};
use super::linear::{run_rows, store_sums, Kernel, Lanes, PackedLinear, RowTile, KC, PANEL};
use super::winograd::Winograd;

/// A convolution with its weights packed for the kernel.
#[derive(Clone, Debug)]
pub(crate) struct PackedConv {
    form: Form,
    inputs: usize,
    kernel: usize,
    stride: usize,
}

/// How a convolution is computed.
#[derive(Clone, Debug)]
enum Form {
    /// Directly: the weights `[outputs, inputs·k·k]` packed as a dense layer.
    Direct(PackedLinear),
    /// By Winograd's F(2×2, 3×3) (3×3 kernels with stride 1).
    Winograd(Winograd),
}

impl PackedConv {
    /// Packs `weight` `[outputs, inputs, kernel, kernel]` (PyTorch layout) and `bias`
    /// `[outputs]`; padding `kernel / 2`. A 3×3 kernel with stride 1 is transformed for
    /// Winograd's F(2×2, 3×3); every other is computed directly.
    ///
    /// # Panics
    /// If a size is 0 or `weight` is not `[outputs, inputs·kernel²]` (a bug in the caller; the
    /// model's shapes are checked when it is loaded).
    pub(crate) fn new(
        weight: &[f32],
        bias: &[f32],
        inputs: usize,
        kernel: usize,
        stride: usize,
    ) -> PackedConv {
        if kernel == 3 && stride == 1 {
            assert!(inputs > 0, "conv2d: empty layer");
            return PackedConv {
                form: Form::Winograd(Winograd::new(weight, bias, inputs)),
                inputs,
                kernel,
                stride,
            };
        }
        PackedConv::direct(weight, bias, inputs, kernel, stride)
    }

    /// As [`new`](Self::new), but computed directly whatever the kernel (im2col's order).
    pub(crate) fn direct(
        weight: &[f32],
        bias: &[f32],
        inputs: usize,
        kernel: usize,
        stride: usize,
    ) -> PackedConv {
        assert!(
            inputs > 0 && kernel > 0 && stride > 0,
            "conv2d: empty layer"
        );
        PackedConv {
            form: Form::Direct(PackedLinear::new(weight, bias, inputs * kernel * kernel)),
            inputs,
            kernel,
            stride,
        }
    }

    /// The output's size for an input of `(h, w)` positions.
    pub(crate) fn output_size(&self, (h, w): (usize, usize)) -> (usize, usize) {
        (h.div_ceil(self.stride), w.div_ceil(self.stride))
    }

    /// `out` `[positions', outputs]` = the convolution of `x` `[h·w, inputs]` (more values in
    /// `x` are ignored), with the best kernel of this CPU; `padded` is working memory. Returns
    /// the output's size.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        size: (usize, usize),
        padded: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) -> (usize, usize) {
        self.forward_with(Kernel::best(), x, size, padded, out)
    }

    /// [`forward`](Self::forward) with a given kernel (every kernel gives the same bits).
    pub(crate) fn forward_with(
        &self,
        kernel: Kernel,
        x: &[f32],
        (h, w): (usize, usize),
        padded: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) -> (usize, usize) {
        let (oh, ow) = self.output_size((h, w));
        let c = self.inputs;
        let x = &x[..h * w * c];
        let dense = match &self.form {
            Form::Direct(dense) => dense,
            Form::Winograd(winograd) => {
                let out = with_len(out, oh * ow * winograd.fan_out());
                winograd.forward_with(kernel, x, (h, w), padded, out);
                return (oh, ow);
            }
        };
        let outputs = dense.fan_out();
        // Every output is written (the first pass does not read it).
        let out = with_len(out, oh * ow * outputs);
        if self.kernel == 1 && self.stride == 1 {
            dense.forward_with(kernel, x, out);
            return (oh, ow);
        }
        let (k, stride) = (self.kernel, self.stride);
        let pad = k / 2;
        // Every input a tile reads: rows up to (oh − 1)·stride + k − 1 of the padded image.
        let hp = (h + 2 * pad).max((oh - 1) * stride + k);
        let wp = (w + 2 * pad).max((ow - 1) * stride + k);
        let padded = pad_image(x, (h, w), c, pad, (hp, wp), padded);
        let offsets: Vec<usize> = (0..k * k).map(|j| ((j / k) * wp + j % k) * c).collect();
        let operands = Operands {
            x: padded,
            y: out,
            positions: oh * ow,
            ow,
            row_stride: stride * wp * c,
            column_stride: stride * c,
            inputs: c,
            offsets: &offsets,
            outputs,
            panels: &dense.panels,
            bias: Some(&dense.bias),
        };
        run_tiles_any(kernel, operands);
        (oh, ow)
    }
}

/// `x` `[h·w, c]` into the first `hp·wp·c` values of `padded` (`[hp, wp, c]`), from row and
/// column `border`, zeros around it; returns them. Every value is written, so the buffer is not
/// cleared first.
pub(super) fn pad_image<'a>(
    x: &[f32],
    (h, w): (usize, usize),
    c: usize,
    border: usize,
    (hp, wp): (usize, usize),
    padded: &'a mut Vec<f32>,
) -> &'a [f32] {
    assert!(
        border + h <= hp && border + w <= wp,
        "conv2d: the image exceeds its padding"
    );
    let padded = at_least(padded, hp * wp * c);
    let row = wp * c;
    padded[..border * row].fill(0.0);
    for (line, source) in padded[border * row..(border + h) * row]
        .chunks_exact_mut(row)
        .zip(x[..h * w * c].chunks_exact(w * c))
    {
        line[..border * c].fill(0.0);
        line[border * c..(border + w) * c].copy_from_slice(source);
        line[(border + w) * c..].fill(0.0);
    }
    padded[(border + h) * row..].fill(0.0);
    padded
}

/// [`run_tiles`] with `kernel`'s vectors and tile.
pub(super) fn run_tiles_any(kernel: Kernel, operands: Operands<'_>) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Avx512` is only handed out where the CPU has AVX-512F.
        Kernel::Avx512 => unsafe { run_avx512(operands) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Avx2` is only handed out where the CPU has AVX2.
        Kernel::Avx2 => unsafe { run_avx2(operands) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Sse2 => run_tiles::<super::linear::sse2::Sse2, 2, 4>(operands),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Kernel::Simd128 => run_tiles::<super::linear::simd128::Simd128, 2, 4>(operands),
        Kernel::Portable => run_tiles::<super::linear::portable::Lanes4, 3, 4>(operands),
    }
}

/// [`run_tiles`] compiled for AVX2: 6 positions × 2 vectors of 8, as the dense layer.
///
/// # Safety
/// Only where the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(operands: Operands<'_>) {
    run_tiles::<super::linear::avx2::Avx2, 6, 2>(operands)
}

/// [`run_tiles`] compiled for AVX-512F: 12 positions × 1 vector of 16, as the dense layer.
///
/// # Safety
/// Only where the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(operands: Operands<'_>) {
    run_tiles::<super::linear::avx512::Avx512, 12, 1>(operands)
}

/// One convolution's operands, after padding.
pub(super) struct Operands<'a> {
    /// The padded activation `[hp, wp, inputs]`.
    pub x: &'a [f32],
    /// The output `[positions, outputs]`.
    pub y: &'a mut [f32],
    pub positions: usize,
    /// Output positions per row.
    pub ow: usize,
    /// Padded values between the windows of two output rows, and of two output columns.
    pub row_stride: usize,
    pub column_stride: usize,
    pub inputs: usize,
    /// The kernel's `k²` taps as offsets into `x` from a window's corner, `(ky, kx)` order.
    pub offsets: &'a [usize],
    pub outputs: usize,
    /// The weights `[⌈outputs / PANEL⌉][inputs·k²][PANEL]` (`PackedLinear`'s panels).
    pub panels: &'a [f32],
    /// `⌈outputs / PANEL⌉·PANEL` biases added at the end, or none.
    pub bias: Option<&'a [f32]>,
}

/// For each pass over whole channels (about `KC` inputs), every weight panel, then every tile
/// of `MR` output positions.
#[inline(always)]
fn run_tiles<V: Lanes, const MR: usize, const NV: usize>(operands: Operands<'_>) {
    debug_assert_eq!(NV * V::WIDTH, PANEL);
    let Operands {
        x,
        y,
        positions,
        ow,
        row_stride,
        column_stride,
        inputs,
        offsets,
        outputs,
        panels,
        bias,
    } = operands;
    let taps = offsets.len();
    let fan_in = inputs * taps;
    let per_pass = (KC / taps).max(1);
    // The padded image's last value a window can reach, for the bounds check below.
    let last_window = {
        let last = positions - 1;
        (last / ow) * row_stride + (last % ow) * column_stride
    };
    assert!(
        last_window + offsets[taps - 1] + inputs <= x.len(),
        "conv2d: the padded input is too small"
    );
    let mut c_start = 0;
    while c_start < inputs {
        let c_end = inputs.min(c_start + per_pass);
        for (p, panel) in panels.chunks_exact(fan_in * PANEL).enumerate() {
            let first = p * PANEL;
            let columns = PANEL.min(outputs - first);
            let bias = bias.map(|bias| bias[first..first + PANEL].as_ptr());
            let panel = &panel[c_start * taps * PANEL..c_end * taps * PANEL];
            let mut r = 0;
            while r < positions {
                let tile_rows = MR.min(positions - r);
                let mut windows = [0usize; MR];
                for (j, window) in windows.iter_mut().enumerate().take(tile_rows) {
                    let q = r + j;
                    *window = (q / ow) * row_stride + (q % ow) * column_stride + c_start;
                }
                let y_rows = &mut y[r * outputs..(r + tile_rows - 1) * outputs + first + columns];
                // SAFETY: every window is at most `last_window + c_start` and reads up to
                // `offsets[taps − 1] + (c_end − c_start)` past it, inside `x` (checked above);
                // `panel` holds `(c_end − c_start)·taps·PANEL` weights, `bias` (if any) `PANEL`,
                // `y_rows` reaches column `first + columns` of its last row; the caller runs
                // `run_tiles` only where `V`'s instructions exist.
                unsafe {
                    let tile = Tile {
                        x: x.as_ptr(),
                        windows,
                        channels: c_end - c_start,
                        offsets,
                        resume: c_start > 0,
                        bias: if c_end == inputs { bias } else { None },
                        panel: panel.as_ptr(),
                        y: y_rows.as_mut_ptr().add(first),
                        y_stride: outputs,
                        columns,
                    };
                    run_rows::<_, V, MR, NV>(&tile, tile_rows);
                }
                r += tile_rows;
            }
        }
        c_start = c_end;
    }
}

/// One register tile of a convolution: up to `MR` output positions × [`PANEL`] outputs, of
/// which the first `columns` are kept, over one pass of `channels` input channels.
struct Tile<'a, const MR: usize> {
    /// The padded activation.
    x: *const f32,
    /// Each position's window corner in `x`, at the pass's first channel.
    windows: [usize; MR],
    channels: usize,
    offsets: &'a [usize],
    resume: bool,
    /// `[channels·taps][PANEL]` weights.
    panel: *const f32,
    /// The `PANEL` biases, added at the end of the last pass.
    bias: Option<*const f32>,
    y: *mut f32,
    y_stride: usize,
    columns: usize,
}

impl<const MR: usize> RowTile for Tile<'_, MR> {
    /// # Safety
    /// Each of the first `R` windows plus any offset plus `channels − 1` is inside `x`;
    /// `panel` holds `channels · taps · PANEL` values, `bias` `PANEL`; `y` row `r` (stride
    /// `y_stride`) has `columns` writable values; `V`'s instructions exist here.
    #[inline(always)]
    unsafe fn run<V: Lanes, const R: usize, const NV: usize>(&self) {
        let mut acc =
            super::linear::start_sums::<V, R, NV>(self.resume, self.y, self.y_stride, self.columns);
        let mut rows: [*const f32; R] = std::array::from_fn(|j| self.x.add(self.windows[j]));
        let mut w = self.panel;
        if let [offset] = *self.offsets {
            // One tap (1×1 convolutions and Winograd's products): the same order without the
            // loop over the taps, which wasm's compilers keep.
            for channel in 0..self.channels {
                add_products(&mut acc, &rows, offset + channel, w);
                w = w.add(PANEL);
            }
        } else {
            for _ in 0..self.channels {
                for &offset in self.offsets {
                    add_products(&mut acc, &rows, offset, w);
                    w = w.add(PANEL);
                }
                for source in rows.iter_mut() {
                    *source = source.add(1);
                }
            }
        }
        store_sums(acc, self.bias, self.y, self.y_stride, self.columns);
    }
}

/// `acc[r] += x[r]·w` for the tile's `R` rows: `x[r]` the value at `rows[r] + at`, `w` the
/// panel's [`PANEL`] weights at `w`.
///
/// # Safety
/// Those values are inside their buffers; `V`'s instructions exist here.
#[inline(always)]
unsafe fn add_products<V: Lanes, const R: usize, const NV: usize>(
    acc: &mut [[V; NV]; R],
    rows: &[*const f32; R],
    at: usize,
    w: *const f32,
) {
    let wv: [V; NV] = std::array::from_fn(|v| V::load(w.add(v * V::WIDTH)));
    for (row, &source) in acc.iter_mut().zip(rows) {
        let xv = V::splat(*source.add(at));
        for (sum, &wv) in row.iter_mut().zip(&wv) {
            *sum = V::add_product(*sum, xv, wv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::linear::linear;
    use crate::noise::Noise;

    /// The convolution as it was defined: im2col rows (zeros outside the image), then the dense
    /// layer.
    fn im2col_reference(
        weight: &[f32],
        bias: &[f32],
        (inputs, kernel, stride): (usize, usize, usize),
        x: &[f32],
        (h, w): (usize, usize),
    ) -> Vec<f32> {
        let (oh, ow) = (h.div_ceil(stride), w.div_ceil(stride));
        let pad = kernel / 2;
        let fan_in = inputs * kernel * kernel;
        let mut columns = vec![0.0f32; oh * ow * fan_in];
        for (p, row) in columns.chunks_exact_mut(fan_in).enumerate() {
            let (oy, ox) = (p / ow, p % ow);
            for c in 0..inputs {
                for ky in 0..kernel {
                    let iy = (oy * stride + ky).wrapping_sub(pad);
                    for kx in 0..kernel {
                        let ix = (ox * stride + kx).wrapping_sub(pad);
                        if iy < h && ix < w {
                            row[(c * kernel + ky) * kernel + kx] = x[(iy * w + ix) * inputs + c];
                        }
                    }
                }
            }
        }
        let mut out = vec![0.0f32; oh * ow * bias.len()];
        linear(&columns, weight, bias, fan_in, &mut out);
        out
    }

    /// `(inputs, outputs, kernel, stride, h, w)`: odd sizes, ragged tiles and panels, passes
    /// over several channel groups, strides with odd sizes, and a kernel of 5.
    const SHAPES: &[(usize, usize, usize, usize, usize, usize)] = &[
        (1, 1, 3, 1, 1, 1),
        (1, 32, 3, 1, 28, 28),
        (3, 5, 3, 1, 7, 5),
        (4, 17, 3, 2, 7, 7),
        (6, 16, 3, 2, 8, 6),
        (32, 1, 3, 1, 9, 11),
        (40, 33, 3, 1, 6, 5),
        (64, 20, 3, 2, 14, 14),
        (5, 7, 1, 1, 6, 7),
        (5, 7, 1, 2, 5, 7),
        (3, 9, 5, 1, 6, 6),
        (2, 4, 5, 3, 7, 8),
    ];

    #[test]
    fn every_kernel_gives_the_bits_of_im2col_and_the_dense_layer() {
        let mut noise = Noise::new(21);
        let mut padded = Vec::new();
        for &(inputs, outputs, kernel, stride, h, w) in SHAPES {
            let weight = noise.gaussian_f32(outputs * inputs * kernel * kernel);
            let bias = noise.gaussian_f32(outputs);
            let x = noise.gaussian_f32(h * w * inputs);
            let expected = im2col_reference(&weight, &bias, (inputs, kernel, stride), &x, (h, w));
            let conv = PackedConv::direct(&weight, &bias, inputs, kernel, stride);
            for kernel_variant in Kernel::available() {
                let mut out = vec![f32::NAN; 3];
                let size = conv.forward_with(kernel_variant, &x, (h, w), &mut padded, &mut out);
                assert_eq!(size, (h.div_ceil(stride), w.div_ceil(stride)));
                assert_eq!(out.len(), expected.len());
                let same = out
                    .iter()
                    .zip(&expected)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{kernel_variant:?} differs on {inputs}→{outputs}, k {kernel}, stride \
                     {stride}, {h}×{w}"
                );
            }
        }
    }

    #[test]
    fn a_larger_activation_than_needed_is_cut_to_the_image() {
        let mut noise = Noise::new(22);
        let (inputs, outputs, h, w) = (3, 4, 5, 4);
        let weight = noise.gaussian_f32(outputs * inputs * 9);
        let bias = noise.gaussian_f32(outputs);
        let x = noise.gaussian_f32(h * w * inputs);
        let mut longer = x.clone();
        longer.extend(noise.gaussian_f32(17));
        let conv = PackedConv::new(&weight, &bias, inputs, 3, 1);
        let (mut padded, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
        conv.forward(&x, (h, w), &mut padded, &mut a);
        conv.forward(&longer, (h, w), &mut padded, &mut b);
        assert_eq!(a, b);
    }
}
