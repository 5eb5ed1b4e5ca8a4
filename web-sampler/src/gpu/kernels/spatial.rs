//! The ops of convolutional networks (the U-Net) on position-major activations: a row's
//! `[positions, channels]` values (positions row-major over height and width), so that a 1×1
//! convolution is [`Plan::linear`] over `[rows · positions, channels]`. Each op dispatches the
//! kernel of its name (`shaders/{op}.wgsl`) and checks its tensors' shapes first.

use super::uniforms::*;
use super::{activation, check_shape, dims, u32_of, Plan};
use super::{GpuTensor, ORIGIN};
use super::{CONV_BLOCK_OUTPUTS, CONV_BLOCK_POSITIONS};
use crate::{Error, Result};

impl Plan {
    /// A convolution with padding `kernel / 2` and the bias fused (`conv2d.wgsl`): `x`
    /// `[rows, height·width, inputs]` (`size` = (height, width)), `weight`
    /// `[outputs, inputs, kernel, kernel]`, `bias` `[outputs]`, `y`
    /// `[rows, out_height·out_width, outputs]` with out_height = ⌈height / stride⌉ (likewise
    /// the width); `kernel` is 1 or 3, `stride` 1 or 2.
    pub fn conv2d(
        &mut self,
        x: &GpuTensor,
        size: (usize, usize),
        weight: &GpuTensor,
        bias: &GpuTensor,
        y: &GpuTensor,
        stride: usize,
    ) -> Result<()> {
        let (height, width) = size;
        let [rows, _, inputs] = dims(x, "conv2d x")?;
        check_shape(x, &[rows, height * width, inputs], "conv2d x")?;
        let [outputs, _, kernel, _] = dims(weight, "conv2d weight")?;
        check_shape(weight, &[outputs, inputs, kernel, kernel], "conv2d weight")?;
        if !(kernel == 1 || kernel == 3) || !(stride == 1 || stride == 2) {
            return Err(Error::new(
                ORIGIN,
                format!("conv2d: a {kernel}×{kernel} kernel with stride {stride} (1 or 3, 1 or 2)"),
            ));
        }
        check_shape(bias, &[outputs], "conv2d bias")?;
        let (out_height, out_width) = (height.div_ceil(stride), width.div_ceil(stride));
        let out_positions = out_height * out_width;
        check_shape(y, &[rows, out_positions, outputs], "conv2d y")?;
        let groups = self.tile_groups(
            outputs.div_ceil(CONV_BLOCK_OUTPUTS as usize),
            (rows * out_positions).div_ceil(CONV_BLOCK_POSITIONS as usize),
            "conv2d",
        )?;
        let params = uniform!(Conv2dParams {
            rows, inputs, outputs, height, width, out_height, out_width, kernel, stride;
            _pad0: 0, _pad1: 0, _pad2: 0,
        });
        self.dispatch_weighted(&params, &[x, weight, bias, y], Some(1), groups)
    }

    /// GroupNorm with `groups` groups and ε = `epsilon`, then SiLU when `silu`
    /// (`group_norm.wgsl`): `x` `[rows, positions, channels]`, `weight` `[channels]`, `bias`
    /// `[channels]`, `y` `[rows, positions, channels]`; `groups` divides `channels`.
    #[allow(clippy::too_many_arguments)]
    pub fn group_norm(
        &mut self,
        x: &GpuTensor,
        weight: &GpuTensor,
        bias: &GpuTensor,
        y: &GpuTensor,
        groups: usize,
        epsilon: f32,
        silu: bool,
    ) -> Result<()> {
        let [rows, positions, channels] = dims(x, "group norm x")?;
        check_shape(weight, &[channels], "group norm weight")?;
        check_shape(bias, &[channels], "group norm bias")?;
        check_shape(y, &[rows, positions, channels], "group norm y")?;
        if groups == 0 || channels % groups != 0 {
            return Err(Error::new(
                ORIGIN,
                format!("group norm: {groups} groups do not divide {channels} channels"),
            ));
        }
        let params = uniform!(GroupNormParams {
            rows, positions, channels, groups;
            activation: activation(silu), epsilon, _pad0: 0, _pad1: 0,
        });
        // One workgroup per (row, group): element_groups counts invocations of WORKGROUP each.
        let workgroups = self.element_groups(rows * groups * super::WORKGROUP as usize)?;
        self.dispatch(&params, &[x, weight, bias, y], workgroups)
    }

    /// `y += x` (`add.wgsl`): `y` `[rows, positions, channels]`, `x`
    /// `[rows, x_positions, channels]` (x_positions = positions or 1: one value per channel,
    /// added at every position).
    pub fn add(&mut self, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
        let [rows, positions, channels] = dims(y, "add y")?;
        let [_, x_positions, _] = dims(x, "add x")?;
        let x_positions = if x_positions == 1 { 1 } else { positions };
        check_shape(x, &[rows, x_positions, channels], "add x")?;
        let count = rows * positions * channels;
        let params = uniform!(AddParams { count, positions, channels, x_positions; });
        let groups = self.element_groups(count)?;
        self.dispatch(&params, &[x, y], groups)
    }

