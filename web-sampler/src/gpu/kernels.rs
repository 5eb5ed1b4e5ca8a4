//! The WGSL kernels (`shaders/*.wgsl`) and the Rust ops that dispatch them.
//!
//! Ops are recorded into a [`Plan`] — a list of dispatches and copies with their parameters —
//! which [`Plan::encode`] turns into one command buffer: the parameters of every dispatch go
//! into one uniform buffer, and consecutive dispatches share one compute pass. Shapes in the
//! op docs are in values (`f32` or `u32`) and match the binding comments of the shaders.

use super::{Gpu, ORIGIN};
use crate::{Error, Result};
use bytemuck::{Pod, Zeroable};

/// Invocations per workgroup of the element-wise kernels (`WORKGROUP` in their WGSL).
pub const WORKGROUP: u32 = 64;
/// Block size of `linear.wgsl` (`BLOCK`): a workgroup computes BLOCK rows × BLOCK outputs.
pub const LINEAR_BLOCK: u32 = 32;

/// One compiled kernel: its pipeline and bind group layout.
struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// Storage binding access, in binding order after the uniform parameters at binding 0.
#[derive(Clone, Copy)]
enum Access {
    Read,
    ReadWrite,
}

impl Kernel {
    fn new(device: &wgpu::Device, name: &str, source: &str, storage: &[Access]) -> Kernel {
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
        for (i, access) in storage.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: matches!(access, Access::Read),
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

/// Every kernel's pipeline, created once per device.
pub struct Kernels {
    linear: Kernel,
    embed: Kernel,
    guidance: Kernel,
    ns_update: Kernel,
    pack: Kernel,
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device) -> Kernels {
        use Access::{Read, ReadWrite};
        let shader = |name: &str, source: &str, storage: &[Access]| {
            Kernel::new(device, name, source, storage)
        };
        Kernels {
            linear: shader(
                "linear",
                include_str!("../../../shaders/linear.wgsl"),
                &[Read, Read, Read, ReadWrite],
            ),
            embed: shader(
                "embed",
                include_str!("../../../shaders/embed.wgsl"),
                &[Read, Read, Read, Read, ReadWrite],
            ),
            guidance: shader(
                "guidance",
                include_str!("../../../shaders/guidance.wgsl"),
                &[Read, Read, ReadWrite],
            ),
            ns_update: shader(
                "ns_update",
                include_str!("../../../shaders/ns_update.wgsl"),
                &[Read, Read, Read, ReadWrite],
            ),
            pack: shader(
                "pack",
                include_str!("../../../shaders/pack.wgsl"),
                &[Read, ReadWrite],
            ),
        }
    }
}

/// Which kernel a dispatch runs.
#[derive(Clone, Copy, Debug)]
enum KernelId {
    Linear,
    Embed,
    Guidance,
    NsUpdate,
    Pack,
}

/// The first `len` values (4 bytes each) of a buffer, as a binding or a copy end.
#[derive(Clone, Debug)]
pub struct View {
    buffer: wgpu::Buffer,
    /// Offset in bytes (copies only; bindings always start at 0).
    offset: u64,
    /// Size in bytes.
    size: u64,
}

impl View {
    /// The first `len` values of `buffer`.
    pub fn prefix(buffer: &wgpu::Buffer, len: usize) -> View {
        View {
            buffer: buffer.clone(),
            offset: 0,
            size: 4 * len.max(1) as u64,
        }
    }

    /// Values `start..start + len` of `buffer` (as the end of a copy).
    pub fn range(buffer: &wgpu::Buffer, start: usize, len: usize) -> View {
        View {
            buffer: buffer.clone(),
            offset: 4 * start as u64,
            size: 4 * len as u64,
        }
    }

    fn values(&self) -> usize {
        (self.size / 4) as usize
    }
}

enum Command {
    Dispatch {
        kernel: KernelId,
        /// Byte range of this dispatch's parameters in the uniform buffer.
        params: (u64, u64),
        bindings: Vec<View>,
        groups: (u32, u32),
    },
    Copy {
        from: View,
        to: View,
    },
}

/// A recorded sequence of kernel dispatches and buffer copies (see the module docs).
pub struct Plan {
    params: Vec<u8>,
    alignment: u64,
    max_groups: u32,
    commands: Vec<Command>,
}

/// `linear.wgsl`'s parameters.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LinearParams {
    rows: u32,
    inner: u32,
    outputs: u32,
    activation: u32,
}

/// `linear.wgsl`'s `ACTIVATION_SILU`.
const ACTIVATION_SILU: u32 = 1;

/// `embed.wgsl`'s parameters.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EmbedParams {
    rows: u32,
    samples: u32,
    data: u32,
    time_width: u32,
    class_width: u32,
    time_row: u32,
    pad: [u32; 2],
}

