//! A whole guided sample on the GPU: every solver step recorded into one submission per chunk
//! of the batch (one chunk unless the device's buffer limits force more), read back once.
//!
//! [`sample`] goes through four stages: the layout (sizes, chunks and the inputs computed on
//! the CPU), the buffers (leased from the device's pool, given back when the lease drops), one
//! recorded [`Plan`] per chunk, and the read-back. Per step i, for a chunk of `Bc` samples
//! (`R = 2·Bc` network rows when guided, else `Bc`): the network (`R` rows → `[R, D]`),
//! `guidance` (→ velocity slot i), `ns_update` (x_{i+1} from x_0 and the velocities, the reduced
//! NS form). The last chunk's submission also runs `pack_rgba` for the grid picture, and values
//! and picture come back in one read. When even the whole batch's samples exceed a buffer limit,
//! each chunk's result is copied straight to the read-back buffer and the picture is drawn on
//! the CPU.

use super::kernels::{GpuTensor, Guidance, Plan};
use super::network::{self, NetworkInput, NetworkRecorder};
use super::pool::Lease;
use super::{Gpu, ORIGIN};
use crate::model::{time_embedding, Model, Prediction};
use crate::path::data_to_velocity_factor;
use crate::sample::{
    check_request, grid_size, is_image, sample_shape, Picture, SampleRequest, Samples,
};
use crate::solver::NsTable;
use crate::{Error, Result};

/// What a GPU sample returns.
#[derive(Clone, Debug)]
pub struct GpuSamples {
    /// `[B, C, H, W]`, images clamped to [−1, 1], as [`crate::sample::sample`].
    pub samples: Samples,
    /// The grid picture with the requested columns (image models with 1 or 3 channels).
    pub picture: Option<Picture>,
    /// Submissions the sample took: one per chunk of the batch (the last one also draws the
    /// picture).
    pub submissions: usize,
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);
const READBACK: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

/// The largest buffer a kernel may bind, in bytes.
fn buffer_limit(limits: &wgpu::Limits) -> u64 {
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
}

/// The solver's coefficients as `ns_update.wgsl` reads them: `[steps, steps + 1]` in the reduced
/// form, row i = α_i, β_i0, …, β_ii, then zeros.
pub(crate) fn coefficient_rows(table: &NsTable) -> Vec<f32> {
    let steps = table.steps();
    let reduced = table.reduced();
    let mut coefficients = vec![0.0f32; steps * (steps + 1)];
    for ((alpha, beta), row) in reduced
        .alpha
        .iter()
        .zip(&reduced.beta)
        .zip(coefficients.chunks_exact_mut(steps + 1))
    {
        row[0] = *alpha as f32;
        for (slot, b) in row[1..].iter_mut().zip(beta) {
            *slot = *b as f32;
        }
    }
    coefficients
}

/// The largest chunk of the batch whose buffers all fit the device's limits: the velocities
/// `[steps, chunk, data]`, and the network's largest buffer, `network_row` values for each of
/// the `passes · chunk` rows.
pub fn chunk_size(
    limits: &wgpu::Limits,
    batch: usize,
    passes: usize,
    steps: usize,
    data: usize,
    network_row: usize,
) -> Result<usize> {
    let limit = buffer_limit(limits);
    // Values per sample in the largest buffer.
    let per_sample = (steps * data).max(passes * network_row).max(1) as u64;
    let fits = (limit / (4 * per_sample)) as usize;
    if fits == 0 {
        return Err(Error::new(
            ORIGIN,
            format!(
                "one sample needs a {} byte buffer, more than this GPU's limit of {limit} bytes",
                4 * per_sample
            ),
        ));
    }
    Ok(batch.min(fits))
}

