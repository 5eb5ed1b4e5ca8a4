//! Every kernel against the CPU path on random inputs (shapes that are not multiples of the
//! tiles included), and whole samples GPU vs CPU. They run on whatever Vulkan adapter there is
//! (lavapipe on CPU-only machines). Without an adapter they are skipped with a message, except
//! under `CI` (or `BNS_REQUIRE_GPU`), where a missing adapter is a failure.

use std::sync::{Mutex, MutexGuard, OnceLock};

use super::kernels::{Encoding, GpuTensor, Guidance, Plan};
use super::*;
use crate::grid::Grid;
use crate::model::{
    cpu_linear, cpu_silu, time_embedding, Architecture, Model, ModelSpec, Prediction, WeightDtype,
};
use crate::noise::Noise;
use crate::sample::{grid_picture, SampleRequest, Samples};
use crate::solver::{Method, NsTable};

mod timing;

/// Largest accepted relative error of a kernel: max |gpu − cpu| / max |cpu|.
pub(super) const KERNEL_TOLERANCE: f32 = 1e-5;

/// The shared device, or `None` (skip) when there is no adapter outside CI.
pub(super) fn gpu() -> Option<(&'static Gpu, MutexGuard<'static, ()>)> {
    static GPU: OnceLock<std::result::Result<Gpu, String>> = OnceLock::new();
    static SERIAL: Mutex<()> = Mutex::new(());
    let gpu = GPU.get_or_init(|| {
        let gpu = block_on(Gpu::new()).map_err(|e| e.to_string());
        if let Ok(gpu) = &gpu {
            eprintln!("GPU tests run on {}", gpu.adapter());
        }
        gpu
    });
    match gpu {
        Ok(gpu) => Some((gpu, SERIAL.lock().unwrap_or_else(|p| p.into_inner()))),
        Err(e) => {
            let required = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
                || std::env::var_os("BNS_REQUIRE_GPU").is_some();
            assert!(
                !required,
                "no GPU adapter, and CI requires one (install mesa-vulkan-drivers): {e}"
            );
            eprintln!("skipped: {e} (install mesa-vulkan-drivers for lavapipe)");
            None
        }
    }
}

/// A storage buffer holding `values` (f32 data or u32 labels).
pub(super) fn upload<T: bytemuck::Pod>(gpu: &Gpu, values: &[T]) -> wgpu::Buffer {
    gpu.buffer_with(
        "test input",
        bytemuck::cast_slice(values),
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    )
}

pub(super) fn zeros(gpu: &Gpu, len: usize) -> wgpu::Buffer {
    upload(gpu, &vec![0.0; len])
}

/// A tensor of `shape` over the whole of `buffer`'s start.
pub(super) fn tensor(buffer: &wgpu::Buffer, shape: &[usize]) -> GpuTensor {
    GpuTensor::new(buffer, shape).unwrap()
}

/// Runs `plan` and returns the first `len` 4-byte values of `out`.
pub(super) fn run(gpu: &Gpu, mut plan: Plan, out: &wgpu::Buffer, len: usize) -> Vec<u8> {
    let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("test readback"),
        size: 4 * len as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    plan.copy(&tensor(out, &[len]), &tensor(&readback, &[len]))
        .unwrap();
    let (bytes, ()) = block_on(gpu.run(&readback, |submit| {
        submit(plan.encode(gpu)?);
        Ok(())
    }))
    .unwrap();
    bytes
}

pub(super) fn floats(bytes: &[u8]) -> Vec<f32> {
    bytemuck::cast_slice(bytes).to_vec()
}

/// max |a − b| / max |b|.
pub(super) fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let worst = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    worst / scale
}

