//! `bns train`: flow matching on the conditional-OT path (`docs/MATH.md` §2).
//!
//! Each step draws data `x1` with labels (dropped to the null class with probability
//! `--label-dropout`), noise `x0 ~ N(0, I)` and `t` uniform in [0, 1) rounded to `f32` (so it
//! may be exactly 1), and minimises the mean over the batch's values of
//! `(u(x_t, t, c) − (x1 − x0))²` at `x_t = (1−t)·x0 + t·x1` (for a data-predicting network, `u`
//! is the velocity derived from `x̂1`) with AdamW (Loshchilov & Hutter 2019),
//! a linear warm-up and a cosine decay of the learning rate. An exponential moving average (EMA)
//! of the weights is what gets written. Every random draw of step `k` comes from a generator seeded
//! by `(seed, k)`, so a run resumed from a checkpoint is the same run, bit for bit.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use clap::Args;
use serde::{Deserialize, Serialize};
use web_sampler::model::{Model, ModelSpec};
use web_sampler::noise::Noise;
use web_sampler::versioned_json::MetadataFormat;

use crate::checkpoint::{self, checkpoint_path, minutes_since};
use crate::compute::ComputeArgs;
use crate::data::{self, DataSources, Dataset, DatasetSource, ImageFolderOptions, DATASET_HELP};
use crate::network::CandleNetwork;
use crate::network_args::NetworkArgs;
use crate::optim::AdamW;
use crate::progress::Progress;

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    #[arg(long, help = DATASET_HELP, value_name = "NAME|images:DIR")]
    pub dataset: DatasetSource,
    #[command(flatten)]
    pub images: ImageFolderOptions,
    /// Optimisation steps
    #[arg(long, default_value_t = 20_000)]
    pub steps: u64,
    /// Batch size
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Peak learning rate
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// AdamW weight decay
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// EMA decay of the weights that are written
    #[arg(long, default_value_t = 0.999)]
    pub ema: f64,
    /// Probability of replacing a label by the null class (for guidance)
    #[arg(long, default_value_t = 0.1)]
    pub label_dropout: f64,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Seed of the initial weights and of every draw
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write a checkpoint every this many steps (and at the end)
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: u64,
    /// Also write one whenever this many minutes have passed since the last (0: every step),
    /// so that a kill loses little however slow a step is
    #[arg(long, default_value_t = 10.0, value_name = "MINUTES")]
    pub checkpoint_minutes: f64,
    /// Continue from the checkpoint next to the output (`<output>.ckpt`)
    #[arg(long)]
    pub resume: bool,
    /// The model file to write
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Everything that must agree between a checkpoint and the run resuming it ([`run_identity`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    dataset: String,
    steps: u64,
    batch: usize,
    lr: f64,
    weight_decay: f64,
    ema: f64,
    label_dropout: f64,
    seed: u64,
    spec: ModelSpec,
}

/// The state of a run after `step` steps, besides the tensors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMeta {
    run: RunIdentity,
    step: u64,
    seconds: f64,
    last_loss: f64,
}

const CHECKPOINT_KEY: &str = "bns.checkpoint";
const WARMUP_STEPS: u64 = 500;
/// Test rows the final loss is measured on.
const TEST_ROWS: usize = 2048;

