//! GroupNorm (Wu & He 2018), optionally followed by SiLU, as one pass forward and two backward
//! on the CPU.
//!
//! `y = act(γ_c·(x − μ_g)/√(σ²_g + ε) + β_c)` with `μ_g`, `σ²_g` the mean and (biased) variance of
//! group `g` of each image, `act` the identity or SiLU `z·sigmoid(z)`. Built from candle's basic
//! operations the same thing took nine full passes forward and more backward, each allocating a
//! tensor. Backward, with `x̂ = (x − μ)·r`, `r = 1/√(σ² + ε)`, `z = γ·x̂ + β`, `dz = dy·act'(z)`
//! and `d = γ·dz`:
//!
//! * `dx = r·(d − mean_g(d) − x̂·mean_g(d·x̂))`,
//! * `dγ_c = Σ dz·x̂`, `dβ_c = Σ dz` (over the images and the positions of channel `c`).
//!
//! The rows are summed in 8 lanes and the rows' sums added in f64; `e^z` is the runtime's
//! branch-free `exp`, so the loops vectorize (built for AVX2 where the CPU has it). Images run in
//! parallel on rayon's pool; `dγ`, `dβ` are summed over the images in order, whatever the thread count.
//! Off the CPU [`group_norm`] is the same formula in candle's operations.

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;
use web_sampler::model::{exp, GROUP_NORM_EPSILON};

/// The shapes of a normalised batch and whether SiLU follows.
#[derive(Clone, Copy)]
struct GroupNormShape {
    batch: usize,
    channels: usize,
    /// `H·W`.
    positions: usize,
    groups: usize,
    silu: bool,
}

impl GroupNormShape {
    fn image_len(&self) -> usize {
        self.channels * self.positions
    }

    fn group_channels(&self) -> usize {
        self.channels / self.groups
    }

    /// `(μ, r)` of each group of one image `[C, H·W]`: two passes (the mean, then the squared
    /// deviations), each row summed in [`LANES`] lanes and the rows added in f64.
    #[inline(always)]
    fn statistics(&self, image: &[f32]) -> Vec<(f32, f32)> {
        let len = self.group_channels() * self.positions;
        image
            .chunks(len)
            .map(|group| {
                let rows = || group.chunks(self.positions);
                let mean = rows().map(|row| lane_sum(row, |v| v)).sum::<f64>() / len as f64;
                let centre = mean as f32;
                let variance = rows()
                    .map(|row| lane_sum(row, |v| (v - centre) * (v - centre)))
                    .sum::<f64>()
                    / len as f64;
                (
                    centre,
                    (1.0 / (variance + GROUP_NORM_EPSILON).sqrt()) as f32,
                )
            })
            .collect()
    }

    /// The forward of one image: `y = act(a_c·x + b_c)` with `a_c = γ_c·r`, `b_c = β_c − a_c·μ`.
    #[inline(always)]
    fn forward_image(&self, image: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32]) {
        let statistics = self.statistics(image);
        let rows = y
            .chunks_mut(self.positions)
            .zip(image.chunks(self.positions));
        for (c, (y, x)) in rows.enumerate() {
            let (mean, scale) = statistics[c / self.group_channels()];
            let (a, b) = (gamma[c] * scale, beta[c] - gamma[c] * scale * mean);
            if self.silu {
                for (y, &x) in y.iter_mut().zip(x) {
                    let z = a * x + b;
                    *y = z / (1.0 + exp(-z));
                }
            } else {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = a * x + b;
                }
            }
        }
    }

    /// The backward of one image: writes `dx` and returns this image's `dγ` then `dβ`.
    #[inline(always)]
    fn backward_image(
        &self,
        image: &[f32],
        gamma: &[f32],
        beta: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) -> Vec<f32> {
        let (channels, positions) = (self.channels, self.positions);
        let statistics = self.statistics(image);
        let group_len = (self.group_channels() * positions) as f64;
        let mut affine = vec![0f32; 2 * channels];
        // Σ d and Σ d·x̂ of each group.
        let mut sums = vec![(0f64, 0f64); self.groups];
        let rows = dx.chunks_mut(positions).zip(image.chunks(positions));
        for (c, ((d, x), dy)) in rows.zip(dy.chunks(positions)).enumerate() {
            let group = c / self.group_channels();
            let (mean, scale) = statistics[group];
            let [dgamma, dbeta, sum, sum_xhat] =
                backward_row(x, dy, d, (mean, scale), (gamma[c], beta[c]), self.silu);
            affine[c] = dgamma;
            affine[channels + c] = dbeta;
            sums[group].0 += f64::from(sum);
            sums[group].1 += f64::from(sum_xhat);
        }
        let rows = dx.chunks_mut(positions).zip(image.chunks(positions));
        for (c, (d, x)) in rows.enumerate() {
            let group = c / self.group_channels();
            let (mean, scale) = statistics[group];
            let mean_d = (sums[group].0 / group_len) as f32;
            let mean_dxhat = (sums[group].1 / group_len) as f32;
            for (d, &x) in d.iter_mut().zip(x) {
                let xhat = (x - mean) * scale;
                *d = scale * (*d - mean_d - xhat * mean_dxhat);
            }
        }
        affine
    }
}