/// Runs `table` for `request` on the GPU: the same samples as [`crate::sample::sample`] up to
/// rounding, with the grid picture for `columns` tiles per row.
pub async fn sample(
    gpu: &Gpu,
    model: &Model,
    table: &NsTable,
    request: &SampleRequest,
    columns: usize,
) -> Result<GpuSamples> {
    let classes = check_request(model, request)?;
    if let Err(problem) = table.validate() {
        return Err(Error::new(
            ORIGIN,
            format!("invalid solver table: {problem}"),
        ));
    }
    let _busy = gpu.claim()?;
    gpu.check_alive()?;
    let network = network::cached(gpu, model)?;
    let layout = SampleLayout::new(
        gpu,
        model,
        table,
        request,
        columns,
        network.values_per_row(),
    )?;
    let inputs = CpuInputs::new(model, table, request, classes);
    let mut lease = Lease::new(&gpu.device, &gpu.pool);
    let buffers = SampleBuffers::take(&mut lease, &layout, &inputs);
    let recorder = network.recorder(&mut lease, layout.passes * layout.chunk);
    let (bytes, submissions) = gpu
        .run(&buffers.readback, |submit| {
            buffers.write_solver(gpu, &inputs);
            let mut submissions = 0;
            for chunk in layout.chunks() {
                buffers.write_chunk(gpu, &layout, &inputs, chunk);
                let mut plan = Plan::new(&gpu.limits);
                record_chunk(&mut plan, &layout, &inputs, &buffers, &*recorder, chunk)?;
                record_results(&mut plan, &layout, &buffers, chunk)?;
                submit(plan.encode(gpu)?);
                submissions += 1;
            }
            Ok(submissions)
        })
        .await?;
    let (samples, picture) = read_back(&layout, &bytes)?;
    Ok(GpuSamples {
        samples,
        picture,
        submissions,
    })
}

/// The sizes of one sample and how its batch is split, decided before any buffer is taken.
struct SampleLayout {
    batch: usize,
    /// `D`, the values of one sample.
    data: usize,
    /// `[B, C, H, W]`.
    shape: [usize; 4],
    /// 2 when guided (the network runs every sample with its class and with the null class).
    passes: usize,
    steps: usize,
    /// Samples per chunk (the last chunk may hold fewer).
    chunk: usize,
    /// The width of a time-embedding row.
    time_width: usize,
    /// The grid picture's `(width, height)` (image models with 1 or 3 channels).
    picture: Option<(usize, usize)>,
    /// Tiles per row of the picture.
    columns: usize,
    /// Whether the whole batch's samples and its picture each fit one buffer: then they are
    /// gathered on the GPU and the last chunk draws the picture.
    whole_batch_fits: bool,
    guidance: f64,
    data_prediction: bool,
    /// Images are clamped to [−1, 1] at the last step.
    clamp: bool,
    null_class: u32,
}

/// A run of consecutive samples of the batch recorded into one submission.
#[derive(Clone, Copy)]
struct Chunk {
    start: usize,
    samples: usize,
    last: bool,
}

impl SampleLayout {
    fn new(
        gpu: &Gpu,
        model: &Model,
        table: &NsTable,
        request: &SampleRequest,
        columns: usize,
        network_row: usize,
    ) -> Result<SampleLayout> {
        let spec = model.spec();
        let batch = request.batch;
        let data = spec.data_dim();
        let shape = sample_shape(spec, batch);
        let guided = request.guidance != 0.0 && spec.is_conditional();
        let passes = if guided { 2 } else { 1 };
        let steps = table.steps();
        let chunk = chunk_size(&gpu.limits, batch, passes, steps, data, network_row)?;
        let picture = (is_image(&spec.data_shape) && (shape[1] == 1 || shape[1] == 3))
            .then(|| grid_size(shape, columns));
        let picture_values = picture.map_or(0, |(w, h)| w * h);
        let limit = buffer_limit(&gpu.limits) as usize;
        Ok(SampleLayout {
            batch,
            data,
            shape,
            passes,
            steps,
            chunk,
            time_width: spec.time_embedding,
            picture,
            columns,
            whole_batch_fits: 4 * batch * data <= limit && 4 * picture_values <= limit,
            guidance: request.guidance,
            data_prediction: spec.prediction == Prediction::Data,
            clamp: is_image(&spec.data_shape),
            null_class: spec.null_class(),
        })
    }

    /// Values of the picture (one u32 pixel each), 0 without one.
    fn picture_values(&self) -> usize {
        self.picture.map_or(0, |(w, h)| w * h)
    }

    fn chunks(&self) -> impl Iterator<Item = Chunk> + '_ {
        (0..self.batch).step_by(self.chunk).map(|start| {
            let samples = self.chunk.min(self.batch - start);
            Chunk {
                start,
                samples,
                last: start + samples == self.batch,
            }
        })
    }
}

