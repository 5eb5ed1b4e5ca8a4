//! The U-Net in candle: the runtime's [`UnetLayout`] mapped to candle tensors (every layer's
//! weights found by name), and a differentiable forward on `[B, C, H, W]`. Convolutions and
//! GroupNorm (+ SiLU) are the ops of `conv2d.rs` and `group_norm.rs`, whose forward and backward
//! are matrix products and single passes on the CPU (candle's own on CUDA); the nearest ×2 is
//! read in place by the next convolution's im2col on the CPU. The softmax (and, on CUDA, the nearest ×2) are basic
//! operations, whose gradients candle computes correctly: its `softmax_last_dim` has no backward
//! and `upsample_nearest2d`'s backward overwrites instead of accumulating, so neither is used.

use anyhow::Result;
use candle_core::{Tensor, D};
use web_sampler::model::{
    AttentionBlock, ConvLayer, DenseLayer, LayerMap, NormLayer, ResidualBlock, UnetLayout,
};

use super::conv2d::{conv2d, upsampled_conv2d};
use super::group_norm::group_norm;

/// A dense layer: `weight` `[out, in]`, `bias` `[out]`.
struct Dense {
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

/// The U-Net's weights in candle.
pub(super) struct CandleUnet {
    /// `[num_classes + 1, E]` for conditional models.
    class_embedding: Option<Tensor>,
    layers: UnetLayout<Dense, Conv, Norm>,
}

/// Takes each layer's tensors by name (`take`), for GroupNorms of `groups` groups.
struct Taker<'a, F> {
    take: &'a mut F,
    groups: usize,
}

impl<F: FnMut(&str) -> Result<Tensor>> Taker<'_, F> {
    /// `name.weight` and `name.bias`.
    fn pair(&mut self, name: &str) -> Result<(Tensor, Tensor)> {
        Ok((
            (self.take)(&format!("{name}.weight"))?,
            (self.take)(&format!("{name}.bias"))?,
        ))
    }
}

impl<F: FnMut(&str) -> Result<Tensor>> LayerMap for Taker<'_, F> {
    type Dense = Dense;
    type Conv = Conv;
    type Norm = Norm;
    type Error = anyhow::Error;

    fn dense(&mut self, layer: &DenseLayer) -> Result<Dense> {
        let (weight, bias) = self.pair(&layer.name)?;
        Ok(Dense { weight, bias })
    }

    fn conv(&mut self, layer: &ConvLayer) -> Result<Conv> {
        let (weight, bias) = self.pair(&layer.name)?;
        Ok(Conv {
            weight,
            bias,
            stride: layer.stride,
            padding: layer.kernel / 2,
        })
    }

    fn norm(&mut self, layer: &NormLayer) -> Result<Norm> {
        let (weight, bias) = self.pair(&layer.name)?;
        Ok(Norm {
            weight,
            bias,
            groups: self.groups,
        })
    }
}

impl Dense {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?)
    }
}

impl Conv {
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
    /// GroupNorm of `x` `[B, C, H, W]`, then SiLU when `silu`.
    fn forward(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        group_norm(x, &self.weight, &self.bias, self.groups, silu)
    }
}

/// A residual block: `x` `[B, in, H, W]`, `embedding` `SiLU(emb)` `[B, E]` → `[B, out, H, W]`.
fn block(
    block: &ResidualBlock<Dense, Conv, Norm>,
    x: &Tensor,
    embedding: &Tensor,
) -> Result<Tensor> {
    let shift = block.embedding.forward(embedding)?;
    let h = block
        .conv1
        .forward_shifted(&block.norm1.forward(x, true)?, &shift)?;
    let h = block.conv2.forward(&block.norm2.forward(&h, true)?)?;
    let residual = match &block.skip {
        Some(skip) => skip.forward(x)?,
        None => x.clone(),
    };
    Ok((residual + h)?)
}

/// Single-head self-attention on `x` `[B, C, H, W]`, added to it.
fn attend(attention: &AttentionBlock<Conv, Norm>, x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let n = h * w;
    let qkv = attention
        .qkv
        .forward(&attention.norm.forward(x, false)?)?
        .reshape((b, 3 * c, n))?;
    let queries = qkv.narrow(1, 0, c)?;
    let keys = qkv.narrow(1, c, c)?;
    let values = qkv.narrow(1, 2 * c, c)?;
    let scores = (queries.transpose(1, 2)?.matmul(&keys)? * (1.0 / (c as f64).sqrt()))?;
    let largest = scores.max_keepdim(D::Minus1)?.detach();
    let exponentials = scores.broadcast_sub(&largest)?.exp()?;
    let weights = exponentials.broadcast_div(&exponentials.sum_keepdim(D::Minus1)?)?;
    let attended = values.matmul(&weights.transpose(1, 2)?)?;
    let update = attention.proj.forward(&attended.reshape((b, c, h, w))?)?;
    Ok((x + update)?)
}

impl CandleUnet {
    /// The U-Net of `layout`, its tensors taken by name.
    pub(super) fn new(
        layout: &UnetLayout,
        class_embedding: Option<Tensor>,
        take: &mut impl FnMut(&str) -> Result<Tensor>,
    ) -> Result<CandleUnet> {
        let mut taker = Taker {
            take,
            groups: layout.groups,
        };
        Ok(CandleUnet {
            class_embedding,
            layers: layout.try_map(&mut taker)?,
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
        let layers = &self.layers;
        let (channels, height, width) = layers.data_shape;
        let [time0, time1] = &layers.time;
        let mut embedding = time1.forward(&time0.forward(time_embedding)?.silu()?)?;
        if let Some(table) = &self.class_embedding {
            embedding = (embedding + table.index_select(classes, 0)?)?;
        }
        let embedding = embedding.silu()?;
        let mut h = layers
            .input
            .forward(&x.reshape((rows, channels, height, width))?)?;
        let mut skips = Vec::new();
        for level in &layers.down {
            for b in &level.blocks {
                h = block(b, &h, &embedding)?;
                skips.push(h.clone());
            }
            if let Some(down) = &level.resample {
                h = down.forward(&h)?;
            }
        }
        h = block(&layers.middle[0], &h, &embedding)?;
        if let Some(attention) = &layers.attention {
            h = attend(attention, &h)?;
        }
        h = block(&layers.middle[1], &h, &embedding)?;
        for level in &layers.up {
            for b in &level.blocks {
                let skip = skips
                    .pop()
                    .ok_or_else(|| anyhow::anyhow!("unet: no skip left"))?;
                h = block(b, &Tensor::cat(&[&h, &skip], 1)?, &embedding)?;
            }
            if let Some(up) = &level.resample {
                h = up.forward_upsampled(&h)?;
            }
        }
        let out = layers
            .out_conv
            .forward(&layers.out_norm.forward(&h, true)?)?;
        Ok(out.reshape((rows, channels * height * width))?)
    }
}
