//! Timings of kernels on whatever adapter the tests use, ignored by default (they check nothing):
//!
//!     BNS_REQUIRE_GPU=1 cargo test -p web-sampler --lib conv2d_timing -- --ignored --nocapture
//!
//! `BNS_TIMING_RUNS` (default 5) sets the timed runs after a warm-up, `BNS_TIMING_ROWS`
//! (default 16) the rows. Each run is one submission, waited for; the figures are medians of the
//! wall-clock time and of the process's CPU time (user + system, all threads: a software
//! adapter's work, which a shared machine's load inflates less than the wall-clock time).

use std::time::Instant;

use super::*;

/// The 3×3 convolutions of one forward of `layout` (1×1 ones are `linear`), with the input size
/// each runs at.
fn three_by_three(
    layout: &crate::model::UnetLayout,
) -> Vec<(crate::model::ConvLayer, (usize, usize))> {
    let (_, h, w) = layout.data_shape;
    let mut convs = vec![(layout.input.clone(), (h, w))];
    for level in &layout.down {
        for block in &level.blocks {
            convs.push((block.conv1.clone(), level.size));
            convs.push((block.conv2.clone(), level.size));
        }
        if let Some(down) = &level.resample {
            convs.push((down.clone(), level.size));
        }
    }
    let lowest = layout.down.last().map_or((h, w), |level| level.size);
    for block in &layout.middle {
        convs.push((block.conv1.clone(), lowest));
        convs.push((block.conv2.clone(), lowest));
    }
    for level in &layout.up {
        for block in &level.blocks {
            convs.push((block.conv1.clone(), level.size));
            convs.push((block.conv2.clone(), level.size));
        }
        if let Some(up) = &level.resample {
            convs.push((up.clone(), (2 * level.size.0, 2 * level.size.1)));
        }
    }
    convs.push((layout.out_conv.clone(), (h, w)));
    convs.retain(|(conv, _)| conv.kernel == 3);
    convs
}

/// The process's CPU time (user + system, all threads) in seconds, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th of them, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `conv2d` over every 3×3 convolution of one forward of the default-size U-Net of
/// `bns model init --arch unet` (1×28×28, base 32 × [1, 2, 2], 1 block per level, attention).
#[test]
#[ignore = "a timing: run with --ignored --nocapture"]
fn conv2d_timing() {
    let Some((gpu, _serial)) = gpu() else { return };
    let runs = env_usize("BNS_TIMING_RUNS", 5).max(1);
    let rows = env_usize("BNS_TIMING_ROWS", 16).max(1);
    let spec = ModelSpec::new(
        Architecture::unet(32, &[1, 2, 2], 1, 8, true, 128),
        &[1, 28, 28],
        64,
        10,
        32,
    );
    let Architecture::Unet(unet) = &spec.architecture else {
        unreachable!("a U-Net spec")
    };
    let convs = three_by_three(&unet.layout(&spec));
    let mut noise = Noise::new(1);
    let mut multiply_adds = 0;
    let layers: Vec<_> = convs
        .iter()
        .map(|(conv, (h, w))| {
            let (k, i, o) = (conv.kernel, conv.inputs, conv.outputs);
            let (oh, ow) = conv.output_size((*h, *w));
            multiply_adds += rows * oh * ow * o * i * k * k;
            let x = upload(gpu, &noise.gaussian_f32(rows * h * w * i));
            let weight = upload(gpu, &noise.gaussian_f32(o * i * k * k));
            let bias = upload(gpu, &noise.gaussian_f32(o));
            let y = zeros(gpu, rows * oh * ow * o);
            (
                tensor(&x, &[rows, h * w, i]),
                (*h, *w),
                tensor(&weight, &[o, i, k, k]),
                tensor(&bias, &[o]),
                (tensor(&y, &[rows, oh * ow, o]), y, rows * oh * ow * o),
                conv.stride,
            )
        })
        .collect();
    let forward = || {
        let mut plan = Plan::new(&gpu.limits);
        for (x, size, weight, bias, (y, _, _), stride) in &layers {
            plan.conv2d(x, *size, weight, bias, y, *stride).unwrap();
        }
        let (_, y, len) = &layers.last().expect("convolutions").4;
        let start = (Instant::now(), cpu_seconds());
        run(gpu, plan, y, *len);
        (start.0.elapsed().as_secs_f64(), cpu_seconds() - start.1)
    };
    forward();
    let (wall, cpu): (Vec<f64>, Vec<f64>) = (0..runs).map(|_| forward()).unzip();
    let (wall, cpu) = (median(wall), median(cpu));
    println!(
        "conv2d, {} 3×3 convolutions of the default U-Net at {rows} rows ({:.2} G multiply-adds) \
         on {}: {:.1} ms wall, {:.1} ms CPU (medians of {runs}), {:.2} G multiply-adds per \
         wall-clock second",
        convs.len(),
        multiply_adds as f64 * 1e-9,
        gpu.adapter(),
        wall * 1e3,
        cpu * 1e3,
        multiply_adds as f64 * 1e-9 / wall,
    );
}
