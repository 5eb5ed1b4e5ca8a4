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
pub(crate) mod tests {
    use super::*;
    use crate::commands::train::{train, TrainArgs};
    use crate::commands::truth::{compute_pairs, TruthOptions};
    use crate::compute::{ComputeArgs, DeviceKind};
    use crate::data::{self, DataSources, DatasetName, DatasetSource};
    use std::path::Path;
    use web_sampler::scratch::ScratchDir;

    fn compute() -> ComputeArgs {
        ComputeArgs {
            device: DeviceKind::Cpu,
            threads: None,
        }
    }

    /// A tiny checkerboard model (trained briefly, so its flow is smooth in t) and its pairs.
    pub(crate) fn tiny_model_and_pairs(dir: &Path) -> (PathBuf, PathBuf) {
        let model_path = dir.join("m.safetensors");
        let source = DatasetSource::Named(DatasetName::Checkerboard);
        let dataset = data::load(&source, &DataSources::default(), &Default::default(), 1).unwrap();
        let args = TrainArgs {
            dataset: source,
            images: Default::default(),
            steps: 400,
            batch: 256,
            lr: 3e-3,
            weight_decay: 0.0,
            ema: 0.9,
            label_dropout: 0.0,
            network: crate::network_args::NetworkArgs {
                architecture: crate::network_args::ArchitectureName::Mlp,
                width: 48,
                depth: 2,
                time_embedding: 8,
                time_scale: 10.0,
                prediction: web_sampler::model::Prediction::Data,
                class_embedding: 0,
                unet: Default::default(),
            },
            seed: 1,
            checkpoint_every: 1000,
            checkpoint_minutes: 10.0,
            resume: false,
            output: model_path.clone(),
            compute: compute(),
        };
        let model = train(&args, &dataset, &Device::Cpu, false).unwrap().model;
        let options = TruthOptions {
            count: 224,
            validation: 64,
            test: 64,
            seed: 3,
            guidance: 0.0,
            class: None,
            rtol: 1e-6,
            atol: 1e-6,
            batch: 224,
            shard: None,
        };
        let pairs = compute_pairs(&model, &options, &mut |_| {}).unwrap();
        let pairs_path = dir.join("pairs.safetensors");
        pairs.save(&pairs_path).unwrap();
        (model_path, pairs_path)
    }

    pub(crate) fn args(model: &Path, pairs: &Path, output: &Path) -> DistillArgs {
        DistillArgs {
            model: model.to_path_buf(),
            pairs: pairs.to_path_buf(),
            nfe: 4,
            guidance: None,
            init: Method::Euler,
            grid: Grid::Uniform,
            time_only: false,
            time_only_baseline: None,
            psnr_cache: None,
            iterations: 150,
            batch: 48,
            lr: 2e-2,
            validate_every: 25,
            seed: 0,
            checkpoint_every: 100,
            checkpoint_minutes: 10.0,
            low_memory: false,
            resume: false,
            output: output.to_path_buf(),
            compute: compute(),
        }
    }

    /// The distilled solver (written to `out`) beats its init by more than `margin` dB on the
    /// test pairs, and the runtime, reading the file, reproduces the validation and test figures
    /// it records and those of its baselines. Returns the file.
    fn check_gain_and_recorded_psnr(
        what: &str,
        outcome: &DistillOutcome,
        margin: f64,
        out: &Path,
        model: &Model,
        pairs: &Pairs,
    ) -> SolverFile {
        let test = &outcome.test;
        let init = test.init.expect("the init is known");
        eprintln!(
            "{what} NFE 4: BNS {:.2} dB, Euler init {init:.2} dB on the test pairs",
            test.solver.mean
        );
        assert!(
            test.solver.mean > init + margin,
            "BNS {:.2} dB vs Euler init {init:.2} dB",
            test.solver.mean
        );
        assert!(outcome.validation_psnr >= outcome.init_validation_psnr - 1e-9);
        let file = SolverFile::load(out).unwrap();
        let runtime =
            |view: &PairsView| mean_std(&solver_psnr(model, &file.table(), view, 0.0).unwrap());
        let (validation, _) = runtime(&pairs.validation());
        let (test_psnr, test_std) = runtime(&pairs.test());
        for (key, measured) in [
            ("validation_psnr", validation),
            ("test_psnr", test_psnr),
            ("test_psnr_std", test_std),
            ("test_psnr_sem", test_std / (pairs.test().len as f64).sqrt()),
            ("init_test_psnr", init),
        ] {
            assert!(
                (measured - file.metrics[key]).abs() < 1e-9,
                "{key}: {measured} vs {:?}",
                file.metrics
            );
        }
        // The best classical solver at NFE 4 is at least as good as the Euler init, and it is
        // the best of them all, measured again here.
        let best = file.metrics["best_classical_test_psnr"];
        assert!(best >= init, "{best} vs {init}");
        let label = file.provenance["best_classical"].as_str().unwrap();
        let (method, grid) = label.split_once('-').unwrap();
        let table = method
            .parse::<Method>()
            .unwrap()
            .build(4, grid.parse().unwrap())
            .unwrap();
        let (again, _) = mean_std(&solver_psnr(model, &table, &pairs.test(), 0.0).unwrap());
        assert!((again - best).abs() < 1e-9, "{label}: {again} vs {best}");
        assert_eq!(file.provenance["test_pairs"], json!(pairs.test().len));
        file
    }