/// What the CPU computes for the GPU: the seeded noise, the solver's coefficients (reduced
/// form) and times, one time-embedding row per step, the class labels.
struct CpuInputs {
    /// `[B, D]`.
    x0: Vec<f32>,
    /// `[steps, steps + 1]`, see [`coefficient_rows`].
    coefficients: Vec<f32>,
    /// `t_0 … t_{steps−1}`.
    times: Vec<f32>,
    /// `[steps, E_t]`.
    time_embeddings: Vec<f32>,
    /// `[B]`.
    classes: Vec<u32>,
}

impl CpuInputs {
    fn new(model: &Model, table: &NsTable, request: &SampleRequest, classes: Vec<u32>) -> Self {
        let spec = model.spec();
        let steps = table.steps();
        let times: Vec<f32> = table.times[..steps].iter().map(|&t| t as f32).collect();
        let mut time_embeddings = Vec::with_capacity(steps * spec.time_embedding);
        for &t in &times {
            time_embeddings.extend(time_embedding(t, spec.time_embedding, spec.time_scale));
        }
        CpuInputs {
            x0: request.noise(spec.data_dim()),
            coefficients: coefficient_rows(table),
            times,
            time_embeddings,
            classes,
        }
    }
}

/// The buffers of one sample (the network's own are its recorder's), all from one [`Lease`].
struct SampleBuffers {
    /// `[steps, steps + 1]`.
    coefficients: wgpu::Buffer,
    /// `[steps, E_t]`.
    time_embeddings: wgpu::Buffer,
    /// `[chunk, D]` each.
    x0: wgpu::Buffer,
    x: wgpu::Buffer,
    /// `[steps, chunk, D]`.
    velocities: wgpu::Buffer,
    /// `[passes · chunk, D]`.
    network_output: wgpu::Buffer,
    /// `[passes · chunk]` labels.
    classes: wgpu::Buffer,
    /// `[B, D]` and the picture `[height, width]` when the whole batch fits; else unused.
    samples: wgpu::Buffer,
    picture: wgpu::Buffer,
    /// `[B, D]` values, then the picture's pixels when drawn on the GPU.
    readback: wgpu::Buffer,
}

impl SampleBuffers {
    fn take(lease: &mut Lease<'_>, layout: &SampleLayout, inputs: &CpuInputs) -> Self {
        let (chunk, data, steps) = (layout.chunk, layout.data, layout.steps);
        let rows = layout.passes * chunk;
        let (samples_values, picture_values) = if layout.whole_batch_fits {
            (layout.batch * data, layout.picture_values())
        } else {
            (0, 0)
        };
        SampleBuffers {
            coefficients: lease.take("coefficients", inputs.coefficients.len(), STORAGE),
            time_embeddings: lease.take("time embeddings", inputs.time_embeddings.len(), STORAGE),
            x0: lease.take("x0", chunk * data, STORAGE),
            x: lease.take("x", chunk * data, STORAGE),
            velocities: lease.take("velocities", steps * chunk * data, STORAGE),
            network_output: lease.take("network output", rows * data, STORAGE),
            classes: lease.take("classes", rows, STORAGE),
            samples: lease.take("samples", samples_values, STORAGE),
            picture: lease.take("picture", picture_values, STORAGE),
            readback: lease.take("readback", layout.batch * data + picture_values, READBACK),
        }
    }

    /// Writes what every chunk shares: the coefficients and the time embeddings.
    fn write_solver(&self, gpu: &Gpu, inputs: &CpuInputs) {
        let queue = &gpu.queue;
        let coefficients = bytemuck::cast_slice(&inputs.coefficients);
        queue.write_buffer(&self.coefficients, 0, coefficients);
        if !inputs.time_embeddings.is_empty() {
            let embeddings = bytemuck::cast_slice(&inputs.time_embeddings);
            queue.write_buffer(&self.time_embeddings, 0, embeddings);
        }
    }

    /// Writes a chunk's noise and its rows' class labels (the null class for the second pass).
    fn write_chunk(&self, gpu: &Gpu, layout: &SampleLayout, inputs: &CpuInputs, chunk: Chunk) {
        let (start, n, data) = (chunk.start, chunk.samples, layout.data);
        let x0 = &inputs.x0[start * data..(start + n) * data];
        gpu.queue
            .write_buffer(&self.x0, 0, bytemuck::cast_slice(x0));
        let mut labels = inputs.classes[start..start + n].to_vec();
        if layout.passes == 2 {
            labels.extend(std::iter::repeat_n(layout.null_class, n));
        }
        gpu.queue
            .write_buffer(&self.classes, 0, bytemuck::cast_slice(&labels));
    }
}

