//! The U-Net's CPU forward over its weights: one sample at a time, activations
//! `[H·W, channels]`, convolutions in a fixed order (`conv2d.rs`: the dense layer's order over
//! im2col rows, or Winograd's F(2×2, 3×3) for the 3×3 ones with stride 1), GroupNorm
//! summed in f64 in a fixed order, `libm` for SiLU, the softmax and the square roots; so the
//! output is the same natively and in wasm. The layers are the spec's
//! [`UnetLayout`](super::UnetLayout) mapped to the CPU's weights (`Index`, a
//! [`LayerMap`](super::LayerMap)).

use std::collections::HashMap;

use super::{
    AttentionBlock, ConvLayer, DenseLayer, LayerMap, NormLayer, ResidualBlock, UnetLayout,
    UnetSpec, GROUP_NORM_EPSILON,
};
use crate::model::activation::{silu, silu_in_place};
use crate::model::conv2d::PackedConv;
use crate::model::embedding::write_time_embedding;
use crate::model::linear::{linear, PackedLinear};
use crate::model::network::VelocityNetwork;
use crate::model::spec::{ModelSpec, CLASS_TABLE};

/// A convolution, packed for the kernel at load.
#[derive(Clone, Debug)]
struct CpuConv {
    packed: PackedConv,
    inputs: usize,
}

/// A GroupNorm: the indices of its weight and bias in the tensor list, and its channels.
#[derive(Clone, Debug)]
struct CpuNorm {
    weight: usize,
    bias: usize,
    channels: usize,
}

/// A dense layer, packed for the kernel at load.
#[derive(Clone, Debug)]
struct CpuDense {
    packed: PackedLinear,
}

type CpuBlock = ResidualBlock<CpuDense, CpuConv, CpuNorm>;
type CpuAttention = AttentionBlock<CpuConv, CpuNorm>;

/// The U-Net's weights (in `tensor_shapes` order) and its layers, packed or as indices into
/// them.
#[derive(Clone, Debug)]
pub(crate) struct Unet {
    tensors: Vec<Vec<f32>>,
    /// The index of `class_embedding.weight`, for conditional models.
    class_table: Option<usize>,
    time_embedding: usize,
    time_scale: f64,
    embedding_width: usize,
    layers: UnetLayout<CpuDense, CpuConv, CpuNorm>,
    /// Working buffers kept between calls (one per thread that ran a forward at once).
    scratch: ScratchPool,
}

/// The [`Scratch`]es of earlier calls, reused so that a forward does not fault in fresh pages
/// for its activations; a clone starts empty.
#[derive(Default)]
struct ScratchPool(std::sync::Mutex<Vec<Scratch>>);

impl ScratchPool {
    fn take(&self) -> Scratch {
        self.0
            .lock()
            .ok()
            .and_then(|mut kept| kept.pop())
            .unwrap_or_default()
    }

    fn keep(&self, scratch: Scratch) {
        if let Ok(mut kept) = self.0.lock() {
            kept.push(scratch);
        }
    }
}

impl Clone for ScratchPool {
    fn clone(&self) -> ScratchPool {
        ScratchPool::default()
    }
}

impl std::fmt::Debug for ScratchPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScratchPool")
    }
}

/// Tensor indices by name, with a check of each tensor's length: the layers of the CPU forward.
struct Index<'a> {
    positions: HashMap<String, usize>,
    tensors: &'a [Vec<f32>],
}

/// A tensor that is missing or not of its layer's size (the caller checked them: an internal
/// error).
struct Mismatch;

impl Index<'_> {
    /// The indices of `name.weight` (`weight_len` values) and `name.bias` (`bias_len`).
    fn pair(
        &self,
        name: &str,
        weight_len: usize,
        bias_len: usize,
    ) -> Result<(usize, usize), Mismatch> {
        let at = |suffix: &str| self.positions.get(&format!("{name}.{suffix}")).copied();
        let (Some(weight), Some(bias)) = (at("weight"), at("bias")) else {
            return Err(Mismatch);
        };
        if self.tensors[weight].len() == weight_len && self.tensors[bias].len() == bias_len {
            Ok((weight, bias))
        } else {
            Err(Mismatch)
        }
    }
}

