//! A 2-D convolution whose forward **and** both gradients are matrix multiplies on the CPU.
//!
//! candle 0.11's CPU `conv2d` runs its input gradient as `conv_transpose2d`, a scalar loop, and
//! allocates a fresh tensor at every step of the graph; on the U-Net that made a training step
//! ~8× slower than PyTorch's. Here one image at a time is unfolded into columns (im2col:
//! `cols [C·k·k, H'·W']`) and
//!
//! * forward: `y_b = W · cols(x_b) + bias`, with `W` `[O, C·k·k]`;
//! * input gradient: `dx_b = col2im(Wᵀ · dy_b)` (col2im, the adjoint of im2col, adds the
//!   overlapping windows back);
//! * weight gradient: `dW = Σ_b dy_b · cols(x_b)ᵀ`, bias gradient `Σ_positions dy_b`.
//!
//! The products run on the `gemm` crate (the one candle's own `matmul` uses), one image per task
//! on rayon's pool (`--threads`). Sums over the batch are taken in a fixed order of fixed chunks,
//! so a result does not depend on the thread count. A 1×1 convolution with stride 1 skips im2col
//! (the image already is its columns).
//!
//! The bias is `[O]`, or `[B, O]` for a bias per image: a residual block adds its time/class
//! embedding's projection to its first convolution that way, in the same pass.
//! [`upsampled_conv2d`] convolves the nearest ×2 of its input without building it: im2col reads
//! each stored pixel for the four it stands for, and col2im adds the four gradients back. Off the
//! CPU both are candle's own convolution (cuDNN or im2col on CUDA).

use anyhow::{bail, Result};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;

/// Images whose weight gradients are summed together before the partial sums are added in order.
const WEIGHT_GRADIENT_CHUNK: usize = 4;

/// The shapes of one convolution: input `[C, H, W]` per image, `O` filters of `k × k`, stride
/// `s`, zero padding `p` on every side; output `[O, H', W']`. When `upsampled`, the input the
/// convolution sees is the nearest ×2 of the stored image `[C, H/2, W/2]`, read in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    channels: usize,
    /// The height and width the convolution sees.
    height: usize,
    width: usize,
    upsampled: bool,
    filters: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    out_height: usize,
    out_width: usize,
}

impl Geometry {
    /// A convolution of stored images `[C, H, W]`, or of their nearest ×2 when `upsampled`.
    fn new(
        (channels, stored_height, stored_width): (usize, usize, usize),
        upsampled: bool,
        filters: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Geometry> {
        let scale = if upsampled { 2 } else { 1 };
        let (height, width) = (scale * stored_height, scale * stored_width);
        if stride == 0
            || kernel == 0
            || height + 2 * padding < kernel
            || width + 2 * padding < kernel
        {
            bail!(
                "conv2d: a {kernel}×{kernel} kernel with stride {stride} and padding {padding} \
                 does not fit a {height}×{width} image"
            );
        }
        Ok(Geometry {
            channels,
            height,
            width,
            upsampled,
            filters,
            kernel,
            stride,
            padding,
            out_height: (height + 2 * padding - kernel) / stride + 1,
            out_width: (width + 2 * padding - kernel) / stride + 1,
        })
    }

    /// The rows of an image's columns, `C·k·k` (the inner dimension of every product).
    fn rows(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    /// Output positions per image, `H'·W'`.
    fn positions(&self) -> usize {
        self.out_height * self.out_width
    }

    /// The height and width of a stored image (half the convolution's when upsampled).
    fn stored(&self) -> (usize, usize) {
        if self.upsampled {
            (self.height / 2, self.width / 2)
        } else {
            (self.height, self.width)
        }
    }

    /// The stored row or column of the convolution's input row or column `i`.
    fn stored_index(&self, i: usize) -> usize {
        if self.upsampled {
            i / 2
        } else {
            i
        }
    }

    fn image_len(&self) -> usize {
        let (h, w) = self.stored();
        self.channels * h * w
    }

    fn output_len(&self) -> usize {
        self.filters * self.positions()
    }

    /// A 1×1 convolution with stride 1 and no padding: the image is its own columns.
    fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0 && !self.upsampled
    }

    /// For kernel offset `offset` along an axis of `size` input pixels and `out` outputs: the
    /// range of outputs whose input `o·s + offset − p` falls inside the image.
    fn valid(&self, offset: usize, size: usize, out: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.padding);
        // o·s + offset ≥ p  ⇔  o ≥ ceil((p − offset)/s)
        let first = p.saturating_sub(offset).div_ceil(s).min(out);
        // o·s + offset − p ≤ size − 1  ⇔  o ≤ (size − 1 + p − offset)/s
        let end = if size + p > offset {
            ((size - 1 + p - offset) / s + 1).min(out)
        } else {
            0
        };
        (first, end.max(first))
    }

