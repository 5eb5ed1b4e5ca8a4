//! The WGSL kernels (`shaders/*.wgsl`) and the Rust ops that dispatch them.
//!
//! The kernels are one table (`kernel_table!`): each op's name is its shader's file name,
//! with the access of its storage bindings. Ops take [`GpuTensor`]s (a buffer range with a
//! shape), check their shapes against each other, and are recorded into a [`Plan`] — a list of
//! dispatches and copies with their parameters — which [`Plan::encode`] turns into one command
//! buffer: the parameters of every dispatch go into one uniform buffer, and consecutive
//! dispatches share one compute pass. Shapes in the op docs are in values (`f32` or `u32`) and
//! match the binding comments of the shaders (a test checks it).
//!
//! Kernels that read a weight matrix (`linear`, `conv2d`) have variants, one per [`Encoding`]
//! of the weights (`weights.rs`): a dispatch runs the variant of its weight tensor's encoding,
//! which the device chose when the model was uploaded (`Gpu::half_weights`).
//!
//! Every kernel's uniform parameters are a Rust struct named like its WGSL struct
//! (`uniforms.rs`; a test compares the two layouts), and the constants several kernels use
//! (`shared_constants!`) are declared once, here, and appended to each kernel's source when it
//! is compiled, as the variants are spliced.

// First, for its `uniform!`, which the ops below and in `spatial` use.
#[macro_use]
mod uniforms;

mod spatial;
mod tensor;
mod weights;

use std::sync::OnceLock;

pub use tensor::GpuTensor;
use tensor::{check_shape, dims};
pub use weights::{Encoding, ENCODINGS};

use super::{Gpu, ORIGIN};
use crate::{Error, Result};
use bytemuck::Pod;
use uniforms::*;

