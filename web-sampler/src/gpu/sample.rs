//! A whole guided sample on the GPU: every solver step recorded into one submission per chunk
//! of the batch (one chunk unless the device's buffer limits force more), read back once.
//! When even the whole batch's samples exceed a buffer limit, each chunk's result is copied
//! straight to the read-back buffer and the picture is drawn on the CPU.
//!
//! Per step i, for a chunk of `Bc` samples (`R = 2·Bc` rows when guided, else `Bc`):
//! `embed` (x_i, the step's time embedding row, class rows → input `[R, D+E_t+E_c]`), the dense
//! layers (`linear`, SiLU fused), `guidance` (→ velocity slot i), `ns_update` (x_{i+1} from x_0
//! and the velocities, the reduced NS form). The last chunk's submission also runs `pack_rgba`
//! for the grid picture, and values and picture come back in one read.

use std::sync::PoisonError;

use super::kernels::{EmbedShape, Guidance, Plan, View};
use super::{Gpu, ORIGIN};
use crate::model::{time_embedding, Architecture, Model, Prediction};
use crate::noise::gaussian_batch;
use crate::path::data_to_velocity_factor;
use crate::sample::{
    check_request, grid_size, is_image, sample_shape, Picture, SampleRequest, Samples,
};
use crate::solver::NsTable;
use crate::{Error, Result};

/// A model's weights on the GPU (clones share the buffers).
#[derive(Clone)]
pub struct GpuModel {
    id: String,
    /// `[num_classes + 1, E_c]`, or one unused value when unconditional.
    class_embedding: wgpu::Buffer,
    layers: Vec<GpuLayer>,
}

#[derive(Clone)]
struct GpuLayer {
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
    inner: usize,
    outputs: usize,
}

impl GpuModel {
    fn upload(gpu: &Gpu, model: &Model) -> Result<GpuModel> {
        let tensor = |name: &str| {
            model.tensor(name).ok_or_else(|| {
                Error::new(
                    ORIGIN,
                    format!("internal error: the model has no tensor {name}"),
                )
            })
        };
        let buffer = |label: &str, values: &[f32]| {
            gpu.buffer_with(
                label,
                bytemuck::cast_slice(values),
                wgpu::BufferUsages::STORAGE,
            )
        };
        let spec = model.spec();
        let class_embedding = if spec.is_conditional() {
            buffer("class embedding", tensor("class_embedding.weight")?)
        } else {
            buffer("class embedding", &[])
        };
        let mut layers = Vec::new();
        let Architecture::Mlp(mlp) = &spec.architecture;
        for (i, &(outputs, inner)) in mlp.layer_sizes(spec).iter().enumerate() {
            layers.push(GpuLayer {
                weight: buffer("weight", tensor(&format!("layers.{i}.weight"))?),
                bias: buffer("bias", tensor(&format!("layers.{i}.bias"))?),
                inner,
                outputs,
            });
        }
        Ok(GpuModel {
            id: model.id().to_string(),
            class_embedding,
            layers,
        })
    }
}

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