    /// Unfolds `image` `[C, H, W]` into `cols` `[C·k·k, H'·W']`: row `(c, ky, kx)`, column
    /// `(oy, ox)` holds `x[c, oy·s + ky − p, ox·s + kx − p]`, zero outside the image.
    fn im2col(&self, image: &[f32], cols: &mut [f32]) {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (h, w, oh, ow) = (self.height, self.width, self.out_height, self.out_width);
        let (sh, sw) = self.stored();
        let n = self.positions();
        for c in 0..self.channels {
            let plane = &image[c * sh * sw..][..sh * sw];
            for ky in 0..k {
                let (y0, y1) = self.valid(ky, h, oh);
                for kx in 0..k {
                    let (x0, x1) = self.valid(kx, w, ow);
                    let row = &mut cols[((c * k + ky) * k + kx) * n..][..n];
                    row[..y0 * ow].fill(0.0);
                    row[y1 * ow..].fill(0.0);
                    for oy in y0..y1 {
                        let source = &plane[self.stored_index(oy * s + ky - p) * sw..][..sw];
                        let out = &mut row[oy * ow..][..ow];
                        out[..x0].fill(0.0);
                        out[x1..].fill(0.0);
                        if self.upsampled {
                            for (ox, value) in out[x0..x1].iter_mut().enumerate() {
                                *value = source[((x0 + ox) * s + kx - p) / 2];
                            }
                        } else if s == 1 {
                            out[x0..x1].copy_from_slice(&source[x0 + kx - p..x1 + kx - p]);
                        } else {
                            for (ox, value) in out[x0..x1].iter_mut().enumerate() {
                                *value = source[(x0 + ox) * s + kx - p];
                            }
                        }
                    }
                }
            }
        }
    }

    /// The columns of `image`: the image itself for a pointwise convolution, else its im2col in
    /// `scratch`.
    fn columns<'a>(&self, image: &'a [f32], scratch: &'a mut Vec<f32>) -> &'a [f32] {
        if self.is_pointwise() {
            return image;
        }
        scratch.resize(self.rows() * self.positions(), 0.0);
        self.im2col(image, scratch);
        scratch
    }

