//! `bns distill`: learn a BNS solver for one model, one NFE and one guidance scale from
//! ground-truth pairs (`docs/MATH.md` §7).
//!
//! The network is frozen; Adam updates only the solver's times and coefficients, with gradients
//! through the whole n-step sampling loop, on the training split of the pairs. The validation
//! PSNR is checked every `--validate-every` iterations and the best parameters are kept. The
//! solver written is then measured by the runtime (the browser's CPU path) on the validation
//! split and on the test split, which played no part in choosing it; the file records both, and
//! the test figures of its baselines at the same NFE and guidance ([`TestFigures`]).
//!
//! Every `--checkpoint-every` iterations the state goes to `<output>.ckpt` ([`checkpoint`]);
//! `--resume` continues from it and writes the same solver an uninterrupted run writes (but for
//! the seconds and the date).

pub mod checkpoint;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use serde_json::json;
use web_sampler::bns::distillation::loss_to_psnr;
use web_sampler::bns::BatchOrder;
use web_sampler::grid::Grid;
use web_sampler::model::Model;
use web_sampler::solver::{Method, SolverFile};

use crate::bns::BnsParameters;
use crate::checkpoint::{check_checkpoint_minutes, minutes_since};
use crate::compute::ComputeArgs;
use crate::files::file_sha256;
use crate::metrics::{
    check_time_only_baseline, mean_std, solver_psnr, TestFigures, TIME_ONLY_KIND,
};
use crate::network::CandleNetwork;
use crate::pairs::{Pairs, PairsView};
use crate::progress::Progress;
use crate::psnr_cache::PsnrCache;