/// Every step of the solve for one chunk: x ← x0, then per step the network, guidance and the
/// update.
fn record_chunk(
    plan: &mut Plan,
    layout: &SampleLayout,
    inputs: &CpuInputs,
    buffers: &SampleBuffers,
    network: &dyn NetworkRecorder,
    chunk: Chunk,
) -> Result<()> {
    let (n, data, steps) = (chunk.samples, layout.data, layout.steps);
    let rows = layout.passes * n;
    let x = GpuTensor::new(&buffers.x, &[n, data])?;
    let x0 = GpuTensor::new(&buffers.x0, &[n, data])?;
    let velocities = GpuTensor::new(&buffers.velocities, &[steps, n, data])?;
    let classes = GpuTensor::new(&buffers.classes, &[rows])?;
    let output = GpuTensor::new(&buffers.network_output, &[rows, data])?;
    let coefficients = GpuTensor::new(&buffers.coefficients, &[steps, steps + 1])?;
    let time_embeddings = GpuTensor::new(&buffers.time_embeddings, &[steps, layout.time_width])?;
    plan.copy(&x0, &x)?;
    for (step, &t) in inputs.times.iter().enumerate() {
        let input = NetworkInput {
            x: &x,
            time_embedding: &time_embeddings,
            time_row: step,
            classes: &classes,
        };
        network.record(plan, &input, &output)?;
        let guidance = Guidance {
            scale: layout.guidance,
            data_prediction: layout.data_prediction.then(|| data_to_velocity_factor(t)),
            step,
        };
        plan.guidance(&output, &x, &velocities, guidance)?;
        let clamp = layout.clamp && step + 1 == steps;
        plan.ns_update(&coefficients, &x0, &velocities, &x, step, clamp)?;
    }
    Ok(())
}

/// The chunk's samples into the batch's samples buffer (the last chunk then gathers them and
/// draws the picture into the read-back buffer), or, when the batch does not fit one buffer,
/// straight into the read-back buffer (the picture is then drawn on the CPU).
fn record_results(
    plan: &mut Plan,
    layout: &SampleLayout,
    buffers: &SampleBuffers,
    chunk: Chunk,
) -> Result<()> {
    let (n, data, batch) = (chunk.samples, layout.data, layout.batch);
    let x = GpuTensor::new(&buffers.x, &[n, data])?;
    let rows = |buffer: &wgpu::Buffer| GpuTensor::at(buffer, chunk.start * data, &[n, data]);
    if !layout.whole_batch_fits {
        return plan.copy(&x, &rows(&buffers.readback)?);
    }
    plan.copy(&x, &rows(&buffers.samples)?)?;
    if chunk.last {
        let samples = GpuTensor::new(&buffers.samples, &layout.shape)?;
        plan.copy(
            &samples,
            &GpuTensor::new(&buffers.readback, &[batch, data])?,
        )?;
        if let Some((width, height)) = layout.picture {
            let picture = GpuTensor::new(&buffers.picture, &[height, width])?;
            plan.pack_rgba(&samples, &picture, layout.columns)?;
            let destination = GpuTensor::at(&buffers.readback, batch * data, &[height, width])?;
            plan.copy(&picture, &destination)?;
        }
    }
    Ok(())
}

/// The samples and the picture from the read-back bytes: `[B, D]` f32 values, then the
/// picture's pixels when the GPU drew it (else it is drawn here).
fn read_back(layout: &SampleLayout, bytes: &[u8]) -> Result<(Samples, Option<Picture>)> {
    let values_end = 4 * layout.batch * layout.data;
    let floats: &[f32] = bytemuck::cast_slice(&bytes[..values_end]);
    let samples = Samples {
        values: floats.to_vec(),
        shape: layout.shape,
    };
    let picture = match layout.picture {
        Some((width, height)) if layout.whole_batch_fits => Some(Picture {
            width,
            height,
            rgba: bytes[values_end..values_end + 4 * width * height].to_vec(),
        }),
        Some(_) => Some(crate::sample::grid_picture(&samples, layout.columns)?),
        None => None,
    };
    Ok((samples, picture))
}
