//! The U-Net velocity network on the GPU (the CPU forward is `model/unet/forward.rs`): the one
//! place of the GPU path that knows the network is a U-Net and reads its layers, by name,
//! through [`UnetLayout`].
//!
//! Activations are position-major, `[R, H·W, channels]` for `R` rows, as on the CPU. One
//! evaluation: the time-embedding MLP on the step's row (`linear` ×2, one row), `condition`
//! (+ the class row, SiLU → `[R, E]`), `transpose` of x to position-major, the input `conv2d`,
//! the residual blocks (`group_norm` with SiLU, `conv2d`, the block's `linear` projection of the
//! conditioning vector `add`ed per channel, `group_norm` with SiLU, `conv2d`, the residual
//! `add`ed, through a 1×1 `linear` when the channels change), the down-sampling `conv2d`
//! (stride 2), the middle blocks around the attention (`group_norm`, `linear` to qkv,
//! `attention_weights`, `attention_values`, `linear`, `add`), the way up (`concat` of the skip,
//! blocks, `upsample` then `conv2d`), the output `group_norm`, `conv2d` and `transpose` back to
//! `[R, C·H·W]`. Intermediates live in four working buffers of the widest activation and the
//! skips in one buffer each, all leased from the pool.

use super::kernels::{GpuTensor, Plan};
use super::network::{GpuNetwork, NetworkInput, NetworkRecorder};
use super::pool::Lease;
use super::{Gpu, ORIGIN};
use crate::model::{
    AttentionBlock, ConvLayer, DenseLayer, LayerMap, Model, NormLayer, ResidualBlock, UnetLayout,
    UnetSpec, GROUP_NORM_EPSILON,
};
use crate::{Error, Result};

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// A convolution's weights: `[outputs, inputs, k, k]` and `[outputs]`.
struct GpuConv {
    weight: GpuTensor,
    bias: GpuTensor,
    inputs: usize,
    outputs: usize,
    kernel: usize,
    stride: usize,
}

/// A dense layer's weights: `[outputs, inputs]` and `[outputs]`.
struct GpuDense {
    weight: GpuTensor,
    bias: GpuTensor,
}

/// A GroupNorm's weight and bias, `[channels]` each.
struct GpuNorm {
    weight: GpuTensor,
    bias: GpuTensor,
}

type GpuBlock = ResidualBlock<GpuDense, GpuConv, GpuNorm>;
type GpuAttention = AttentionBlock<GpuConv, GpuNorm>;

/// A U-Net's weights on the GPU: its spec's [`UnetLayout`] mapped to GPU tensors.
pub(crate) struct GpuUnet {
    /// `[num_classes + 1, E]` for class-conditional models.
    class_table: Option<GpuTensor>,
    time_width: usize,
    embedding_width: usize,
    layers: UnetLayout<GpuDense, GpuConv, GpuNorm>,
    /// Values per row of the widest activation (a working buffer holds `rows ×` this).
    widest: usize,
    /// Channels of the widest layer (the per-channel shift buffer).
    widest_channels: usize,
    /// `[positions, channels]` of each skip, in the order of the way down.
    skips: Vec<(usize, usize)>,
}

/// Uploads tensors by name: the layers of a [`GpuUnet`].
struct Uploader<'a> {
    gpu: &'a Gpu,
    model: &'a Model,
}

impl Uploader<'_> {
    /// The weight matrix `name` (stored in half precision on the GPU when the model is).
    fn weights(&self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        let values = self.values(name, shape)?;
        self.gpu.weights(name, values, shape, self.model.dtype())
    }

    /// The values of tensor `name`, checked to be `shape`'s.
    fn values(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        let values = self.model.tensor(name).ok_or_else(|| {
            Error::new(
                ORIGIN,
                format!("internal error: the model has no tensor {name}"),
            )
        })?;
        if values.len() != shape.iter().product::<usize>() {
            return Err(Error::new(
                ORIGIN,
                format!("internal error: the tensor {name} is not {shape:?}"),
            ));
        }
        Ok(values)
    }

    /// Tensor `name` as `f32`.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        self.gpu.tensor(name, self.values(name, shape)?, shape)
    }
}

