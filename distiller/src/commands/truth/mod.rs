//! `bns truth`: the ground truth for distillation — solve the model's (guided) flow ODE from
//! seeded noise at t = 0 to t = 1 with adaptive Dormand–Prince 5(4) at tight tolerances, and
//! save the (noise, truth) pairs, split into training, validation and test rows
//! (`docs/MATH.md` §6).
//!
//! Pair `i` starts from row `i` of `gaussian_batch(seed, count, D)`, so a pair's noise depends
//! only on the seed and `i`. Rows are solved in batches of `--batch` that step together (one NFE
//! is one guided velocity evaluation of the whole batch; the step size is controlled by the
//! worst row, see [`crate::dopri5`]). The reported mean NFE weights each batch's NFE by its rows.
//!
//! With `--device cuda` the velocity is the model's candle network on the GPU and DOPRI5's state
//! stays there ([`crate::dopri5::integrate_tensor`]); the default is the runtime's CPU network
//! with DOPRI5 on the host in f64, the reference. The two differ by the networks' f32 rounding
//! (their outputs agree to ~1e-6), far inside DOPRI5's tolerance.
//!
//! `--shard K/N` solves only the K-th of N parts, in whole batches ([`crate::shard`]);
//! `bns pairs merge` joins the parts into the file one run makes.
//!
//! Long runs are resumable: after each batch the rows done so far go to `<output>.partial`
//! ([`Partial`]: the pairs file's encoding, with the arguments in its metadata).
//! A rerun with the same arguments continues from it; the batches are the same, so the result is
//! identical to an uninterrupted run. When done, the output is written and the partial removed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use serde::{Deserialize, Serialize};
use web_sampler::model::Model;
use web_sampler::noise::gaussian_batch;
use web_sampler::sample::{check_request, guided_velocity, SampleRequest};

use crate::compute::ComputeArgs;
use crate::dopri5::{integrate_rows, integrate_tensor, Tolerance, MAX_STEPS};
use crate::network::CandleNetwork;
use crate::pairs::{Pairs, PairsMeta, Partial, Tensors, PAIRS_FORMAT_VERSION};
use crate::progress::Progress;
use crate::shard::{Shard, ShardMeta};

#[derive(Args)]
pub struct TruthArgs {
    /// The model file (.safetensors)
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    options: TruthOptions,
    #[command(flatten)]
    compute: ComputeArgs,
    /// Output pairs file (.safetensors); progress is kept in <output>.partial until done
    #[arg(short, long)]
    output: PathBuf,
}

/// What to compute: everything that determines the pairs (besides the model). The flags of
/// `bns truth`, and the arguments recorded in a partial-progress file (serde names unchanged).
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthOptions {
    /// Number of pairs, the three splits together
    #[arg(long, default_value_t = 1152)]
    pub count: usize,
    /// Pairs held out for validation (after the training pairs): distillation keeps the
    /// parameters that do best on them
    #[arg(long, default_value_t = 128)]
    pub validation: usize,
    /// Pairs held out for testing (the last ones): the PSNR that solvers report
    #[arg(long, default_value_t = 512)]
    #[serde(default)]
    pub test: usize,
    /// Seed of the noise: pair i starts from row i of the seeded Gaussian batch
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Guidance scale w (needs a class-conditional model; 0 = unguided)
    #[arg(long, default_value_t = 0.0)]
    pub guidance: f64,
    /// Class of every pair (default: pair i gets class i mod K; the null class K = unconditional)
    #[arg(long)]
    pub class: Option<u32>,
    /// DOPRI5's relative tolerance
    #[arg(long, default_value_t = 1e-5)]
    pub rtol: f64,
    /// DOPRI5's absolute tolerance
    #[arg(long, default_value_t = 1e-5)]
    pub atol: f64,
    /// Rows integrated together (one velocity call per stage for the whole batch)
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Solve only part K of N (whole batches; join the parts with `bns pairs merge`)
    #[arg(long, value_name = "K/N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

impl TruthOptions {
    /// The pairs this run solves: all of them, or its shard's.
    fn rows(&self) -> std::ops::Range<usize> {
        match self.shard {
            Some(shard) => shard.rows(self.count, self.batch).unwrap_or(0..0),
            None => 0..self.count,
        }
    }
}

/// Where the velocity is evaluated and the ODE stepped.
pub enum Field<'v> {
    /// The runtime's CPU network, DOPRI5 on the host in f64 (the reference).
    Runtime(&'v mut Velocity<'v>),
    /// The model's candle network on a device, DOPRI5's state a tensor there.
    Device(&'v CandleNetwork, Device),
}

/// What [`compute_pairs`] and [`write_pairs`] report as they go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TruthEvent {
    /// Continuing from a partial-progress file that holds `done` pairs.
    Resuming { done: usize },
    /// A batch finished: `done` of `count` pairs (of this shard, if one), the batch took
    /// `batch_nfe` evaluations.
    Batch {
        done: usize,
        count: usize,
        batch_nfe: usize,
    },
}

