//! The distiller's two heavy CPU stages against PyTorch on the same network: a `bns train` step
//! and a `bns distill` iteration of the default U-Net (`bns train --arch unet` on 1×28×28 with
//! 10 classes), interleaved in one run, at 1 and 2 threads; prints a table of median times,
//! GFLOP/s and ratios.
//!
//!     cargo bench -p distiller --bench training -- --python /path/to/venv/bin/python
//!         [--rounds 5 --per-round 2 --threads 1,2 --batch 64 --distill-batch 16 --nfe 8]
//!
//! Each thread count runs in a process of its own (rayon sizes its pool once per process, from
//! `RAYON_NUM_THREADS`, which the benchmark sets; candle's element-wise operations stay on the
//! calling thread, as in `bns`).
//! `--python` (default `python3`) must have `torch` and `numpy`. The benchmark writes a random
//! model file of the default U-Net and drives `benches/torch/peer.py`, a second process that
//! builds the same network in PyTorch from that file: the two processes take turns on the same
//! cores (one waits while the other is timed), round after round. Before timing, the PyTorch
//! network's velocity must agree with the project's on the same inputs.
//!
//! The training step is the flow-matching loss, its gradient, AdamW and the EMA
//! (`commands::train::Trainer::step`); the distillation iteration is the loss of a BNS solver
//! (NFE `--nfe`, initialised from Euler, w = 0) through the frozen network, its gradient with
//! respect to the solver's parameters and an Adam step. GFLOP/s count a step as 3 network
//! evaluations' work per sample (forward, and the gradients of inputs and weights) and a
//! distillation iteration as 2 per sample and NFE (forward, and the gradient of the inputs).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use candle_core::{Device, Tensor};
use clap::Parser;
use distiller::bns::BnsParameters;
use distiller::commands::train::Trainer;
use distiller::network::CandleNetwork;
use distiller::network_args::NetworkArgs;
use distiller::optim::AdamW;
use web_sampler::model::{Architecture, Model};
use web_sampler::noise::Noise;
use web_sampler::solver::euler;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The largest |PyTorch − project| / max |project| accepted before timing.
const AGREEMENT: f32 = 1e-4;

#[derive(Parser)]
struct Network {
    #[command(flatten)]
    network: NetworkArgs,
}