impl LayerMap for Uploader<'_> {
    type Dense = GpuDense;
    type Conv = GpuConv;
    type Norm = GpuNorm;
    type Error = Error;

    fn conv(&mut self, layer: &ConvLayer) -> Result<GpuConv> {
        let (o, i, k) = (layer.outputs, layer.inputs, layer.kernel);
        Ok(GpuConv {
            weight: self.weights(&format!("{}.weight", layer.name), &[o, i, k, k])?,
            bias: self.tensor(&format!("{}.bias", layer.name), &[o])?,
            inputs: i,
            outputs: o,
            kernel: k,
            stride: layer.stride,
        })
    }

    fn dense(&mut self, layer: &DenseLayer) -> Result<GpuDense> {
        let (o, i) = (layer.outputs, layer.inputs);
        Ok(GpuDense {
            weight: self.weights(&format!("{}.weight", layer.name), &[o, i])?,
            bias: self.tensor(&format!("{}.bias", layer.name), &[o])?,
        })
    }

    fn norm(&mut self, layer: &NormLayer) -> Result<GpuNorm> {
        let c = layer.channels;
        Ok(GpuNorm {
            weight: self.tensor(&format!("{}.weight", layer.name), &[c])?,
            bias: self.tensor(&format!("{}.bias", layer.name), &[c])?,
        })
    }
}

/// Widest activation and widest channel count of a layout, walking it as the forward does.
struct Widths {
    values: usize,
    channels: usize,
}

impl Widths {
    /// A convolution from `size`: its input and output activations.
    fn conv(&mut self, layer: &ConvLayer, (h, w): (usize, usize)) {
        let (oh, ow) = layer.output_size((h, w));
        self.values = self
            .values
            .max(h * w * layer.inputs)
            .max(oh * ow * layer.outputs);
        self.channels = self.channels.max(layer.inputs).max(layer.outputs);
    }

    fn block(&mut self, block: &ResidualBlock, size: (usize, usize)) {
        self.conv(&block.conv1, size);
        self.conv(&block.conv2, size);
        if let Some(skip) = &block.skip {
            self.conv(skip, size);
        }
    }
}

impl GpuUnet {
    /// Uploads the weights of `model`, a U-Net of sizes `unet`.
    pub(crate) fn upload(gpu: &Gpu, model: &Model, unet: &UnetSpec) -> Result<GpuUnet> {
        let spec = model.spec();
        let layout = unet.layout(spec);
        let mut up = Uploader { gpu, model };
        let class_table = spec
            .is_conditional()
            .then(|| {
                up.tensor(
                    "class_embedding.weight",
                    &[spec.num_classes + 1, unet.embedding_width],
                )
            })
            .transpose()?;
        let (c, h, w) = layout.data_shape;
        let mut widths = Widths {
            values: 0,
            channels: 0,
        };
        widths.conv(&layout.input, (h, w));
        let mut skips = Vec::new();
        for level in &layout.down {
            let positions = level.size.0 * level.size.1;
            for block in &level.blocks {
                widths.block(block, level.size);
                skips.push((positions, block.conv2.outputs));
            }
            if let Some(down) = &level.resample {
                widths.conv(down, level.size);
            }
        }
        let lowest = layout.down.last().map_or((h, w), |l| l.size);
        for block in &layout.middle {
            widths.block(block, lowest);
        }
        if let Some(attention) = &layout.attention {
            widths.conv(&attention.qkv, lowest);
            let positions = lowest.0 * lowest.1;
            widths.values = widths.values.max(positions * positions);
        }
        for level in &layout.up {
            for block in &level.blocks {
                widths.block(block, level.size);
            }
            if let Some(upsample) = &level.resample {
                widths.conv(upsample, (2 * level.size.0, 2 * level.size.1));
            }
        }
        widths.conv(&layout.out_conv, (h, w));
        Ok(GpuUnet {
            class_table,
            time_width: spec.time_embedding,
            embedding_width: unet.embedding_width,
            layers: layout.try_map(&mut up)?,
            widest: widths.values.max(c * h * w),
            widest_channels: widths.channels,
            skips,
        })
    }
}

