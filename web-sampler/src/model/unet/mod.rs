//! The convolutional U-Net velocity network (`architecture: "unet"`): its part of the spec
//! ([`UnetSpec`]), the layout of its layers and tensors ([`UnetLayout`]: built once from the
//! spec, and mapped by each back-end — the CPU forward here, the GPU upload, the distiller's
//! candle network — through a [`LayerMap`] to the same tree of its own weights, so all read
//! every tensor by the same name), and its CPU forward, in an order that is the same natively
//! and in wasm. The tensors and the forward are specified
//! in `FORMATS.md` §1.3; this is the implementation's summary.
//!
//! A DDPM/ADM-style U-Net. With `C` data channels, `C_l = base_channels·channel_multipliers[l]`
//! for the `L` levels, `R = residual_blocks` and `E = embedding_width`:
//!
//! * embedding: `time.1(SiLU(time.0(e(t))))` `[E]` (`e(t)` the shared sinusoidal time
//!   embedding), plus `class_embedding.weight[c]` for conditional models (`class_embedding = E`;
//!   the last row is the null class);
//! * `input`: conv3×3 `C → base_channels`;
//! * `down.{l}.{b}` for `b < R`: residual blocks (their outputs are the skips), then
//!   `down.{l}.downsample` (a stride-2 conv3×3) on every level but the last;
//! * `middle.0`, `middle.attention` (when `attention`: single-head self-attention over the
//!   lowest resolution's positions), `middle.1`;
//! * `up.{l}.{b}` from the last level to the first: residual blocks on concat(h, skip) (the
//!   skips in reverse order), then `up.{l}.upsample` (nearest ×2, then conv3×3) on every level
//!   but the first;
//! * `out`: GroupNorm → SiLU → conv3×3 `base_channels → C`: the network's output (the velocity,
//!   or `x̂1` for data-predicting models).
//!
//! A residual block `in → out` is `GroupNorm → SiLU → conv1 (3×3) → + embedding.(SiLU(emb))` per
//! channel `→ GroupNorm → SiLU → conv2 (3×3)`, added to the input (through `skip`, a 1×1 conv,
//! when `in ≠ out`). Every conv has padding 1 (3×3) or 0 (1×1) and a bias; GroupNorm has `groups`
//! groups, ε = [`GROUP_NORM_EPSILON`], and a per-channel weight and bias.
//!
//! On the CPU (`forward.rs`) a sample's activations are `[H·W, channels]` (position-major); a convolution is
//! im2col (one row per output position, `(in channel, ky, kx)` as in the `[out, in, k, k]`
//! weights) fed to the fixed-order dense layer, so every output is one fixed-order dot product.
//! Group norm sums in f64 in a fixed order; SiLU, the softmax and the square roots use `libm`.

mod forward;
#[cfg(test)]
pub(crate) mod tests;

use serde::{Deserialize, Serialize};

use super::spec::ModelSpec;
use crate::noise::Noise;
pub(crate) use forward::Unet;
#[cfg(test)]
pub(crate) use forward::{
    attention, concat_channels, group_norm, to_position_major, upsample_nearest, AttentionScratch,
};
#[cfg(test)]
pub(crate) use forward::{conv2d, ConvShape};

/// Largest number of data channels a U-Net takes.
pub const MAX_UNET_CHANNELS_IN: usize = 4;
/// Largest `base_channels`.
pub const MAX_BASE_CHANNELS: usize = 256;
/// Largest number of levels (`channel_multipliers.len()`).
pub const MAX_LEVELS: usize = 5;
/// Largest channel multiplier.
pub const MAX_MULTIPLIER: usize = 8;
/// Largest number of channels of any layer.
pub const MAX_UNET_CHANNELS: usize = 1024;
/// Largest number of residual blocks per level.
pub const MAX_RESIDUAL_BLOCKS: usize = 4;
/// Largest number of GroupNorm groups.
pub const MAX_GROUPS: usize = 64;
/// Largest width of the time-embedding MLP.
pub const MAX_EMBEDDING_WIDTH: usize = 2048;
/// Largest number of positions the attention attends over (its score matrix is this squared).
pub const MAX_ATTENTION_POSITIONS: usize = 1024;
/// Largest cost of one evaluation of one sample, in floating-point operations (a multiply-add
/// counts two). A U-Net sized for the browser's CPU fallback stays under ~0.3 GFLOP.
pub const MAX_UNET_FLOPS: usize = 4_000_000_000;
/// The ε of every GroupNorm.
pub const GROUP_NORM_EPSILON: f64 = 1e-5;

