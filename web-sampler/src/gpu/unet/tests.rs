//! The U-Net's kernels against the CPU forward's ops on random inputs (channel counts and
//! positions that are not multiples of the tiles, odd sizes under stride 2), and a whole NFE-8
//! U-Net sample GPU vs CPU split into chunks. Relative error: max |gpu − cpu| / max |cpu| over
//! the whole output ([`KERNEL_TOLERANCE`]).

use super::super::kernels::Plan;
use super::super::tests::{
    floats, gpu, half_weight_devices, random_table, relative_error, rounded_to_f16, run, tensor,
    upload, zeros, KERNEL_TOLERANCE,
};
use super::super::{block_on, network, sample, Gpu};
use crate::model::{
    cpu_attention, cpu_concat_channels, cpu_conv2d, cpu_group_norm, cpu_silu,
    cpu_to_position_major, cpu_upsample_nearest, Architecture, AttentionScratch, ConvShape, Model,
    ModelSpec, WeightDtype,
};
use crate::noise::Noise;
use crate::sample::SampleRequest;

/// `conv2d` on `device` against the CPU convolution for each case `(rows, h, w, inputs, outputs,
/// kernel, stride)`, with the weights uploaded as `dtype` (for F16, rounded to f16 first).
fn conv2d_against_the_cpu(
    device: &Gpu,
    noise: &mut Noise,
    cases: &[(usize, usize, usize, usize, usize, usize, usize)],
    dtype: WeightDtype,
) {
    for &(rows, h, w, inputs, outputs, kernel, stride) in cases {
        let shape = ConvShape {
            inputs,
            outputs,
            kernel,
            stride,
        };
        let x = noise.gaussian_f32(rows * h * w * inputs);
        let mut weight = noise.gaussian_f32(outputs * inputs * kernel * kernel);
        if dtype == WeightDtype::F16 {
            weight = rounded_to_f16(&weight);
        }
        let bias = noise.gaussian_f32(outputs);
        let (oh, ow) = (h.div_ceil(stride), w.div_ceil(stride));
        let mut expected = Vec::new();
        let (mut columns, mut out) = (Vec::new(), Vec::new());
        for row in x.chunks_exact(h * w * inputs) {
            cpu_conv2d(&shape, &weight, &bias, row, (h, w), &mut columns, &mut out);
            expected.extend_from_slice(&out);
        }
        let y = zeros(device, rows * oh * ow * outputs);
        let mut plan = Plan::new(&device.limits);
        let weights = device
            .weights("w", &weight, &[outputs, inputs, kernel, kernel], dtype)
            .unwrap();
        plan.conv2d(
            &tensor(&upload(device, &x), &[rows, h * w, inputs]),
            (h, w),
            &weights,
            &tensor(&upload(device, &bias), &[outputs]),
            &tensor(&y, &[rows, oh * ow, outputs]),
            stride,
        )
        .unwrap();
        let got = floats(&run(device, plan, &y, expected.len()));
        let error = relative_error(&got, &expected);
        assert!(
            error < KERNEL_TOLERANCE,
            "conv2d {rows}×{h}×{w}×{inputs}→{outputs} k{kernel} s{stride}, {} weights: relative \
             error {error}",
            weights.encoding().name()
        );
    }
}

#[test]
fn conv2d_matches_the_cpu_convolution() {
    let Some((gpu, _serial)) = gpu() else { return };
    let cases = [
        (1, 1, 1, 1, 1, 3, 1),
        (2, 5, 7, 3, 5, 3, 1),
        (3, 5, 7, 6, 37, 3, 2),
        (2, 6, 4, 33, 9, 3, 2),
        (2, 5, 3, 4, 6, 1, 1),
        (1, 9, 7, 2, 3, 1, 2),
    ];
    conv2d_against_the_cpu(gpu, &mut Noise::new(21), &cases, WeightDtype::F32);
}