/// Independent accumulators in the row loops, so that the sums vectorize (8 AVX2 lanes).
const LANES: usize = 8;

/// `Σ f(v)` over `row`, in [`LANES`] lanes added at the end in f64.
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            lanes[l] += f(chunk[l]);
        }
    }
    let tail: f64 = rest.iter().map(|&v| f64::from(f(v))).sum();
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

/// The first backward pass over one channel's row: `d = γ·dz` into `d`, and
/// `[Σ dz·x̂, Σ dz, Σ d, Σ d·x̂]`, each in [`LANES`] lanes.
#[inline(always)]
fn backward_row(
    x: &[f32],
    dy: &[f32],
    d: &mut [f32],
    (mean, scale): (f32, f32),
    (gamma, beta): (f32, f32),
    silu: bool,
) -> [f32; 4] {
    let element = |x: f32, dy: f32| {
        let xhat = (x - mean) * scale;
        let dz = if silu {
            let z = gamma * xhat + beta;
            let s = 1.0 / (1.0 + exp(-z));
            dy * s * (1.0 + z * (1.0 - s))
        } else {
            dy
        };
        (xhat, dz, gamma * dz)
    };
    let mut lanes = [[0f32; LANES]; 4];
    let mut chunks = d.chunks_exact_mut(LANES);
    for ((d, x), dy) in (&mut chunks)
        .zip(x.chunks_exact(LANES))
        .zip(dy.chunks_exact(LANES))
    {
        for l in 0..LANES {
            let (xhat, dz, value) = element(x[l], dy[l]);
            d[l] = value;
            lanes[0][l] += dz * xhat;
            lanes[1][l] += dz;
            lanes[2][l] += value;
            lanes[3][l] += value * xhat;
        }
    }
    let mut sums = lanes.map(|lane| lane.iter().sum::<f32>());
    let done = x.len() - x.len() % LANES;
    for ((d, &x), &dy) in chunks
        .into_remainder()
        .iter_mut()
        .zip(&x[done..])
        .zip(&dy[done..])
    {
        let (xhat, dz, value) = element(x, dy);
        *d = value;
        sums[0] += dz * xhat;
        sums[1] += dz;
        sums[2] += value;
        sums[3] += value * xhat;
    }
    sums
}

/// [`GroupNormShape::forward_image`] compiled for AVX2.
///
/// # Safety
/// Only where the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_image_avx2(
    shape: &GroupNormShape,
    image: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
) {
    shape.forward_image(image, gamma, beta, y)
}

/// [`GroupNormShape::backward_image`] compiled for AVX2.
///
/// # Safety
/// Only where the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn backward_image_avx2(
    shape: &GroupNormShape,
    image: &[f32],
    gamma: &[f32],
    beta: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) -> Vec<f32> {
    shape.backward_image(image, gamma, beta, dy, dx)
}

/// Whether the AVX2 builds of the image loops can run here.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2");
    #[allow(unreachable_code)]
    false
}

/// `(x [B, C, H, W], affine [2, C] = (γ, β)) → y [B, C, H, W]`.
struct GroupNorm(GroupNormShape);

impl CustomOp2 for GroupNorm {
    fn name(&self) -> &'static str {
        "group-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = self.0;
        let x = contiguous_f32("group_norm", s1, l1, "input")?;
        let (gamma, beta) =
            contiguous_f32("group_norm", s2, l2, "affine")?.split_at(shape.channels);
        let mut y = vec![0f32; x.len()];
        let avx2 = has_avx2();
        y.par_chunks_mut(shape.image_len())
            .zip(x.par_chunks(shape.image_len()))
            .for_each(|(y, image)| {
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { forward_image_avx2(&shape, image, gamma, beta, y) };
                }
                shape.forward_image(image, gamma, beta, y)
            });
        let dims = (shape.batch, shape.channels, shape.positions);
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        affine: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let gradients =
            x.apply_op3_no_bwd(affine, &dy.contiguous()?, &GroupNormGradient(self.0))?;
        let len = x.elem_count();
        let dx = gradients.narrow(0, 0, len)?.reshape(x.shape())?;
        let daffine = gradients
            .narrow(0, len, 2 * self.0.channels)?
            .reshape(affine.shape())?;
        Ok((
            x.track_op().then_some(dx),
            affine.track_op().then_some(daffine),
        ))
    }
}