impl GpuNetwork for GpuUnet {
    fn values_per_row(&self) -> usize {
        self.widest
    }

    fn recorder<'a>(&'a self, lease: &mut Lease<'_>, rows: usize) -> Box<dyn NetworkRecorder + 'a> {
        let e = self.embedding_width;
        let work =
            |lease: &mut Lease<'_>| lease.take("unet activations", rows * self.widest, STORAGE);
        Box::new(UnetRecorder {
            unet: self,
            work: [work(lease), work(lease), work(lease), work(lease)],
            skips: self
                .skips
                .iter()
                .map(|&(p, c)| lease.take("unet skip", rows * p * c, STORAGE))
                .collect(),
            time_row: lease.take("unet time row", self.time_width, STORAGE),
            time_hidden: [
                lease.take("unet time hidden", e, STORAGE),
                lease.take("unet time hidden", e, STORAGE),
            ],
            condition: lease.take("unet condition", rows * e, STORAGE),
            shift: lease.take("unet shift", rows * self.widest_channels, STORAGE),
        })
    }
}

/// A U-Net with its working buffers, sized for up to the rows it was made for.
struct UnetRecorder<'a> {
    unet: &'a GpuUnet,
    /// The activations `[rows, positions, channels]`, each up to the widest.
    work: [wgpu::Buffer; 4],
    /// One per skip of the way down.
    skips: Vec<wgpu::Buffer>,
    /// The step's time-embedding row `[1, E_t]` and the time MLP's activations `[1, E]`.
    time_row: wgpu::Buffer,
    time_hidden: [wgpu::Buffer; 2],
    /// The conditioning vector after SiLU `[rows, E]`.
    condition: wgpu::Buffer,
    /// One block's projection of it `[rows, channels]`.
    shift: wgpu::Buffer,
}