#[test]
fn conv2d_reads_half_weights_in_every_encoding() {
    let Some((gpu, _serial)) = gpu() else { return };
    let mut noise = Noise::new(27);
    // Odd fan-ins: weight rows that start in the middle of a packed word.
    let cases = [
        (2, 5, 7, 3, 5, 3, 1),
        (3, 5, 7, 7, 37, 3, 2),
        (1, 9, 7, 3, 3, 1, 2),
    ];
    for device in half_weight_devices(gpu) {
        conv2d_against_the_cpu(&device, &mut noise, &cases, WeightDtype::F16);
    }
}

#[test]
fn an_f16_unet_samples_like_the_cpu_path_in_every_encoding() {
    let Some((gpu, _serial)) = gpu() else { return };
    let model = unet_model().with_dtype(WeightDtype::F16).unwrap();
    let mut noise = Noise::new(28);
    let table = random_table(&mut noise, 8);
    let request = SampleRequest {
        seed: 5,
        batch: 3,
        class: Some(1),
        guidance: 1.5,
        first_row: 0,
    };
    let cpu = crate::sample::sample(&model, &table, &request).unwrap();
    for device in half_weight_devices(gpu) {
        let got = block_on(sample(&device, &model, &table, &request, 3)).unwrap();
        let error = relative_error(&got.samples.values, &cpu.values);
        assert!(
            error < 1e-4,
            "GPU ({} weights) vs CPU sample of an f16 U-Net: relative error {error}",
            device.half_weights().name()
        );
    }
}

#[test]
fn group_norm_matches_the_cpu_group_norm() {
    let Some((gpu, _serial)) = gpu() else { return };
    let mut noise = Noise::new(22);
    for &(rows, positions, channels, groups, silu) in &[
        (2, 7, 6, 3, true),
        (3, 65, 8, 4, false),
        (1, 1, 4, 4, true),
        (2, 200, 12, 2, true),
    ] {
        // An offset mean, so that the variance is a difference of large terms.
        let x: Vec<f32> = noise
            .gaussian_f32(rows * positions * channels)
            .iter()
            .map(|v| 3.0 + v)
            .collect();
        let weight = noise.gaussian_f32(channels);
        let bias = noise.gaussian_f32(channels);
        let mut expected = Vec::new();
        let mut out = Vec::new();
        for row in x.chunks_exact(positions * channels) {
            cpu_group_norm(&weight, &bias, channels, groups, row, silu, &mut out);
            expected.extend_from_slice(&out);
        }
        let y = zeros(gpu, x.len());
        let mut plan = Plan::new(&gpu.limits);
        plan.group_norm(
            &tensor(&upload(gpu, &x), &[rows, positions, channels]),
            &tensor(&upload(gpu, &weight), &[channels]),
            &tensor(&upload(gpu, &bias), &[channels]),
            &tensor(&y, &[rows, positions, channels]),
            groups,
            crate::model::GROUP_NORM_EPSILON as f32,
            silu,
        )
        .unwrap();
        let got = floats(&run(gpu, plan, &y, x.len()));
        let error = relative_error(&got, &expected);
        assert!(
            error < KERNEL_TOLERANCE,
            "group norm {rows}×{positions}×{channels}, {groups} groups: relative error {error}"
        );
    }
}

