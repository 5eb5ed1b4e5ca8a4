//! Time per batch on the native paths: the CPU path and wgpu (Vulkan; lavapipe on CPU-only
//! machines), for the published Fashion-MNIST model and its BNS solver at NFE 8.
//!
//!     cargo bench -p web-sampler --bench sampler [-- --batch 64 --runs 5 --models www/models --model fashion-mnist --solver bns-8-w0.json]
//!
//! Prints the median and the fastest of `runs` timed runs after one warm-up, for each path, and
//! how far the GPU's samples are from the CPU's.
//!
//!     cargo bench -p web-sampler --bench sampler -- --unet [--runs 3]
//!
//! times instead a random U-Net of the shape of `runs/mnist-unet` (1×28×28, base 8 × [1, 2],
//! 1 block per level, 4 groups, attention, embedding 32, 10 classes) with DPM-Solver++(2M) on
//! the EDM grid at NFE 8, w = 1.5, at batches 16 and 64.

use std::time::{Duration, Instant};

#[path = "common/workload.rs"]
mod workload;
use workload::{option, Workload};

use web_sampler::gpu::{block_on, Gpu};
use web_sampler::grid::Grid;
use web_sampler::model::{Architecture, Model, ModelSpec};
use web_sampler::sample::{sample, SampleRequest};
use web_sampler::solver::{Method, NsTable};

/// Median and minimum of `runs` timings of `f` after one warm-up call.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut last = f();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        last = f();
        times.push(start.elapsed());
    }
    times.sort();
    (times[times.len() / 2], times[0], last)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = option(&args, "--runs", "5").parse::<usize>()?.max(1);
    if args.iter().any(|a| a == "--unet") {
        return unet(runs);
    }
    let Workload {
        name,
        solver,
        model_path,
        model,
        file,
        table,
        request,
    } = Workload::from_args(&args)?;
    let batch = request.batch;
    let nfe = table.steps();
    println!(
        "model {name} ({}, {} parameters), solver {solver} (NFE {nfe}, w = {}), batch {batch}, {runs} runs after a warm-up",
        model_path.display(),
        model.spec().parameter_count(),
        file.guidance
    );
    let columns = (batch as f64).sqrt().ceil() as usize;
    time_paths(
        runs,
        &model,
        &table,
        &request,
        columns,
        &block_on(Gpu::new()),
        "",
    )
}

/// Times the CPU path and, when `gpu` opened, wgpu on one request, and prints one line each
/// (prefixed by `label`) with the GPU's largest distance from the CPU's samples.
fn time_paths(
    runs: usize,
    model: &Model,
    table: &NsTable,
    request: &SampleRequest,
    columns: usize,
    gpu: &Result<Gpu, web_sampler::Error>,
    label: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let batch = request.batch;
    let per = |d: Duration| d.as_secs_f64() * 1e3;
    let (median, best, cpu) = time(runs, || sample(model, table, request));
    let cpu = cpu?;
    println!(
        "{label}native CPU path : {:9.1} ms per batch (best {:.1}), {:.2} ms per image",
        per(median),
        per(best),
        per(median) / batch as f64
    );
    match gpu {
        Err(e) => println!("{label}native wgpu     : skipped ({e})"),
        Ok(gpu) => {
            let (median, best, out) = time(runs, || {
                block_on(web_sampler::gpu::sample(
                    gpu, model, table, request, columns,
                ))
            });
            let out = out?;
            let worst = out
                .samples
                .values
                .iter()
                .zip(&cpu.values)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            println!(
                "{label}native wgpu     : {:9.1} ms per batch (best {:.1}), {:.2} ms per image on {}; {} submission(s); max |GPU − CPU| = {worst:.2e}",
                per(median),
                per(best),
                per(median) / batch as f64,
                gpu.adapter(),
                out.submissions
            );
        }
    }
    Ok(())
}

/// The CPU path and wgpu on a random U-Net of `runs/mnist-unet`'s shape, batches 16 and 64.
fn unet(runs: usize) -> Result<(), Box<dyn std::error::Error>> {
    let spec = ModelSpec::new(
        Architecture::unet(8, &[1, 2], 1, 4, true, 32),
        &[1, 28, 28],
        32,
        10,
        32,
    );
    let model = Model::random(spec, 1)?;
    let table: NsTable = Method::DpmPp2m.build(8, Grid::Edm)?;
    println!(
        "random U-Net ({}, {} parameters), dpmpp2m-edm NFE 8, w = 1.5, {runs} runs after a warm-up",
        model.spec().architecture.summary(),
        model.spec().parameter_count()
    );
    let gpu = block_on(Gpu::new());
    for batch in [16, 64] {
        let request = SampleRequest {
            seed: 1,
            batch,
            class: Some(3),
            guidance: 1.5,
            first_row: 0,
        };
        time_paths(
            runs,
            &model,
            &table,
            &request,
            8,
            &gpu,
            &format!("batch {batch:2}: "),
        )?;
    }
    Ok(())
}