/// The rows done so far.
#[derive(Clone, Debug, Default, PartialEq)]
struct Done {
    tensors: Tensors,
    nfe_rows: u64,
    seconds: f64,
}

impl Done {
    fn rows(&self) -> usize {
        self.tensors.labels.len()
    }
}

/// A velocity evaluation `ũ(x, t)` of a batch with its labels (one NFE).
pub type Velocity<'a> = dyn FnMut(&[f32], f64, &[u32]) -> web_sampler::Result<Vec<f32>> + 'a;

pub fn run(args: TruthArgs) -> Result<()> {
    let mut model = Model::load(&args.model)?;
    // The runtime's forward splits a batch's rows across --threads (the same bits for any count).
    model.set_threads(args.compute.thread_count()?);
    let options = &args.options;
    check_options(&model, options).with_context(|| args.model.display().to_string())?;
    let device = args.compute.open()?;
    let network = match device {
        Device::Cpu => None,
        _ => Some(CandleNetwork::from_model(&model, &device)?),
    };
    let mut runtime =
        |x: &[f32], t: f64, c: &[u32]| guided_velocity(&model, x, t, c, options.guidance);
    let mut field = match &network {
        Some(network) => Field::Device(network, device.clone()),
        None => Field::Runtime(&mut runtime),
    };
    let mut bar = Progress::new("truth", options.rows().len() as u64, "pairs", true);
    let pairs = write_with(
        &model,
        options,
        &args.output,
        &mut field,
        &mut |event| match event {
            TruthEvent::Resuming { done } => {
                println!(
                    "resuming from {done} pairs ({})",
                    partial_path(&args.output).display()
                );
                bar.set_position(done as u64);
            }
            TruthEvent::Batch {
                done, batch_nfe, ..
            } => {
                bar.set_message(format!("last batch {batch_nfe} NFE"));
                bar.set_position(done as u64);
            }
        },
    );
    bar.finish();
    let pairs = pairs?;
    let meta = &pairs.meta;
    let what = match &meta.shard {
        Some(shard) => format!(
            "shard {}/{}: pairs {}..{} of {}",
            shard.index,
            shard.of,
            shard.start,
            shard.end,
            meta.train + meta.validation + meta.test
        ),
        None => format!(
            "{} pairs ({} training, {} validation, {} test)",
            pairs.len(),
            meta.train,
            meta.validation,
            meta.test
        ),
    };
    println!(
        "wrote {what} to {}: mean NFE {:.1} (rtol {:e}, atol {:e}), {:.1} s on {}",
        args.output.display(),
        meta.mean_nfe,
        meta.rtol,
        meta.atol,
        meta.seconds,
        args.compute.device.name()
    );
    Ok(())
}

/// Computes the pairs in memory (no files). `progress` hears of every batch.
pub fn compute_pairs(
    model: &Model,
    options: &TruthOptions,
    progress: &mut dyn FnMut(TruthEvent),
) -> Result<Pairs> {
    let mut velocity =
        |x: &[f32], t: f64, c: &[u32]| guided_velocity(model, x, t, c, options.guidance);
    compute_with(model, options, &mut Field::Runtime(&mut velocity), progress)
}

/// [`compute_pairs`] with the field given (tests count its calls, or run it on a device).
pub fn compute_with(
    model: &Model,
    options: &TruthOptions,
    field: &mut Field,
    progress: &mut dyn FnMut(TruthEvent),
) -> Result<Pairs> {
    check_options(model, options)?;
    let (noise, labels) = inputs(model, options);
    let mut done = Done::default();
    solve(
        model,
        options,
        &noise,
        &labels,
        &mut done,
        field,
        &mut |_| Ok(()),
        progress,
    )?;
    Ok(finish(model, options, done))
}

