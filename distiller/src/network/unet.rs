//! The U-Net in candle: the runtime's [`UnetLayout`], every layer's weights found by name, and a
//! differentiable forward on `[B, C, H, W]`. Convolutions and GroupNorm (+ SiLU) are the ops of
//! `conv2d.rs` and `group_norm.rs`, whose forward and backward are matrix products and single
//! passes on the CPU (candle's own on CUDA); the nearest ×2 is read in place by the next
//! convolution's im2col on the CPU. The softmax (and, on CUDA, the nearest ×2) are basic
//! operations, whose gradients candle computes correctly: its `softmax_last_dim` has no backward
//! and `upsample_nearest2d`'s backward overwrites instead of accumulating, so neither is used.

use anyhow::Result;
use candle_core::{Tensor, D};
use web_sampler::model::{ConvLayer, DenseLayer, NormLayer, ResidualBlock, UnetLayout, UnetLevel};

use super::conv2d::{conv2d, upsampled_conv2d};
use super::group_norm::group_norm;

/// A dense layer: `weight` `[out, in]`, `bias` `[out]`.
pub(super) struct Dense {
    weight: Tensor,
    bias: Tensor,
}

/// A convolution with padding `k / 2`.
struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

/// A GroupNorm with `groups` groups.
struct Norm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
}

struct Block {
    norm1: Norm,
    conv1: Conv,
    embedding: Dense,
    norm2: Norm,
    conv2: Conv,
    skip: Option<Conv>,
}

struct Attention {
    norm: Norm,
    qkv: Conv,
    proj: Conv,
}

struct Level {
    blocks: Vec<Block>,
    resample: Option<Conv>,
}

/// The U-Net's weights in candle.
pub(super) struct CandleUnet {
    shape: (usize, usize, usize),
    /// `[num_classes + 1, E]` for conditional models.
    class_embedding: Option<Tensor>,
    time: [Dense; 2],
    input: Conv,
    down: Vec<Level>,
    middle: [Block; 2],
    attention: Option<Attention>,
    up: Vec<Level>,
    out_norm: Norm,
    out_conv: Conv,
}

impl Dense {
    fn new(layer: &DenseLayer, take: &mut impl FnMut(&str) -> Result<Tensor>) -> Result<Dense> {
        Ok(Dense {
            weight: take(&format!("{}.weight", layer.name))?,
            bias: take(&format!("{}.bias", layer.name))?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?)
    }
}

impl Conv {
    fn new(layer: &ConvLayer, take: &mut impl FnMut(&str) -> Result<Tensor>) -> Result<Conv> {
        Ok(Conv {
            weight: take(&format!("{}.weight", layer.name))?,
            bias: take(&format!("{}.bias", layer.name))?,
            stride: layer.stride,
            padding: layer.kernel / 2,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.weight, &self.bias, self.stride, self.padding)
    }

    /// The convolution of the nearest ×2 of `x`.
    fn forward_upsampled(&self, x: &Tensor) -> Result<Tensor> {
        upsampled_conv2d(x, &self.weight, &self.bias, self.padding)
    }

    /// The convolution with `shift` `[B, O]` added to the bias of each image.
    fn forward_shifted(&self, x: &Tensor, shift: &Tensor) -> Result<Tensor> {
        let bias = shift.broadcast_add(&self.bias)?;
        conv2d(x, &self.weight, &bias, self.stride, self.padding)
    }
}

impl Norm {
    fn new(
        layer: &NormLayer,
        groups: usize,
        take: &mut impl FnMut(&str) -> Result<Tensor>,
    ) -> Result<Norm> {
        Ok(Norm {
            weight: take(&format!("{}.weight", layer.name))?,
            bias: take(&format!("{}.bias", layer.name))?,
            groups,
        })
    }

    /// GroupNorm of `x` `[B, C, H, W]`, then SiLU when `silu`.
    fn forward(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        group_norm(x, &self.weight, &self.bias, self.groups, silu)
    }
}

impl Block {
    fn new(
        block: &ResidualBlock,
        groups: usize,
        take: &mut impl FnMut(&str) -> Result<Tensor>,
    ) -> Result<Block> {
        Ok(Block {
            norm1: Norm::new(&block.norm1, groups, take)?,
            conv1: Conv::new(&block.conv1, take)?,
            embedding: Dense::new(&block.embedding, take)?,
            norm2: Norm::new(&block.norm2, groups, take)?,
            conv2: Conv::new(&block.conv2, take)?,
            skip: match &block.skip {
                Some(skip) => Some(Conv::new(skip, take)?),
                None => None,
            },
        })
    }