/// The U-Net's own sizes (`architecture: "unet"`, the object under `unet` in the file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnetSpec {
    /// Channels of the first level (and of the input and output convolutions).
    pub base_channels: usize,
    /// Channels of each level as multiples of `base_channels`; one entry per level (a level
    /// halves the resolution of the one before).
    pub channel_multipliers: Vec<usize>,
    /// Residual blocks per level, on the way down and on the way up.
    pub residual_blocks: usize,
    /// GroupNorm groups; divides every channel count.
    pub groups: usize,
    /// Single-head self-attention at the lowest resolution (between the two middle blocks).
    pub attention: bool,
    /// Width of the time-embedding MLP (and of the class embedding of conditional models).
    pub embedding_width: usize,
}

impl super::Architecture {
    /// A U-Net with these sizes.
    pub fn unet(
        base_channels: usize,
        channel_multipliers: &[usize],
        residual_blocks: usize,
        groups: usize,
        attention: bool,
        embedding_width: usize,
    ) -> super::Architecture {
        super::Architecture::Unet(UnetSpec {
            base_channels,
            channel_multipliers: channel_multipliers.to_vec(),
            residual_blocks,
            groups,
            attention,
            embedding_width,
        })
    }
}

/// A dense layer `name.weight` `[out, in]`, `name.bias` `[out]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenseLayer {
    pub name: String,
    pub inputs: usize,
    pub outputs: usize,
}

/// A convolution `name.weight` `[out, in, k, k]`, `name.bias` `[out]`, padding `k / 2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvLayer {
    pub name: String,
    pub inputs: usize,
    pub outputs: usize,
    /// 3 or 1.
    pub kernel: usize,
    /// 1, or 2 for a down-sampling.
    pub stride: usize,
}

/// A GroupNorm `name.weight` `[channels]`, `name.bias` `[channels]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormLayer {
    pub name: String,
    pub channels: usize,
}

/// A residual block `inputs → outputs` (see the module documentation). Its layers are what `D`
/// (dense layers), `C` (convolutions) and `N` (GroupNorms) hold: their descriptions in the
/// layout a spec gives, a back-end's weights in the layout [`UnetLayout::try_map`] makes of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResidualBlock<D = DenseLayer, C = ConvLayer, N = NormLayer> {
    pub norm1: N,
    pub conv1: C,
    /// `SiLU(emb)` → per-channel shift after `conv1`.
    pub embedding: D,
    pub norm2: N,
    pub conv2: C,
    /// 1×1 conv of the input when the channel count changes.
    pub skip: Option<C>,
}

/// Single-head self-attention, added to its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttentionBlock<C = ConvLayer, N = NormLayer> {
    pub norm: N,
    /// 1×1 conv `channels → 3·channels`: queries, keys, values.
    pub qkv: C,
    /// 1×1 conv `channels → channels`.
    pub proj: C,
}

/// One level of the way down or up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnetLevel<D = DenseLayer, C = ConvLayer, N = NormLayer> {
    /// Height and width of the level's activations.
    pub size: (usize, usize),
    pub blocks: Vec<ResidualBlock<D, C, N>>,
    /// `down.{l}.downsample` (stride 2) or `up.{l}.upsample` (after nearest ×2), if any.
    pub resample: Option<C>,
}