/// `$vis NAME: type = value;` declares the Rust constant and adds `const NAME: type = value;`
/// to [`shared_constants`], the WGSL appended to every kernel's source.
macro_rules! shared_constants {
    ($($(#[doc = $doc:literal])* $vis:vis $name:ident: $ty:ident = $value:expr;)+) => {
        $($(#[doc = $doc])* $vis const $name: $ty = $value;)+

        /// The names of the shared constants.
        #[cfg(test)]
        const SHARED_NAMES: &[&str] = &[$(stringify!($name)),+];

        /// The WGSL declarations of the shared constants (their values as WGSL literals).
        fn shared_constants() -> String {
            let mut wgsl = String::from("\n// Shared constants (web-sampler/src/gpu/kernels.rs).\n");
            $(wgsl.push_str(&format!(
                "const {}: {} = {};\n",
                stringify!($name),
                stringify!($ty),
                $name.wgsl_literal()
            ));)+
            wgsl
        }
    };
}

/// A Rust value written as a WGSL literal of its type.
trait WgslLiteral {
    fn wgsl_literal(self) -> String;
}

impl WgslLiteral for u32 {
    fn wgsl_literal(self) -> String {
        format!("{self}u")
    }
}

impl WgslLiteral for f32 {
    fn wgsl_literal(self) -> String {
        // `{:?}` is the shortest form that reads back as the same f32, with a `.` or exponent.
        format!("{self:?}f")
    }
}

shared_constants! {
    /// Invocations per workgroup of the element-wise kernels and of `group_norm.wgsl`.
    pub WORKGROUP: u32 = 64;
    /// `activation` of `linear.wgsl` and `group_norm.wgsl`: none.
    ACTIVATION_NONE: u32 = 0;
    /// `activation` of `linear.wgsl` and `group_norm.wgsl`: SiLU v·σ(v).
    ACTIVATION_SILU: u32 = 1;
    /// SiLU's exponent is clamped here in the kernels so that e^{−v} stays finite
    /// (v / (1 + e^80) is −0 in f32 anyway).
    MAX_EXPONENT: f32 = 80.0;
}

/// The `activation` member of `linear.wgsl`'s and `group_norm.wgsl`'s parameters.
fn activation(silu: bool) -> u32 {
    if silu {
        ACTIVATION_SILU
    } else {
        ACTIVATION_NONE
    }
}

/// `source` as it is compiled: with the [`shared_constants`] appended (after the file, so that
/// the line numbers of compiler messages are the file's).
fn with_shared_constants(source: &str) -> String {
    format!("{source}{}", shared_constants())
}

/// Block size of `linear.wgsl` (`BLOCK`): a workgroup computes BLOCK rows × BLOCK outputs.
pub const LINEAR_BLOCK: u32 = 32;
/// Output positions per workgroup of `conv2d.wgsl` (`BLOCK_POSITIONS`).
pub const CONV_BLOCK_POSITIONS: u32 = 96;
/// Output channels per workgroup of `conv2d.wgsl` (`BLOCK_OUTPUTS`).
pub const CONV_BLOCK_OUTPUTS: u32 = 32;

/// Access of a storage binding (bindings 1, 2, … after the uniform parameters at binding 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    ReadWrite,
}

/// A kernel as the table lists it.
struct KernelSource {
    /// The [`Plan`] op that dispatches it; the shader is `shaders/{op}.wgsl`.
    op: &'static str,
    /// The WGSL source, as the file is.
    source: &'static str,
    /// The layout of its uniform parameters (binding 0), the Rust struct's.
    #[cfg(test)]
    uniform: uniforms::Layout,
    /// Its storage bindings in binding order.
    storage: &'static [Access],
}

impl KernelSource {
    /// The source of the kernel's `encoding` form as it is compiled: the weights block spliced
    /// (`weights.rs`; the `f32` form is the file), then the shared constants appended.
    fn wgsl(&self, encoding: Encoding) -> std::result::Result<String, String> {
        weights::splice(self.source, encoding).map(|source| with_shared_constants(&source))
    }
}

/// A kernel's uniform parameters: the struct that the table pairs with the kernel.
trait Uniform: Pod {
    /// The kernel that reads this struct.
    const KERNEL: KernelId;
}

/// The one list of kernels: `Id => "op": Params [storage access…]` makes the [`KernelId`]
/// variant, the [`KERNELS`] entry (the WGSL included from `shaders/{op}.wgsl`) and the kernel of
/// the uniform struct `Params` (`uniforms.rs`) side by side.
macro_rules! kernel_table {
    ($($id:ident => $op:literal: $params:ident [$($access:ident),+];)+) => {
        /// Which kernel a dispatch runs: its index in [`KERNELS`].
        #[derive(Clone, Copy, Debug)]
        enum KernelId {
            $($id),+
        }

        /// Every kernel, in [`KernelId`] order.
        const KERNELS: &[KernelSource] = &[$(KernelSource {
            op: $op,
            source: include_str!(concat!("../../../shaders/", $op, ".wgsl")),
            #[cfg(test)]
            uniform: $params::LAYOUT,
            storage: &[$(Access::$access),+],
        }),+];

        $(impl Uniform for $params {
            const KERNEL: KernelId = KernelId::$id;
        })+
    };
}

kernel_table! {
    Linear => "linear": LinearParams [Read, Read, Read, ReadWrite];
    Embed => "embed": EmbedParams [Read, Read, Read, Read, ReadWrite];
    Guidance => "guidance": GuidanceParams [Read, Read, ReadWrite];
    NsUpdate => "ns_update": NsUpdateParams [Read, Read, Read, ReadWrite];
    PackRgba => "pack_rgba": PackRgbaParams [Read, ReadWrite];
    Conv2d => "conv2d": Conv2dParams [Read, Read, Read, ReadWrite];
    GroupNorm => "group_norm": GroupNormParams [Read, Read, Read, ReadWrite];
    Add => "add": AddParams [Read, ReadWrite];
    Concat => "concat": ConcatParams [Read, Read, ReadWrite];
    Upsample => "upsample": UpsampleParams [Read, ReadWrite];
    Transpose => "transpose": TransposeParams [Read, ReadWrite];
    Condition => "condition": ConditionParams [Read, Read, Read, ReadWrite];
    AttentionWeights => "attention_weights": AttentionWeightsParams [Read, ReadWrite];
    AttentionValues => "attention_values": AttentionValuesParams [Read, Read, ReadWrite];
}

/// One compiled kernel: its pipeline and bind group layout.
struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

impl Kernel {
    /// The pipeline of `kernel` with `source` (its own, or one of its variants).
    fn new(device: &wgpu::Device, kernel: &KernelSource, source: &str) -> Kernel {
        let name = kernel.op;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        for (i, access) in kernel.storage.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *access == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(name),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        Kernel { pipeline, layout }
    }
}

/// Every kernel's pipelines, in [`KernelId`] order, one per [`Encoding`] (in [`ENCODINGS`]
/// order): the `f32` forms are created with the device, the variants on first use.
pub struct Kernels {
    device: wgpu::Device,
    compiled: Vec<[OnceLock<Kernel>; ENCODINGS.len()]>,
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device) -> Kernels {
        Kernels {
            device: device.clone(),
            compiled: KERNELS
                .iter()
                .map(|kernel| {
                    let source = with_shared_constants(kernel.source);
                    let own = OnceLock::from(Kernel::new(device, kernel, &source));
                    [own, OnceLock::new(), OnceLock::new()]
                })
                .collect(),
        }
    }

    /// The pipeline of kernel `id` for weights in `encoding`; an error for a kernel that has no
    /// variants (it binds no weights).
    fn get(&self, id: KernelId, encoding: Encoding) -> Result<&Kernel> {
        let kernel = &KERNELS[id as usize];
        let slot = &self.compiled[id as usize][encoding.index()];
        if let Some(compiled) = slot.get() {
            return Ok(compiled);
        }
        if !weights::has_variants(kernel.source) {
            return Err(Error::new(
                ORIGIN,
                format!(
                    "internal error: {} has no {} variant",
                    kernel.op,
                    encoding.name()
                ),
            ));
        }
        let source = kernel.wgsl(encoding).map_err(|problem| {
            Error::new(
                ORIGIN,
                format!("internal error: {}.wgsl: {problem}", kernel.op),
            )
        })?;
        Ok(slot.get_or_init(|| Kernel::new(&self.device, kernel, &source)))
    }
}

enum Command {
    Dispatch {
        kernel: KernelId,
        /// The variant: the encoding of the dispatch's weights (`F32` for kernels without).
        encoding: Encoding,
        /// Byte range of this dispatch's parameters in the uniform buffer.
        params: (u64, u64),
        bindings: Vec<GpuTensor>,
        groups: (u32, u32, u32),
    },
    Copy {
        from: GpuTensor,
        to: GpuTensor,
    },
}

/// A recorded sequence of kernel dispatches and buffer copies (see the module docs).
pub struct Plan {
    params: Vec<u8>,
    alignment: u64,
    storage_alignment: u64,
    max_groups: u32,
    commands: Vec<Command>,
}

/// How [`Plan::guidance`] turns the network's output into the step's velocity.
#[derive(Clone, Copy, Debug)]
pub struct Guidance {
    /// The guidance scale `w` (used when the network ran the doubled batch).
    pub scale: f64,
    /// The network predicts `x̂1`; its velocity is `(x̂1 − x)·r` with this `r = 1/max(1 − t, c)`.
    pub data_prediction: Option<f32>,
    /// The step whose velocity slot is written.
    pub step: usize,
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| Error::new(ORIGIN, format!("{what} = {v} is too large for the GPU")))
}

impl Plan {
    /// An empty plan for a device with these limits.
    pub fn new(limits: &wgpu::Limits) -> Plan {
        Plan {
            params: Vec::new(),
            alignment: u64::from(limits.min_uniform_buffer_offset_alignment.max(16)),
            storage_alignment: u64::from(limits.min_storage_buffer_offset_alignment.max(4)),
            max_groups: limits.max_compute_workgroups_per_dimension,
            commands: Vec::new(),
        }
    }

    /// Number of recorded dispatches and copies.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    fn push_params<P: Pod>(&mut self, params: &P) -> (u64, u64) {
        let offset = (self.params.len() as u64).div_ceil(self.alignment) * self.alignment;
        self.params.resize(offset as usize, 0);
        self.params.extend_from_slice(bytemuck::bytes_of(params));
        (offset, std::mem::size_of::<P>() as u64)
    }

    /// Workgroups for `count` invocations of an element-wise kernel: x up to the device's
    /// limit, spilling into y (the shaders compute `id.y · groups.x · WORKGROUP + id.x`).
    fn element_groups(&self, count: usize) -> Result<(u32, u32, u32)> {
        let total = count.div_ceil(WORKGROUP as usize).max(1);
        let max = self.max_groups.max(1) as usize;
        let x = total.min(max);
        let y = total.div_ceil(x);
        if y > max {
            return Err(Error::new(
                ORIGIN,
                format!("{count} values are too many for one dispatch"),
            ));
        }
        Ok((x as u32, y as u32, 1))
    }

    /// Workgroups for a tiled kernel: `columns` tiles in x, `tiles` in y up to the device's
    /// limit, spilling into z (the shaders compute the tile as `id.z · groups.y + id.y`).
    fn tile_groups(&self, columns: usize, tiles: usize, what: &str) -> Result<(u32, u32, u32)> {
        let max = self.max_groups.max(1) as usize;
        let y = tiles.clamp(1, max);
        let z = tiles.div_ceil(y).max(1);
        if columns > max || z > max {
            return Err(Error::new(
                ORIGIN,
                format!("{what}: {columns}×{tiles} tiles are too many for one dispatch"),
            ));
        }
        Ok((columns.max(1) as u32, y as u32, z as u32))
    }

    /// Records a dispatch of the kernel that reads `params` ([`Uniform::KERNEL`]).
    fn dispatch<P: Uniform>(
        &mut self,
        params: &P,
        bindings: &[&GpuTensor],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        self.dispatch_weighted(params, bindings, None, groups)
    }

    /// [`dispatch`](Self::dispatch) of a kernel whose binding `weights` (an index into
    /// `bindings`) is its weight matrix: the variant for that tensor's encoding runs. Every
    /// other binding must hold 4-byte values.
    fn dispatch_weighted<P: Uniform>(
        &mut self,
        params: &P,
        bindings: &[&GpuTensor],
        weights: Option<usize>,
        groups: (u32, u32, u32),
    ) -> Result<()> {
        let kernel = P::KERNEL;
        let op = KERNELS[kernel as usize].op;
        let encoding = weights.map_or(Encoding::F32, |at| bindings[at].encoding);
        if let Some(k) = (0..bindings.len())
            .find(|&k| Some(k) != weights && bindings[k].encoding != Encoding::F32)
        {
            return Err(Error::new(
                ORIGIN,
                format!(
                    "{op}: binding {} holds {} values, but the kernel reads f32 there",
                    k + 1,
                    bindings[k].encoding.name()
                ),
            ));
        }
        if let Some(tensor) = bindings
            .iter()
            .find(|tensor| tensor.offset % self.storage_alignment != 0)
        {
            return Err(Error::new(
                ORIGIN,
                format!(
                    "{op}: a binding starts at byte {}, not a multiple of {}",
                    tensor.offset, self.storage_alignment
                ),
            ));
        }
        let params = self.push_params(params);
        self.commands.push(Command::Dispatch {
            kernel,
            encoding,
            params,
            bindings: bindings.iter().map(|&tensor| tensor.clone()).collect(),
            groups,
        });
        Ok(())
    }

    /// `y = act(x·Wᵀ + b)` (`linear.wgsl`): `x` `[rows, inner]`, `weight` `[outputs, inner]`,
    /// `bias` `[outputs]`, `y` `[rows, outputs]`; `silu` fuses SiLU.
    pub fn linear(
        &mut self,
        x: &GpuTensor,
        weight: &GpuTensor,
        bias: &GpuTensor,
        y: &GpuTensor,
        silu: bool,
    ) -> Result<()> {
        let [rows, inner] = dims(x, "linear x")?;
        let [outputs, _] = dims(weight, "linear weight")?;
        check_shape(weight, &[outputs, inner], "linear weight")?;
        check_shape(bias, &[outputs], "linear bias")?;
        check_shape(y, &[rows, outputs], "linear y")?;
        let tile = LINEAR_BLOCK as usize;
        let groups = self.tile_groups(outputs.div_ceil(tile), rows.div_ceil(tile), "linear")?;
        let params = uniform!(LinearParams { rows, inner, outputs; activation: activation(silu) });
        self.dispatch_weighted(&params, &[x, weight, bias, y], Some(1), groups)
    }

    /// The network input (`embed.wgsl`): `x` `[samples, data]`, `time_embedding`
    /// `[steps, time_width]` (row `time_row` is used), `classes` `[rows]` (u32),
    /// `class_embedding` `[num_classes + 1, class_width]`, `input`
    /// `[rows, data + time_width + class_width]`; row r takes sample r mod samples.
    pub fn embed(
        &mut self,
        x: &GpuTensor,
        time_embedding: &GpuTensor,
        time_row: usize,
        classes: &GpuTensor,
        class_embedding: &GpuTensor,
        input: &GpuTensor,
    ) -> Result<()> {
        let [samples, data] = dims(x, "embed x")?;
        let [steps, time_width] = dims(time_embedding, "embed time embedding")?;
        let [_, class_width] = dims(class_embedding, "embed class embedding")?;
        let [rows, _] = dims(input, "embed input")?;
        let width = data + time_width + class_width;
        check_shape(input, &[rows, width], "embed input")?;
        check_shape(classes, &[rows], "embed classes")?;
        if time_row >= steps {
            return Err(Error::new(
                ORIGIN,
                format!("embed: time row {time_row} of {steps}"),
            ));
        }
        if samples == 0 || rows % samples != 0 {
            return Err(Error::new(
                ORIGIN,
                "embed: rows must be a multiple of samples",
            ));
        }
        let params = uniform!(EmbedParams {
            rows, samples, data, time_width, class_width, time_row; _pad0: 0, _pad1: 0
        });
        let groups = self.element_groups(rows * width)?;
        let bindings = [x, time_embedding, classes, class_embedding, input];
        self.dispatch(&params, &bindings, groups)
    }

    /// The step's guided velocity (`guidance.wgsl`): `network` `[passes·samples, data]`
    /// (passes = 2 when the network ran the doubled batch for guidance, else 1), `x`
    /// `[samples, data]`, `velocities` `[steps, samples, data]` (slot `step` is written).
    pub fn guidance(
        &mut self,
        network: &GpuTensor,
        x: &GpuTensor,
        velocities: &GpuTensor,
        guidance: Guidance,
    ) -> Result<()> {
        let [samples, data] = dims(x, "guidance x")?;
        let [rows, _] = dims(network, "guidance network output")?;
        let guided = rows == 2 * samples;
        let passes = if guided { 2 } else { 1 };
        check_shape(
            network,
            &[passes * samples, data],
            "guidance network output",
        )?;
        let [steps, _, _] = dims(velocities, "guidance velocities")?;
        check_shape(velocities, &[steps, samples, data], "guidance velocities")?;
        if guidance.step >= steps {
            return Err(Error::new(
                ORIGIN,
                format!("guidance: step {} of {steps}", guidance.step),
            ));
        }
        let count = samples * data;
        let params = uniform!(GuidanceParams {
            count;
            guided: u32::from(guided),
            data_prediction: u32::from(guidance.data_prediction.is_some()),
            slot_offset: u32_of(guidance.step * count, "velocity offset")?,
            conditional_weight: (1.0 + guidance.scale) as f32,
            unconditional_weight: guidance.scale as f32,
            inverse_remaining: guidance.data_prediction.unwrap_or(1.0),
            _pad: 0,
        });
        let groups = self.element_groups(count)?;
        self.dispatch(&params, &[network, x, velocities], groups)
    }

    /// Step `step` of the reduced NS form (`ns_update.wgsl`): `coefficients` `[steps, steps + 1]`
    /// (row i = α_i, β_i0..β_ii, zeros), `x0` `[samples, data]`, `velocities`
    /// `[steps, samples, data]`, `x` `[samples, data]` (written); `clamp_unit` clamps to [−1, 1].
    pub fn ns_update(
        &mut self,
        coefficients: &GpuTensor,
        x0: &GpuTensor,
        velocities: &GpuTensor,
        x: &GpuTensor,
        step: usize,
        clamp_unit: bool,
    ) -> Result<()> {
        let [steps, _] = dims(coefficients, "update coefficients")?;
        check_shape(coefficients, &[steps, steps + 1], "update coefficients")?;
        let [samples, data] = dims(x0, "update x0")?;
        check_shape(velocities, &[steps, samples, data], "update velocities")?;
        check_shape(x, &[samples, data], "update x")?;
        if step >= steps {
            return Err(Error::new(
                ORIGIN,
                format!("update: step {step} of {steps}"),
            ));
        }
        let count = samples * data;
        let params = uniform!(NsUpdateParams {
            count, step;
            stride: u32_of(steps + 1, "steps")?,
            clamp_unit: u32::from(clamp_unit),
        });
        let groups = self.element_groups(count)?;
        let bindings = [coefficients, x0, velocities, x];
        self.dispatch(&params, &bindings, groups)
    }

    /// Samples as a grid picture (`pack_rgba.wgsl`): `x` `[samples, channels, height, width]`,
    /// `rgba` `[picture_height, picture_width]` (one u32 pixel each, R in the low byte), laid out
    /// as [`crate::sample::grid_picture`] with `columns` tiles per row. Returns the picture's
    /// `(width, height)`.
    pub fn pack_rgba(
        &mut self,
        x: &GpuTensor,
        rgba: &GpuTensor,
        columns: usize,
    ) -> Result<(usize, usize)> {
        let shape = dims(x, "pack x")?;
        let [samples, channels, height, width] = shape;
        if channels != 1 && channels != 3 {
            return Err(Error::new(
                ORIGIN,
                format!("a picture needs 1 or 3 channels, got {channels}"),
            ));
        }
        let columns = columns.clamp(1, samples.max(1));
        let (picture_width, picture_height) = crate::sample::grid_size(shape, columns);
        check_shape(rgba, &[picture_height, picture_width], "pack rgba")?;
        let params = uniform!(PackRgbaParams {
            samples, channels, height, width, columns, picture_width, picture_height;
            gap: crate::sample::GRID_GAP as u32,
        });
        let groups = self.element_groups(picture_width * picture_height)?;
        self.dispatch(&params, &[x, rgba], groups)?;
        Ok((picture_width, picture_height))
    }

    /// Copies `from` into `to` (the same number of values; the shapes may differ).
    pub fn copy(&mut self, from: &GpuTensor, to: &GpuTensor) -> Result<()> {
        if from.len() != to.len() {
            return Err(Error::new(
                ORIGIN,
                format!(
                    "copy of a {:?} tensor into a {:?} one: the sizes differ",
                    from.shape, to.shape
                ),
            ));
        }
        self.commands.push(Command::Copy {
            from: from.clone(),
            to: to.clone(),
        });
        Ok(())
    }

    /// One command buffer for the whole plan.
    pub fn encode(&self, gpu: &Gpu) -> Result<wgpu::CommandBuffer> {
        let (device, kernels) = (&gpu.device, &gpu.kernels);
        let params = (!self.params.is_empty()).then(|| {
            gpu.buffer_with(
                "kernel parameters",
                &self.params,
                wgpu::BufferUsages::UNIFORM,
            )
        });
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("bns plan"),
        });
        let mut i = 0;
        while i < self.commands.len() {
            match &self.commands[i] {
                Command::Copy { from, to } => {
                    encoder.copy_buffer_to_buffer(
                        &from.buffer,
                        from.offset,
                        &to.buffer,
                        to.offset,
                        from.bytes(),
                    );
                    i += 1;
                }
                Command::Dispatch { .. } => {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("bns kernels"),
                        timestamp_writes: None,
                    });
                    while let Some(Command::Dispatch {
                        kernel,
                        encoding,
                        params: (offset, size),
                        bindings,
                        groups,
                    }) = self.commands.get(i)
                    {
                        let kernel = kernels.get(*kernel, *encoding)?;
                        let Some(params) = &params else { break };
                        let mut entries = vec![wgpu::BindGroupEntry {
                            binding: 0,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: params,
                                offset: *offset,
                                size: wgpu::BufferSize::new(*size),
                            }),
                        }];
                        for (k, tensor) in bindings.iter().enumerate() {
                            entries.push(wgpu::BindGroupEntry {
                                binding: k as u32 + 1,
                                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer: &tensor.buffer,
                                    offset: tensor.offset,
                                    size: wgpu::BufferSize::new(tensor.bytes()),
                                }),
                            });
                        }
                        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: None,
                            layout: &kernel.layout,
                            entries: &entries,
                        });
                        pass.set_pipeline(&kernel.pipeline);
                        pass.set_bind_group(0, &group, &[]);
                        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
                        i += 1;
                    }
                }
            }
        }
        Ok(encoder.finish())
    }
}

#[cfg(test)]
mod tests;