/// `linear` on `device` against the CPU layer for each case `(rows, inner, outputs, silu)`, with
/// the weights uploaded as `dtype` (for F16, rounded to f16 first).
fn linear_against_the_cpu(
    device: &Gpu,
    noise: &mut Noise,
    cases: &[(usize, usize, usize, bool)],
    dtype: WeightDtype,
) {
    for &(rows, inner, outputs, silu) in cases {
        let x = noise.gaussian_f32(rows * inner);
        let mut w = noise.gaussian_f32(outputs * inner);
        if dtype == WeightDtype::F16 {
            w = rounded_to_f16(&w);
        }
        let b = noise.gaussian_f32(outputs);
        let mut expected = vec![0.0; rows * outputs];
        cpu_linear(&x, &w, &b, inner, &mut expected);
        if silu {
            expected.iter_mut().for_each(|v| *v = cpu_silu(*v));
        }
        let weight = device.weights("w", &w, &[outputs, inner], dtype).unwrap();
        let y = zeros(device, rows * outputs);
        let mut plan = Plan::new(&device.limits);
        plan.linear(
            &tensor(&upload(device, &x), &[rows, inner]),
            &weight,
            &tensor(&upload(device, &b), &[outputs]),
            &tensor(&y, &[rows, outputs]),
            silu,
        )
        .unwrap();
        let got = floats(&run(device, plan, &y, rows * outputs));
        let error = relative_error(&got, &expected);
        assert!(
            error < KERNEL_TOLERANCE,
            "linear {rows}×{inner}→{outputs} (silu {silu}), {} weights: relative error {error}",
            weight.encoding().name()
        );
    }
}

#[test]
fn linear_matches_the_cpu_layer() {
    let Some((gpu, _serial)) = gpu() else { return };
    let cases = [
        (1, 1, 1, false),
        (5, 7, 3, true),
        (16, 32, 16, false),
        (17, 33, 19, true),
        (40, 100, 37, true),
        (3, 200, 70, false),
    ];
    linear_against_the_cpu(gpu, &mut Noise::new(1), &cases, WeightDtype::F32);
}

/// The device once per encoding of half-precision weights it can read: packed in words always,
/// as WGSL f16 where it has `shader-f16`.
pub(super) fn half_weight_devices(gpu: &Gpu) -> Vec<Gpu> {
    let mut encodings = vec![Encoding::PackedF16];
    if gpu.has_shader_f16() {
        encodings.push(Encoding::F16);
    } else {
        eprintln!(
            "{} has no shader-f16: only packed f16 weights are tested",
            gpu.adapter()
        );
    }
    encodings
        .into_iter()
        .map(|encoding| gpu.with_half_weights(encoding))
        .collect()
}

/// `values` rounded to f16 (so that they are what a half-precision model holds).
pub(super) fn rounded_to_f16(values: &[f32]) -> Vec<f32> {
    values
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect()
}

#[test]
fn linear_reads_half_weights_in_every_encoding() {
    let Some((gpu, _serial)) = gpu() else { return };
    let mut noise = Noise::new(31);
    // Odd sizes: weight rows that start in the middle of a packed word.
    let cases = [(1, 1, 1, false), (17, 33, 19, true), (6, 101, 37, false)];
    for device in half_weight_devices(gpu) {
        assert_ne!(device.half_weights(), Encoding::F32);
        linear_against_the_cpu(&device, &mut noise, &cases, WeightDtype::F16);
    }
}

#[test]
fn f16_models_sample_like_the_cpu_path_in_every_encoding() {
    let Some((gpu, _serial)) = gpu() else { return };
    let model = image_model().with_dtype(WeightDtype::F16).unwrap();
    let table = Method::DpmPp2m.build(8, Grid::Edm).unwrap();
    let request = SampleRequest {
        seed: 12,
        batch: 6,
        class: None,
        guidance: 1.5,
        first_row: 0,
    };
    let cpu = crate::sample::sample(&model, &table, &request).unwrap();
    for device in half_weight_devices(gpu) {
        let got = block_on(sample(&device, &model, &table, &request, 3)).unwrap();
        let difference = max_difference(&got.samples.values, &cpu.values);
        assert!(
            difference < 1e-4,
            "GPU ({} weights) vs CPU sample of an f16 model: max |Δ| = {difference}",
            device.half_weights().name()
        );
    }
}