#[test]
fn add_concat_upsample_and_transpose_move_the_cpu_values() {
    let Some((gpu, _serial)) = gpu() else { return };
    let mut noise = Noise::new(23);
    let (rows, h, w, a, b) = (3, 3, 5, 5, 7);
    let p = h * w;
    let x = noise.gaussian_f32(rows * p * a);
    let other = noise.gaussian_f32(rows * p * a);
    let shift = noise.gaussian_f32(rows * a);
    let skip = noise.gaussian_f32(rows * p * b);

    // add: full, then broadcast over positions.
    let y = upload(gpu, &x);
    let mut plan = Plan::new(&gpu.limits);
    plan.add(
        &tensor(&upload(gpu, &other), &[rows, p, a]),
        &tensor(&y, &[rows, p, a]),
    )
    .unwrap();
    plan.add(
        &tensor(&upload(gpu, &shift), &[rows, 1, a]),
        &tensor(&y, &[rows, p, a]),
    )
    .unwrap();
    let got = floats(&run(gpu, plan, &y, x.len()));
    let expected: Vec<f32> = (0..x.len())
        .map(|e| x[e] + other[e] + shift[(e / (p * a)) * a + e % a])
        .collect();
    assert_eq!(got, expected, "add");

    // concat: each position's own channels, then the skip's.
    let y = zeros(gpu, rows * p * (a + b));
    let mut plan = Plan::new(&gpu.limits);
    plan.concat(
        &tensor(&upload(gpu, &x), &[rows, p, a]),
        &tensor(&upload(gpu, &skip), &[rows, p, b]),
        &tensor(&y, &[rows, p, a + b]),
    )
    .unwrap();
    let got = floats(&run(gpu, plan, &y, rows * p * (a + b)));
    let mut expected = Vec::new();
    cpu_concat_channels(&x, &skip, rows * p, &mut expected);
    assert_eq!(got, expected, "concat");

    // upsample: nearest ×2, as the CPU forward's, each row.
    let y = zeros(gpu, rows * 4 * p * a);
    let mut plan = Plan::new(&gpu.limits);
    plan.upsample(
        &tensor(&upload(gpu, &x), &[rows, p, a]),
        (h, w),
        &tensor(&y, &[rows, 4 * p, a]),
    )
    .unwrap();
    let got = floats(&run(gpu, plan, &y, rows * 4 * p * a));
    let mut expected = Vec::new();
    let mut doubled = Vec::new();
    for row in x.chunks_exact(p * a) {
        cpu_upsample_nearest(row, (h, w), a, &mut doubled);
        expected.extend_from_slice(&doubled);
    }
    assert_eq!(got, expected, "upsample");

    // transpose: [samples, a, p] → [2·samples, p, a], row r from sample r mod samples.
    let samples = rows;
    let y = zeros(gpu, 2 * samples * p * a);
    let mut plan = Plan::new(&gpu.limits);
    plan.transpose(
        &tensor(&upload(gpu, &x), &[samples, a, p]),
        &tensor(&y, &[2 * samples, p, a]),
    )
    .unwrap();
    let got = floats(&run(gpu, plan, &y, 2 * samples * p * a));
    let mut expected = Vec::new();
    let mut moved = Vec::new();
    for r in 0..2 * samples {
        let s = r % samples;
        cpu_to_position_major(&x[s * a * p..(s + 1) * a * p], a, &mut moved);
        expected.extend_from_slice(&moved);
    }
    assert_eq!(got, expected, "transpose");
}

#[test]
fn condition_adds_the_class_row_and_applies_silu() {
    let Some((gpu, _serial)) = gpu() else { return };
    let mut noise = Noise::new(24);
    let (rows, width, classes) = (7, 9, 4);
    let time = noise.gaussian_f32(width);
    let table = noise.gaussian_f32((classes + 1) * width);
    let labels: Vec<u32> = (0..rows as u32).map(|r| r % (classes as u32 + 1)).collect();
    for conditional in [true, false] {
        let y = zeros(gpu, rows * width);
        let table_tensor = tensor(&upload(gpu, &table), &[classes + 1, width]);
        let mut plan = Plan::new(&gpu.limits);
        plan.condition(
            &tensor(&upload(gpu, &time), &[1, width]),
            &tensor(&upload(gpu, &labels), &[rows]),
            conditional.then_some(&table_tensor),
            &tensor(&y, &[rows, width]),
        )
        .unwrap();
        let got = floats(&run(gpu, plan, &y, rows * width));
        let expected: Vec<f32> = (0..rows * width)
            .map(|e| {
                let (r, j) = (e / width, e % width);
                let class = if conditional {
                    table[labels[r] as usize * width + j]
                } else {
                    0.0
                };
                cpu_silu(time[j] + class)
            })
            .collect();
        let error = relative_error(&got, &expected);
        assert!(
            error < KERNEL_TOLERANCE,
            "condition (conditional {conditional}): relative error {error}"
        );
    }
}