    #[test]
    fn distilling_beats_the_euler_init_and_the_file_reproduces_its_psnr() {
        let scratch = ScratchDir::new("distill-gain");
        let dir = scratch.path();
        let (model_file, pairs_file) = tiny_model_and_pairs(dir);
        let out = dir.join("bns-4.json");
        let model = Model::load(&model_file).unwrap();
        let pairs = Pairs::load(&pairs_file).unwrap();

        // The time-only baseline also starts from Euler and cannot do worse than it on the
        // validation pairs it was chosen on.
        let time_only_file = dir.join("t.json");
        let mut time_only = args(&model_file, &pairs_file, &time_only_file);
        time_only.time_only = true;
        let t = distill(&time_only, &Device::Cpu, false).unwrap();
        assert!(
            t.validation_psnr >= t.init_validation_psnr - 1e-9,
            "{} vs {}",
            t.validation_psnr,
            t.init_validation_psnr
        );
        assert_eq!(t.solver.kind, "bns-time-only");
        assert_eq!(t.test.time_only, None);

        // A baseline of another NFE is refused before any work.
        let mut wrong = args(&model_file, &pairs_file, &dir.join("wrong.json"));
        wrong.nfe = 6;
        wrong.time_only_baseline = Some(time_only_file.clone());
        let shown = format!("{:#}", distill(&wrong, &Device::Cpu, false).unwrap_err());
        assert!(
            shown.contains("t.json") && shown.contains("at NFE 4") && shown.contains("at NFE 6"),
            "{shown}"
        );
        assert!(!dir.join("wrong.json").exists());

        let mut bns = args(&model_file, &pairs_file, &out);
        bns.time_only_baseline = Some(time_only_file.clone());
        let outcome = distill(&bns, &Device::Cpu, false).unwrap();
        let file = check_gain_and_recorded_psnr("MLP", &outcome, 3.0, &out, &model, &pairs);
        file.check_model(&model, "bns-4.json").unwrap();
        assert_eq!(file.kind, "bns");
        assert_eq!(file.nfe, 4);
        // The baseline's figure is its own test PSNR, as recorded in its own file.
        let baseline = file.metrics["time_only_test_psnr"];
        assert_eq!(Some(baseline), outcome.test.time_only);
        let recorded = SolverFile::load(&time_only_file).unwrap().metrics["test_psnr"];
        assert!(
            (baseline - recorded).abs() < 1e-9,
            "{baseline} vs {recorded}"
        );

        // The best classical solver's figure and the baseline's were taken from the baseline's
        // file (distilled on the same pairs file): they are what measuring all again finds, bit
        // for bit.
        let pairs_id = crate::files::file_sha256(&pairs_file).unwrap();
        assert_eq!(file.provenance["pairs_id"], json!(pairs_id));
        let baseline_file = SolverFile::load(&time_only_file).unwrap();
        let again = TestFigures::measure(
            &model,
            &file,
            &pairs.test(),
            &pairs_id,
            Some(&baseline_file),
            &PsnrCache::none(),
        )
        .unwrap();
        assert_eq!(outcome.test, again);
        // Taken, not measured: a figure changed in the baseline's file comes through, unless
        // the file's figures are of other pairs.
        let mut changed = baseline_file.clone();
        changed
            .metrics
            .insert("best_classical_test_psnr".into(), 99.0);
        let beside = |baseline: &SolverFile, id: &str| {
            TestFigures::measure_beside(
                &model,
                &file,
                &pairs.test(),
                id,
                Some(baseline),
                &PsnrCache::none(),
            )
            .unwrap()
        };
        assert_eq!(beside(&changed, &pairs_id).best_classical.1, 99.0);
        assert_eq!(
            beside(&changed, &"0".repeat(64)),
            TestFigures {
                pairs_id: "0".repeat(64),
                ..again.clone()
            }
        );
    }