#[test]
fn embed_assembles_the_cpu_input_rows() {
    let Some((gpu, _serial)) = gpu() else { return };
    let mut noise = Noise::new(2);
    for &(samples, passes, data, time_width, class_width) in
        &[(3, 2, 7, 4, 3), (5, 1, 13, 6, 0), (1, 2, 2, 2, 5)]
    {
        let rows = passes * samples;
        let width = data + time_width + class_width;
        let x = noise.gaussian_f32(samples * data);
        let times = [0.0f32, 0.37, 0.9];
        let mut table = Vec::new();
        for &t in &times {
            table.extend(time_embedding(t, time_width, 10.0));
        }
        let classes_count = 4;
        let class_embedding = noise.gaussian_f32((classes_count + 1) * class_width);
        let labels: Vec<u32> = (0..rows as u32)
            .map(|r| r % (classes_count as u32 + 1))
            .collect();
        let input = zeros(gpu, rows * width);
        let mut plan = Plan::new(&gpu.limits);
        plan.embed(
            &tensor(&upload(gpu, &x), &[samples, data]),
            &tensor(&upload(gpu, &table), &[times.len(), time_width]),
            1,
            &tensor(&upload(gpu, &labels), &[rows]),
            &tensor(
                &upload(gpu, &class_embedding),
                &[classes_count + 1, class_width],
            ),
            &tensor(&input, &[rows, width]),
        )
        .unwrap();
        let got = floats(&run(gpu, plan, &input, rows * width));
        let mut expected = Vec::new();
        for (r, &label) in labels.iter().enumerate() {
            let s = r % samples;
            expected.extend_from_slice(&x[s * data..(s + 1) * data]);
            expected.extend(time_embedding(times[1], time_width, 10.0));
            let c = label as usize;
            expected.extend_from_slice(&class_embedding[c * class_width..(c + 1) * class_width]);
        }
        assert_eq!(got, expected, "embed {samples}×{passes} rows, {width} wide");
    }
}

#[test]
fn guidance_combines_both_passes() {
    let Some((gpu, _serial)) = gpu() else { return };
    let mut noise = Noise::new(3);
    let (samples, data, steps) = (5, 11, 3);
    let count = samples * data;
    for &(guided, scale, data_prediction) in &[
        (true, 1.5, None),
        (true, 2.0, Some(1.0f32 / 0.4)),
        (false, 0.0, Some(1.0 / 0.05)),
        (false, 0.0, None),
    ] {
        let passes = if guided { 2 } else { 1 };
        let network = noise.gaussian_f32(passes * count);
        let x = noise.gaussian_f32(count);
        let velocities = zeros(gpu, steps * count);
        let mut plan = Plan::new(&gpu.limits);
        plan.guidance(
            &tensor(&upload(gpu, &network), &[passes * samples, data]),
            &tensor(&upload(gpu, &x), &[samples, data]),
            &tensor(&velocities, &[steps, samples, data]),
            Guidance {
                scale,
                data_prediction,
                step: 2,
            },
        )
        .unwrap();
        let got = floats(&run(gpu, plan, &velocities, steps * count));
        // The CPU path's formula (Model::velocity, then sample::guided_velocity).
        let as_velocity = |out: f32, x: f32| match data_prediction {
            Some(inverse) => (out - x) * inverse,
            None => out,
        };
        let expected: Vec<f32> = (0..count)
            .map(|e| {
                let c = as_velocity(network[e], x[e]);
                if guided {
                    let n = as_velocity(network[count + e], x[e]);
                    (1.0 + scale) as f32 * c - scale as f32 * n
                } else {
                    c
                }
            })
            .collect();
        assert!(
            got[..2 * count].iter().all(|&v| v == 0.0),
            "other slots untouched"
        );
        let error = relative_error(&got[2 * count..], &expected);
        assert!(
            error < KERNEL_TOLERANCE,
            "guidance (guided {guided}): relative error {error}"
        );
    }
}