impl LayerMap for Index<'_> {
    type Dense = CpuDense;
    type Conv = CpuConv;
    type Norm = CpuNorm;
    type Error = Mismatch;

    fn dense(&mut self, layer: &DenseLayer) -> Result<CpuDense, Mismatch> {
        let (weight, bias) = self.pair(&layer.name, layer.outputs * layer.inputs, layer.outputs)?;
        Ok(CpuDense {
            packed: PackedLinear::new(&self.tensors[weight], &self.tensors[bias], layer.inputs),
        })
    }

    fn conv(&mut self, layer: &ConvLayer) -> Result<CpuConv, Mismatch> {
        let (weight, bias) =
            self.pair(&layer.name, layer.outputs * layer.fan_in(), layer.outputs)?;
        Ok(CpuConv {
            packed: PackedConv::new(
                &self.tensors[weight],
                &self.tensors[bias],
                layer.inputs,
                layer.kernel,
                layer.stride,
            ),
            inputs: layer.inputs,
        })
    }

    fn norm(&mut self, layer: &NormLayer) -> Result<CpuNorm, Mismatch> {
        let (weight, bias) = self.pair(&layer.name, layer.channels, layer.channels)?;
        Ok(CpuNorm {
            weight,
            bias,
            channels: layer.channels,
        })
    }
}

/// The working buffers of one forward call, reused for every sample.
#[derive(Default)]
struct Scratch {
    /// The current activation `[positions, channels]`.
    h: Vec<f32>,
    /// Block intermediates.
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    /// A convolution's zero-padded input.
    padded: Vec<f32>,
    /// The embedding after SiLU `[E]` and one block's projection of it.
    embedding: Vec<f32>,
    shift: Vec<f32>,
    /// The skips of the way down, in order.
    skips: Vec<Vec<f32>>,
    attention: AttentionScratch,
}

/// The working buffers of [`attention`].
#[derive(Default)]
pub(crate) struct AttentionScratch {
    /// Queries, keys, transposed values, zero biases.
    queries: Vec<f32>,
    keys: Vec<f32>,
    values_t: Vec<f32>,
    zeros: Vec<f32>,
    /// The attention weights `[positions, positions]` (after the softmax).
    pub scores: Vec<f32>,
}

impl Unet {
    /// The network from its tensors in [`UnetSpec::tensor_shapes`] order, or `None` when they do
    /// not have those shapes (the caller checked them against the spec: an internal error).
    pub(crate) fn new(spec: &ModelSpec, unet: &UnetSpec, tensors: Vec<Vec<f32>>) -> Option<Unet> {
        let shapes = unet.tensor_shapes(spec);
        if shapes.len() != tensors.len() {
            return None;
        }
        let mut index = Index {
            positions: shapes
                .iter()
                .enumerate()
                .map(|(i, (name, _))| (name.clone(), i))
                .collect(),
            tensors: &tensors,
        };
        let class_table = spec
            .is_conditional()
            .then(|| index.positions.get(CLASS_TABLE).copied());
        let class_table = match class_table {
            Some(found) => {
                let at = found?;
                let rows = spec.num_classes + 1;
                if tensors[at].len() != rows * unet.embedding_width {
                    return None;
                }
                Some(at)
            }
            None => None,
        };
        let layers = unet.layout(spec).try_map(&mut index).ok()?;
        Some(Unet {
            tensors,
            class_table,
            time_embedding: spec.time_embedding,
            time_scale: spec.time_scale,
            embedding_width: unet.embedding_width,
            layers,
            scratch: ScratchPool::default(),
        })
    }