#[test]
fn attention_matches_the_cpu_attention() {
    let Some((gpu, _serial)) = gpu() else { return };
    let mut noise = Noise::new(25);
    for &(rows, positions, channels) in &[(1, 1, 2), (2, 5, 3), (3, 17, 8), (2, 70, 5)] {
        let qkv = noise.gaussian_f32(rows * positions * 3 * channels);
        let (mut expected_weights, mut expected) = (Vec::new(), Vec::new());
        let mut scratch = AttentionScratch::default();
        let mut out = Vec::new();
        for row in qkv.chunks_exact(positions * 3 * channels) {
            cpu_attention(row, positions, channels, &mut scratch, &mut out);
            expected_weights.extend_from_slice(&scratch.scores);
            expected.extend_from_slice(&out);
        }
        let qkv_tensor = tensor(&upload(gpu, &qkv), &[rows, positions, 3 * channels]);
        let weights = zeros(gpu, rows * positions * positions);
        let weights_tensor = tensor(&weights, &[rows, positions, positions]);
        let y = zeros(gpu, rows * positions * channels);
        let mut plan = Plan::new(&gpu.limits);
        plan.attention_weights(&qkv_tensor, &weights_tensor)
            .unwrap();
        let got = floats(&run(gpu, plan, &weights, expected_weights.len()));
        let error = relative_error(&got, &expected_weights);
        assert!(
            error < KERNEL_TOLERANCE,
            "attention weights {rows}×{positions}×{channels}: relative error {error}"
        );
        let mut plan = Plan::new(&gpu.limits);
        plan.attention_weights(&qkv_tensor, &weights_tensor)
            .unwrap();
        plan.attention_values(
            &weights_tensor,
            &qkv_tensor,
            &tensor(&y, &[rows, positions, channels]),
        )
        .unwrap();
        let got = floats(&run(gpu, plan, &y, expected.len()));
        let error = relative_error(&got, &expected);
        assert!(
            error < KERNEL_TOLERANCE,
            "attention values {rows}×{positions}×{channels}: relative error {error}"
        );
    }
}

/// A random class-conditional U-Net on 1×6×10 data: two levels (the lowest 3×5), attention,
/// 6 base channels in 3 groups.
fn unet_model() -> Model {
    let spec = ModelSpec {
        dataset: "test".into(),
        ..ModelSpec::new(
            Architecture::unet(6, &[1, 2], 1, 3, true, 8),
            &[1, 6, 10],
            6,
            3,
            8,
        )
    };
    Model::random(spec, 9).unwrap()
}

#[test]
fn an_nfe_8_unet_sample_matches_the_cpu_path_in_chunks() {
    let Some((gpu, _serial)) = gpu() else { return };
    let model = unet_model();
    let mut noise = Noise::new(26);
    let table = random_table(&mut noise, 8);
    let request = SampleRequest {
        seed: 4,
        batch: 5,
        class: None,
        guidance: 1.5,
        first_row: 0,
    };
    let cpu = crate::sample::sample(&model, &table, &request).unwrap();
    let whole = block_on(sample(gpu, &model, &table, &request, 3)).unwrap();
    assert_eq!(whole.submissions, 1, "the whole sample in one submission");
    // A binding limit of two samples' network buffers (both passes): chunks of 2, 2 and 1.
    let row = network::cached(gpu, &model).unwrap().values_per_row();
    let limited = gpu.with_binding_limit(4 * 2 * 2 * row as u64);
    let split = block_on(sample(&limited, &model, &table, &request, 3)).unwrap();
    assert_eq!(split.submissions, 3, "one submission per chunk");
    let spread = cpu.values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(spread > 0.1, "the CPU sample is blank");
    for (got, what) in [(&whole, "one chunk"), (&split, "three chunks")] {
        assert_eq!(got.samples.shape, cpu.shape);
        let error = relative_error(&got.samples.values, &cpu.values);
        assert!(
            error < 1e-4,
            "GPU vs CPU U-Net sample ({what}): relative error {error}"
        );
    }
    let pooled = gpu.pool.lock().unwrap().len();
    block_on(sample(gpu, &model, &table, &request, 3)).unwrap();
    assert_eq!(
        gpu.pool.lock().unwrap().len(),
        pooled,
        "the second sample allocated nothing new (skips included)"
    );
}