/// A random general NS table with n steps (times increasing to 1).
pub(super) fn random_table(noise: &mut Noise, n: usize) -> NsTable {
    let mut times: Vec<f64> = (0..n)
        .map(|i| i as f64 / n as f64 + 0.3 * noise.uniform() / n as f64)
        .collect();
    times.push(1.0);
    let a = (0..n)
        .map(|i| (0..=i).map(|_| noise.gaussian() * 0.3).collect())
        .collect();
    let b = (0..n)
        .map(|i| (0..=i).map(|_| noise.gaussian() * 0.2).collect())
        .collect();
    NsTable { times, a, b }
}

#[test]
fn ns_update_steps_reproduce_the_cpu_solvers() {
    let Some((gpu, _serial)) = gpu() else { return };
    let mut noise = Noise::new(4);
    let (samples, data) = (7, 10);
    let count = samples * data;
    for table in [
        random_table(&mut noise, 5),
        Method::Midpoint.build(8, Grid::Uniform).unwrap(),
    ] {
        let steps = table.steps();
        let x0 = noise.gaussian_f32(count);
        let us: Vec<Vec<f32>> = (0..steps).map(|_| noise.gaussian_f32(count)).collect();
        // The CPU solvers, fed the same velocities one step at a time.
        let mut call = 0;
        let general = table.solve(&x0, |_, _| {
            call += 1;
            us[call - 1].clone()
        });
        let reduced = table.reduced();
        let mut call = 0;
        let expected = reduced.solve(&x0, |_, _| {
            call += 1;
            us[call - 1].clone()
        });
        let coefficients = super::sample::coefficient_rows(&table);
        let velocities: Vec<f32> = us.concat();
        let x = zeros(gpu, count);
        let coefficient_buffer = upload(gpu, &coefficients);
        let x0_buffer = upload(gpu, &x0);
        let velocity_buffer = upload(gpu, &velocities);
        let mut plan = Plan::new(&gpu.limits);
        for step in 0..steps {
            plan.ns_update(
                &tensor(&coefficient_buffer, &[steps, steps + 1]),
                &tensor(&x0_buffer, &[samples, data]),
                &tensor(&velocity_buffer, &[steps, samples, data]),
                &tensor(&x, &[samples, data]),
                step,
                false,
            )
            .unwrap();
        }
        let got = floats(&run(gpu, plan, &x, count));
        let error = relative_error(&got, &expected);
        assert!(
            error < KERNEL_TOLERANCE,
            "update vs reduced form: relative error {error}"
        );
        let error = relative_error(&got, &general);
        assert!(
            error < KERNEL_TOLERANCE,
            "update vs general form: relative error {error}"
        );
    }
}

#[test]
fn pack_draws_the_cpu_grid_picture() {
    let Some((gpu, _serial)) = gpu() else { return };
    let mut noise = Noise::new(5);
    for &(shape, columns) in &[([5, 1, 3, 4], 2), ([3, 3, 5, 2], 3), ([7, 1, 6, 6], 3)] {
        let [b, c, h, w] = shape;
        // Values beyond [−1, 1] too, to check the clamp.
        let values: Vec<f32> = noise
            .gaussian_f32(b * c * h * w)
            .iter()
            .map(|v| v * 0.8)
            .collect();
        let samples = Samples {
            values: values.clone(),
            shape,
        };
        let expected = grid_picture(&samples, columns).unwrap();
        let pixels = expected.width * expected.height;
        let rgba = upload(gpu, &vec![1.0; pixels]);
        let mut plan = Plan::new(&gpu.limits);
        let size = plan
            .pack_rgba(
                &tensor(&upload(gpu, &values), &shape),
                &tensor(&rgba, &[expected.height, expected.width]),
                columns,
            )
            .unwrap();
        assert_eq!(size, (expected.width, expected.height));
        let got = run(gpu, plan, &rgba, pixels);
        assert_eq!(
            got, expected.rgba,
            "picture of {shape:?} in {columns} columns"
        );
    }
}