impl UnetRecorder<'_> {
    /// `[rows, positions, channels]` at the start of working buffer `slot`.
    fn at(&self, slot: usize, rows: usize, positions: usize, channels: usize) -> Result<GpuTensor> {
        GpuTensor::new(&self.work[slot], &[rows, positions, channels])
    }

    /// `layer` on `x` (`[rows, h·w, inputs]` at `size`) into working buffer `slot`; returns the
    /// output's size.
    fn conv(
        &self,
        plan: &mut Plan,
        layer: &GpuConv,
        x: &GpuTensor,
        size: (usize, usize),
        slot: usize,
    ) -> Result<(usize, usize)> {
        let rows = x.shape()[0];
        let out = (size.0.div_ceil(layer.stride), size.1.div_ceil(layer.stride));
        let positions = out.0 * out.1;
        let y = self.at(slot, rows, positions, layer.outputs)?;
        if layer.kernel == 1 && layer.stride == 1 {
            let flat = |t: &GpuTensor, c: usize| t.reshaped(&[rows * positions, c]);
            let weight = layer.weight.reshaped(&[layer.outputs, layer.inputs])?;
            plan.linear(
                &flat(x, layer.inputs)?,
                &weight,
                &layer.bias,
                &flat(&y, layer.outputs)?,
                false,
            )?;
        } else {
            plan.conv2d(x, size, &layer.weight, &layer.bias, &y, layer.stride)?;
        }
        Ok(out)
    }

    fn norm(
        &self,
        plan: &mut Plan,
        layer: &GpuNorm,
        x: &GpuTensor,
        slot: usize,
        silu: bool,
    ) -> Result<GpuTensor> {
        let [rows, positions, channels] = <[usize; 3]>::try_from(x.shape())
            .map_err(|_| Error::new(ORIGIN, "internal error: a U-Net activation is not 3-D"))?;
        let y = self.at(slot, rows, positions, channels)?;
        let epsilon = GROUP_NORM_EPSILON as f32;
        plan.group_norm(
            x,
            &layer.weight,
            &layer.bias,
            &y,
            self.unet.layers.groups,
            epsilon,
            silu,
        )?;
        Ok(y)
    }

    /// One residual block on working buffer `h` `[rows, positions, inputs]`; returns the slot of
    /// its output `[rows, positions, outputs]`.
    fn block(
        &self,
        plan: &mut Plan,
        block: &GpuBlock,
        size: (usize, usize),
        rows: usize,
        h: usize,
    ) -> Result<usize> {
        let positions = size.0 * size.1;
        let (inputs, outputs) = (block.conv1.inputs, block.conv1.outputs);
        let [a, b, c] = others(h);
        let x = self.at(h, rows, positions, inputs)?;
        let normed = self.norm(plan, &block.norm1, &x, a, true)?;
        self.conv(plan, &block.conv1, &normed, size, b)?;
        let shift = GpuTensor::new(&self.shift, &[rows, outputs])?;
        let condition = GpuTensor::new(&self.condition, &[rows, self.unet.embedding_width])?;
        plan.linear(
            &condition,
            &block.embedding.weight,
            &block.embedding.bias,
            &shift,
            false,
        )?;
        let hidden = self.at(b, rows, positions, outputs)?;
        plan.add(&shift.reshaped(&[rows, 1, outputs])?, &hidden)?;
        let normed = self.norm(plan, &block.norm2, &hidden, a, true)?;
        self.conv(plan, &block.conv2, &normed, size, c)?;
        let out = self.at(c, rows, positions, outputs)?;
        match &block.skip {
            Some(skip) => {
                self.conv(plan, skip, &x, size, b)?;
                plan.add(&self.at(b, rows, positions, outputs)?, &out)?;
            }
            None => plan.add(&x, &out)?,
        }
        Ok(c)
    }

    /// Self-attention on working buffer `h` `[rows, positions, channels]`, added to it.
    fn attend(
        &self,
        plan: &mut Plan,
        attention: &GpuAttention,
        positions: usize,
        rows: usize,
        h: usize,
    ) -> Result<()> {
        let channels = attention.proj.outputs;
        let [a, b, c] = others(h);
        let x = self.at(h, rows, positions, channels)?;
        let normed = self.norm(plan, &attention.norm, &x, a, false)?;
        self.conv(plan, &attention.qkv, &normed, (positions, 1), b)?;
        let qkv = self.at(b, rows, positions, 3 * channels)?;
        let weights = self.at(c, rows, positions, positions)?;
        plan.attention_weights(&qkv, &weights)?;
        let values = self.at(a, rows, positions, channels)?;
        plan.attention_values(&weights, &qkv, &values)?;
        self.conv(plan, &attention.proj, &values, (positions, 1), b)?;
        plan.add(&self.at(b, rows, positions, channels)?, &x)
    }
}

/// The three working buffers other than `h`.
fn others(h: usize) -> [usize; 3] {
    let mut out = [0; 3];
    let mut n = 0;
    for i in 0..4 {
        if i != h && n < 3 {
            out[n] = i;
            n += 1;
        }
    }
    out
}