/// The largest chunk of the batch whose buffers all fit the device's limits.
pub fn chunk_size(
    limits: &wgpu::Limits,
    batch: usize,
    passes: usize,
    steps: usize,
    data: usize,
    widest: usize,
) -> Result<usize> {
    let limit = buffer_limit(limits);
    // Values per sample in the largest buffer: the velocities or the widest activation.
    let per_sample = (steps * data).max(passes * widest).max(1) as u64;
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
    let weights = gpu_model(gpu, model)?;
    let spec = model.spec();
    let batch = request.batch;
    let data = spec.data_dim();
    let shape = sample_shape(spec, batch);
    let guided = request.guidance != 0.0 && spec.is_conditional();
    let passes = if guided { 2 } else { 1 };
    let steps = table.steps();
    let Architecture::Mlp(mlp) = &spec.architecture;
    let input_width = mlp.input_width(spec);
    let widest = weights
        .layers
        .iter()
        .map(|l| l.outputs)
        .chain([input_width])
        .max()
        .unwrap_or(input_width);
    let chunk = chunk_size(&gpu.limits, batch, passes, steps, data, widest)?;

    // Solver coefficients (reduced form) and one time-embedding row per step, from the CPU.
    let coefficients = coefficient_rows(table);
    let times: Vec<f32> = table.times[..steps].iter().map(|&t| t as f32).collect();
    let mut embeddings = Vec::with_capacity(steps * spec.time_embedding);
    for &t in &times {
        embeddings.extend(time_embedding(t, spec.time_embedding, spec.time_scale));
    }
    let x0 = gaussian_batch(request.seed, batch, data);

    let device = &gpu.device;
    let rows = passes * chunk;
    let picture_size = (is_image(&spec.data_shape) && (shape[1] == 1 || shape[1] == 3))
        .then(|| grid_size(shape, columns));
    let picture_values = picture_size.map_or(0, |(w, h)| w * h);
    let limit = buffer_limit(&gpu.limits) as usize;
    let whole_batch_fits = 4 * batch * data <= limit && 4 * picture_values <= limit;

    // Every buffer of this sample comes from the pool and goes back to it at the end.
    let mut taken = Vec::new();
    let mut take = |label: &str, values: usize, usage: wgpu::BufferUsages| -> wgpu::Buffer {
        let buffer = gpu
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(device, label, 4 * values.max(1) as u64, usage);
        taken.push(buffer.clone());
        buffer
    };
    let coefficient_buffer = take("coefficients", coefficients.len(), STORAGE);
    let embedding_buffer = take("time embeddings", embeddings.len(), STORAGE);
    let x0_buffer = take("x0", chunk * data, STORAGE);
    let x_buffer = take("x", chunk * data, STORAGE);
    let velocities = take("velocities", steps * chunk * data, STORAGE);
    let input = take("input", rows * input_width, STORAGE);
    let hidden = [
        take("activations a", rows * widest, STORAGE),
        take("activations b", rows * widest, STORAGE),
    ];
    let network = take("network output", rows * data, STORAGE);
    let class_buffer = take("classes", rows, STORAGE);
    let (samples_values, picture_values) = if whole_batch_fits {
        (batch * data, picture_values)
    } else {
        (0, 0)
    };
    let samples_buffer = take("samples", samples_values, STORAGE);
    let rgba_buffer = take("picture", picture_values, STORAGE);
    let readback = take("readback", batch * data + picture_values, READBACK);

    let queue = &gpu.queue;
    let result = gpu
        .run(&readback, |queue_submit| {
            queue.write_buffer(&coefficient_buffer, 0, bytemuck::cast_slice(&coefficients));
            if !embeddings.is_empty() {
                queue.write_buffer(&embedding_buffer, 0, bytemuck::cast_slice(&embeddings));
            }
            let mut submissions = 0;
            for start in (0..batch).step_by(chunk) {
                let n = chunk.min(batch - start);
                let count = n * data;
                queue.write_buffer(
                    &x0_buffer,
                    0,
                    bytemuck::cast_slice(&x0[start * data..start * data + count]),
                );
                let mut labels = classes[start..start + n].to_vec();
                if guided {
                    labels.extend(std::iter::repeat_n(spec.null_class(), n));
                }
                queue.write_buffer(&class_buffer, 0, bytemuck::cast_slice(&labels));
                let mut plan = Plan::new(&gpu.limits);
                record_chunk(
                    &mut plan,
                    ChunkBuffers {
                        coefficients: &coefficient_buffer,
                        embeddings: &embedding_buffer,
                        x0: &x0_buffer,
                        x: &x_buffer,
                        velocities: &velocities,
                        input: &input,
                        hidden: &hidden,
                        network: &network,
                        classes: &class_buffer,
                    },
                    &weights,
                    ChunkShape {
                        samples: n,
                        passes,
                        data,
                        time_width: spec.time_embedding,
                        class_width: spec.class_embedding,
                        steps,
                        guidance: request.guidance,
                        data_prediction: spec.prediction == Prediction::Data,
                        clamp: is_image(&spec.data_shape),
                    },
                    &times,
                )?;
                if whole_batch_fits {
                    plan.copy(
                        &View::prefix(&x_buffer, count),
                        &View::range(&samples_buffer, start * data, count),
                    )?;
                } else {
                    // Straight to the read-back buffer, chunk by chunk (the picture is then
                    // drawn on the CPU).
                    plan.copy(
                        &View::prefix(&x_buffer, count),
                        &View::range(&readback, start * data, count),
                    )?;
                }
                if whole_batch_fits && start + n == batch {
                    // The last chunk also draws the picture and gathers the results.
                    plan.copy(
                        &View::prefix(&samples_buffer, batch * data),
                        &View::range(&readback, 0, batch * data),
                    )?;
                    if picture_size.is_some() {
                        plan.pack_rgba(
                            &View::prefix(&samples_buffer, batch * data),
                            &View::prefix(&rgba_buffer, picture_values),
                            shape,
                            columns,
                        )?;
                        plan.copy(
                            &View::prefix(&rgba_buffer, picture_values),
                            &View::range(&readback, batch * data, picture_values),
                        )?;
                    }
                }
                queue_submit(plan.encode(gpu));
                submissions += 1;
            }
            Ok(submissions)
        })
        .await;
    gpu.pool
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .give_back(taken);
    let (bytes, submissions) = result?;
    let floats: &[f32] = bytemuck::cast_slice(&bytes[..4 * batch * data]);
    let values = floats.to_vec();
    let samples = Samples { values, shape };
    let picture = match picture_size {
        Some((width, height)) if whole_batch_fits => {
            let pixels = &bytes[4 * batch * data..4 * (batch * data + picture_values)];
            Some(Picture {
                width,
                height,
                rgba: pixels.to_vec(),
            })
        }
        Some(_) => Some(crate::sample::grid_picture(&samples, columns)?),
        None => None,
    };
    Ok(GpuSamples {
        samples,
        picture,
        submissions,
    })
}