    /// `out` `[positions', outputs]` = the convolution of `x` `[h·w, inputs]`; returns the
    /// output size.
    fn conv(
        &self,
        layer: &CpuConv,
        x: &[f32],
        size: (usize, usize),
        padded: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) -> (usize, usize) {
        layer.packed.forward(x, size, padded, out)
    }

    /// GroupNorm of `x` `[positions, channels]` into `out`, then SiLU when `activate`.
    fn group_norm(&self, layer: &CpuNorm, x: &[f32], activate: bool, out: &mut Vec<f32>) {
        let (weight, bias) = (&self.tensors[layer.weight], &self.tensors[layer.bias]);
        group_norm(
            weight,
            bias,
            layer.channels,
            self.layers.groups,
            x,
            activate,
            out,
        );
    }

    /// One residual block on `scratch.h` `[size, inputs]` → `scratch.h` `[size, outputs]`.
    fn block(&self, block: &CpuBlock, size: (usize, usize), s: &mut Scratch) {
        let positions = size.0 * size.1;
        self.group_norm(
            &block.norm1,
            &s.h[..positions * block.norm1.channels],
            true,
            &mut s.a,
        );
        self.conv(&block.conv1, &s.a, size, &mut s.padded, &mut s.b);
        s.shift.clear();
        s.shift.resize(block.embedding.packed.fan_out(), 0.0);
        block.embedding.packed.forward(&s.embedding, &mut s.shift);
        for row in s.b.chunks_exact_mut(s.shift.len()) {
            for (v, shift) in row.iter_mut().zip(&s.shift) {
                *v += shift;
            }
        }
        self.group_norm(&block.norm2, &s.b, true, &mut s.a);
        self.conv(&block.conv2, &s.a, size, &mut s.padded, &mut s.c);
        match &block.skip {
            Some(skip) => {
                self.conv(skip, &s.h, size, &mut s.padded, &mut s.b);
                for (v, residual) in s.c.iter_mut().zip(&s.b) {
                    *v += residual;
                }
            }
            None => {
                for (v, residual) in s.c.iter_mut().zip(&s.h) {
                    *v += residual;
                }
            }
        }
        std::mem::swap(&mut s.h, &mut s.c);
    }

    /// Single-head self-attention on `scratch.h` `[positions, channels]`, added to it.
    fn attend(&self, attention: &CpuAttention, positions: usize, s: &mut Scratch) {
        let c = attention.norm.channels;
        self.group_norm(&attention.norm, &s.h[..positions * c], false, &mut s.a);
        self.conv(
            &attention.qkv,
            &s.a,
            (positions, 1),
            &mut s.padded,
            &mut s.b,
        );
        self::attention(&s.b, positions, c, &mut s.attention, &mut s.c);
        self.conv(
            &attention.proj,
            &s.c,
            (positions, 1),
            &mut s.padded,
            &mut s.a,
        );
        for (v, update) in s.h.iter_mut().zip(&s.a) {
            *v += update;
        }
    }