/// A small class-conditional image model that predicts x̂1, with random weights.
fn image_model() -> Model {
    let spec = ModelSpec {
        architecture: Architecture::mlp(37, 2),
        data_shape: vec![1, 5, 6],
        time_embedding: 8,
        time_scale: 10.0,
        prediction: Prediction::Data,
        class_embedding: 5,
        num_classes: 3,
        ..crate::model::spec_for_tests()
    };
    Model::random(spec, 7).unwrap()
}

/// max |a − b|.
fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn an_nfe_8_sample_matches_the_cpu_path() {
    let Some((gpu, _serial)) = gpu() else { return };
    let model = image_model();
    let mut noise = Noise::new(6);
    let bns_like = random_table(&mut noise, 8);
    let classical = Method::DpmPp2m.build(8, Grid::Edm).unwrap();
    for (table, guidance, batch, class) in [
        (&classical, 1.5, 7, None),
        (&bns_like, 0.0, 19, Some(2)),
        (&classical, 0.0, 1, None),
    ] {
        let request = SampleRequest {
            seed: 11,
            batch,
            class,
            guidance,
            first_row: 0,
        };
        let cpu = crate::sample::sample(&model, table, &request).unwrap();
        let got = block_on(sample(gpu, &model, table, &request, 4)).unwrap();
        assert_eq!(got.samples.shape, cpu.shape);
        let difference = max_difference(&got.samples.values, &cpu.values);
        assert!(
            difference < 1e-4,
            "GPU vs CPU sample (w = {guidance}, batch {batch}): max |Δ| = {difference}"
        );
        let spread = cpu.values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(spread > 0.1, "the CPU sample is blank");
        assert_eq!(got.submissions, 1, "the whole sample in one submission");
        // The picture from the GPU's values, drawn on the CPU, is the GPU's picture.
        let picture = got.picture.expect("an image model gets a picture");
        assert_eq!(picture, grid_picture(&got.samples, 4).unwrap());
    }
}

#[test]
fn point_models_and_velocity_prediction_match_the_cpu_path() {
    let Some((gpu, _serial)) = gpu() else { return };
    let spec = ModelSpec {
        architecture: Architecture::mlp(24, 3),
        data_shape: vec![2, 1, 1],
        time_embedding: 6,
        class_embedding: 0,
        num_classes: 0,
        ..crate::model::spec_for_tests()
    };
    let model = Model::random(spec, 3).unwrap();
    let table = Method::Midpoint.build(8, Grid::Uniform).unwrap();
    let request = SampleRequest {
        seed: 5,
        batch: 50,
        class: None,
        guidance: 0.0,
        first_row: 0,
    };
    let cpu = crate::sample::sample(&model, &table, &request).unwrap();
    let got = block_on(sample(gpu, &model, &table, &request, 8)).unwrap();
    let difference = max_difference(&got.samples.values, &cpu.values);
    assert!(difference < 1e-4, "points: max |Δ| = {difference}");
    assert!(got.picture.is_none(), "points have no picture");
}