/// `guidance.wgsl`'s parameters.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GuidanceParams {
    count: u32,
    guided: u32,
    data_prediction: u32,
    slot_offset: u32,
    conditional_weight: f32,
    unconditional_weight: f32,
    inverse_remaining: f32,
    pad: u32,
}

/// `ns_update.wgsl`'s parameters.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct UpdateParams {
    count: u32,
    step: u32,
    stride: u32,
    clamp_unit: u32,
}

/// `pack.wgsl`'s parameters.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PackParams {
    samples: u32,
    channels: u32,
    height: u32,
    width: u32,
    columns: u32,
    picture_width: u32,
    picture_height: u32,
    gap: u32,
}

/// The shape of the network input that [`Plan::embed`] assembles.
#[derive(Clone, Copy, Debug)]
pub struct EmbedShape {
    /// Input rows: `samples`, or `2·samples` for the guided batch.
    pub rows: usize,
    pub samples: usize,
    /// `D`, the values of one sample.
    pub data: usize,
    pub time_width: usize,
    /// 0 for an unconditional model.
    pub class_width: usize,
}

/// How [`Plan::guidance`] turns the network's output into the step's velocity.
#[derive(Clone, Copy, Debug)]
pub struct Guidance {
    /// `samples · D`.
    pub count: usize,
    /// The network ran the doubled batch (conditional rows, then unconditional ones).
    pub guided: bool,
    /// The guidance scale `w`.
    pub scale: f64,
    /// The network predicts `x̂1`; its velocity is `(x̂1 − x)/max(1 − t, 0.05)` at this `t`.
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
    fn element_groups(&self, count: usize) -> Result<(u32, u32)> {
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
        Ok((x as u32, y as u32))
    }

    fn dispatch<P: Pod>(
        &mut self,
        kernel: KernelId,
        params: &P,
        bindings: Vec<View>,
        groups: (u32, u32),
    ) {
        let params = self.push_params(params);
        self.commands.push(Command::Dispatch {
            kernel,
            params,
            bindings,
            groups,
        });
    }