#[derive(Args, Clone, Debug)]
pub struct DistillArgs {
    /// The model file (.safetensors)
    #[arg(long)]
    pub model: PathBuf,
    /// Ground-truth pairs from `bns truth` for this model
    #[arg(long)]
    pub pairs: PathBuf,
    /// Number of function evaluations of the solver
    #[arg(long)]
    pub nfe: usize,
    /// Guidance scale w (must be the one the pairs were computed with; default: theirs)
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Classical solver the parameters start from: euler, midpoint, heun, rk4, ab2, ab3, dpmpp2m
    /// (the NFE must be a multiple of its stages)
    #[arg(long, default_value = "midpoint")]
    pub init: Method,
    /// Time grid of the initial solver
    #[arg(long, default_value = "uniform")]
    pub grid: Grid,
    /// Learn only the times of the Euler solver (the time-only baseline)
    #[arg(long)]
    pub time_only: bool,
    /// A time-only solver (`--time-only`) of the same model, NFE and guidance, to record as a
    /// baseline measured on the same test pairs
    #[arg(long, value_name = "FILE")]
    pub time_only_baseline: Option<PathBuf>,
    /// Keep the test figures measured in this file and take those it holds (`bns eval` reads
    /// it too): each solver's test PSNR, its init's and every classical solver's at its NFE
    #[arg(long, value_name = "FILE")]
    pub psnr_cache: Option<PathBuf>,
    /// Optimisation iterations
    #[arg(long, default_value_t = 1000)]
    pub iterations: usize,
    /// Pairs per iteration
    #[arg(long, default_value_t = 40)]
    pub batch: usize,
    /// Peak learning rate (cosine decay to 1% of it)
    #[arg(long, default_value_t = 5e-3)]
    pub lr: f64,
    /// Evaluate on the validation pairs every this many iterations
    #[arg(long, default_value_t = 50)]
    pub validate_every: usize,
    /// Seed of the batch order
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Save the state to <output>.ckpt every this many iterations
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Also save it whenever this many minutes have passed since the last save (0: every
    /// iteration), so that a kill loses little however slow an iteration is
    #[arg(long, default_value_t = 10.0, value_name = "MINUTES")]
    pub checkpoint_minutes: f64,
    /// Keep one network evaluation's intermediate values at a time instead of all NFE of them
    /// (each is run again in the backward pass): the same gradient up to rounding, for ~1.2×
    /// the time; the published U-Net at NFE 16, w = 2, batch 16 peaks at 0.29 GB instead of 2.0
    #[arg(long)]
    pub low_memory: bool,
    /// Continue from <output>.ckpt (with the same settings)
    #[arg(long)]
    pub resume: bool,
    /// The solver file to write (JSON)
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

#[derive(Debug)]
pub struct DistillOutcome {
    pub solver: SolverFile,
    pub validation_psnr: f64,
    /// The init's validation PSNR (the classical table itself, on the runtime). The first
    /// candidate is the init's parameters, so the kept parameters' figure is below it only when
    /// those parameters differ from the table (a step raised to `MIN_INCREMENT`, see
    /// [`BnsParameters::from_table`](crate::bns::BnsParameters::from_table)) or candle's
    /// validation PSNR, which chooses, differs from the runtime's in the last digits.
    pub init_validation_psnr: f64,
    /// The solver's and its baselines' figures on the test split.
    pub test: TestFigures,
}

pub fn run(args: DistillArgs) -> Result<()> {
    let device = args.compute.open()?;
    let outcome = distill(&args, &device, true)?;
    let test = &outcome.test;
    let init = outcome.solver.provenance["init"].as_str().unwrap_or("?");
    let mut baselines = vec![];
    if let Some(psnr) = test.init {
        baselines.push(format!("init {init} {psnr:.2}"));
    }
    baselines.push(format!(
        "best classical {} {:.2}",
        test.best_classical.0, test.best_classical.1
    ));
    if let Some(psnr) = test.time_only {
        baselines.push(format!("time-only {psnr:.2}"));
    }
    println!(
        "wrote {}: test PSNR {:.2} ± {:.2} dB (std {:.2}) on {} test pairs at NFE {} ({} dB); \
         validation PSNR {:.2} dB: both the runtime's measurement (the page's CPU path) of the \
         best parameters (iteration {}), chosen on the validation pairs",
        args.output.display(),
        test.solver.mean,
        test.solver.sem,
        test.solver.std,
        test.pairs,
        args.nfe,
        baselines.join(", "),
        outcome.validation_psnr,
        outcome.solver.provenance["best_iteration"],
    );
    Ok(())
}

pub fn distill(args: &DistillArgs, device: &Device, show_progress: bool) -> Result<DistillOutcome> {
    if args.nfe == 0 {
        bail!("--nfe must be at least 1");
    }
    if args.iterations == 0
        || args.batch == 0
        || args.validate_every == 0
        || args.checkpoint_every == 0
    {
        bail!("--iterations, --batch, --validate-every and --checkpoint-every must be at least 1");
    }
    check_checkpoint_minutes(args.checkpoint_minutes)?;
    let model = Model::load(&args.model)?;
    let pairs = Pairs::load(&args.pairs)?;
    pairs.check_for(&model, &args.pairs)?;
    let guidance = pairs.meta.guidance;
    if let Some(w) = args.guidance {
        if w != guidance {
            bail!(
                "--guidance {w}: the pairs in {} were computed with guidance {guidance}; a BNS \
                 solver is distilled for the guidance of its pairs",
                args.pairs.display()
            );
        }
    }
    if args.time_only && args.init != Method::Euler {
        bail!("--time-only learns the times of the Euler solver: use --init euler");
    }
    let test = pairs.test_split(&args.pairs)?;
    let time_only_baseline = match &args.time_only_baseline {
        Some(path) if args.time_only => {
            bail!(
                "--time-only-baseline {}: a time-only solver is not measured against another",
                path.display()
            )
        }
        Some(path) => {
            let file = SolverFile::load(path)?;
            check_time_only_baseline(&file, args.nfe, guidance, Some(model.id())).map_err(
                |problem| {
                    anyhow::anyhow!(
                        "--time-only-baseline {}: {problem} (distill one with --time-only --init \
                         euler)",
                        path.display()
                    )
                },
            )?;
            Some(file)
        }
        None => None,
    };
    let method = args.init;
    let init_table = method
        .build(args.nfe, args.grid)
        .map_err(|e| anyhow::anyhow!("--init {}: {e}", method.name()))?;

    let net = CandleNetwork::from_model(&model, device)?;
    let params = BnsParameters::from_table(&init_table, args.time_only, device)?;
    let train = pairs.train();
    let validation = pairs.validation();
    let batch = args.batch.min(train.len);

    let mut adam = crate::optim::AdamW::new(params.vars(), 0.0)?;
    let run = checkpoint::RunIdentity {
        model_id: model.id().to_string(),
        pairs: serde_json::to_string(&pairs.meta)?,
        nfe: args.nfe,
        init: method.name().into(),
        grid: args.grid.name().into(),
        time_only: args.time_only,
        iterations: args.iterations,
        batch,
        lr: args.lr,
        validate_every: args.validate_every,
        seed: args.seed,
    };
    let checkpoint_file = crate::checkpoint::checkpoint_path(&args.output);
    let mut progress = Progress::new(
        "distill",
        args.iterations as u64,
        "iterations",
        show_progress,
    );
    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let (first, init_validation, mut best, mut recent, seconds_before) = if args.resume {
        let (meta, best_params) =
            checkpoint::load(&checkpoint_file, &run, &params, &mut adam, device)?;
        if show_progress {
            println!(
                "resuming from {} at iteration {}",
                checkpoint_file.display(),
                meta.iteration
            );
        }
        let best = (meta.best_psnr, meta.best_iteration, best_params);
        (
            meta.iteration + 1,
            meta.init_validation,
            best,
            meta.recent,
            meta.seconds,
        )
    } else {
        let init_validation = candle_psnr(&params, &net, &validation, guidance, device)?;
        let best = (init_validation, 0usize, params.snapshot()?);
        (1, init_validation, best, Vec::new(), 0.0)
    };
    // Batches walk through a fresh shuffle of the training pairs each epoch; the order is a
    // function of the seed, so a resumed run replays the batches it has done.
    let mut batches = BatchOrder::new(train.len, args.seed);
    for _ in 1..first {
        batches.next_rows(batch);
    }
    progress.set_position(first as u64 - 1);
    for iteration in first..=args.iterations {
        let rows = batches.next_rows(batch);
        let (x0, truth, labels) = gather(&train, &rows, device)?;
        let (loss, grads) = if args.low_memory {
            params.loss_and_gradient_recomputed(&net, &x0, &truth, &labels, guidance)?
        } else {
            let loss = params.loss(&net, &x0, &truth, &labels, guidance)?;
            let grads = loss.backward()?;
            (loss, grads)
        };
        let value = f64::from(loss.to_scalar::<f32>()?);
        if !value.is_finite() {
            bail!("distillation diverged at iteration {iteration}; try a lower --lr");
        }
        let progress_fraction = iteration as f64 / args.iterations as f64;
        let lr = args.lr
            * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * progress_fraction).cos()));
        adam.step(&grads, lr)?;
        recent.push(loss_to_psnr(value));
        if recent.len() > 20 {
            recent.remove(0);
        }
        if iteration % args.validate_every == 0 || iteration == args.iterations {
            let psnr = candle_psnr(&params, &net, &validation, guidance, device)?;
            if psnr > best.0 {
                best = (psnr, iteration, params.snapshot()?);
            }
        }
        progress.set_position(iteration as u64);
        progress.set_message(format!(
            "train {:.2} dB  best validation {:.2} dB (init {:.2})",
            recent.iter().sum::<f64>() / recent.len() as f64,
            best.0,
            init_validation
        ));
        if (iteration % args.checkpoint_every == 0
            || minutes_since(last_checkpoint) >= args.checkpoint_minutes)
            && iteration < args.iterations
        {
            last_checkpoint = Instant::now();
            let meta = checkpoint::CheckpointMeta {
                run: run.clone(),
                iteration,
                adam_steps: adam.steps,
                init_validation,
                best_psnr: best.0,
                best_iteration: best.1,
                recent: recent.clone(),
                seconds: seconds_before + started.elapsed().as_secs_f64(),
            };
            checkpoint::save(&checkpoint_file, &meta, &params, &adam, &best.2)?;
        }
        #[cfg(test)]
        if STOP_AFTER.with(|s| s.get()) == Some(iteration) {
            bail!("interrupted after iteration {iteration} (test hook)");
        }
    }
    progress.finish();
    params.restore(&best.2)?;
    let seconds = seconds_before + started.elapsed().as_secs_f64();

    // The solver as the runtime runs it, and its baseline, measured by the runtime.
    let table = params.table()?;
    let (validation_psnr, validation_std) =
        mean_std(&solver_psnr(&model, &table, &validation, guidance)?);
    let (init_validation_psnr, _) =
        mean_std(&solver_psnr(&model, &init_table, &validation, guidance)?);
    let kind = if args.time_only {
        TIME_ONLY_KIND
    } else {
        "bns"
    };
    let name = format!("{kind}-{}-w{guidance}", args.nfe);
    let mut solver = SolverFile::new(name, kind, guidance, table);
    solver.model_id = Some(model.id().to_string());
    solver.metrics = BTreeMap::from([
        ("validation_psnr".to_string(), validation_psnr),
        ("validation_psnr_std".to_string(), validation_std),
    ]);
    solver.provenance = BTreeMap::from([
        ("init".to_string(), json!(method.name())),
        ("grid".to_string(), json!(args.grid.name())),
        ("iterations".to_string(), json!(args.iterations)),
        ("best_iteration".to_string(), json!(best.1)),
        ("batch".to_string(), json!(batch)),
        ("lr".to_string(), json!(args.lr)),
        ("train_pairs".to_string(), json!(train.len)),
        ("validation_pairs".to_string(), json!(validation.len)),
        ("pairs_rtol".to_string(), json!(pairs.meta.rtol)),
        (
            "seconds".to_string(),
            json!((seconds * 10.0).round() / 10.0),
        ),
        ("date".to_string(), json!(today())),
    ]);
    let pairs_id = file_sha256(&args.pairs)?;
    let cache = match &args.psnr_cache {
        Some(file) => PsnrCache::open(file, model.id(), &pairs_id, guidance)?,
        None => PsnrCache::none(),
    };
    let test = TestFigures::measure_beside(
        &model,
        &solver,
        &test,
        &pairs_id,
        time_only_baseline.as_ref(),
        &cache,
    )?;
    test.record(&mut solver);
    solver.save(&args.output)?;
    if checkpoint_file.exists() {
        std::fs::remove_file(&checkpoint_file).with_context(|| {
            format!(
                "{}: the solver is written, but its checkpoint could not be removed",
                checkpoint_file.display()
            )
        })?;
    }
    Ok(DistillOutcome {
        solver,
        validation_psnr,
        init_validation_psnr,
        test,
    })
}