    /// Train → truth → distill on a tiny U-Net (the CPU forward for the truth and the PSNR,
    /// candle's for the gradients): the distilled solver beats its Euler init, and the runtime
    /// reproduces the PSNR its file records.
    #[test]
    fn distilling_a_tiny_unet_beats_its_init() {
        let scratch = ScratchDir::new("distill-unet");
        let dir = scratch.path();
        let model_path = dir.join("unet.safetensors");
        let data = crate::commands::train::tests::squares();
        let train_args = crate::commands::train::tests::unet_args(&model_path, 30, false);
        let model = train(&train_args, &data, &Device::Cpu, false)
            .unwrap()
            .model;
        let options = TruthOptions {
            count: 40,
            validation: 12,
            test: 12,
            seed: 3,
            guidance: 0.0,
            class: None,
            rtol: 1e-5,
            atol: 1e-5,
            batch: 40,
            shard: None,
        };
        let pairs = compute_pairs(&model, &options, &mut |_| {}).unwrap();
        let pairs_path = dir.join("pairs.safetensors");
        pairs.save(&pairs_path).unwrap();
        let out = dir.join("bns-4.json");
        let mut a = args(&model_path, &pairs_path, &out);
        a.iterations = 20;
        a.batch = 16;
        a.validate_every = 10;
        let outcome = distill(&a, &Device::Cpu, false).unwrap();
        check_gain_and_recorded_psnr("U-Net", &outcome, 1.0, &out, &model, &pairs);
        // With one evaluation's memory at a time: the same gradients up to rounding, so the
        // same solver up to rounding.
        let low = dir.join("bns-4-low-memory.json");
        let low_memory = distill(
            &DistillArgs {
                low_memory: true,
                output: low.clone(),
                ..a
            },
            &Device::Cpu,
            false,
        )
        .unwrap();
        check_gain_and_recorded_psnr(
            "U-Net, --low-memory",
            &low_memory,
            1.0,
            &low,
            &model,
            &pairs,
        );
        assert!(
            (low_memory.validation_psnr - outcome.validation_psnr).abs() < 0.05,
            "validation PSNR {} with --low-memory, {} without",
            low_memory.validation_psnr,
            outcome.validation_psnr
        );
    }