/// Every layer of a U-Net, in execution order. [`UnetSpec::layout`] gives it with each layer's
/// description (tensor names and sizes: the file's tensors are their weights and biases in this
/// order, [`UnetSpec::tensor_shapes`]); each back-end — the CPU forward, the GPU upload, the
/// distiller's candle network — maps it with [`try_map`](Self::try_map) to the same tree of its
/// own weights, and walks that tree in its forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnetLayout<D = DenseLayer, C = ConvLayer, N = NormLayer> {
    /// Data channels, height, width.
    pub data_shape: (usize, usize, usize),
    pub groups: usize,
    pub time: [D; 2],
    pub input: C,
    /// Level 0 first.
    pub down: Vec<UnetLevel<D, C, N>>,
    pub middle: [ResidualBlock<D, C, N>; 2],
    pub attention: Option<AttentionBlock<C, N>>,
    /// The last level first, as they run.
    pub up: Vec<UnetLevel<D, C, N>>,
    pub out_norm: N,
    pub out_conv: C,
}

/// What a back-end makes of each kind of layer of a [`UnetLayout`]: its weights, found by the
/// layer's name. One `&mut self` serves the three kinds, so that a map may keep state (the
/// tensors it takes, a device) without three closures borrowing it.
pub trait LayerMap {
    type Dense;
    type Conv;
    type Norm;
    type Error;

    fn dense(&mut self, layer: &DenseLayer) -> Result<Self::Dense, Self::Error>;
    fn conv(&mut self, layer: &ConvLayer) -> Result<Self::Conv, Self::Error>;
    fn norm(&mut self, layer: &NormLayer) -> Result<Self::Norm, Self::Error>;
}

/// The layout of `M`'s layers (what [`UnetLayout::try_map`] gives).
pub type MappedLayout<M> =
    UnetLayout<<M as LayerMap>::Dense, <M as LayerMap>::Conv, <M as LayerMap>::Norm>;
type MappedBlock<M> =
    ResidualBlock<<M as LayerMap>::Dense, <M as LayerMap>::Conv, <M as LayerMap>::Norm>;
type MappedLevel<M> =
    UnetLevel<<M as LayerMap>::Dense, <M as LayerMap>::Conv, <M as LayerMap>::Norm>;

fn dense(name: String, inputs: usize, outputs: usize) -> DenseLayer {
    DenseLayer {
        name,
        inputs,
        outputs,
    }
}

fn conv(name: String, inputs: usize, outputs: usize, kernel: usize, stride: usize) -> ConvLayer {
    ConvLayer {
        name,
        inputs,
        outputs,
        kernel,
        stride,
    }
}

fn norm(name: String, channels: usize) -> NormLayer {
    NormLayer { name, channels }
}

fn residual_block(name: &str, inputs: usize, outputs: usize, embedding: usize) -> ResidualBlock {
    ResidualBlock {
        norm1: norm(format!("{name}.norm1"), inputs),
        conv1: conv(format!("{name}.conv1"), inputs, outputs, 3, 1),
        embedding: dense(format!("{name}.embedding"), embedding, outputs),
        norm2: norm(format!("{name}.norm2"), outputs),
        conv2: conv(format!("{name}.conv2"), outputs, outputs, 3, 1),
        skip: (inputs != outputs).then(|| conv(format!("{name}.skip"), inputs, outputs, 1, 1)),
    }
}

/// A tensor: its name and shape.
type Shape = (String, Vec<usize>);

/// The tensors of every layer, in the order they are mapped: the file's order.
struct Shapes(Vec<Shape>);

impl Shapes {
    fn pair(&mut self, name: &str, weight: Vec<usize>, bias: usize) {
        self.0.push((format!("{name}.weight"), weight));
        self.0.push((format!("{name}.bias"), vec![bias]));
    }
}

impl LayerMap for Shapes {
    type Dense = ();
    type Conv = ();
    type Norm = ();
    type Error = std::convert::Infallible;