    /// `y = act(x·Wᵀ + b)` (`linear.wgsl`): `x` `[rows, inner]`, `weight` `[outputs, inner]`,
    /// `bias` `[outputs]`, `y` `[rows, outputs]`; `silu` fuses SiLU.
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &mut self,
        x: &View,
        weight: &View,
        bias: &View,
        y: &View,
        rows: usize,
        inner: usize,
        outputs: usize,
        silu: bool,
    ) -> Result<()> {
        check(x, rows * inner, "linear x")?;
        check(weight, outputs * inner, "linear weight")?;
        check(bias, outputs, "linear bias")?;
        check(y, rows * outputs, "linear y")?;
        let tile = LINEAR_BLOCK as usize;
        let groups = (
            u32_of(outputs.div_ceil(tile), "linear output tiles")?,
            u32_of(rows.div_ceil(tile), "linear row tiles")?,
        );
        if groups.0 > self.max_groups || groups.1 > self.max_groups {
            return Err(Error::new(
                ORIGIN,
                format!("linear: {rows}×{outputs} is too large for one dispatch"),
            ));
        }
        let params = LinearParams {
            rows: u32_of(rows, "rows")?,
            inner: u32_of(inner, "inner")?,
            outputs: u32_of(outputs, "outputs")?,
            activation: if silu { ACTIVATION_SILU } else { 0 },
        };
        let bindings = vec![x.clone(), weight.clone(), bias.clone(), y.clone()];
        self.dispatch(KernelId::Linear, &params, bindings, groups);
        Ok(())
    }

    /// The network input (`embed.wgsl`): `x` `[samples, data]`, `time_embedding`
    /// `[steps, time_width]` (row `time_row` is used), `classes` `[rows]` (u32),
    /// `class_embedding` `[num_classes + 1, class_width]`, `input`
    /// `[rows, data + time_width + class_width]`; row r takes sample r mod samples.
    #[allow(clippy::too_many_arguments)]
    pub fn embed(
        &mut self,
        x: &View,
        time_embedding: &View,
        classes: &View,
        class_embedding: &View,
        input: &View,
        shape: EmbedShape,
        time_row: usize,
    ) -> Result<()> {
        let width = shape.data + shape.time_width + shape.class_width;
        check(x, shape.samples * shape.data, "embed x")?;
        check(
            time_embedding,
            (time_row + 1) * shape.time_width,
            "embed time embedding",
        )?;
        check(
            classes,
            if shape.class_width > 0 { shape.rows } else { 0 },
            "embed classes",
        )?;
        check(input, shape.rows * width, "embed input")?;
        if shape.samples == 0 || shape.rows % shape.samples != 0 {
            return Err(Error::new(
                ORIGIN,
                "embed: rows must be a multiple of samples",
            ));
        }
        let params = EmbedParams {
            rows: u32_of(shape.rows, "rows")?,
            samples: u32_of(shape.samples, "samples")?,
            data: u32_of(shape.data, "data")?,
            time_width: u32_of(shape.time_width, "time width")?,
            class_width: u32_of(shape.class_width, "class width")?,
            time_row: u32_of(time_row, "time row")?,
            pad: [0; 2],
        };
        let groups = self.element_groups(shape.rows * width)?;
        let bindings = vec![
            x.clone(),
            time_embedding.clone(),
            classes.clone(),
            class_embedding.clone(),
            input.clone(),
        ];
        self.dispatch(KernelId::Embed, &params, bindings, groups);
        Ok(())
    }

    /// The step's guided velocity (`guidance.wgsl`): `network` `[passes·samples, data]`
    /// (passes = 2 when guided), `x` `[samples, data]`, `velocities` `[steps, samples, data]`
    /// (slot `step` is written).
    pub fn guidance(
        &mut self,
        network: &View,
        x: &View,
        velocities: &View,
        guidance: Guidance,
    ) -> Result<()> {
        let passes = if guidance.guided { 2 } else { 1 };
        check(network, passes * guidance.count, "guidance network output")?;
        check(x, guidance.count, "guidance x")?;
        check(
            velocities,
            (guidance.step + 1) * guidance.count,
            "guidance velocities",
        )?;
        let params = GuidanceParams {
            count: u32_of(guidance.count, "values")?,
            guided: u32::from(guidance.guided),
            data_prediction: u32::from(guidance.data_prediction.is_some()),
            slot_offset: u32_of(guidance.step * guidance.count, "velocity offset")?,
            conditional_weight: (1.0 + guidance.scale) as f32,
            unconditional_weight: guidance.scale as f32,
            inverse_remaining: guidance.data_prediction.unwrap_or(1.0),
            pad: 0,
        };
        let groups = self.element_groups(guidance.count)?;
        let bindings = vec![network.clone(), x.clone(), velocities.clone()];
        self.dispatch(KernelId::Guidance, &params, bindings, groups);
        Ok(())
    }

    /// Step `step` of the reduced NS form (`ns_update.wgsl`): `coefficients` `[steps, steps + 1]`
    /// (row i = α_i, β_i0..β_ii, zeros), `x0` `[count]`, `velocities` `[steps, count]`, `x`
    /// `[count]` (written); `clamp_unit` clamps to [−1, 1].
    #[allow(clippy::too_many_arguments)]
    pub fn ns_update(
        &mut self,
        coefficients: &View,
        x0: &View,
        velocities: &View,
        x: &View,
        count: usize,
        step: usize,
        steps: usize,
        clamp_unit: bool,
    ) -> Result<()> {
        check(coefficients, steps * (steps + 1), "update coefficients")?;
        check(x0, count, "update x0")?;
        check(velocities, (step + 1) * count, "update velocities")?;
        check(x, count, "update x")?;
        if step >= steps {
            return Err(Error::new(
                ORIGIN,
                format!("update: step {step} of {steps}"),
            ));
        }
        let params = UpdateParams {
            count: u32_of(count, "values")?,
            step: u32_of(step, "step")?,
            stride: u32_of(steps + 1, "steps")?,
            clamp_unit: u32::from(clamp_unit),
        };
        let groups = self.element_groups(count)?;
        let bindings = vec![
            coefficients.clone(),
            x0.clone(),
            velocities.clone(),
            x.clone(),
        ];
        self.dispatch(KernelId::NsUpdate, &params, bindings, groups);
        Ok(())
    }

    /// Samples as a grid picture (`pack.wgsl`): `x` `[samples, channels, height, width]`,
    /// `rgba` `[picture_height, picture_width]` (one u32 pixel each, R in the low byte), laid out
    /// as [`crate::sample::grid_picture`] with `columns` tiles per row. Returns the picture's
    /// `(width, height)`.
    pub fn pack_rgba(
        &mut self,
        x: &View,
        rgba: &View,
        shape: [usize; 4],
        columns: usize,
    ) -> Result<(usize, usize)> {
        let [b, c, h, w] = shape;
        if c != 1 && c != 3 {
            return Err(Error::new(
                ORIGIN,
                format!("a picture needs 1 or 3 channels, got {c}"),
            ));
        }
        let columns = columns.clamp(1, b.max(1));
        let (width, height) = crate::sample::grid_size(shape, columns);
        check(x, b * c * h * w, "pack x")?;
        check(rgba, width * height, "pack rgba")?;
        let params = PackParams {
            samples: u32_of(b, "samples")?,
            channels: u32_of(c, "channels")?,
            height: u32_of(h, "height")?,
            width: u32_of(w, "width")?,
            columns: u32_of(columns, "columns")?,
            picture_width: u32_of(width, "picture width")?,
            picture_height: u32_of(height, "picture height")?,
            gap: crate::sample::GRID_GAP as u32,
        };
        let groups = self.element_groups(width * height)?;
        self.dispatch(
            KernelId::Pack,
            &params,
            vec![x.clone(), rgba.clone()],
            groups,
        );
        Ok((width, height))
    }

    /// Copies `from` into `to` (same size).
    pub fn copy(&mut self, from: &View, to: &View) -> Result<()> {
        if from.size != to.size {
            return Err(Error::new(ORIGIN, "copy between views of different sizes"));
        }
        self.commands.push(Command::Copy {
            from: from.clone(),
            to: to.clone(),
        });
        Ok(())
    }

    /// One command buffer for the whole plan.
    pub fn encode(&self, gpu: &Gpu) -> wgpu::CommandBuffer {
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
                        from.size,
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
                        params: (offset, size),
                        bindings,
                        groups,
                    }) = self.commands.get(i)
                    {
                        let kernel = match kernel {
                            KernelId::Linear => &kernels.linear,
                            KernelId::Embed => &kernels.embed,
                            KernelId::Guidance => &kernels.guidance,
                            KernelId::NsUpdate => &kernels.ns_update,
                            KernelId::Pack => &kernels.pack,
                        };
                        let Some(params) = &params else { break };
                        let mut entries = vec![wgpu::BindGroupEntry {
                            binding: 0,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: params,
                                offset: *offset,
                                size: wgpu::BufferSize::new(*size),
                            }),
                        }];
                        for (k, view) in bindings.iter().enumerate() {
                            entries.push(wgpu::BindGroupEntry {
                                binding: k as u32 + 1,
                                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer: &view.buffer,
                                    offset: view.offset,
                                    size: wgpu::BufferSize::new(view.size),
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
                        pass.dispatch_workgroups(groups.0, groups.1, 1);
                        i += 1;
                    }
                }
            }
        }
        encoder.finish()
    }
}