    /// The network's output for one sample: `x` `[C, H, W]` → `out` `[C, H, W]`.
    fn forward_one(&self, x: &[f32], t: f32, class: Option<u32>, out: &mut [f32], s: &mut Scratch) {
        let layers = &self.layers;
        let (channels, h, w) = layers.data_shape;
        let size = (h, w);

        // The embedding, after the SiLU every block applies to it.
        s.a.clear();
        s.a.resize(self.time_embedding, 0.0);
        write_time_embedding(t, self.time_scale, &mut s.a);
        let e = self.embedding_width;
        s.b.clear();
        s.b.resize(e, 0.0);
        layers.time[0].packed.forward(&s.a, &mut s.b);
        for v in s.b.iter_mut() {
            *v = silu(*v);
        }
        s.embedding.clear();
        s.embedding.resize(e, 0.0);
        layers.time[1].packed.forward(&s.b, &mut s.embedding);
        if let (Some(table), Some(class)) = (self.class_table, class) {
            let row = &self.tensors[table][class as usize * e..(class as usize + 1) * e];
            for (v, c) in s.embedding.iter_mut().zip(row) {
                *v += c;
            }
        }
        for v in s.embedding.iter_mut() {
            *v = silu(*v);
        }

        to_position_major(x, channels, &mut s.a);
        let a = std::mem::take(&mut s.a);
        self.conv(&layers.input, &a, size, &mut s.padded, &mut s.h);
        s.a = a;

        let mut skips = std::mem::take(&mut s.skips);
        let mut used = 0;
        for level in &layers.down {
            for block in &level.blocks {
                self.block(block, level.size, s);
                if skips.len() == used {
                    skips.push(Vec::new());
                }
                skips[used].clear();
                skips[used].extend_from_slice(&s.h);
                used += 1;
            }
            if let Some(down) = &level.resample {
                let h_in = std::mem::take(&mut s.h);
                self.conv(down, &h_in, level.size, &mut s.padded, &mut s.h);
                s.a = h_in;
            }
        }
        let lowest = layers.down.last().map(|l| l.size).unwrap_or(size);
        self.block(&layers.middle[0], lowest, s);
        if let Some(attention) = &layers.attention {
            self.attend(attention, lowest.0 * lowest.1, s);
        }
        self.block(&layers.middle[1], lowest, s);
        for level in &layers.up {
            let p = level.size.0 * level.size.1;
            for block in &level.blocks {
                used -= 1;
                concat_channels(&s.h, &skips[used], p, &mut s.a);
                std::mem::swap(&mut s.h, &mut s.a);
                self.block(block, level.size, s);
            }
            if let Some(upsample) = &level.resample {
                let (lh, lw) = level.size;
                upsample_nearest(&s.h, level.size, upsample.inputs, &mut s.a);
                let a = std::mem::take(&mut s.a);
                self.conv(upsample, &a, (2 * lh, 2 * lw), &mut s.padded, &mut s.h);
                s.a = a;
            }
        }
        s.skips = skips;

        let h_final = std::mem::take(&mut s.h);
        self.group_norm(&layers.out_norm, &h_final, true, &mut s.a);
        s.h = h_final;
        let a = std::mem::take(&mut s.a);
        self.conv(&layers.out_conv, &a, size, &mut s.padded, &mut s.c);
        s.a = a;
        to_channel_major(&s.c, channels, out);
    }
}

/// A sample as stored, `x` `[channels, positions]`, position-major into `out`
/// `[positions, channels]`. The CPU reference of the GPU's `transpose`.
pub(crate) fn to_position_major(x: &[f32], channels: usize, out: &mut Vec<f32>) {
    let positions = x.len() / channels;
    out.clear();
    out.resize(positions * channels, 0.0);
    for c in 0..channels {
        for p in 0..positions {
            out[p * channels + c] = x[c * positions + p];
        }
    }
}

/// The inverse of [`to_position_major`]: `x` `[positions, channels]` (at least) into `out`
/// `[channels, positions]`, its `positions` being `out.len() / channels`.
fn to_channel_major(x: &[f32], channels: usize, out: &mut [f32]) {
    let positions = out.len() / channels;
    for c in 0..channels {
        for p in 0..positions {
            out[c * positions + p] = x[p * channels + c];
        }
    }
}

/// `a` `[positions, A]` and `b` `[positions, B]` into `out` `[positions, A + B]`: each
/// position's channels of `a`, then those of `b` (the way up's input and its skip). The CPU
/// reference of the GPU's `concat`.
pub(crate) fn concat_channels(a: &[f32], b: &[f32], positions: usize, out: &mut Vec<f32>) {
    let (own, theirs) = (a.len() / positions, b.len() / positions);
    out.clear();
    for (mine, other) in a.chunks_exact(own).zip(b.chunks_exact(theirs)) {
        out.extend_from_slice(mine);
        out.extend_from_slice(other);
    }
}