    #[test]
    fn a_killed_distillation_resumes_to_the_same_solver() {
        let scratch = ScratchDir::new("distill-resume");
        let dir = scratch.path();
        let (model, pairs) = tiny_model_and_pairs(dir);
        let settings = |output: &Path| DistillArgs {
            iterations: 24,
            validate_every: 5,
            checkpoint_every: 7,
            batch: 16,
            ..args(&model, &pairs, output)
        };
        let whole = dir.join("whole.json");
        let uninterrupted = distill(&settings(&whole), &Device::Cpu, false).unwrap();
        assert!(!crate::checkpoint::checkpoint_path(&whole).exists());

        // Killed after iteration 16: the checkpoint of iteration 14 is what is left.
        let output = dir.join("resumed.json");
        STOP_AFTER.with(|s| s.set(Some(16)));
        let stopped = distill(&settings(&output), &Device::Cpu, false);
        STOP_AFTER.with(|s| s.set(None));
        assert!(stopped.is_err() && !output.exists());
        let ckpt = crate::checkpoint::checkpoint_path(&output);
        assert!(ckpt.exists());

        // Other settings are refused by name, and the checkpoint is left alone.
        let other = DistillArgs {
            lr: 1e-3,
            resume: true,
            ..settings(&output)
        };
        let message = format!("{:#}", distill(&other, &Device::Cpu, false).err().unwrap());
        assert!(
            message.contains("resumed.json.ckpt") && message.contains("another run"),
            "{message}"
        );
        let resumed = DistillArgs {
            resume: true,
            ..settings(&output)
        };
        let outcome = distill(&resumed, &Device::Cpu, false).unwrap();
        assert!(!ckpt.exists());
        let (a, b) = (&outcome.solver, &uninterrupted.solver);
        assert_eq!(
            (&a.times, &a.a, &a.b),
            (&b.times, &b.a, &b.b),
            "the same table, bit for bit"
        );
        assert_eq!(a.metrics, b.metrics);
        assert_eq!(
            a.provenance["best_iteration"],
            b.provenance["best_iteration"]
        );

        // With iterations far apart (every 1,000) but minutes not (0: after every iteration),
        // a run killed after iteration 11 leaves its checkpoint of iteration 11, and resumes
        // to the same solver too.
        let by_minutes = dir.join("by-minutes.json");
        let settings = |resume| DistillArgs {
            checkpoint_every: 1000,
            checkpoint_minutes: 0.0,
            low_memory: false,
            resume,
            ..settings(&by_minutes)
        };
        STOP_AFTER.with(|s| s.set(Some(11)));
        assert!(distill(&settings(false), &Device::Cpu, false).is_err());
        STOP_AFTER.with(|s| s.set(None));
        assert!(crate::checkpoint::checkpoint_path(&by_minutes).exists());
        let c = distill(&settings(true), &Device::Cpu, false)
            .unwrap()
            .solver;
        assert_eq!((&c.times, &c.a, &c.b), (&b.times, &b.a, &b.b));
        assert_eq!(c.metrics, b.metrics);

        // A damaged checkpoint is refused, naming the file.
        std::fs::write(&ckpt, b"not a checkpoint").unwrap();
        let message = format!(
            "{:#}",
            distill(&resumed, &Device::Cpu, false).err().unwrap()
        );
        assert!(
            message.contains("resumed.json.ckpt") && message.contains("not a valid"),
            "{message}"
        );
    }

    #[test]
    fn bad_requests_are_refused_and_leave_the_output_alone() {
        let scratch = ScratchDir::new("distill-bad");
        let dir = scratch.path();
        let (model, pairs) = tiny_model_and_pairs(dir);
        let out = dir.join("keep.json");
        std::fs::write(&out, "previous").unwrap();
        let message = |a: DistillArgs| distill(&a, &Device::Cpu, false).err().unwrap().to_string();

        let mut a = args(&model, &pairs, &out);
        a.nfe = 0;
        assert!(message(a).contains("--nfe must be at least 1"));

        let mut a = args(&model, &pairs, &out);
        a.guidance = Some(2.0);
        let m = message(a);
        assert!(
            m.contains("guidance") && m.contains("pairs.safetensors"),
            "{m}"
        );

        let mut a = args(&model, &pairs, &out);
        a.time_only = true;
        a.init = Method::Midpoint;
        assert!(message(a).contains("--init euler"));

        let mut a = args(&model, &pairs, &out);
        a.init = Method::Midpoint;
        a.nfe = 5;
        assert!(message(a).contains("multiple of 2"));

        // Pairs computed for another model.
        let other = dir.join("other.safetensors");
        let spec = Model::load(&model).unwrap().spec().clone();
        Model::random(spec, 99).unwrap().save(&other).unwrap();
        let m = message(args(&other, &pairs, &out));
        assert!(m.contains("pairs.safetensors"), "{m}");

        // Pairs of this model whose labels it has no class for (the tiny model is
        // unconditional: its only label is its null class 0).
        let mut tampered = Pairs::load(&pairs).unwrap();
        for label in [1, u32::MAX] {
            tampered.labels[7] = label;
            let bad = dir.join("bad-labels.safetensors");
            tampered.save(&bad).unwrap();
            let m = message(args(&model, &bad, &out));
            assert!(
                m.contains("bad-labels.safetensors")
                    && m.contains(&format!("pair 7 has label {label}")),
                "{m}"
            );
        }

        assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous");
    }
}