/// Computes the pairs and writes them to `output`, resumably: progress is kept in
/// `<output>.partial` after each batch, and a partial from the same arguments is continued.
/// A partial from other arguments is refused (never overwritten).
pub fn write_pairs(
    model: &Model,
    options: &TruthOptions,
    output: &Path,
    progress: &mut dyn FnMut(TruthEvent),
) -> Result<Pairs> {
    let mut velocity =
        |x: &[f32], t: f64, c: &[u32]| guided_velocity(model, x, t, c, options.guidance);
    write_with(
        model,
        options,
        output,
        &mut Field::Runtime(&mut velocity),
        progress,
    )
}

/// [`write_pairs`] with the field given (tests interrupt it).
fn write_with(
    model: &Model,
    options: &TruthOptions,
    output: &Path,
    field: &mut Field,
    progress: &mut dyn FnMut(TruthEvent),
) -> Result<Pairs> {
    check_options(model, options)?;
    // Refuse an output that cannot be written before any work is done.
    if output.file_name().is_none() || output.is_dir() {
        bail!("{}: the output path names no file", output.display());
    }
    let folder = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!(
            "{}: cannot write the output: the folder {} does not exist",
            output.display(),
            folder.display()
        );
    }
    let partial = partial_path(output);
    let (noise, labels) = inputs(model, options);
    let mut done = match read_partial(&partial, model, options, &noise, &labels)? {
        Some(done) => {
            progress(TruthEvent::Resuming { done: done.rows() });
            done
        }
        None => Done::default(),
    };
    let count = options.rows().len();
    solve(
        model,
        options,
        &noise,
        &labels,
        &mut done,
        field,
        // After the last batch the output itself is written next.
        &mut |done| {
            if done.rows() < count {
                write_partial(&partial, model, options, done)
            } else {
                Ok(())
            }
        },
        progress,
    )?;
    let pairs = finish(model, options, done);
    pairs.save(output)?;
    if partial.exists() {
        std::fs::remove_file(&partial).map_err(|e| {
            anyhow!(
                "{}: the pairs are written, but the partial-progress file could not be removed: \
                 {e}",
                partial.display()
            )
        })?;
    }
    Ok(pairs)
}

/// `<output>.partial`, next to the output.
pub fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    output.with_file_name(name)
}

/// Refuses options that cannot give a pairs file for `model`. The batch, guidance and class are
/// those of a sample request and are checked by the runtime's [`check_request`], whose problems
/// begin with the field's name (`batch`, `guidance`, `class`): with `--` in front they name the
/// flag.
fn check_options(model: &Model, options: &TruthOptions) -> Result<()> {
    let spec = model.spec();
    let TruthOptions {
        count,
        validation,
        test,
        ..
    } = *options;
    if validation == 0 || test == 0 || validation.saturating_add(test) >= count {
        bail!(
            "--validation and --test must be at least 1 and leave training pairs out of --count \
             ({count}), got --validation {validation} and --test {test}"
        );
    }
    if let Some(shard) = options.shard {
        if shard.rows(count, options.batch.max(1)).is_none() {
            let batches = count.div_ceil(options.batch.max(1));
            bail!(
                "--shard {shard}: {count} pairs in batches of {} make only {batches} batch{}, \
                 fewer than {} shards",
                options.batch,
                if batches == 1 { "" } else { "es" },
                shard.of
            );
        }
    }
    for (name, v) in [("--rtol", options.rtol), ("--atol", options.atol)] {
        if !(v.is_finite() && v > 0.0) {
            bail!("{name} must be a positive number, got {v}");
        }
    }
    // Stricter than a sample request, which lets an unconditional model take its null class.
    if let (false, Some(c)) = (spec.is_conditional(), options.class) {
        bail!("--class {c} needs a class-conditional model; this model is unconditional");
    }
    let request = SampleRequest {
        seed: options.seed,
        batch: options.batch,
        class: options.class,
        guidance: options.guidance,
        first_row: 0,
    };
    check_request(model, &request).map_err(|e| anyhow!("--{}", e.problem))?;
    if count
        .checked_mul(spec.data_dim())
        .is_none_or(|n| n > isize::MAX as usize / 8)
    {
        bail!(
            "--count {count} is too large for samples of {} values",
            spec.data_dim()
        );
    }
    Ok(())
}