/// The value after `flag`, or `default`.
fn option(args: &[String], flag: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// The PyTorch process.
struct Peer {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Peer {
    fn ask(&mut self, request: &str) -> Result<String, Failure> {
        writeln!(self.input, "{request}")?;
        self.input.flush()?;
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            return Err("the PyTorch process ended (see its error above)".into());
        }
        let line = line.trim().to_string();
        if line.starts_with("error") {
            return Err(format!("PyTorch peer: {line}").into());
        }
        Ok(line)
    }

    /// The milliseconds of each repetition the peer timed.
    fn times(&mut self, request: &str) -> Result<Vec<f64>, Failure> {
        Ok(self
            .ask(request)?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?)
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn timed(
    repeats: usize,
    mut work: impl FnMut() -> Result<(), Failure>,
) -> Result<Vec<f64>, Failure> {
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        work()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(times)
}

fn main() -> Result<(), Failure> {
    distiller::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--one-thread-count") {
        // As `bns` does (`ComputeArgs::open`).
        distiller::compute::candle_elementwise_on_the_calling_thread();
        let threads: usize = option(&args, "--threads", "1").parse()?;
        let (header, rows) = measure(&args, threads)?;
        for line in header {
            println!("header\t{line}");
        }
        for line in rows {
            println!("row\t{line}");
        }
        return Ok(());
    }
    let threads: Vec<String> = option(&args, "--threads", "1,2")
        .split(',')
        .map(str::to_string)
        .collect();
    let mut header = Vec::new();
    let mut rows = Vec::new();
    for n in &threads {
        let mut command = Command::new(std::env::current_exe()?);
        // The child's own --threads comes first (the option parser takes the first).
        command
            .args(["--threads", n, "--one-thread-count"])
            .args(args.iter().skip(1))
            .env("RAYON_NUM_THREADS", n)
            .stderr(Stdio::inherit());
        let output = command.output()?;
        if !output.status.success() {
            return Err(format!("the run on {n} threads failed ({})", output.status).into());
        }
        for line in String::from_utf8(output.stdout)?.lines() {
            match line.split_once('\t') {
                Some(("header", text)) if header.is_empty() || rows.is_empty() => {
                    header.push(text.to_string())
                }
                Some(("row", text)) => rows.push(text.to_string()),
                _ => {}
            }
        }
    }
    for line in header {
        println!("{line}");
    }
    println!();
    println!("| stage | contender | threads | median ms | GFLOP/s | project / PyTorch |");
    println!("|---|---|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

/// The header lines and the table rows of one run on `n` threads.
fn measure(args: &[String], n: usize) -> Result<(Vec<String>, Vec<String>), Failure> {
    let rounds: usize = option(args, "--rounds", "5").parse::<usize>()?.max(1);
    let per_round: usize = option(args, "--per-round", "2").parse::<usize>()?.max(1);
    let python = option(args, "--python", "python3");
    let batch: usize = option(args, "--batch", "64").parse()?;
    let distill_batch: usize = option(args, "--distill-batch", "16").parse()?;
    let nfe: usize = option(args, "--nfe", "8").parse()?;

    let network = Network::try_parse_from(["bns", "--arch", "unet"])?.network;
    let class_names: Vec<String> = (0..10).map(|c| format!("class {c}")).collect();
    let spec = network.spec(&[1, 28, 28], 10, "benchmark", &class_names)?;
    let Architecture::Unet(unet) = &spec.architecture else {
        return Err("the default U-Net is not a U-Net".into());
    };
    let multiply_adds = unet.layout(&spec).multiply_adds();
    let model = Model::random(spec.clone(), 0)?;
    let dim = spec.data_dim();
    let scratch = std::env::temp_dir().join(format!("bns-training-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let model_path = scratch.join("model.safetensors");
    model.save(&model_path)?;

    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(&python)
        .arg(here.join("benches/torch/peer.py"))
        .arg(&model_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut peer = Peer {
        input: child.stdin.take().ok_or("no stdin")?,
        output: BufReader::new(child.stdout.take().ok_or("no stdout")?),
        child,
    };
    let mut ready = String::new();
    peer.output.read_line(&mut ready)?;
    let version = ready
        .trim()
        .strip_prefix("ready ")
        .ok_or("the PyTorch peer did not start (see its error above)")?
        .to_string();

    // The same velocity from both before anything is timed.
    let device = Device::Cpu;
    let candle = CandleNetwork::from_model(&model, &device)?;
    let rows = 6;
    let x = Noise::new(3).gaussian_f32(rows * dim);
    let t: Vec<f32> = (0..rows).map(|i| 0.15 * i as f32).collect();
    let labels: Vec<u32> = (0..rows as u32).map(|i| (3 * i) % 11).collect();
    let velocity = candle
        .velocity(
            &Tensor::from_slice(&x, (rows, dim), &device)?,
            &Tensor::from_slice(&t, rows, &device)?,
            &Tensor::from_slice(&labels, rows, &device)?,
        )?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut request = Vec::new();
    for r in 0..rows {
        request.extend([t[r], labels[r] as f32]);
        request.extend(&x[r * dim..][..dim]);
    }
    let (inputs, outputs) = (scratch.join("x.f32"), scratch.join("u.f32"));
    std::fs::write(&inputs, bytemuck_bytes(&request))?;
    peer.ask(&format!(
        "forward {} {}",
        inputs.display(),
        outputs.display()
    ))?;
    let theirs: Vec<f32> = std::fs::read(&outputs)?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let largest = velocity.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = theirs
        .iter()
        .zip(&velocity)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / largest;
    if theirs.len() != velocity.len() || worst.is_nan() || worst > AGREEMENT {
        return Err(
            format!("PyTorch's velocity differs by {worst:e} of its size (> {AGREEMENT})").into(),
        );
    }

    // The project's contenders (candle reads RAYON_NUM_THREADS at every matrix product; the
    // convolutions run on rayon's global pool, sized from it).
    let mut trainer = Trainer::new(&spec, 0, 0.0, &device)?;
    let mut draws = Noise::new(7);
    let x1: Vec<f32> = Noise::new(8)
        .gaussian_f32(batch * dim)
        .iter()
        .map(|v| v.clamp(-1.0, 1.0))
        .collect();
    let train_labels: Vec<u32> = (0..batch as u32).map(|i| i % 11).collect();
    let grid: Vec<f64> = (0..=nfe).map(|i| i as f64 / nfe as f64).collect();
    let params = BnsParameters::from_table(&euler(&grid), false, &device)?;
    let mut adam = AdamW::new(params.vars(), 0.0)?;
    let gaussian = |seed, rows| {
        Tensor::from_vec(
            Noise::new(seed).gaussian_f32(rows * dim),
            (rows, dim),
            &device,
        )
    };
    let (x0, truth) = (gaussian(9, distill_batch)?, gaussian(10, distill_batch)?);
    let labels: Vec<u32> = (0..distill_batch as u32).map(|i| i % 10).collect();
    let distill_labels = Tensor::from_vec(labels, distill_batch, &device)?;

    // Each round: ours and PyTorch's training step, then ours and PyTorch's iteration.
    let mut times: [Vec<f64>; 4] = Default::default();
    for round in 0..=rounds {
        let ours = timed(per_round, || {
            let (x1, labels) = (x1.clone(), train_labels.clone());
            let loss = trainer.step(x1, labels, &mut draws, 2e-4, 0.999, &device)?;
            if !loss.is_finite() {
                return Err("the training loss is not finite".into());
            }
            Ok(())
        })?;
        let theirs = peer.times(&format!("train {n} {per_round} {batch}"))?;
        let ours_distill = timed(per_round, || {
            let loss = params.loss(&candle, &x0, &truth, &distill_labels, 0.0)?;
            adam.step(&loss.backward()?, 1e-3)?;
            Ok(())
        })?;
        let theirs_distill =
            peer.times(&format!("distill {n} {per_round} {distill_batch} {nfe}"))?;
        if round > 0 {
            for (list, new) in times
                .iter_mut()
                .zip([ours, theirs, ours_distill, theirs_distill])
            {
                list.extend(new);
            }
        }
    }
    drop(peer.input);
    peer.child.wait()?;
    std::fs::remove_dir_all(&scratch)?;

    let forward_flops = 2.0 * multiply_adds as f64;
    let step_gflop = 3.0 * forward_flops * batch as f64 / 1e9;
    let iteration_gflop = 2.0 * forward_flops * (distill_batch * nfe) as f64 / 1e9;
    let header = vec![
        format!(
            "default U-Net ({} parameters, {:.1} MFLOP per sample and evaluation); training step: \
             batch {batch} ({step_gflop:.1} GFLOP); distillation iteration: batch {distill_batch}, \
             NFE {nfe}, w = 0 ({iteration_gflop:.1} GFLOP); {rounds} interleaved rounds of \
             {per_round} after a warm-up; PyTorch {version}",
            spec.parameter_count(),
            forward_flops / 1e6
        ),
        format!("velocities agree: max |PyTorch − project| = {worst:.1e} of the largest"),
        format!("CPU: {}", cpu_name()),
    ];
    let mut rows = Vec::new();
    let [ours, theirs, ours_distill, theirs_distill] = &mut times;
    for (stage, gflop, ours, theirs) in [
        ("training step", step_gflop, ours, theirs),
        (
            "distillation iteration",
            iteration_gflop,
            ours_distill,
            theirs_distill,
        ),
    ] {
        let (ours, theirs) = (median(ours), median(theirs));
        rows.push(format!(
            "| {stage} | project | {n} | {ours:.0} | {:.1} | {:.2} |",
            gflop / ours * 1e3,
            ours / theirs
        ));
        rows.push(format!(
            "| {stage} | PyTorch eager | {n} | {theirs:.0} | {:.1} | |",
            gflop / theirs * 1e3
        ));
    }
    Ok((header, rows))
}

/// The little-endian bytes of `values`.
fn bytemuck_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