    /// `x` `[B, in, H, W]`, `embedding` `SiLU(emb)` `[B, E]` → `[B, out, H, W]`.
    fn forward(&self, x: &Tensor, embedding: &Tensor) -> Result<Tensor> {
        let shift = self.embedding.forward(embedding)?;
        let h = self
            .conv1
            .forward_shifted(&self.norm1.forward(x, true)?, &shift)?;
        let h = self.conv2.forward(&self.norm2.forward(&h, true)?)?;
        let residual = match &self.skip {
            Some(skip) => skip.forward(x)?,
            None => x.clone(),
        };
        Ok((residual + h)?)
    }
}

impl Attention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let n = h * w;
        let qkv = self
            .qkv
            .forward(&self.norm.forward(x, false)?)?
            .reshape((b, 3 * c, n))?;
        let queries = qkv.narrow(1, 0, c)?;
        let keys = qkv.narrow(1, c, c)?;
        let values = qkv.narrow(1, 2 * c, c)?;
        let scores = (queries.transpose(1, 2)?.matmul(&keys)? * (1.0 / (c as f64).sqrt()))?;
        let largest = scores.max_keepdim(D::Minus1)?.detach();
        let exponentials = scores.broadcast_sub(&largest)?.exp()?;
        let weights = exponentials.broadcast_div(&exponentials.sum_keepdim(D::Minus1)?)?;
        let attended = values.matmul(&weights.transpose(1, 2)?)?;
        let update = self.proj.forward(&attended.reshape((b, c, h, w))?)?;
        Ok((x + update)?)
    }
}

impl Level {
    fn new(
        level: &UnetLevel,
        groups: usize,
        take: &mut impl FnMut(&str) -> Result<Tensor>,
    ) -> Result<Level> {
        Ok(Level {
            blocks: level
                .blocks
                .iter()
                .map(|b| Block::new(b, groups, take))
                .collect::<Result<_>>()?,
            resample: match &level.resample {
                Some(resample) => Some(Conv::new(resample, take)?),
                None => None,
            },
        })
    }
}

impl CandleUnet {
    /// The U-Net of `layout`, its tensors taken by name.
    pub(super) fn new(
        layout: &UnetLayout,
        class_embedding: Option<Tensor>,
        take: &mut impl FnMut(&str) -> Result<Tensor>,
    ) -> Result<CandleUnet> {
        let groups = layout.groups;
        let time0 = Dense::new(&layout.time[0], take)?;
        let time1 = Dense::new(&layout.time[1], take)?;
        let input = Conv::new(&layout.input, take)?;
        let down = layout
            .down
            .iter()
            .map(|l| Level::new(l, groups, take))
            .collect::<Result<_>>()?;
        let middle0 = Block::new(&layout.middle[0], groups, take)?;
        let attention = match &layout.attention {
            Some(a) => Some(Attention {
                norm: Norm::new(&a.norm, groups, take)?,
                qkv: Conv::new(&a.qkv, take)?,
                proj: Conv::new(&a.proj, take)?,
            }),
            None => None,
        };
        let middle1 = Block::new(&layout.middle[1], groups, take)?;
        let up = layout
            .up
            .iter()
            .map(|l| Level::new(l, groups, take))
            .collect::<Result<_>>()?;
        Ok(CandleUnet {
            shape: layout.data_shape,
            class_embedding,
            time: [time0, time1],
            input,
            down,
            middle: [middle0, middle1],
            attention,
            up,
            out_norm: Norm::new(&layout.out_norm, groups, take)?,
            out_conv: Conv::new(&layout.out_conv, take)?,
        })
    }

    /// The output `[B, D]` for `x` `[B, D]`, the time embedding `[B, E_t]` and `classes` `[B]`.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        time_embedding: &Tensor,
        classes: &Tensor,
    ) -> Result<Tensor> {
        let rows = x.dim(0)?;
        let (channels, height, width) = self.shape;
        let mut embedding = self.time[1].forward(&self.time[0].forward(time_embedding)?.silu()?)?;
        if let Some(table) = &self.class_embedding {
            embedding = (embedding + table.index_select(classes, 0)?)?;
        }
        let embedding = embedding.silu()?;
        let mut h = self
            .input
            .forward(&x.reshape((rows, channels, height, width))?)?;
        let mut skips = Vec::new();
        for level in &self.down {
            for block in &level.blocks {
                h = block.forward(&h, &embedding)?;
                skips.push(h.clone());
            }
            if let Some(down) = &level.resample {
                h = down.forward(&h)?;
            }
        }
        h = self.middle[0].forward(&h, &embedding)?;
        if let Some(attention) = &self.attention {
            h = attention.forward(&h)?;
        }
        h = self.middle[1].forward(&h, &embedding)?;
        for level in &self.up {
            for block in &level.blocks {
                let skip = skips
                    .pop()
                    .ok_or_else(|| anyhow::anyhow!("unet: no skip left"))?;
                h = block.forward(&Tensor::cat(&[&h, &skip], 1)?, &embedding)?;
            }
            if let Some(up) = &level.resample {
                h = up.forward_upsampled(&h)?;
            }
        }
        let out = self.out_conv.forward(&self.out_norm.forward(&h, true)?)?;
        Ok(out.reshape((rows, channels * height * width))?)
    }
}