/// The model's weights on `gpu`, uploaded on first use and kept for the next calls.
fn gpu_model(gpu: &Gpu, model: &Model) -> Result<GpuModel> {
    let mut cached = gpu
        .model
        .lock()
        .map_err(|_| Error::new(ORIGIN, "internal error: the model cache is poisoned"))?;
    if let Some(weights) = cached.as_ref().filter(|w| w.id == model.id()) {
        return Ok(weights.clone());
    }
    *cached = None; // free the old weights first
    let weights = GpuModel::upload(gpu, model)?;
    *cached = Some(weights.clone());
    Ok(weights)
}

struct ChunkBuffers<'a> {
    coefficients: &'a wgpu::Buffer,
    embeddings: &'a wgpu::Buffer,
    x0: &'a wgpu::Buffer,
    x: &'a wgpu::Buffer,
    velocities: &'a wgpu::Buffer,
    input: &'a wgpu::Buffer,
    hidden: &'a [wgpu::Buffer; 2],
    network: &'a wgpu::Buffer,
    classes: &'a wgpu::Buffer,
}

struct ChunkShape {
    samples: usize,
    passes: usize,
    data: usize,
    time_width: usize,
    class_width: usize,
    steps: usize,
    guidance: f64,
    data_prediction: bool,
    clamp: bool,
}

/// Every step of the solve for one chunk: x ← x0, then per step embed, layers, guidance, update.
fn record_chunk(
    plan: &mut Plan,
    buffers: ChunkBuffers<'_>,
    weights: &GpuModel,
    shape: ChunkShape,
    times: &[f32],
) -> Result<()> {
    let count = shape.samples * shape.data;
    let rows = shape.passes * shape.samples;
    let input_width = shape.data + shape.time_width + shape.class_width;
    let x = View::prefix(buffers.x, count);
    let x0 = View::prefix(buffers.x0, count);
    let velocities = View::prefix(buffers.velocities, shape.steps * count);
    let coefficients = View::prefix(buffers.coefficients, shape.steps * (shape.steps + 1));
    let embeddings = View::prefix(buffers.embeddings, shape.steps * shape.time_width);
    let classes = View::prefix(buffers.classes, rows);
    let class_embedding = View::prefix(
        &weights.class_embedding,
        (weights.class_embedding.size() / 4) as usize,
    );
    let network = View::prefix(buffers.network, rows * shape.data);
    plan.copy(&x0, &x)?;
    let last_layer = weights.layers.len() - 1;
    for (step, &t) in times.iter().enumerate() {
        let input = View::prefix(buffers.input, rows * input_width);
        plan.embed(
            &x,
            &embeddings,
            &classes,
            &class_embedding,
            &input,
            EmbedShape {
                rows,
                samples: shape.samples,
                data: shape.data,
                time_width: shape.time_width,
                class_width: shape.class_width,
            },
            step,
        )?;
        let mut source = input;
        for (i, layer) in weights.layers.iter().enumerate() {
            let target = if i == last_layer {
                network.clone()
            } else {
                View::prefix(&buffers.hidden[i % 2], rows * layer.outputs)
            };
            plan.linear(
                &source,
                &View::prefix(&layer.weight, layer.outputs * layer.inner),
                &View::prefix(&layer.bias, layer.outputs),
                &target,
                rows,
                layer.inner,
                layer.outputs,
                i != last_layer,
            )?;
            source = target;
        }
        let data_prediction = shape.data_prediction.then(|| data_to_velocity_factor(t));
        plan.guidance(
            &network,
            &x,
            &velocities,
            Guidance {
                count,
                guided: shape.passes == 2,
                scale: shape.guidance,
                data_prediction,
                step,
            },
        )?;
        plan.ns_update(
            &coefficients,
            &x0,
            &velocities,
            &x,
            count,
            step,
            shape.steps,
            shape.clamp && step + 1 == shape.steps,
        )?;
    }
    Ok(())
}