    fn dense(&mut self, layer: &DenseLayer) -> Result<(), Self::Error> {
        self.pair(
            &layer.name,
            vec![layer.outputs, layer.inputs],
            layer.outputs,
        );
        Ok(())
    }

    fn conv(&mut self, layer: &ConvLayer) -> Result<(), Self::Error> {
        let k = layer.kernel;
        self.pair(
            &layer.name,
            vec![layer.outputs, layer.inputs, k, k],
            layer.outputs,
        );
        Ok(())
    }

    fn norm(&mut self, layer: &NormLayer) -> Result<(), Self::Error> {
        self.pair(&layer.name, vec![layer.channels], layer.channels);
        Ok(())
    }
}

impl ConvLayer {
    /// Inputs of one output value: `inputs·k·k`.
    pub fn fan_in(&self) -> usize {
        self.inputs.saturating_mul(self.kernel * self.kernel)
    }

    /// The output size for an input of `size` (padding `k / 2`).
    pub fn output_size(&self, (h, w): (usize, usize)) -> (usize, usize) {
        (h.div_ceil(self.stride), w.div_ceil(self.stride))
    }
}

impl ResidualBlock {
    /// The block's layers mapped by `m`, in the file's order.
    fn try_map<M: LayerMap>(&self, m: &mut M) -> Result<MappedBlock<M>, M::Error> {
        Ok(ResidualBlock {
            norm1: m.norm(&self.norm1)?,
            conv1: m.conv(&self.conv1)?,
            embedding: m.dense(&self.embedding)?,
            norm2: m.norm(&self.norm2)?,
            conv2: m.conv(&self.conv2)?,
            skip: self.skip.as_ref().map(|skip| m.conv(skip)).transpose()?,
        })
    }

    /// Multiply-adds of one sample at `positions` positions.
    fn multiply_adds(&self, positions: usize) -> usize {
        let mut total = conv_multiply_adds(&self.conv1, positions)
            .saturating_add(conv_multiply_adds(&self.conv2, positions))
            .saturating_add(self.embedding.inputs * self.embedding.outputs);
        if let Some(skip) = &self.skip {
            total = total.saturating_add(conv_multiply_adds(skip, positions));
        }
        total
    }
}

impl AttentionBlock {
    fn try_map<M: LayerMap>(
        &self,
        m: &mut M,
    ) -> Result<AttentionBlock<M::Conv, M::Norm>, M::Error> {
        Ok(AttentionBlock {
            norm: m.norm(&self.norm)?,
            qkv: m.conv(&self.qkv)?,
            proj: m.conv(&self.proj)?,
        })
    }
}

impl UnetLevel {
    fn try_map<M: LayerMap>(&self, m: &mut M) -> Result<MappedLevel<M>, M::Error> {
        Ok(UnetLevel {
            size: self.size,
            blocks: self
                .blocks
                .iter()
                .map(|block| block.try_map(m))
                .collect::<Result<_, _>>()?,
            resample: self.resample.as_ref().map(|r| m.conv(r)).transpose()?,
        })
    }
}

fn conv_multiply_adds(layer: &ConvLayer, output_positions: usize) -> usize {
    output_positions
        .saturating_mul(layer.outputs)
        .saturating_mul(layer.fan_in())
}

impl UnetSpec {
    /// Channels of level `l`.
    fn channels(&self, level: usize) -> usize {
        self.base_channels
            .saturating_mul(self.channel_multipliers[level])
    }