    /// Concatenation along channels (`concat.wgsl`): `a` `[rows, positions, a_channels]`, `b`
    /// `[rows, positions, b_channels]`, `y` `[rows, positions, a_channels + b_channels]`.
    pub fn concat(&mut self, a: &GpuTensor, b: &GpuTensor, y: &GpuTensor) -> Result<()> {
        let [rows, positions, a_channels] = dims(a, "concat a")?;
        let [_, _, b_channels] = dims(b, "concat b")?;
        check_shape(b, &[rows, positions, b_channels], "concat b")?;
        check_shape(y, &[rows, positions, a_channels + b_channels], "concat y")?;
        let count = y.len();
        let params = uniform!(ConcatParams { count, a_channels, b_channels; _pad: 0 });
        let groups = self.element_groups(count)?;
        self.dispatch(&params, &[a, b, y], groups)
    }

    /// Nearest ×2 upsampling (`upsample.wgsl`): `x` `[rows, height·width, channels]` (`size` =
    /// (height, width)), `y` `[rows, 2·height·2·width, channels]`.
    pub fn upsample(&mut self, x: &GpuTensor, size: (usize, usize), y: &GpuTensor) -> Result<()> {
        let (height, width) = size;
        let [rows, _, channels] = dims(x, "upsample x")?;
        check_shape(x, &[rows, height * width, channels], "upsample x")?;
        check_shape(y, &[rows, 4 * height * width, channels], "upsample y")?;
        let count = y.len();
        let params = uniform!(UpsampleParams { count, height, width, channels; });
        let groups = self.element_groups(count)?;
        self.dispatch(&params, &[x, y], groups)
    }

    /// Per-row transposition (`transpose.wgsl`): `x` `[samples, a, b]`, `y` `[rows, b, a]`; row r
    /// takes sample r mod samples.
    pub fn transpose(&mut self, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
        let [samples, a, b] = dims(x, "transpose x")?;
        let [rows, _, _] = dims(y, "transpose y")?;
        check_shape(y, &[rows, b, a], "transpose y")?;
        if samples == 0 || rows % samples != 0 {
            return Err(Error::new(
                ORIGIN,
                "transpose: rows must be a multiple of samples",
            ));
        }
        let count = y.len();
        let params = uniform!(TransposeParams { count, samples, a, b; });
        let groups = self.element_groups(count)?;
        self.dispatch(&params, &[x, y], groups)
    }

    /// The conditioning vector SiLU(time + class_table[classes[r]]) (`condition.wgsl`): `time`
    /// `[1, width]`, `classes` `[rows]` (u32), `class_table` `[num_classes + 1, width]` (`None`
    /// for an unconditional model: no class term), `y` `[rows, width]`.
    pub fn condition(
        &mut self,
        time: &GpuTensor,
        classes: &GpuTensor,
        class_table: Option<&GpuTensor>,
        y: &GpuTensor,
    ) -> Result<()> {
        let [_, width] = dims(time, "condition time")?;
        check_shape(time, &[1, width], "condition time")?;
        let [rows] = dims(classes, "condition classes")?;
        if let Some(table) = class_table {
            let [classes_count, _] = dims(table, "condition class table")?;
            check_shape(table, &[classes_count, width], "condition class table")?;
        }
        check_shape(y, &[rows, width], "condition y")?;
        let count = rows * width;
        let params = uniform!(ConditionParams {
            count, width; conditional: u32::from(class_table.is_some()), _pad: 0
        });
        let groups = self.element_groups(count)?;
        let table = class_table.unwrap_or(time);
        self.dispatch(&params, &[time, classes, table, y], groups)
    }

    /// Single-head attention weights softmax(q·kᵀ / √channels) (`attention_weights.wgsl`):
    /// `qkv` `[rows, positions, 3·channels]` (queries, keys, values per position), `weights`
    /// `[rows, positions, positions]`.
    pub fn attention_weights(&mut self, qkv: &GpuTensor, weights: &GpuTensor) -> Result<()> {
        let [rows, positions, three_channels] = dims(qkv, "attention qkv")?;
        let channels = three_channels / 3;
        check_shape(qkv, &[rows, positions, 3 * channels], "attention qkv")?;
        check_shape(weights, &[rows, positions, positions], "attention weights")?;
        let params = uniform!(AttentionWeightsParams {
            rows, positions, channels; scale: (1.0 / libm::sqrt(channels as f64)) as f32
        });
        let groups = self.element_groups(rows * positions)?;
        self.dispatch(&params, &[qkv, weights], groups)
    }

    /// Single-head attention's output, the weights times the values (`attention_values.wgsl`):
    /// `weights` `[rows, positions, positions]`, `qkv` `[rows, positions, 3·channels]`, `y`
    /// `[rows, positions, channels]`.
    pub fn attention_values(
        &mut self,
        weights: &GpuTensor,
        qkv: &GpuTensor,
        y: &GpuTensor,
    ) -> Result<()> {
        let [rows, positions, channels] = dims(y, "attention y")?;
        check_shape(weights, &[rows, positions, positions], "attention weights")?;
        check_shape(qkv, &[rows, positions, 3 * channels], "attention qkv")?;
        let params = uniform!(AttentionValuesParams { rows, positions, channels; _pad: 0 });
        let groups = self.element_groups(y.len())?;
        self.dispatch(&params, &[weights, qkv, y], groups)
    }
}