/// The noise `[rows, D]` and the label of every pair this run solves (all, or its shard's).
fn inputs(model: &Model, options: &TruthOptions) -> (Vec<f32>, Vec<u32>) {
    let spec = model.spec();
    let dim = spec.data_dim();
    let rows = options.rows();
    // Row i depends only on the seed and i: the shard's rows of the whole run's noise.
    let mut noise = gaussian_batch(options.seed, rows.end, dim);
    noise.drain(..rows.start * dim);
    let labels = match (spec.is_conditional(), options.class) {
        (false, _) => vec![spec.null_class(); rows.len()],
        (true, Some(c)) => vec![c; rows.len()],
        (true, None) => {
            let k = spec.num_classes as u64;
            rows.map(|i| (i as u64 % k) as u32).collect()
        }
    };
    (noise, labels)
}

/// Solves the batches after the rows in `done`, appending to it; `after_batch` runs after each.
#[allow(clippy::too_many_arguments)]
fn solve(
    model: &Model,
    options: &TruthOptions,
    noise: &[f32],
    labels: &[u32],
    done: &mut Done,
    field: &mut Field,
    after_batch: &mut dyn FnMut(&Done) -> Result<()>,
    progress: &mut dyn FnMut(TruthEvent),
) -> Result<()> {
    let dim = model.spec().data_dim();
    let tol = Tolerance {
        rtol: options.rtol,
        atol: options.atol,
    };
    let started = Instant::now();
    let seconds_before = done.seconds;
    // Local row r is pair first + r of the run.
    let first = options.rows().start;
    let count = labels.len();
    while done.rows() < count {
        let start = done.rows();
        let end = (start + options.batch).min(count);
        let batch_labels = &labels[start..end];
        let x0 = &noise[start * dim..end * dim];
        let (truth, nfe) = solve_batch(field, x0, dim, batch_labels, options.guidance, tol)
            .with_context(|| format!("solving pairs {}..{}", first + start, first + end))?;
        if let Some(i) = truth.iter().position(|v| !v.is_finite()) {
            bail!(
                "solving pairs {}..{}: pair {} leaves the range of f32",
                first + start,
                first + end,
                first + start + i / dim
            );
        }
        done.tensors.truth.extend_from_slice(&truth);
        done.tensors
            .noise
            .extend_from_slice(&noise[start * dim..end * dim]);
        done.tensors.labels.extend_from_slice(batch_labels);
        done.nfe_rows += (nfe as u64) * (end - start) as u64;
        done.seconds = seconds_before + started.elapsed().as_secs_f64();
        after_batch(done)?;
        progress(TruthEvent::Batch {
            done: end,
            count,
            batch_nfe: nfe,
        });
    }
    Ok(())
}

/// DOPRI5 from `x0` (rows of `dim`) to t = 1 in `field`: the truth in f32 and the NFE.
fn solve_batch(
    field: &mut Field,
    x0: &[f32],
    dim: usize,
    labels: &[u32],
    guidance: f64,
    tol: Tolerance,
) -> Result<(Vec<f32>, usize)> {
    match field {
        Field::Runtime(velocity) => {
            let x0: Vec<f64> = x0.iter().map(|&v| f64::from(v)).collect();
            let solution = integrate_rows(&x0, dim, 0.0, 1.0, tol, MAX_STEPS, |x, t| {
                let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                velocity(&x32, t, labels).map(|u| u.into_iter().map(f64::from).collect())
            })?;
            Ok((solution.x.iter().map(|&v| v as f32).collect(), solution.nfe))
        }
        Field::Device(network, device) => {
            let rows = labels.len();
            let x0 = Tensor::from_slice(x0, (rows, dim), device)?.to_dtype(DType::F64)?;
            let classes = Tensor::from_slice(labels, rows, device)?;
            let solution = integrate_tensor(&x0, 0.0, 1.0, tol, MAX_STEPS, |x, t| {
                let t = Tensor::new(t as f32, device)?;
                network
                    .guided_velocity(&x.to_dtype(DType::F32)?, &t, &classes, guidance)
                    .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?
                    .to_dtype(DType::F64)
            })?;
            let truth = solution.x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            Ok((truth, solution.nfe))
        }
    }
}