#[test]
fn a_batch_beyond_the_buffer_limit_is_split_into_chunks() {
    let Some((gpu, _serial)) = gpu() else { return };
    let model = image_model();
    let table = Method::DpmPp2m.build(4, Grid::Uniform).unwrap();
    let request = SampleRequest {
        seed: 2,
        batch: 9,
        class: None,
        guidance: 1.0,
        first_row: 0,
    };
    let full = block_on(sample(gpu, &model, &table, &request, 3)).unwrap();
    // A binding limit of 4 samples' velocities: chunks of 4, 4 and 1.
    let limited = gpu.with_binding_limit(4 * 4 * 4 * 30);
    let split = block_on(sample(&limited, &model, &table, &request, 3)).unwrap();
    assert_eq!(split.submissions, 3, "one submission per chunk");
    // A limit below the whole batch's samples (9 × 30 values): chunks of 2 go straight to the
    // read-back buffer, and the picture is drawn on the CPU.
    let tight = gpu.with_binding_limit(1000);
    let scattered = block_on(sample(&tight, &model, &table, &request, 3)).unwrap();
    assert_eq!(scattered.submissions, 5);
    assert_eq!(scattered.samples, full.samples);
    assert_eq!(scattered.picture, full.picture);
    assert_eq!(split.samples, full.samples, "chunking changes no value");
    assert_eq!(split.picture, full.picture);
    assert_eq!(
        super::sample::chunk_size(&limited.limits, 9, 2, 4, 30, 37).unwrap(),
        4
    );
}

#[test]
fn buffers_are_reused_between_samples() {
    let Some((gpu, _serial)) = gpu() else { return };
    let model = image_model();
    let table = Method::DpmPp2m.build(4, Grid::Uniform).unwrap();
    let request = SampleRequest {
        seed: 3,
        batch: 6,
        class: None,
        guidance: 0.5,
        first_row: 0,
    };
    block_on(sample(gpu, &model, &table, &request, 3)).unwrap();
    let pooled = gpu.pool.lock().unwrap().len();
    block_on(sample(gpu, &model, &table, &request, 3)).unwrap();
    assert_eq!(
        gpu.pool.lock().unwrap().len(),
        pooled,
        "the second sample allocated nothing new"
    );
}

#[test]
fn bad_requests_and_a_lost_device_are_errors() {
    let Some((gpu, _serial)) = gpu() else { return };
    let model = image_model();
    let table = Method::DpmPp2m.build(4, Grid::Uniform).unwrap();
    let bad = SampleRequest {
        seed: 1,
        batch: 0,
        class: None,
        guidance: 0.0,
        first_row: 0,
    };
    let e = block_on(sample(gpu, &model, &table, &bad, 1)).unwrap_err();
    assert!(e.to_string().contains("batch"), "{e}");

    let own = block_on(Gpu::new()).unwrap();
    own.destroy();
    let request = SampleRequest {
        seed: 1,
        batch: 2,
        class: None,
        guidance: 0.0,
        first_row: 0,
    };
    let e = block_on(sample(&own, &model, &table, &request, 1)).unwrap_err();
    assert!(e.to_string().contains("lost"), "{e}");
    assert!(own.lost().is_some());
}

#[test]
fn ops_check_the_shapes_of_their_tensors() {
    let Some((gpu, _serial)) = gpu() else { return };
    let buffer = upload(gpu, &[0.0f32; 64]);
    assert!(GpuTensor::new(&buffer, &[8, 8]).is_ok());
    let e = GpuTensor::new(&buffer, &[8, 9]).unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    let e = GpuTensor::at(&buffer, 1, &[8, 8]).unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    let mut plan = Plan::new(&gpu.limits);
    let x = tensor(&buffer, &[2, 3]);
    let weight = tensor(&buffer, &[4, 5]);
    let bias = tensor(&buffer, &[4]);
    let y = tensor(&buffer, &[2, 4]);
    let e = plan.linear(&x, &weight, &bias, &y, false).unwrap_err();
    assert!(e.to_string().contains("linear weight"), "{e}");
    let unaligned = GpuTensor::at(&buffer, 1, &[2, 3]).unwrap();
    let weight = tensor(&buffer, &[4, 3]);
    let e = plan
        .linear(&unaligned, &weight, &bias, &y, false)
        .unwrap_err();
    assert!(e.to_string().contains("not a multiple"), "{e}");
    let e = plan.copy(&x, &y).unwrap_err();
    assert!(e.to_string().contains("sizes differ"), "{e}");
    assert!(plan.is_empty(), "nothing recorded by failed ops");
}