/// Errors unless `view` holds at least `len` values.
fn check(view: &View, len: usize, what: &str) -> Result<()> {
    if view.values() < len {
        return Err(Error::new(
            ORIGIN,
            format!(
                "{what}: the buffer holds {} values, {len} are needed",
                view.values()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Each shader with the op that dispatches it.
    const SHADERS: [(&str, &str, &str); 5] = [
        (
            "linear.wgsl",
            include_str!("../../../shaders/linear.wgsl"),
            "linear",
        ),
        (
            "embed.wgsl",
            include_str!("../../../shaders/embed.wgsl"),
            "embed",
        ),
        (
            "guidance.wgsl",
            include_str!("../../../shaders/guidance.wgsl"),
            "guidance",
        ),
        (
            "ns_update.wgsl",
            include_str!("../../../shaders/ns_update.wgsl"),
            "ns_update",
        ),
        (
            "pack.wgsl",
            include_str!("../../../shaders/pack.wgsl"),
            "pack_rgba",
        ),
    ];

    /// The `///` lines right above `pub fn {op}(` in this file.
    fn op_doc(op: &str) -> String {
        let source = include_str!("kernels.rs");
        let lines: Vec<&str> = source.lines().collect();
        let start = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("pub fn {op}(")))
            .unwrap_or_else(|| panic!("no op {op}"));
        let mut doc = Vec::new();
        for line in lines[..start].iter().rev() {
            let line = line.trim_start();
            if let Some(text) = line.strip_prefix("///") {
                doc.push(text.trim());
            } else if !line.starts_with("#[") {
                break;
            }
        }
        doc.reverse();
        doc.join(" ")
    }

    /// `[a · b, c]` → `[a·b,c]`: shapes compared without spaces.
    fn squeeze(shape: &str) -> String {
        shape.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn binding_shape_comments_match_the_ops_docs() {
        for (file, source, op) in SHADERS {
            let doc = op_doc(op);
            let lines: Vec<&str> = source.lines().collect();
            let mut storage = 0;
            for (i, line) in lines.iter().enumerate() {
                if !line.contains("@binding(") || line.contains("var<uniform>") {
                    continue;
                }
                storage += 1;
                let comment = lines[i - 1]
                    .strip_prefix("// ")
                    .unwrap_or_else(|| panic!("{file}: no shape comment above {line}"));
                let (name, rest) = comment.split_once(": ").expect("`name: [shape]`");
                let shape = &rest[..=rest.find(']').expect("a shape in brackets")];
                let wanted = format!("`{name}``{}`", squeeze(shape));
                assert!(
                    squeeze(&doc).contains(&wanted),
                    "{file}: `{name}: {shape}` is not in the doc of Plan::{op}: {doc}"
                );
            }
            assert!(storage >= 2, "{file}: found {storage} storage bindings");
        }
    }
}