/// The pairs file's contents once every row is done.
fn finish(model: &Model, options: &TruthOptions, done: Done) -> Pairs {
    let spec = model.spec();
    let rows = options.rows();
    let shard = options.shard.map(|shard| ShardMeta {
        index: shard.index,
        of: shard.of,
        start: rows.start,
        end: rows.end,
        batch: options.batch,
        class: options.class,
    });
    Pairs {
        meta: PairsMeta {
            format_version: PAIRS_FORMAT_VERSION,
            model_id: model.id().to_string(),
            data_shape: spec.data_shape.clone(),
            guidance: options.guidance,
            rtol: options.rtol,
            atol: options.atol,
            mean_nfe: done.nfe_rows as f64 / done.rows().max(1) as f64,
            seed: options.seed,
            train: options.count - options.validation - options.test,
            validation: options.validation,
            test: options.test,
            seconds: done.seconds,
            shard,
        },
        noise: done.tensors.noise,
        truth: done.tensors.truth,
        labels: done.tensors.labels,
    }
}

/// Writes the rows done so far with the arguments (temporary file + rename).
fn write_partial(path: &Path, model: &Model, options: &TruthOptions, done: &Done) -> Result<()> {
    Partial {
        model_id: model.id().to_string(),
        data_shape: model.spec().data_shape.clone(),
        options: options.clone(),
        tensors: done.tensors.clone(),
        nfe_rows: done.nfe_rows,
        seconds: done.seconds,
    }
    .save(path)
}

/// `--class` as given: a class, or the default cycle through the classes.
fn class_text(class: Option<u32>) -> String {
    class.map_or_else(|| "(cycle)".into(), |c| c.to_string())
}

/// The progress in `path` if there is such a file; an error if it cannot be read, is from other
/// arguments or another model, or does not hold the rows these arguments give.
fn read_partial(
    path: &Path,
    model: &Model,
    options: &TruthOptions,
    noise: &[f32],
    labels: &[u32],
) -> Result<Option<Done>> {
    let Some(partial) = Partial::<TruthOptions>::load(path)? else {
        return Ok(None);
    };
    let origin = path.display();
    let restart = "delete it to start over";
    let dim = model.spec().data_dim();
    let mut differences = Vec::new();
    if partial.model_id != model.id() {
        differences.push(format!(
            "model {} there, {} here",
            partial.model_id,
            model.id()
        ));
    }
    let (there, here) = (&partial.options, options);
    let shard_text = |shard: Option<Shard>| shard.map_or_else(|| "(all)".into(), |s| s.to_string());
    let fields: [(&str, String, String); 10] = [
        ("--count", there.count.to_string(), here.count.to_string()),
        (
            "--validation",
            there.validation.to_string(),
            here.validation.to_string(),
        ),
        ("--test", there.test.to_string(), here.test.to_string()),
        ("--seed", there.seed.to_string(), here.seed.to_string()),
        (
            "--guidance",
            there.guidance.to_string(),
            here.guidance.to_string(),
        ),
        ("--class", class_text(there.class), class_text(here.class)),
        ("--rtol", there.rtol.to_string(), here.rtol.to_string()),
        ("--atol", there.atol.to_string(), here.atol.to_string()),
        ("--batch", there.batch.to_string(), here.batch.to_string()),
        ("--shard", shard_text(there.shard), shard_text(here.shard)),
    ];
    for (name, a, b) in fields {
        if a != b {
            differences.push(format!("{name} {a} there, {b} here"));
        }
    }
    if !differences.is_empty() {
        bail!(
            "{origin}: holds progress from a run with other arguments ({}); {restart}, or rerun \
             with the same arguments to continue it",
            differences.join("; ")
        );
    }
    let rows = partial.rows();
    let count = labels.len();
    let at_batch_boundary = rows % options.batch == 0 || rows == count;
    if rows > count || !at_batch_boundary || partial.data_shape != model.spec().data_shape {
        bail!(
            "{origin}: inconsistent progress ({rows} pairs done of {count} in batches of {}); \
             {restart}",
            options.batch
        );
    }
    if partial.tensors.noise != noise[..rows * dim] || partial.tensors.labels != labels[..rows] {
        bail!(
            "{origin}: its noise or labels are not those of seed {} (corrupt?); {restart}",
            options.seed
        );
    }
    if !(partial.seconds.is_finite() && partial.seconds >= 0.0) {
        bail!("{origin}: seconds is {}; {restart}", partial.seconds);
    }
    Ok(Some(Done {
        nfe_rows: partial.nfe_rows,
        seconds: partial.seconds,
        tensors: partial.tensors,
    }))
}

#[cfg(test)]
mod tests;