/// Mean PSNR of the current parameters on `pairs`, computed with candle.
fn candle_psnr(
    params: &BnsParameters,
    net: &CandleNetwork,
    pairs: &PairsView,
    guidance: f64,
    device: &Device,
) -> Result<f64> {
    let mut total = 0.0;
    const CHUNK: usize = 100;
    for start in (0..pairs.len).step_by(CHUNK) {
        let rows: Vec<usize> = (start..(start + CHUNK).min(pairs.len)).collect();
        let (x0, truth, labels) = gather(pairs, &rows, device)?;
        let x = params.solve_without_graph(net, &x0, &labels, guidance)?;
        let mse = (x - truth)?.sqr()?.mean(1)?.to_vec1::<f32>()?;
        total += mse
            .iter()
            .map(|&m| -10.0 * (f64::from(m) / 4.0).max(1e-20).log10())
            .sum::<f64>();
    }
    Ok(total / pairs.len.max(1) as f64)
}

fn gather(pairs: &PairsView, rows: &[usize], device: &Device) -> Result<(Tensor, Tensor, Tensor)> {
    let dim = pairs.dim;
    let mut x0 = Vec::with_capacity(rows.len() * dim);
    let mut truth = Vec::with_capacity(rows.len() * dim);
    let mut labels = Vec::with_capacity(rows.len());
    for &r in rows {
        x0.extend_from_slice(&pairs.noise[r * dim..(r + 1) * dim]);
        truth.extend_from_slice(&pairs.truth[r * dim..(r + 1) * dim]);
        labels.push(pairs.labels[r]);
    }
    Ok((
        Tensor::from_vec(x0, (rows.len(), dim), device)?,
        Tensor::from_vec(truth, (rows.len(), dim), device)?,
        Tensor::from_vec(labels, rows.len(), device)?,
    ))
}

#[cfg(test)]
thread_local! {
    /// Tests stop a run after this iteration, as an interruption would.
    pub(crate) static STOP_AFTER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock (civil-from-days, H. Hinnant).
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
pub(crate) mod tests;