impl NetworkRecorder for UnetRecorder<'_> {
    fn record(&self, plan: &mut Plan, input: &NetworkInput<'_>, output: &GpuTensor) -> Result<()> {
        let unet = self.unet;
        let layers = &unet.layers;
        let rows = output.shape().first().copied().unwrap_or(0);
        let (channels, height, width) = layers.data_shape;
        let positions = height * width;
        let e = unet.embedding_width;

        // The conditioning vector: SiLU(time.1(SiLU(time.0(e(t)))) + class row).
        let time_row = GpuTensor::new(&self.time_row, &[1, unet.time_width])?;
        plan.copy(&input.time_embedding.rows(input.time_row, 1)?, &time_row)?;
        let hidden = GpuTensor::new(&self.time_hidden[0], &[1, e])?;
        let time = GpuTensor::new(&self.time_hidden[1], &[1, e])?;
        let [first, second] = &layers.time;
        plan.linear(&time_row, &first.weight, &first.bias, &hidden, true)?;
        plan.linear(&hidden, &second.weight, &second.bias, &time, false)?;
        let condition = GpuTensor::new(&self.condition, &[rows, e])?;
        plan.condition(&time, input.classes, unet.class_table.as_ref(), &condition)?;

        // [samples, C, H·W] → [rows, H·W, C], then the input convolution.
        let samples = input.x.shape().first().copied().unwrap_or(0);
        let x = input.x.reshaped(&[samples, channels, positions])?;
        let data = self.at(0, rows, positions, channels)?;
        plan.transpose(&x, &data)?;
        self.conv(plan, &layers.input, &data, (height, width), 1)?;
        let mut h = 1;

        let mut skip = 0;
        for level in &layers.down {
            let p = level.size.0 * level.size.1;
            for block in &level.blocks {
                h = self.block(plan, block, level.size, rows, h)?;
                let c = block.conv2.outputs;
                let stored = GpuTensor::new(&self.skips[skip], &[rows, p, c])?;
                plan.copy(&self.at(h, rows, p, c)?, &stored)?;
                skip += 1;
            }
            if let Some(down) = &level.resample {
                let x = self.at(h, rows, p, down.inputs)?;
                let target = others(h)[0];
                self.conv(plan, down, &x, level.size, target)?;
                h = target;
            }
        }
        let lowest = layers.down.last().map_or((height, width), |l| l.size);
        h = self.block(plan, &layers.middle[0], lowest, rows, h)?;
        if let Some(attention) = &layers.attention {
            self.attend(plan, attention, lowest.0 * lowest.1, rows, h)?;
        }
        h = self.block(plan, &layers.middle[1], lowest, rows, h)?;
        for level in &layers.up {
            let p = level.size.0 * level.size.1;
            for block in &level.blocks {
                skip -= 1;
                let (_, theirs) = unet.skips[skip];
                let own = block.conv1.inputs - theirs;
                let stored = GpuTensor::new(&self.skips[skip], &[rows, p, theirs])?;
                let target = others(h)[0];
                plan.concat(
                    &self.at(h, rows, p, own)?,
                    &stored,
                    &self.at(target, rows, p, own + theirs)?,
                )?;
                h = self.block(plan, block, level.size, rows, target)?;
            }
            if let Some(upsample) = &level.resample {
                let c = upsample.inputs;
                let [wide, target, _] = others(h);
                let doubled = self.at(wide, rows, 4 * p, c)?;
                plan.upsample(&self.at(h, rows, p, c)?, level.size, &doubled)?;
                let size = (2 * level.size.0, 2 * level.size.1);
                self.conv(plan, upsample, &doubled, size, target)?;
                h = target;
            }
        }

        // The output: GroupNorm → SiLU → conv → [rows, C, H·W].
        let [a, b, _] = others(h);
        let last = self.at(h, rows, positions, layers.out_conv.inputs)?;
        let normed = self.norm(plan, &layers.out_norm, &last, a, true)?;
        self.conv(plan, &layers.out_conv, &normed, (height, width), b)?;
        let result = self.at(b, rows, positions, channels)?;
        plan.transpose(&result, &output.reshaped(&[rows, channels, positions])?)
    }
}

#[cfg(test)]
mod tests;