    /// The layers of this U-Net on data of `spec`'s shape. Call after [`validate`] (sizes
    /// unchecked there may make this large).
    ///
    /// [`validate`]: Self::validate
    pub fn layout(&self, spec: &ModelSpec) -> UnetLayout {
        let (c, h, w) = match spec.data_shape[..] {
            [c, h, w] => (c, h, w),
            _ => (0, 0, 0),
        };
        let e = self.embedding_width;
        let levels = self.channel_multipliers.len();
        // Saturating throughout: the sizes of an unchecked spec give a (large) layout, no panic.
        let halve = |n: usize, l: usize| n.checked_shr(l as u32).unwrap_or(0);
        let size = |l: usize| (halve(h, l), halve(w, l));
        let mut down = Vec::with_capacity(levels);
        let mut skips = Vec::new();
        let mut channels = self.base_channels;
        for l in 0..levels {
            let out = self.channels(l);
            let mut blocks = Vec::with_capacity(self.residual_blocks);
            for b in 0..self.residual_blocks {
                blocks.push(residual_block(&format!("down.{l}.{b}"), channels, out, e));
                channels = out;
                skips.push(out);
            }
            let resample = (l + 1 < levels)
                .then(|| conv(format!("down.{l}.downsample"), channels, channels, 3, 2));
            down.push(UnetLevel {
                size: size(l),
                blocks,
                resample,
            });
        }
        let middle = [
            residual_block("middle.0", channels, channels, e),
            residual_block("middle.1", channels, channels, e),
        ];
        let attention = self.attention.then(|| AttentionBlock {
            norm: norm("middle.attention.norm".into(), channels),
            qkv: conv(
                "middle.attention.qkv".into(),
                channels,
                channels.saturating_mul(3),
                1,
                1,
            ),
            proj: conv("middle.attention.proj".into(), channels, channels, 1, 1),
        });
        let mut up = Vec::with_capacity(levels);
        for l in (0..levels).rev() {
            let out = self.channels(l);
            let mut blocks = Vec::with_capacity(self.residual_blocks);
            for b in 0..self.residual_blocks {
                let skip = skips.pop().unwrap_or(0);
                blocks.push(residual_block(
                    &format!("up.{l}.{b}"),
                    channels.saturating_add(skip),
                    out,
                    e,
                ));
                channels = out;
            }
            let resample =
                (l > 0).then(|| conv(format!("up.{l}.upsample"), channels, channels, 3, 1));
            up.push(UnetLevel {
                size: size(l),
                blocks,
                resample,
            });
        }
        UnetLayout {
            data_shape: (c, h, w),
            groups: self.groups,
            time: [
                dense("time.0".into(), spec.time_embedding, e),
                dense("time.1".into(), e, e),
            ],
            input: conv("input".into(), c, self.base_channels, 3, 1),
            down,
            middle,
            attention,
            up,
            out_norm: norm("out.norm".into(), channels),
            out_conv: conv("out.conv".into(), channels, c, 3, 1),
        }
    }

    /// The tensors, in the file's order: the class embedding (conditional models only), then
    /// every layer's weight and bias in execution order (see [`UnetLayout`]).
    pub fn tensor_shapes(&self, spec: &ModelSpec) -> Vec<(String, Vec<usize>)> {
        let mut shapes = Vec::new();
        shapes.extend(spec.class_table_shape());
        shapes.extend(self.layout(spec).shapes());
        shapes
    }

    /// "base 32 × [1, 2, 2], 2 blocks per level, 8 groups, attention, embedding 128".
    pub fn summary(&self) -> String {
        format!(
            "base {} × {:?}, {} block{} per level, {} groups, {}embedding {}",
            self.base_channels,
            self.channel_multipliers,
            self.residual_blocks,
            if self.residual_blocks == 1 { "" } else { "s" },
            self.groups,
            if self.attention { "attention, " } else { "" },
            self.embedding_width
        )
    }