/// `(x, affine, dy) → [B·C·H·W + 2·C]`: `dx`, then `dγ` and `dβ`.
struct GroupNormGradient(GroupNormShape);

impl CustomOp3 for GroupNormGradient {
    fn name(&self) -> &'static str {
        "group-norm-gradient"
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
        let shape = self.0;
        let x = contiguous_f32("group_norm", s1, l1, "input")?;
        let (gamma, beta) =
            contiguous_f32("group_norm", s2, l2, "affine")?.split_at(shape.channels);
        let dy = contiguous_f32("group_norm", s3, l3, "output gradient")?;
        let mut out = vec![0f32; x.len() + 2 * shape.channels];
        let (dx, _) = out.split_at_mut(x.len());
        let avx2 = has_avx2();
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(shape.image_len())
            .zip(x.par_chunks(shape.image_len()))
            .zip(dy.par_chunks(shape.image_len()))
            .map(|((dx, image), dy)| {
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { backward_image_avx2(&shape, image, gamma, beta, dy, dx) };
                }
                shape.backward_image(image, gamma, beta, dy, dx)
            })
            .collect();
        let total = &mut out[x.len()..];
        for partial in &partials {
            for (t, v) in total.iter_mut().zip(partial) {
                *t += v;
            }
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// GroupNorm of `x` `[B, C, H, W]` with `groups` groups, scale `gamma` `[C]` and shift `beta`
/// `[C]`, followed by SiLU when `silu`: one op of this module on the CPU, candle's basic
/// operations elsewhere.
pub(super) fn group_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    silu: bool,
) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return candle_group_norm(x, gamma, beta, groups, silu);
    }
    let (b, c, h, w) = x.dims4()?;
    if groups == 0 || c % groups != 0 {
        anyhow::bail!("group_norm: {c} channels do not split into {groups} groups");
    }
    let shape = GroupNormShape {
        batch: b,
        channels: c,
        positions: h * w,
        groups,
        silu,
    };
    let affine = Tensor::stack(&[gamma, beta], 0)?;
    let y = x.contiguous()?.apply_op2(&affine, GroupNorm(shape))?;
    Ok(y.reshape((b, c, h, w))?)
}

/// [`group_norm`] in candle's operations: what runs on CUDA, and the reference of the tests.
fn candle_group_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    silu: bool,
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let grouped = x.reshape((b, groups, (c / groups) * h * w))?;
    let mean = grouped.mean_keepdim(2)?;
    let centered = grouped.broadcast_sub(&mean)?;
    let variance = centered.sqr()?.mean_keepdim(2)?;
    let normal = centered.broadcast_div(&(variance + GROUP_NORM_EPSILON)?.sqrt()?)?;
    let y = normal
        .reshape((b, c, h, w))?
        .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?
        .broadcast_add(&beta.reshape((1, c, 1, 1))?)?;
    Ok(if silu { y.silu()? } else { y })
}

#[cfg(test)]
mod tests {
    use super::super::op_check::{check, random};
    use super::*;

    #[test]
    fn one_pass_group_norm_matches_candle_forward_and_gradients() {
        // (batch, channels, height, width, groups)
        for (seed, &(b, c, h, w, groups)) in [(3, 4, 5, 3, 2), (2, 6, 7, 7, 3), (1, 8, 2, 1, 8)]
            .iter()
            .enumerate()
        {
            for silu in [false, true] {
                let seed = 10 * seed as u64;
                let inputs = [
                    random(seed, &[b, c, h, w], 0.5, 2.0),
                    random(seed + 1, &[c], 1.0, 0.3),
                    random(seed + 2, &[c], 0.0, 0.5),
                ];
                let what = format!("{groups} groups of {b}×{c}×{h}×{w}, SiLU {silu}");
                check(
                    &what,
                    &inputs,
                    |t| group_norm(&t[0], &t[1], &t[2], groups, silu).unwrap(),
                    |t| candle_group_norm(&t[0], &t[1], &t[2], groups, silu).unwrap(),
                    1e-4,
                );
            }
        }
    }

    #[test]
    fn channels_that_do_not_split_into_groups_are_refused() {
        let x = random(1, &[1, 6, 2, 2], 0.0, 1.0);
        let gamma = random(2, &[6], 1.0, 0.1);
        let error = group_norm(&x, &gamma, &gamma, 4, true).unwrap_err();
        assert!(error.to_string().contains("6 channels"), "{error}");
    }
}