/// Nearest ×2 of `x` `[h·w, channels]` at `size` `(h, w)` into `out` `[2h·2w, channels]`:
/// output position `(y, x)` is input position `(y / 2, x / 2)`. The CPU reference of the GPU's
/// `upsample`.
pub(crate) fn upsample_nearest(
    x: &[f32],
    (h, w): (usize, usize),
    channels: usize,
    out: &mut Vec<f32>,
) {
    let c = channels;
    out.clear();
    out.resize(4 * h * w * c, 0.0);
    for oy in 0..2 * h {
        for ox in 0..2 * w {
            let from = ((oy / 2) * w + ox / 2) * c;
            let to = (oy * 2 * w + ox) * c;
            out[to..to + c].copy_from_slice(&x[from..from + c]);
        }
    }
}

/// The sizes of a convolution: `[outputs, inputs, kernel, kernel]` weights, padding
/// `kernel / 2`.
#[cfg(test)]
pub(crate) struct ConvShape {
    pub inputs: usize,
    pub outputs: usize,
    pub kernel: usize,
    pub stride: usize,
}

/// `out` `[positions', outputs]` = the convolution of `x` `[h·w, inputs]` (`padded`: working
/// memory), packing the weights on each call; returns the output size. The CPU reference of
/// the GPU's `conv2d`.
#[cfg(test)]
pub(crate) fn conv2d(
    layer: &ConvShape,
    weight: &[f32],
    bias: &[f32],
    x: &[f32],
    size: (usize, usize),
    padded: &mut Vec<f32>,
    out: &mut Vec<f32>,
) -> (usize, usize) {
    assert_eq!(bias.len(), layer.outputs, "conv2d: bias is not [outputs]");
    PackedConv::new(weight, bias, layer.inputs, layer.kernel, layer.stride)
        .forward(x, size, padded, out)
}

/// GroupNorm (`groups` groups, per-channel `weight` and `bias`) of `x` `[positions, channels]`
/// into `out`, then SiLU when `activate`. The CPU reference of the GPU's `group_norm`.
///
/// The order (FORMATS.md §1.3): each channel's sum over the positions in increasing order, in
/// `f64`; a group's sum is its channels' sums in increasing channel order; the same for the
/// squared deviations from the group's mean. Per-channel sums are independent chains, so the
/// loops run over channels in SIMD lanes (a vector's width changes the speed, not the bits).
pub(crate) fn group_norm(
    weight: &[f32],
    bias: &[f32],
    c: usize,
    groups: usize,
    x: &[f32],
    activate: bool,
    out: &mut Vec<f32>,
) {
    let x = &x[..x.len() / c * c];
    out.clear();
    out.resize(x.len(), 0.0);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        unsafe { group_norm_avx2(weight, bias, c, groups, x, out) };
    } else {
        normalize(weight, bias, c, groups, x, out);
    }
    #[cfg(not(target_arch = "x86_64"))]
    normalize(weight, bias, c, groups, x, out);
    if activate {
        silu_in_place(out);
    }
}

/// [`normalize`] compiled for AVX2 (four `f64` lanes instead of SSE2's two).
///
/// # Safety
/// Only where the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn group_norm_avx2(
    weight: &[f32],
    bias: &[f32],
    c: usize,
    groups: usize,
    x: &[f32],
    out: &mut [f32],
) {
    normalize(weight, bias, c, groups, x, out)
}