    /// Checks the U-Net's sizes against the limits and the data shape (`spec`'s shared fields
    /// are already checked); the message names the field.
    pub(crate) fn validate(&self, spec: &ModelSpec) -> Result<(), String> {
        let (c, h, w) = (spec.data_shape[0], spec.data_shape[1], spec.data_shape[2]);
        if c > MAX_UNET_CHANNELS_IN {
            return Err(format!(
                "data_shape {:?}: a unet takes 1..={MAX_UNET_CHANNELS_IN} channels",
                spec.data_shape
            ));
        }
        if self.base_channels == 0 || self.base_channels > MAX_BASE_CHANNELS {
            return Err(format!(
                "unet.base_channels must be in 1..={MAX_BASE_CHANNELS}, got {}",
                self.base_channels
            ));
        }
        let levels = self.channel_multipliers.len();
        if levels == 0 || levels > MAX_LEVELS {
            return Err(format!(
                "unet.channel_multipliers must have 1..={MAX_LEVELS} entries, got {levels}"
            ));
        }
        if let Some(bad) = self
            .channel_multipliers
            .iter()
            .find(|&&m| m == 0 || m > MAX_MULTIPLIER)
        {
            return Err(format!(
                "unet.channel_multipliers entries must be in 1..={MAX_MULTIPLIER}, got {bad}"
            ));
        }
        let widest = self.base_channels * self.channel_multipliers.iter().max().unwrap_or(&1);
        // (both factors are bounded above, so the product cannot overflow)
        if widest > MAX_UNET_CHANNELS {
            return Err(format!(
                "unet: base_channels × channel_multipliers reaches {widest} channels \
                 (at most {MAX_UNET_CHANNELS})"
            ));
        }
        if self.residual_blocks == 0 || self.residual_blocks > MAX_RESIDUAL_BLOCKS {
            return Err(format!(
                "unet.residual_blocks must be in 1..={MAX_RESIDUAL_BLOCKS}, got {}",
                self.residual_blocks
            ));
        }
        if self.groups == 0 || self.groups > MAX_GROUPS {
            return Err(format!(
                "unet.groups must be in 1..={MAX_GROUPS}, got {}",
                self.groups
            ));
        }
        let mut channel_counts = vec![self.base_channels];
        channel_counts.extend((0..levels).map(|l| self.channels(l)));
        if let Some(bad) = channel_counts.iter().find(|&&n| n % self.groups != 0) {
            return Err(format!(
                "unet.groups = {} does not divide every channel count (a level has {bad})",
                self.groups
            ));
        }
        if self.embedding_width == 0 || self.embedding_width > MAX_EMBEDDING_WIDTH {
            return Err(format!(
                "unet.embedding_width must be in 1..={MAX_EMBEDDING_WIDTH}, got {}",
                self.embedding_width
            ));
        }
        if spec.is_conditional() && spec.class_embedding != self.embedding_width {
            return Err(format!(
                "class_embedding must equal unet.embedding_width ({}) in a conditional unet \
                 (the class embedding is added to the time embedding), got {}",
                self.embedding_width, spec.class_embedding
            ));
        }
        let factor = 1usize << (levels - 1);
        if h % factor != 0 || w % factor != 0 {
            return Err(format!(
                "data_shape {:?}: height and width must be multiples of {factor} for {levels} \
                 levels of unet.channel_multipliers (each level but the first halves them)",
                spec.data_shape
            ));
        }
        let positions = (h / factor) * (w / factor);
        if self.attention && positions > MAX_ATTENTION_POSITIONS {
            return Err(format!(
                "unet.attention over {positions} positions at the lowest resolution \
                 (at most {MAX_ATTENTION_POSITIONS}; add a level)"
            ));
        }
        let flops = self.layout(spec).multiply_adds().saturating_mul(2);
        if flops > MAX_UNET_FLOPS {
            return Err(format!(
                "the unet costs {flops} floating-point operations per sample per evaluation \
                 (at most {MAX_UNET_FLOPS})"
            ));
        }
        Ok(())
    }