#[cfg(test)]
thread_local! {
    /// Tests stop a run after this step, as an interruption would.
    static STOP_AFTER: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

pub fn run(args: TrainArgs) -> Result<()> {
    if matches!(args.dataset, DatasetSource::Named(_)) && args.images.any_given() {
        bail!(
            "--size, --channels and --skip-bad-images apply to --dataset images:DIR, not to {}",
            args.dataset
        );
    }
    let device = args.compute.open()?;
    let dataset = data::load(
        &args.dataset,
        &DataSources::default(),
        &args.images,
        args.seed,
    )?;
    if let DatasetSource::Images(dir) = &args.dataset {
        let [c, h, w] = dataset.shape;
        println!(
            "{}: {} train and {} test images of {c}×{h}×{w}, {}",
            dir.display(),
            dataset.train.len,
            dataset.test.len,
            match dataset.num_classes {
                0 => "unconditional (no class folders)".to_string(),
                n => format!("{n} classes: {}", dataset.class_names.join(", ")),
            }
        );
    }
    let outcome = train(&args, &dataset, &device, true)?;
    println!(
        "wrote {} ({} steps in {:.0} s; training loss {:.4} → {:.4}, test loss {:.4}; model id {})",
        args.output.display(),
        outcome.steps,
        outcome.seconds,
        outcome.early_loss,
        outcome.late_loss,
        outcome.test_loss,
        outcome.model.id()
    );
    Ok(())
}

pub struct TrainOutcome {
    pub model: Model,
    pub steps: u64,
    pub seconds: f64,
    /// Mean loss of the first and the last 10% of the steps run in this call.
    pub early_loss: f64,
    pub late_loss: f64,
    /// Flow-matching loss of the written weights on held-out test data.
    pub test_loss: f64,
}

/// Trains (or resumes) and writes `args.output`; returns the written model.
pub fn train(
    args: &TrainArgs,
    dataset: &Dataset,
    device: &Device,
    show_progress: bool,
) -> Result<TrainOutcome> {
    if args.steps == 0 || args.batch == 0 || args.checkpoint_every == 0 {
        bail!("--steps, --batch and --checkpoint-every must be at least 1");
    }
    checkpoint::check_checkpoint_minutes(args.checkpoint_minutes)?;
    if !(0.0..1.0).contains(&args.ema) || !(0.0..1.0).contains(&args.label_dropout) {
        bail!("--ema and --label-dropout must be in [0, 1)");
    }
    let run = run_identity(args, dataset)?;
    let spec = run.spec.clone();
    let checkpoint = checkpoint_path(&args.output);
    let shapes = spec.tensor_shapes();

    let (mut trainer, mut seconds) = if args.resume {
        let (adam, ema, meta) = load_checkpoint(&checkpoint, &run, device)?;
        if show_progress {
            println!(
                "resuming from {} at step {}",
                checkpoint.display(),
                meta.step
            );
        }
        (Trainer::from_state(&spec, adam, ema, device)?, meta.seconds)
    } else {
        (
            Trainer::new(&spec, args.seed, args.weight_decay, device)?,
            0.0,
        )
    };
    let mut step = trainer.adam.steps;

    let mut progress = Progress::new("train", args.steps, "steps", show_progress);

    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut losses = Vec::new();
    while step < args.steps {
        let (x1, labels) = draw_batch(dataset, args, step);
        let mut noise = Noise::new(step_seed(args.seed, step, 1));
        let lr = learning_rate(args.lr, step + 1, args.steps);
        let loss_value = trainer.step(x1, labels, &mut noise, lr, args.ema, device)?;
        if !loss_value.is_finite() {
            bail!("training diverged at step {step} (loss {loss_value}); try a lower --lr");
        }
        step += 1;
        losses.push(loss_value);
        if step % 20 == 0 || step == args.steps {
            let recent = &losses[losses.len().saturating_sub(100)..];
            let mean = recent.iter().sum::<f64>() / recent.len() as f64;
            progress.set_message(format!("loss {mean:.4}  lr {lr:.2e}"));
        }
        progress.set_position(step);
        if step % args.checkpoint_every == 0
            || step == args.steps
            || minutes_since(last_checkpoint) >= args.checkpoint_minutes
        {
            last_checkpoint = Instant::now();
            let meta = CheckpointMeta {
                run: run.clone(),
                step,
                seconds: seconds + started.elapsed().as_secs_f64(),
                last_loss: loss_value,
            };
            save_checkpoint(&checkpoint, &trainer.adam, &trainer.ema, &shapes, &meta)?;
        }
        #[cfg(test)]
        if STOP_AFTER.with(|s| s.get()) == Some(step) {
            bail!("interrupted after step {step} (test hook)");
        }
    }
    progress.finish();
    seconds += started.elapsed().as_secs_f64();

    let mut final_spec = spec;
    final_spec.training_steps = step;
    let mut tensors = Vec::new();
    for ((name, _), average) in shapes.iter().zip(&trainer.ema) {
        tensors.push((name.clone(), average.flatten_all()?.to_vec1::<f32>()?));
    }
    let model = Model::from_tensors(final_spec, tensors)?;
    model.save(&args.output)?;
    let tenth = (losses.len() / 10).max(1);
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let test_loss = test_loss(&model, dataset, device)?;
    Ok(TrainOutcome {
        test_loss,
        model,
        steps: step,
        seconds,
        early_loss: mean(&losses[..tenth.min(losses.len())]),
        late_loss: mean(&losses[losses.len().saturating_sub(tenth)..]),
    })
}

/// What a checkpoint of training `args` on `dataset` must have been written by.
pub fn run_identity(args: &TrainArgs, dataset: &Dataset) -> Result<RunIdentity> {
    let spec = args.network.spec(
        &dataset.shape,
        dataset.num_classes,
        &dataset.name,
        &dataset.class_names,
    )?;
    Ok(RunIdentity {
        dataset: dataset.name.clone(),
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        weight_decay: args.weight_decay,
        ema: args.ema,
        label_dropout: args.label_dropout,
        seed: args.seed,
        spec,
    })
}

/// The weights under training: AdamW's state, the EMA of the weights that gets written, and the
/// network built on the weights.
pub struct Trainer {
    pub adam: AdamW,
    pub ema: Vec<Tensor>,
    network: CandleNetwork,
}

impl Trainer {
    /// Fresh weights (the runtime's initialisation, [`Model::random`] with `seed`).
    pub fn new(spec: &ModelSpec, seed: u64, weight_decay: f64, device: &Device) -> Result<Trainer> {
        let init = Model::random(spec.clone(), seed)?;
        let mut vars = Vec::new();
        for (name, shape) in spec.tensor_shapes() {
            let values = init.tensor(&name).context("initial weights")?;
            let tensor = Tensor::from_slice(values, shape.as_slice(), device)?;
            vars.push(Var::from_tensor(&tensor)?);
        }
        let ema = vars.iter().map(|v| v.as_detached_tensor()).collect();
        Trainer::from_state(spec, AdamW::new(vars, weight_decay)?, ema, device)
    }

    /// The weights of `adam` (in [`ModelSpec::tensor_shapes`] order) with their EMA.
    fn from_state(
        spec: &ModelSpec,
        adam: AdamW,
        ema: Vec<Tensor>,
        device: &Device,
    ) -> Result<Trainer> {
        // The optimiser's parameters are in tensor_shapes order: that list names them.
        let named: Vec<(String, Var)> = spec
            .tensor_shapes()
            .into_iter()
            .map(|(name, _)| name)
            .zip(adam.params.iter().map(|p| p.var.clone()))
            .collect();
        let network = CandleNetwork::from_vars(spec.clone(), &named, device)?;
        Ok(Trainer { adam, ema, network })
    }

    /// One step on data `x1` with `labels` (noise and times drawn from `noise`): the
    /// flow-matching loss, its gradient, AdamW with learning rate `lr`, then the EMA with decay
    /// `ema`. Returns the loss; a loss that is not finite is returned without updating anything.
    pub fn step(
        &mut self,
        x1: Vec<f32>,
        labels: Vec<u32>,
        noise: &mut Noise,
        lr: f64,
        ema: f64,
        device: &Device,
    ) -> Result<f64> {
        let loss = flow_matching_loss(&self.network, x1, labels, noise, device)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        if !value.is_finite() {
            return Ok(value);
        }
        self.adam.step(&loss.backward()?, lr)?;
        for (average, p) in self.ema.iter_mut().zip(&self.adam.params) {
            *average = ((&*average * ema)? + (p.var.as_detached_tensor() * (1.0 - ema))?)?;
        }
        Ok(value)
    }
}

/// The conditional flow-matching loss `mean ‖u(x_t, t, c) − (x1 − x0)‖²` of a batch `x1` with
/// `labels`, drawing `x0` and `t ~ U[0, 1]` from `noise`.
fn flow_matching_loss(
    network: &CandleNetwork,
    x1: Vec<f32>,
    labels: Vec<u32>,
    noise: &mut Noise,
    device: &Device,
) -> Result<Tensor> {
    let rows = labels.len();
    let dim = x1.len() / rows.max(1);
    let x0 = noise.gaussian_f32(rows * dim);
    let t: Vec<f32> = (0..rows).map(|_| noise.uniform() as f32).collect();
    let x0 = Tensor::from_vec(x0, (rows, dim), device)?;
    let x1 = Tensor::from_vec(x1, (rows, dim), device)?;
    let t = Tensor::from_vec(t, rows, device)?;
    let labels = Tensor::from_vec(labels, rows, device)?;
    let t_col = t.unsqueeze(1)?;
    let xt = (x0.broadcast_mul(&(1.0 - &t_col)?)? + x1.broadcast_mul(&t_col)?)?;
    let target = (&x1 - &x0)?;
    let u = network.velocity(&xt, &t, &labels)?;
    Ok((u - target)?.sqr()?.mean_all()?)
}

/// The flow-matching loss of the written (EMA) weights on up to [`TEST_ROWS`] rows of the test
/// split, with a fixed draw of noise and times (NaN for an empty test split, as a folder of a
/// few images can have).
fn test_loss(model: &Model, dataset: &Dataset, device: &Device) -> Result<f64> {
    if dataset.test.len == 0 {
        return Ok(f64::NAN);
    }
    let rows: Vec<usize> = (0..dataset.test.len.min(TEST_ROWS)).collect();
    let (x1, mut labels) = data::batch(&dataset.test, &rows);
    if dataset.num_classes == 0 {
        labels.iter_mut().for_each(|l| *l = 0);
    }
    let network = CandleNetwork::from_model(model, device)?;
    let loss = flow_matching_loss(&network, x1, labels, &mut Noise::new(0), device)?;
    Ok(f64::from(loss.to_scalar::<f32>()?))
}

/// Learning rate at `step` (1-based): linear warm-up over the first steps, then cosine decay to
/// 10% of the peak.
fn learning_rate(peak: f64, step: u64, total: u64) -> f64 {
    let warmup = WARMUP_STEPS.min(total / 10).max(1);
    if step <= warmup {
        return peak * step as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

/// The seed of draw stream `stream` at `step`: SplitMix64-style mixing of (seed, step, stream).
fn step_seed(seed: u64, step: u64, stream: u64) -> u64 {
    let mut z = seed
        ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The data rows and labels of `step` (labels dropped to the null class with probability
/// `label_dropout`).
fn draw_batch(dataset: &Dataset, args: &TrainArgs, step: u64) -> (Vec<f32>, Vec<u32>) {
    let mut noise = Noise::new(step_seed(args.seed, step, 0));
    let n = dataset.train.len;
    let indices: Vec<usize> = (0..args.batch)
        .map(|_| ((noise.uniform() * n as f64) as usize).min(n - 1))
        .collect();
    let (x, mut labels) = data::batch(&dataset.train, &indices);
    let null = dataset.num_classes as u32;
    for label in labels.iter_mut() {
        if dataset.num_classes == 0 || noise.uniform() < args.label_dropout {
            *label = null;
        }
    }
    (x, labels)
}

/// The checkpoint metadata as a versioned document. Checkpoints written before the version
/// existed have no `format_version`: they are read as version 1, which they are.
const CHECKPOINT_FORMAT: MetadataFormat = MetadataFormat {
    kind: "checkpoint",
    key: CHECKPOINT_KEY,
    version: 1,
    reader: "this build",
    advice: "; run without --resume to start afresh",
    unversioned: Some(1),
};

fn save_checkpoint(
    path: &Path,
    adam: &AdamW,
    ema: &[Tensor],
    shapes: &[(String, Vec<usize>)],
    meta: &CheckpointMeta,
) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (((name, shape), p), average) in shapes.iter().zip(&adam.params).zip(ema) {
        for (kind, t) in [
            ("weight", p.var.as_tensor()),
            ("ema", average),
            ("adam_m", &p.m),
            ("adam_v", &p.v),
        ] {
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            tensors.push((format!("{kind}.{name}"), shape.clone(), values));
        }
    }
    checkpoint::save(path, &CHECKPOINT_FORMAT, meta, &tensors)
}

fn load_checkpoint(
    path: &Path,
    run: &RunIdentity,
    device: &Device,
) -> Result<(AdamW, Vec<Tensor>, CheckpointMeta)> {
    let bytes = checkpoint::read(path)?;
    parse_checkpoint(path, &bytes, run, device)
}

/// The optimiser (weights, moments, step count), the EMA weights and the metadata of checkpoint
/// `bytes` read from `path`, refused unless written by `run`; every error names `path`.
pub fn parse_checkpoint(
    path: &Path,
    bytes: &[u8],
    run: &RunIdentity,
    device: &Device,
) -> Result<(AdamW, Vec<Tensor>, CheckpointMeta)> {
    let origin = path.display();
    let (file, meta): (_, CheckpointMeta) = checkpoint::parse(
        path,
        bytes,
        &CHECKPOINT_FORMAT,
        run,
        |m: &CheckpointMeta| &m.run,
    )?;
    if meta.step == 0 || meta.step > run.steps || !(meta.seconds >= 0.0 && meta.seconds.is_finite())
    {
        bail!(
            "{origin}: inconsistent checkpoint (step {} of {}, {} s)",
            meta.step,
            run.steps,
            meta.seconds
        );
    }
    let get = |kind: &str, name: &str, shape: &[usize]| -> Result<Tensor> {
        let key = format!("{kind}.{name}");
        let values = file
            .f32s(&key, shape)
            .map_err(|problem| anyhow::anyhow!("{origin}: corrupt checkpoint ({problem})"))?;
        Ok(Tensor::from_vec(values, shape, device)?)
    };
    let shapes = run.spec.tensor_shapes();
    let mut names = Vec::new();
    let mut vars = Vec::new();
    let mut ema = Vec::new();
    let mut moments = Vec::new();
    for (name, shape) in &shapes {
        vars.push(Var::from_tensor(&get("weight", name, shape)?)?);
        ema.push(get("ema", name, shape)?);
        moments.push((get("adam_m", name, shape)?, get("adam_v", name, shape)?));
        for kind in ["weight", "ema", "adam_m", "adam_v"] {
            names.push(format!("{kind}.{name}"));
        }
    }
    file.check_no_other_tensors(&names, "")
        .map_err(|problem| anyhow::anyhow!("{origin}: corrupt checkpoint ({problem})"))?;
    let mut adam = AdamW::new(vars, run.weight_decay)?;
    for (p, (m, v)) in adam.params.iter_mut().zip(moments) {
        p.m = m;
        p.v = v;
    }
    adam.steps = meta.step;
    Ok((adam, ema, meta))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::{DatasetName, Split};
    use web_sampler::model::Prediction;
    use web_sampler::scratch::ScratchDir;

    fn args(output: &Path, steps: u64, resume: bool) -> TrainArgs {
        TrainArgs {
            dataset: DatasetSource::Named(DatasetName::Checkerboard),
            images: ImageFolderOptions::default(),
            steps,
            batch: 64,
            lr: 3e-3,
            weight_decay: 0.0,
            ema: 0.9,
            label_dropout: 0.1,
            network: NetworkArgs {
                architecture: crate::network_args::ArchitectureName::Mlp,
                width: 32,
                depth: 2,
                time_embedding: 8,
                time_scale: 10.0,
                prediction: Prediction::Data,
                class_embedding: 4,
                unet: Default::default(),
            },
            seed: 5,
            checkpoint_every: 10,
            checkpoint_minutes: 10.0,
            resume,
            output: output.to_path_buf(),
            compute: ComputeArgs {
                device: crate::compute::DeviceKind::Cpu,
                threads: None,
            },
        }
    }

    fn checkerboard() -> Dataset {
        let source = DatasetSource::Named(DatasetName::Checkerboard);
        data::load(&source, &DataSources::default(), &Default::default(), 5).unwrap()
    }

    #[test]
    fn training_lowers_the_loss_and_writes_a_runtime_model() {
        let scratch = ScratchDir::new("train-loss");
        let dir = scratch.path();
        let out = dir.join("m.safetensors");
        let outcome = train(
            &args(&out, 300, false),
            &checkerboard(),
            &Device::Cpu,
            false,
        )
        .unwrap();
        assert!(
            outcome.late_loss < 0.8 * outcome.early_loss,
            "loss {} → {}",
            outcome.early_loss,
            outcome.late_loss
        );
        let model = Model::load(&out).unwrap();
        assert_eq!(model.id(), outcome.model.id());
        assert_eq!(model.spec().training_steps, 300);
        assert_eq!(model.spec().dataset, "checkerboard");
    }

    #[test]
    fn resume_continues_bit_for_bit() {
        let scratch = ScratchDir::new("train-resume");
        let dir = scratch.path();
        let straight = dir.join("straight.safetensors");
        let resumed = dir.join("resumed.safetensors");
        let data = checkerboard();
        let a = train(&args(&straight, 40, false), &data, &Device::Cpu, false).unwrap();
        // An interrupted run: stopped after step 20 of 40, just after its checkpoint.
        let mut first = args(&resumed, 40, false);
        first.checkpoint_every = 20;
        interrupt_after(&first, &data, 20);
        let ckpt = std::fs::read(checkpoint_path(&resumed)).unwrap();
        assert!(!ckpt.is_empty());
        assert!(!resumed.exists(), "an interrupted run writes no model");
        let b = train(&args(&resumed, 40, true), &data, &Device::Cpu, false).unwrap();
        assert_eq!(b.steps, 40);
        assert_eq!(a.model.id(), b.model.id(), "resumed weights differ");
    }

    #[test]
    fn a_checkpoint_is_also_written_after_checkpoint_minutes() {
        let scratch = ScratchDir::new("train-minutes");
        let dir = scratch.path();
        let straight = dir.join("straight.safetensors");
        let resumed = dir.join("resumed.safetensors");
        let data = checkerboard();
        let a = train(&args(&straight, 30, false), &data, &Device::Cpu, false).unwrap();
        // Steps are far apart (every 1,000), minutes are not (0: after every step): the run
        // stopped after step 13 left its checkpoint of step 13.
        let mut first = args(&resumed, 30, false);
        first.checkpoint_every = 1000;
        first.checkpoint_minutes = 0.0;
        interrupt_after(&first, &data, 13);
        assert!(checkpoint_path(&resumed).exists());
        let b = train(&args(&resumed, 30, true), &data, &Device::Cpu, false).unwrap();
        assert_eq!(b.steps, 30);
        assert_eq!(a.model.id(), b.model.id(), "resumed weights differ");

        // Settings that would never (or always wrongly) checkpoint are refused by name.
        for (every, minutes, flag) in [
            (0, 10.0, "--checkpoint-every"),
            (10, -1.0, "--checkpoint-minutes"),
            (10, f64::NAN, "--checkpoint-minutes"),
        ] {
            let mut bad = args(&dir.join("bad.safetensors"), 30, false);
            bad.checkpoint_every = every;
            bad.checkpoint_minutes = minutes;
            let message = format!(
                "{:#}",
                train(&bad, &data, &Device::Cpu, false).err().unwrap()
            );
            assert!(message.contains(flag), "{message}");
        }
    }

    /// A tiny image set for U-Net tests: 1×8×8 pictures of two classes (a bright 4×4 square in
    /// the top-left or the bottom-right corner on a dark background, with a little noise), 256
    /// for training and 64 for testing. Labelled "mnist" (the name is recorded in the spec alone).
    pub(crate) fn squares() -> Dataset {
        let mut noise = Noise::new(11);
        let mut split = |len: usize| {
            let mut x = Vec::with_capacity(len * 64);
            let mut labels = Vec::with_capacity(len);
            for i in 0..len {
                let class = (i % 2) as u32;
                let corner = if class == 0 { 0 } else { 4 };
                for y in 0..8 {
                    for x_ in 0..8 {
                        let inside =
                            (corner..corner + 4).contains(&y) && (corner..corner + 4).contains(&x_);
                        let base = if inside { 0.8 } else { -0.8 };
                        x.push(base + 0.1 * noise.gaussian() as f32);
                    }
                }
                labels.push(class);
            }
            Split {
                x,
                labels,
                len,
                dim: 64,
            }
        };
        let train = split(256);
        let test = split(64);
        Dataset {
            name: "mnist".into(),
            shape: [1, 8, 8],
            num_classes: 2,
            class_names: vec!["top-left".into(), "bottom-right".into()],
            train,
            test,
        }
    }

    /// Training arguments for a tiny U-Net on [`squares`].
    pub(crate) fn unet_args(output: &Path, steps: u64, resume: bool) -> TrainArgs {
        let mut args = args(output, steps, resume);
        args.dataset = DatasetSource::Named(DatasetName::Mnist);
        args.batch = 32;
        args.lr = 3e-3;
        args.network.architecture = crate::network_args::ArchitectureName::Unet;
        args.network.class_embedding = 8;
        args.network.unet = crate::network_args::UnetArgs {
            base_channels: 4,
            channel_multipliers: vec![1, 2],
            residual_blocks: 1,
            groups: 2,
            attention: true,
            embedding_width: 8,
        };
        args
    }

    #[test]
    fn a_tiny_unet_trains_and_resumes_bit_for_bit() {
        let scratch = ScratchDir::new("train-unet");
        let dir = scratch.path();
        let data = squares();
        let straight = dir.join("straight.safetensors");
        let a = train(&unet_args(&straight, 40, false), &data, &Device::Cpu, false).unwrap();
        assert!(
            a.late_loss < 0.8 * a.early_loss,
            "loss {} → {}",
            a.early_loss,
            a.late_loss
        );
        let model = Model::load(&straight).unwrap();
        assert_eq!(model.spec().architecture.name(), "unet");
        assert_eq!(model.id(), a.model.id());

        let resumed = dir.join("resumed.safetensors");
        let mut first = unet_args(&resumed, 40, false);
        first.checkpoint_every = 20;
        interrupt_after(&first, &data, 20);
        let b = train(&unet_args(&resumed, 40, true), &data, &Device::Cpu, false).unwrap();
        assert_eq!(b.steps, 40);
        assert_eq!(a.model.id(), b.model.id(), "resumed weights differ");
    }

    /// Runs `args` but stops after `steps` steps, as an interruption would (the checkpoint at
    /// `steps` exists, the output does not).
    fn interrupt_after(args: &TrainArgs, data: &Dataset, steps: u64) {
        STOP_AFTER.with(|s| s.set(Some(steps)));
        let result = train(args, data, &Device::Cpu, false);
        STOP_AFTER.with(|s| s.set(None));
        assert!(result.is_err(), "the run should have been interrupted");
    }

    #[test]
    fn checkpoints_past_the_run_are_refused() {
        let scratch = ScratchDir::new("train-past-the-run");
        let out = scratch.path().join("m.safetensors");
        let data = checkerboard();
        let args = args(&out, 20, false);
        train(&args, &data, &Device::Cpu, false).unwrap();
        let path = checkpoint_path(&out);
        let run = run_identity(&args, &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (adam, ema, meta) = parse_checkpoint(&path, &bytes, &run, &Device::Cpu).unwrap();
        let shapes = run.spec.tensor_shapes();
        for (step, seconds) in [(21, meta.seconds), (0, meta.seconds), (20, -1.0)] {
            let changed = CheckpointMeta {
                step,
                seconds,
                ..meta.clone()
            };
            save_checkpoint(&path, &adam, &ema, &shapes, &changed).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let message = parse_checkpoint(&path, &bytes, &run, &Device::Cpu)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                message.contains("m.safetensors.ckpt") && message.contains("inconsistent"),
                "step {step}, {seconds} s: {message:?}"
            );
        }
    }

    #[test]
    fn corrupt_or_foreign_checkpoints_are_refused() {
        let scratch = ScratchDir::new("train-corrupt");
        let dir = scratch.path();
        let out = dir.join("m.safetensors");
        let data = checkerboard();
        std::fs::write(checkpoint_path(&out), b"not a checkpoint").unwrap();
        let message = train(&args(&out, 20, true), &data, &Device::Cpu, false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains("m.safetensors.ckpt") && message.contains("not a valid checkpoint"),
            "{message}"
        );

        train(&args(&out, 20, false), &data, &Device::Cpu, false).unwrap();
        let mut other = args(&out, 20, true);
        other.lr = 1e-4;
        let message = train(&other, &data, &Device::Cpu, false)
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("another run"), "{message}");

        let bytes = std::fs::read(checkpoint_path(&out)).unwrap();
        std::fs::write(checkpoint_path(&out), &bytes[..bytes.len() - 100]).unwrap();
        let message = train(&args(&out, 20, true), &data, &Device::Cpu, false)
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("m.safetensors.ckpt"), "{message}");
    }
}