/// GroupNorm's statistics and affine part (see [`group_norm`]) of `x` into `out`, both
/// `[positions, c]`.
#[inline(always)]
fn normalize(weight: &[f32], bias: &[f32], c: usize, groups: usize, x: &[f32], out: &mut [f32]) {
    let positions = x.len() / c;
    let per_group = c / groups;
    let count = (positions * per_group) as f64;
    let (weight, bias) = (&weight[..c], &bias[..c]);
    // Per channel: the sums, then the group's mean, then the squared deviations, then the
    // group's 1/√(σ² + ε).
    let mut sums = vec![0.0f64; c];
    for row in x.chunks_exact(c) {
        for (sum, &v) in sums.iter_mut().zip(row) {
            *sum += f64::from(v);
        }
    }
    let mut means = vec![0.0f64; c];
    for (group, means) in sums
        .chunks_exact(per_group)
        .zip(means.chunks_exact_mut(per_group))
    {
        let mut total = 0.0f64;
        for &sum in group {
            total += sum;
        }
        means.fill(total / count);
    }
    let squares = &mut sums;
    squares.fill(0.0);
    for row in x.chunks_exact(c) {
        for ((square, &v), &mean) in squares.iter_mut().zip(row).zip(&means) {
            let d = f64::from(v) - mean;
            *square += d * d;
        }
    }
    let mut inverses = vec![0.0f64; c];
    for (group, inverses) in squares
        .chunks_exact(per_group)
        .zip(inverses.chunks_exact_mut(per_group))
    {
        let mut total = 0.0f64;
        for &square in group {
            total += square;
        }
        inverses.fill(1.0 / libm::sqrt(total / count + GROUP_NORM_EPSILON));
    }
    for (row, target) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
        for (((((y, &v), &mean), &inverse), &w), &b) in target
            .iter_mut()
            .zip(row)
            .zip(&means)
            .zip(&inverses)
            .zip(weight)
            .zip(bias)
        {
            let normal = ((f64::from(v) - mean) * inverse) as f32;
            *y = normal * w + b;
        }
    }
}

/// Single-head self-attention of `qkv` `[positions, 3·c]` (queries, keys, values) into `out`
/// `[positions, c]`: softmax(q·kᵀ / √c) (left in `s.scores`) times the values. The CPU
/// reference of the GPU's `attention_weights` and `attention_values`.
pub(crate) fn attention(
    qkv: &[f32],
    positions: usize,
    c: usize,
    s: &mut AttentionScratch,
    out: &mut Vec<f32>,
) {
    s.queries.clear();
    s.keys.clear();
    s.values_t.clear();
    s.values_t.resize(c * positions, 0.0);
    for (p, row) in qkv[..positions * 3 * c].chunks_exact(3 * c).enumerate() {
        s.queries.extend_from_slice(&row[..c]);
        s.keys.extend_from_slice(&row[c..2 * c]);
        for (j, &v) in row[2 * c..].iter().enumerate() {
            s.values_t[j * positions + p] = v;
        }
    }
    s.zeros.clear();
    s.zeros.resize(positions.max(c), 0.0);
    s.scores.clear();
    s.scores.resize(positions * positions, 0.0);
    linear(&s.queries, &s.keys, &s.zeros[..positions], c, &mut s.scores);
    let scale = (1.0 / libm::sqrt(c as f64)) as f32;
    for row in s.scores.chunks_exact_mut(positions) {
        let mut largest = f32::NEG_INFINITY;
        for v in row.iter_mut() {
            *v *= scale;
            largest = largest.max(*v);
        }
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = libm::expf(*v - largest);
            sum += *v;
        }
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
    out.clear();
    out.resize(positions * c, 0.0);
    linear(&s.scores, &s.values_t, &s.zeros[..c], positions, out);
}

impl VelocityNetwork for Unet {
    fn tensors(&self) -> Vec<&[f32]> {
        self.tensors.iter().map(Vec::as_slice).collect()
    }

    fn forward(&self, x: &[f32], t: &[f32], class: &[u32], out: &mut [f32]) {
        let (channels, h, w) = self.layers.data_shape;
        let d = channels * h * w;
        let mut scratch = self.scratch.take();
        for (r, (&time, target)) in t.iter().zip(out.chunks_exact_mut(d)).enumerate() {
            let row = &x[r * d..(r + 1) * d];
            self.forward_one(row, time, class.get(r).copied(), target, &mut scratch);
        }
        self.scratch.keep(scratch);
    }
}