    /// Random weights in [`tensor_shapes`](Self::tensor_shapes) order, each row-major:
    /// convolutions and dense layers uniform ±1/sqrt(fan_in) (PyTorch's default; a bias uses its
    /// layer's fan-in), GroupNorm weights 1 and biases 0, the class embedding N(0, 1).
    pub(crate) fn random_tensors(
        &self,
        spec: &ModelSpec,
        noise: &mut Noise,
    ) -> Vec<(String, Vec<f32>)> {
        // Every bias follows its weight, whose fan-in it uses.
        let mut fan_in = 1usize;
        let mut tensors = Vec::new();
        for (name, shape) in self.tensor_shapes(spec) {
            let len: usize = shape.iter().product();
            let values = if name == super::spec::CLASS_TABLE {
                noise.gaussian_f32(len)
            } else if name.contains("norm") {
                let one = if name.ends_with(".weight") { 1.0 } else { 0.0 };
                vec![one; len]
            } else {
                if shape.len() > 1 {
                    fan_in = shape[1..].iter().product();
                }
                super::fan_in_uniform(noise, len, fan_in)
            };
            tensors.push((name, values));
        }
        tensors
    }
}

impl UnetLayout {
    /// The same tree with every layer mapped by `m` (a back-end's weights for the layer),
    /// visiting the layers in the file's order; the first error stops it.
    pub fn try_map<M: LayerMap>(&self, m: &mut M) -> Result<MappedLayout<M>, M::Error> {
        let time = [m.dense(&self.time[0])?, m.dense(&self.time[1])?];
        let input = m.conv(&self.input)?;
        let down = self
            .down
            .iter()
            .map(|level| level.try_map(m))
            .collect::<Result<_, _>>()?;
        let middle0 = self.middle[0].try_map(m)?;
        let attention = self.attention.as_ref().map(|a| a.try_map(m)).transpose()?;
        let middle1 = self.middle[1].try_map(m)?;
        let up = self
            .up
            .iter()
            .map(|level| level.try_map(m))
            .collect::<Result<_, _>>()?;
        Ok(UnetLayout {
            data_shape: self.data_shape,
            groups: self.groups,
            time,
            input,
            down,
            middle: [middle0, middle1],
            attention,
            up,
            out_norm: m.norm(&self.out_norm)?,
            out_conv: m.conv(&self.out_conv)?,
        })
    }

    /// Every layer's weight and bias, in the file's order.
    fn shapes(&self) -> Vec<Shape> {
        let mut shapes = Shapes(Vec::new());
        let Ok(_) = self.try_map(&mut shapes);
        shapes.0
    }

    /// Multiply-adds of one evaluation of one sample (convolutions, dense layers, attention).
    pub fn multiply_adds(&self) -> usize {
        let (_, h, w) = self.data_shape;
        let positions = |(h, w): (usize, usize)| h.saturating_mul(w);
        let mut total = self
            .time
            .iter()
            .map(|d| d.inputs.saturating_mul(d.outputs))
            .fold(0usize, usize::saturating_add);
        total = total.saturating_add(conv_multiply_adds(&self.input, h * w));
        for level in &self.down {
            let p = positions(level.size);
            for block in &level.blocks {
                total = total.saturating_add(block.multiply_adds(p));
            }
            if let Some(resample) = &level.resample {
                let out = positions(resample.output_size(level.size));
                total = total.saturating_add(conv_multiply_adds(resample, out));
            }
        }
        let lowest = self.down.last().map(|l| positions(l.size)).unwrap_or(0);
        for block in &self.middle {
            total = total.saturating_add(block.multiply_adds(lowest));
        }
        if let Some(attention) = &self.attention {
            let c = attention.proj.outputs;
            total = total
                .saturating_add(conv_multiply_adds(&attention.qkv, lowest))
                .saturating_add(conv_multiply_adds(&attention.proj, lowest))
                .saturating_add(lowest.saturating_mul(lowest).saturating_mul(2 * c));
        }
        for level in &self.up {
            let p = positions(level.size);
            for block in &level.blocks {
                total = total.saturating_add(block.multiply_adds(p));
            }
            if let Some(resample) = &level.resample {
                let out = 4usize.saturating_mul(p);
                total = total.saturating_add(conv_multiply_adds(resample, out));
            }
        }
        total.saturating_add(conv_multiply_adds(&self.out_conv, h * w))
    }
}