    /// The adjoint of [`Geometry::im2col`]: adds every column entry back to the pixel it was
    /// read from; `image` `[C, H, W]` is overwritten.
    fn col2im(&self, cols: &[f32], image: &mut [f32]) {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (h, w, oh, ow) = (self.height, self.width, self.out_height, self.out_width);
        let (sh, sw) = self.stored();
        let n = self.positions();
        image.fill(0.0);
        for c in 0..self.channels {
            let plane = &mut image[c * sh * sw..][..sh * sw];
            for ky in 0..k {
                let (y0, y1) = self.valid(ky, h, oh);
                for kx in 0..k {
                    let (x0, x1) = self.valid(kx, w, ow);
                    let row = &cols[((c * k + ky) * k + kx) * n..][..n];
                    for oy in y0..y1 {
                        let target = &mut plane[self.stored_index(oy * s + ky - p) * sw..][..sw];
                        let column = &row[oy * ow..][..ow];
                        if self.upsampled {
                            for ox in x0..x1 {
                                target[(ox * s + kx - p) / 2] += column[ox];
                            }
                        } else if s == 1 {
                            let target = &mut target[x0 + kx - p..x1 + kx - p];
                            for (t, v) in target.iter_mut().zip(&column[x0..x1]) {
                                *t += v;
                            }
                        } else {
                            for ox in x0..x1 {
                                target[ox * s + kx - p] += column[ox];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dst [m, n] (+)= lhs · rhs` for row-major `dst` (row stride `n`), `lhs` element `(i, l)` at
/// `lhs[i·lhs_rs + l·lhs_cs]` and `rhs` element `(l, j)` at `rhs[l·rhs_rs + j·rhs_cs]`; on the
/// calling thread.
#[allow(clippy::too_many_arguments)]
fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k > 0 {
        assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
        assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    }
    // SAFETY: the asserts above keep every index the product reads or writes inside the slices;
    // `dst` does not alias `lhs` or `rhs` (a `&mut` and two `&`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The shapes of a convolution of a batch: every op of this module is one of these.
#[derive(Clone, Copy)]
struct Conv2dShape {
    geometry: Geometry,
    batch: usize,
}

/// The forward op: `(x [B, C, H, W], weight [O, C, k, k], bias [O] or [B, O]) → [B, O, H', W']`.
struct Conv2d(Conv2dShape);

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d-gemm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Conv2dShape { geometry: g, batch } = self.0;
        let x = contiguous_f32("conv2d", s1, l1, "input")?;
        let weight = contiguous_f32("conv2d", s2, l2, "weight")?;
        let bias = contiguous_f32("conv2d", s3, l3, "bias")?;
        let per_image = bias.len() != g.filters;
        let mut y = vec![0f32; batch * g.output_len()];
        let (n, k) = (g.positions(), g.rows());
        y.par_chunks_mut(g.output_len())
            .zip(x.par_chunks(g.image_len()))
            .enumerate()
            .for_each_init(Vec::new, |cols, (b, (y, image))| {
                let columns = g.columns(image, cols);
                let bias = if per_image {
                    &bias[b * g.filters..][..g.filters]
                } else {
                    bias
                };
                for (row, &value) in y.chunks_mut(n).zip(bias) {
                    row.fill(value);
                }
                matmul((g.filters, n, k), y, true, weight, (k, 1), columns, (n, 1));
            });
        let shape = (batch, g.filters, g.out_height, g.out_width);
        Ok((CpuStorage::F32(y), shape.into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(weight, &Conv2dInputGradient(self.0))?)
        } else {
            None
        };
        let per_image = bias.rank() == 2;
        if !weight.track_op() {
            // Distillation: the weights are constants, the bias per image carries the time.
            let db = if !bias.track_op() {
                None
            } else if per_image {
                Some(dy.sum((2, 3))?)
            } else {
                Some(dy.sum((0, 2, 3))?)
            };
            return Ok((dx, None, db));
        }
        let gradients = dy.apply_op2_no_bwd(
            x,
            &Conv2dWeightGradient {
                forward: self.0,
                per_image,
            },
        )?;
        let g = self.0.geometry;
        let weights = g.filters * g.rows();
        let dw = gradients.narrow(0, 0, weights)?.reshape(weight.shape())?;
        let db = gradients
            .narrow(0, weights, gradients.dim(0)? - weights)?
            .reshape(bias.shape())?;
        Ok((dx, Some(dw), Some(db)))
    }
}

/// `(dy [B, O, H', W'], weight) → dx [B, C, H, W]`: `dx_b = col2im(Wᵀ · dy_b)`.
struct Conv2dInputGradient(Conv2dShape);

impl CustomOp2 for Conv2dInputGradient {
    fn name(&self) -> &'static str {
        "conv2d-gemm-input-gradient"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Conv2dShape { geometry: g, batch } = self.0;
        let dy = contiguous_f32("conv2d", s1, l1, "output gradient")?;
        let weight = contiguous_f32("conv2d", s2, l2, "weight")?;
        let (n, k) = (g.positions(), g.rows());
        let mut dx = vec![0f32; batch * g.image_len()];
        dx.par_chunks_mut(g.image_len())
            .zip(dy.par_chunks(g.output_len()))
            .for_each_init(Vec::new, |cols, (dx, dy)| {
                // Wᵀ: element (l, o) at weight[o·k + l].
                if g.is_pointwise() {
                    matmul((k, n, g.filters), dx, false, weight, (1, k), dy, (n, 1));
                } else {
                    cols.resize(k * n, 0.0);
                    matmul((k, n, g.filters), cols, false, weight, (1, k), dy, (n, 1));
                    g.col2im(cols, dx);
                }
            });
        let (height, width) = g.stored();
        let shape = (batch, g.channels, height, width);
        Ok((CpuStorage::F32(dx), shape.into()))
    }
}

/// `(dy [B, O, H', W'], x [B, C, H, W]) → [O·C·k·k + O]` (or `+ B·O` for a bias per image): the
/// weight gradient `Σ_b dy_b · cols(x_b)ᵀ` followed by the bias gradient.
struct Conv2dWeightGradient {
    forward: Conv2dShape,
    per_image: bool,
}

impl CustomOp2 for Conv2dWeightGradient {
    fn name(&self) -> &'static str {
        "conv2d-gemm-weight-gradient"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Conv2dShape { geometry: g, batch } = self.forward;
        let dy = contiguous_f32("conv2d", s1, l1, "output gradient")?;
        let x = contiguous_f32("conv2d", s2, l2, "input")?;
        let (n, k, o) = (g.positions(), g.rows(), g.filters);
        // Per chunk of images: the chunk's weight gradient, then its bias sums.
        let partials: Vec<Vec<f32>> = dy
            .par_chunks(WEIGHT_GRADIENT_CHUNK * g.output_len())
            .zip(x.par_chunks(WEIGHT_GRADIENT_CHUNK * g.image_len()))
            .map(|(dy, x)| {
                let images = dy.len() / g.output_len();
                let bias_len = if self.per_image { images * o } else { o };
                let mut partial = vec![0f32; o * k + bias_len];
                let (dw, db) = partial.split_at_mut(o * k);
                let mut cols = Vec::new();
                for (i, (dy, image)) in dy
                    .chunks(g.output_len())
                    .zip(x.chunks(g.image_len()))
                    .enumerate()
                {
                    let columns = g.columns(image, &mut cols);
                    // colsᵀ: element (j, l) at columns[l·n + j].
                    matmul((o, k, n), dw, i > 0, dy, (n, 1), columns, (1, n));
                    let db = if self.per_image {
                        &mut db[i * o..][..o]
                    } else {
                        &mut db[..]
                    };
                    for (sum, row) in db.iter_mut().zip(dy.chunks(n)) {
                        *sum += row.iter().sum::<f32>();
                    }
                }
                partial
            })
            .collect();
        let bias_len = if self.per_image { batch * o } else { o };
        let mut total = vec![0f32; o * k + bias_len];
        let mut image = 0;
        for partial in &partials {
            let (dw, db) = partial.split_at(o * k);
            for (t, v) in total[..o * k].iter_mut().zip(dw) {
                *t += v;
            }
            if self.per_image {
                total[o * k + image * o..][..db.len()].copy_from_slice(db);
                image += db.len() / o;
            } else {
                for (t, v) in total[o * k..].iter_mut().zip(db) {
                    *t += v;
                }
            }
        }
        let len = total.len();
        Ok((CpuStorage::F32(total), len.into()))
    }
}

/// `x [B, C, H, W]` convolved with `weight [O, C, k, k]` (stride `stride`, zero padding
/// `padding`), plus `bias` `[O]` or `[B, O]`: on the CPU the im2col products of this module,
/// elsewhere candle's `conv2d`.
pub(super) fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return candle_conv2d(x, weight, bias, stride, padding);
    }
    conv2d_op(x, false, weight, bias, stride, padding)
}

/// [`conv2d`] of the nearest ×2 of `x` (`[B, C, 2H, 2W]`, never built on the CPU: im2col reads
/// each stored pixel twice in each direction, col2im adds the four back).
pub(super) fn upsampled_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    padding: usize,
) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return candle_conv2d(&upsample(x)?, weight, bias, 1, padding);
    }
    conv2d_op(x, true, weight, bias, 1, padding)
}

fn conv2d_op(
    x: &Tensor,
    upsampled: bool,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (batch, channels, height, width) = x.dims4()?;
    let (filters, _, kernel, _) = weight.dims4()?;
    let stored = (channels, height, width);
    let geometry = Geometry::new(stored, upsampled, filters, kernel, stride, padding)?;
    let op = Conv2d(Conv2dShape { geometry, batch });
    Ok(x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?)
}

/// Nearest-neighbour ×2 of `[B, C, H, W]` as a reshape and a broadcast (differentiable): the
/// input of [`upsampled_conv2d`] off the CPU, and its reference in the tests.
fn upsample(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    Ok(x.reshape((b, c, h, 1, w, 1))?
        .broadcast_as((b, c, h, 2, w, 2))?
        .contiguous()?
        .reshape((b, c, 2 * h, 2 * w))?)
}

/// [`conv2d`] in candle's operations: what runs on CUDA, and the reference of the tests.
fn candle_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let y = x.conv2d(weight, padding, stride, 1, 1)?;
    let filters = weight.dim(0)?;
    let bias = match bias.rank() {
        1 => bias.reshape((1, filters, 1, 1))?,
        _ => bias.reshape((x.dim(0)?, filters, 1, 1))?,
    };
    Ok(y.broadcast_add(&bias)?)
}

#[cfg(test)]
mod tests {
    use super::super::op_check::{check, random};
    use super::*;

    #[test]
    fn im2col_products_match_candle_forward_and_gradients() {
        // (batch, channels, height, width, filters, kernel, stride, padding, bias per image)
        let cases = [
            (3, 3, 7, 5, 4, 3, 1, 1, false),
            (2, 2, 7, 9, 3, 3, 2, 1, false),
            (2, 3, 8, 6, 5, 3, 2, 1, true),
            (2, 5, 4, 3, 2, 1, 1, 0, false),
            (3, 4, 5, 5, 6, 1, 1, 0, true),
            (2, 2, 9, 7, 3, 3, 2, 0, false),
            (5, 3, 6, 6, 2, 3, 1, 1, true),
        ];
        for (seed, &(b, c, h, w, o, k, s, p, per_image)) in cases.iter().enumerate() {
            let seed = 10 * seed as u64;
            let bias: &[usize] = if per_image { &[b, o] } else { &[o] };
            let inputs = [
                random(seed, &[b, c, h, w], 0.0, 1.0),
                random(seed + 1, &[o, c, k, k], 0.0, 0.5),
                random(seed + 2, bias, 0.0, 1.0),
            ];
            let what = format!("{k}×{k} stride {s} padding {p} on {b}×{c}×{h}×{w}");
            check(
                &what,
                &inputs,
                |t| conv2d(&t[0], &t[1], &t[2], s, p).unwrap(),
                |t| candle_conv2d(&t[0], &t[1], &t[2], s, p).unwrap(),
                1e-5,
            );
        }
    }

    #[test]
    fn upsampled_convolutions_match_candle_on_the_upsampled_input() {
        // (batch, channels, stored height, stored width, filters, kernel, bias per image)
        for (seed, &(b, c, h, w, o, k, per_image)) in [
            (2, 3, 3, 5, 4, 3, false),
            (3, 2, 4, 4, 2, 3, true),
            (2, 4, 2, 3, 3, 1, false),
        ]
        .iter()
        .enumerate()
        {
            let seed = 100 + 10 * seed as u64;
            let bias: &[usize] = if per_image { &[b, o] } else { &[o] };
            let inputs = [
                random(seed, &[b, c, h, w], 0.0, 1.0),
                random(seed + 1, &[o, c, k, k], 0.0, 0.5),
                random(seed + 2, bias, 0.0, 1.0),
            ];
            let p = k / 2;
            check(
                &format!("{k}×{k} of the nearest ×2 of {b}×{c}×{h}×{w}"),
                &inputs,
                |t| upsampled_conv2d(&t[0], &t[1], &t[2], p).unwrap(),
                |t| candle_conv2d(&upsample(&t[0]).unwrap(), &t[1], &t[2], 1, p).unwrap(),
                1e-5,
            );
        }
    }

    #[test]
    fn weight_gradients_do_not_depend_on_the_thread_count() {
        let x = random(1, &[9, 3, 6, 5], 0.0, 1.0);
        let weight = candle_core::Var::from_tensor(&random(2, &[4, 3, 3, 3], 0.0, 1.0)).unwrap();
        let bias = candle_core::Var::from_tensor(&random(3, &[4], 0.0, 1.0)).unwrap();
        let gradient = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let y = conv2d(&x, weight.as_tensor(), bias.as_tensor(), 2, 1).unwrap();
                let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                let dw = grads.get(&weight).unwrap().flatten_all().unwrap();
                dw.to_vec1::<f32>().unwrap()
            })
        };
        let one = gradient(1);
        assert_eq!(one, gradient(2));
        assert_eq!(one, gradient(3));
    }

    #[test]
    fn kernels_larger_than_the_padded_image_are_refused() {
        let x = random(1, &[1, 1, 2, 2], 0.0, 1.0);
        let weight = random(2, &[1, 1, 5, 5], 0.0, 1.0);
        let bias = random(3, &[1], 0.0, 1.0);
        let error = conv2d(&x, &weight, &bias, 1, 1).unwrap_err().to_string();
        assert!(error.contains("does not fit a 2×2 image"), "{error}");
    }
}
