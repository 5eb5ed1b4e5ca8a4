//! `bns pipeline`: one command from a dataset to a model with BNS solvers on the site. It runs
//! train → truth → distill (every NFE × every guidance) → eval → publish by calling those
//! commands' entry points, with the settings that suit the data's kind ([`KindDefaults`]: those
//! that made the published models, docs/RESULTS.md).
//!
//! Every stage is resumable, like `docs/reproduce.sh`: a finished output is skipped ("skip …
//! (exists)"), an interrupted training or distillation continues from its checkpoint and an
//! interrupted ground truth or evaluation from its partial file. Each stage's arguments are parsed by the
//! stage's own flags (so its defaults are the command's), and printed as the `bns` command that
//! reruns it alone.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, FromArgMatches};
use web_sampler::manifest::{self, Manifest};
use web_sampler::model::{Model, Prediction};
use web_sampler::sample::is_image;
use web_sampler::solver::Method;

use crate::commands::{distill, eval, publish, train, truth};
use crate::compute::ComputeArgs;
use crate::data::{self, DataSources, DatasetSource, ImageFolderOptions, DATASET_HELP};
use crate::network_args::{ArchitectureName, NetworkArgs, NetworkFlags};
use stages::*;

/// The two kinds of data, which want different networks and budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// 2-D points (`[2, 1, 1]`): the toy distributions.
    Points,
    /// Images (`[C, H, W]` with H·W > 1).
    Images,
}

/// What the pipeline runs with unless a flag says otherwise, per [`DataKind`].
#[derive(Clone, Debug, PartialEq)]
pub struct KindDefaults {
    /// The network (`bns train`'s network flags).
    pub network: NetworkArgs,
    /// Training batch and steps.
    pub batch: usize,
    pub steps: u64,
    /// Ground-truth pairs, and how many of them are held out for validation and for testing.
    pub truth_count: usize,
    pub truth_validation: usize,
    pub truth_test: usize,
    /// Distillation iterations per solver.
    pub iterations: usize,
}

impl KindDefaults {
    /// The settings of the published checkerboard (points) and Fashion-MNIST (images) models:
    /// docs/RESULTS.md, "The published models" and "Ground truth and distillation".
    pub fn of(kind: DataKind) -> KindDefaults {
        match kind {
            DataKind::Points => KindDefaults {
                network: NetworkArgs {
                    prediction: Prediction::Velocity,
                    width: 256,
                    depth: 3,
                    ..NetworkArgs::default()
                },
                batch: 512,
                steps: 10_000,
                truth_count: 1152,
                truth_validation: 128,
                truth_test: 512,
                iterations: 600,
            },
            DataKind::Images => KindDefaults {
                network: NetworkArgs {
                    prediction: Prediction::Data,
                    width: 512,
                    depth: 3,
                    ..NetworkArgs::default()
                },
                batch: 128,
                steps: 10_000,
                truth_count: 1152,
                truth_validation: 128,
                truth_test: 512,
                iterations: 600,
            },
        }
    }
}

/// Seeds of the stages (those of docs/reproduce.sh): the training run's, and the ground truth's
/// noise, which differs from it so the pairs do not start from the training run's noise.
const TRAIN_SEED: u64 = 0;
const TRUTH_SEED: u64 = 1;
/// DOPRI5's tolerances for the ground truth (relative and absolute).
const TRUTH_TOLERANCE: &str = "1e-5";
/// The guidance scales distilled for a class-conditional model when `--guidance` is not given.
const CONDITIONAL_GUIDANCE: [f64; 2] = [0.0, 2.0];

/// The kinds of data, in the order `--help` lists their defaults, with their names there.
const KINDS: [(DataKind, &str); 2] = [
    (DataKind::Points, "2-D points"),
    (DataKind::Images, "images"),
];

/// `--help`'s text after the flags: the defaults of each kind, from [`KindDefaults`].
fn after_help() -> String {
    let mut text = String::from(
        "Defaults by the data's kind (those of the published models, docs/RESULTS.md):\n",
    );
    for (kind, name) in KINDS {
        let d = KindDefaults::of(kind);
        let network = &d.network;
        text += &format!(
            "  {:<12}--prediction {} (MLP: --width {} --depth {}) --batch {} --steps {},\n\
             {:14}{} ground-truth pairs ({} for validation, {} for testing), {} iterations\n\
             {:14}per solver\n",
            format!("{name}:"),
            network.prediction.name(),
            network.width,
            network.depth,
            d.batch,
            d.steps,
            "",
            d.truth_count,
            d.truth_validation,
            d.truth_test,
            d.iterations,
            "",
        );
    }
    text + "\
At every NFE and guidance the time-only baseline (Euler's times learned, half the iterations) is
distilled first, and the BNS solver records its test PSNR beside its own (--no-time-only skips
it).

Work files go to --out (default runs/<name>): model.safetensors, pairs-w<W>.safetensors,
bns-<NFE>-w<W>.json, timeonly-<NFE>-w<W>.json, eval-w<W>/ and times.log. Run the same command again to continue after an
interruption: finished stages are skipped, training and distillation resume from their
checkpoints, ground truth and evaluation from their partial files."
}

/// `help` with the default of `value` by the data's kind: "(default: 512 for 2-D points, 128
/// for images)", or one value when the kinds agree.
fn by_kind<T: ToString + PartialEq>(help: &str, value: fn(&KindDefaults) -> T) -> String {
    let values = KINDS.map(|(kind, name)| (value(&KindDefaults::of(kind)), name));
    if values.iter().all(|(v, _)| *v == values[0].0) {
        return format!("{help} (default: {})", values[0].0.to_string());
    }
    let each: Vec<String> = values
        .iter()
        .map(|(v, name)| format!("{} for {name}", v.to_string()))
        .collect();
    format!("{help} (default: {})", each.join(", "))
}

/// The network flags whose default depends on the data's kind.
fn network_flags_by_kind() -> Vec<&'static str> {
    let [(first, _), (second, _)] = KINDS;
    KindDefaults::of(first)
        .network
        .differing_flags(&KindDefaults::of(second).network)
}

#[derive(Args, Clone, Debug)]
#[command(
    after_help = after_help(),
    mut_args(NetworkArgs::default().defaults_in_help(network_flags_by_kind()))
)]
pub struct PipelineArgs {
    /// Training data (as `bns train --dataset`)
    #[arg(long, help = DATASET_HELP, value_name = "NAME|images:DIR")]
    pub dataset: DatasetSource,
    #[command(flatten)]
    pub images: ImageFolderOptions,
    /// Name of the model on the site (letters, digits, '-', '_'); also names the work folder
    #[arg(long)]
    pub name: String,
    /// Title shown on the page (default: the dataset, conditional or not, and the network)
    #[arg(long)]
    pub title: Option<String>,
    /// NFEs of the distilled BNS solvers (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "4,6,8,10,12,16")]
    pub nfe: Vec<usize>,
    /// Guidance scales to distill for (comma-separated; only a class-conditional model takes
    /// w ≠ 0). Default: 0,2 for a class-conditional model, 0 for an unconditional one
    #[arg(long, value_delimiter = ',')]
    pub guidance: Option<Vec<f64>>,
    /// Work folder (default: runs/<name>)
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, help = by_kind("Training steps", |d| d.steps))]
    pub steps: Option<u64>,
    #[arg(long, help = by_kind("Training batch", |d| d.batch))]
    pub batch: Option<usize>,
    /// Peak learning rate of the training (default: `bns train`'s)
    #[arg(long)]
    pub train_lr: Option<f64>,
    // The network: `bns train`'s flags, with the defaults of the data's kind.
    #[command(flatten)]
    pub network: NetworkFlags,
    #[arg(long, help = by_kind("Ground-truth pairs per guidance, the three splits together", |d| d.truth_count))]
    pub truth_count: Option<usize>,
    #[arg(long, help = by_kind("Ground-truth pairs held out for validation, which choose each solver's kept parameters", |d| d.truth_validation))]
    pub truth_validation: Option<usize>,
    #[arg(long, help = by_kind("Ground-truth pairs held out for testing, on which every figure is measured", |d| d.truth_test))]
    pub truth_test: Option<usize>,
    #[arg(long, help = by_kind("Distillation iterations per BNS solver", |d| d.iterations))]
    pub iterations: Option<usize>,
    /// Classical solver the BNS solvers start from (as `bns distill --init`)
    #[arg(long, default_value = "midpoint")]
    pub init: Method,
    /// Peak learning rate of the BNS solvers' distillation: one for every NFE, or one per NFE
    /// of --nfe, in its order (comma-separated; default: `bns distill`'s)
    #[arg(long, value_delimiter = ',')]
    pub distill_lr: Option<Vec<f64>>,
    /// Pairs per distillation iteration, for the BNS solvers and the time-only baselines
    /// (default: `bns distill`'s)
    #[arg(long)]
    pub distill_batch: Option<usize>,
    /// Distill with `bns distill --low-memory` (one network evaluation's intermediate values
    /// at a time: a fraction of the memory for ~1.2× the time)
    #[arg(long)]
    pub distill_low_memory: bool,
    /// Distill no time-only baseline (by default one is distilled, with half the iterations, at
    /// every NFE and guidance before the BNS solver, which records its test PSNR; the baselines
    /// are in the evaluation's tables, not published)
    #[arg(long)]
    pub no_time_only: bool,
    /// Generated samples per solver for the evaluation's FD / sliced Wasserstein (default:
    /// `bns eval`'s; 0 skips them)
    #[arg(long)]
    pub fd_samples: Option<usize>,
    /// NFE values at which the evaluation measures FD / sliced Wasserstein and draws sample
    /// grids (comma-separated; default: `bns eval`'s, 8 and 16); each costs every solver's
    /// samples again, hours on a U-Net on a CPU
    #[arg(long, value_delimiter = ',')]
    pub fd_nfe: Option<Vec<usize>>,
    /// The site folder the model is published to
    #[arg(long, default_value = "www")]
    pub site: PathBuf,
    /// Make this the model the page opens with
    #[arg(long)]
    pub default: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// The settings of one pipeline run, resolved from the flags and the data.
struct Settings {
    out: PathBuf,
    kind: DataKind,
    classes: usize,
    defaults: KindDefaults,
    /// The network trained: the network flags with the kind's defaults.
    network: NetworkArgs,
    guidance: Vec<f64>,
}

/// One stage's wall time, for the summary.
struct StageTime {
    name: String,
    seconds: Option<f64>,
}

pub fn run(args: PipelineArgs) -> Result<()> {
    let started = Instant::now();
    let settings = settings(&args)?;
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("{}: cannot create the work folder", settings.out.display()))?;
    println!(
        "pipeline {}: {} ({}, {}), NFE {}, guidance {}, work folder {}",
        args.name,
        dataset_argument(&args.dataset),
        match settings.kind {
            DataKind::Points => "2-D points",
            DataKind::Images => "images",
        },
        conditioning(settings.classes),
        list(&args.nfe),
        list(&settings.guidance),
        settings.out.display()
    );
    let mut stages = Stages {
        log: settings.out.join("times.log"),
        times: Vec::new(),
    };
    let model = settings.out.join("model.safetensors");
    stages.unless_exists(
        "train",
        &model,
        "train",
        &train_command(&args, &settings, &model),
        train::run,
    )?;
    for &w in &settings.guidance {
        let argv = truth_command(&args, &settings, &model, w);
        let pairs = pairs_path(&settings.out, w);
        stages.unless_exists(&format!("truth w={w}"), &pairs, "truth", &argv, truth::run)?;
    }
    let mut published = Vec::new();
    for &w in &settings.guidance {
        for solver in distilled_solvers(&args, &settings, w) {
            let argv = distill_command(&args, &settings, &model, &solver);
            let name = format!("distill {} nfe={} w={w}", solver.prefix, solver.nfe);
            stages.unless_exists(&name, &solver.output, "distill", &argv, distill::run)?;
            if solver.prefix == "bns" {
                published.push(solver.output);
            }
        }
    }
    for &w in &settings.guidance {
        let argv = eval_command(&args, &settings, &model, w);
        let results = eval_folder(&settings.out, w).join("results.md");
        stages.unless_exists(&format!("eval w={w}"), &results, "eval", &argv, eval::run)?;
    }
    let manifest_path = args
        .site
        .join("models")
        .join(&args.name)
        .join("manifest.json");
    if is_published(&manifest_path, &model, &published)? {
        println!(
            "skip publish ({} exists with this model and these solvers)",
            manifest_path.display()
        );
        stages.skipped("publish");
    } else {
        let argv = publish_command(&args, &settings, &model, &published);
        stages.run("publish", "publish", &argv, publish::run)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    print_summary(
        &args,
        &settings,
        &model,
        &published,
        &manifest_path,
        &stages,
        seconds,
    );
    Ok(())
}

/// What the run made and where, each stage's wall time, and how to see the model in the page.
fn print_summary(
    args: &PipelineArgs,
    settings: &Settings,
    model: &Path,
    published: &[PathBuf],
    manifest_path: &Path,
    stages: &Stages,
    seconds: f64,
) {
    println!();
    println!(
        "pipeline {} done in {:.0} s; stage wall times:",
        args.name, seconds
    );
    for time in &stages.times {
        match time.seconds {
            Some(s) => println!("  {:<32} {s:>8.1} s", time.name),
            None => println!("  {:<32}  skipped (done before)", time.name),
        }
    }
    println!("made:");
    println!("  model         {}", model.display());
    println!(
        "  ground truth  {}",
        settings
            .guidance
            .iter()
            .map(|&w| pairs_path(&settings.out, w).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  solvers       {} BNS solver files in {}",
        published.len(),
        settings.out.display()
    );
    for &w in &settings.guidance {
        println!(
            "  evaluation    {}",
            settings
                .out
                .join(format!("eval-w{w}"))
                .join("results.md")
                .display()
        );
    }
    println!(
        "  on the site   {}",
        manifest_path.parent().unwrap_or(&args.site).display()
    );
    println!(
        "to see it: `make serve`, then open http://127.0.0.1:8080/?model={}",
        args.name
    );
}

/// Checks the flags against the data and resolves the settings. The data's kind and classes come
/// from the model file when it exists (so a finished training is not reloaded), else from the
/// dataset.
fn settings(args: &PipelineArgs) -> Result<Settings> {
    if manifest::check_name(&args.name).is_err() {
        bail!(
            "--name {:?}: use letters, digits, '-' and '_' only",
            args.name
        );
    }
    if args.nfe.is_empty() || args.nfe.contains(&0) {
        bail!("--nfe: give at least one NFE, each at least 1");
    }
    if let Some(lr) = &args.distill_lr {
        if lr.len() != 1 && lr.len() != args.nfe.len() {
            bail!(
                "--distill-lr: give one learning rate, or one per NFE of --nfe ({}), not {}",
                args.nfe.len(),
                lr.len()
            );
        }
    }
    if !args.site.join("index.html").is_file() {
        bail!(
            "--site {}: not a site folder (it has no index.html); run from the repository root \
             or give the site with --site path/to/bns/www",
            args.site.display()
        );
    }
    // A flag of the other architecture is refused before the data is read (the defaults that
    // depend on the data's kind are resolved below).
    args.network
        .resolve(&NetworkArgs::default())
        .map_err(anyhow::Error::msg)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("runs").join(&args.name));
    let model_path = out.join("model.safetensors");
    let dataset = args.dataset.recorded_name();
    if matches!(args.dataset, DatasetSource::Named(_)) && args.images.any_given() {
        bail!(
            "--size, --channels and --skip-bad-images apply to --dataset images:DIR, not to {}",
            args.dataset
        );
    }
    let (shape, classes) = if model_path.exists() {
        let model = Model::load(&model_path)?;
        let spec = model.spec();
        if !args.dataset.matches_recorded(&spec.dataset) {
            bail!(
                "{}: a model of dataset {:?}, not {dataset:?}; give another --name or --out",
                model_path.display(),
                spec.dataset
            );
        }
        (spec.data_shape.clone(), spec.num_classes)
    } else {
        let data = data::load(
            &args.dataset,
            &DataSources::default(),
            &args.images,
            TRAIN_SEED,
        )?;
        (data.shape.to_vec(), data.num_classes)
    };
    let kind = if is_image(&shape) {
        DataKind::Images
    } else {
        DataKind::Points
    };
    let guidance = match &args.guidance {
        None if classes > 0 => CONDITIONAL_GUIDANCE.to_vec(),
        None => vec![0.0],
        Some(list) => {
            if list.is_empty() || list.iter().any(|w| !w.is_finite() || *w < 0.0) {
                bail!("--guidance: give scales w ≥ 0, comma-separated");
            }
            if classes == 0 {
                if let Some(w) = list.iter().find(|&&w| w != 0.0) {
                    bail!(
                        "--guidance {w}: {dataset} is unconditional (no classes), and guidance \
                         needs a class-conditional model; use --guidance 0"
                    );
                }
            }
            let mut unique: Vec<f64> = Vec::new();
            for &w in list {
                if !unique.contains(&w) {
                    unique.push(w);
                }
            }
            unique
        }
    };
    let defaults = KindDefaults::of(kind);
    let network = args
        .network
        .resolve(&defaults.network)
        .map_err(anyhow::Error::msg)?;
    Ok(Settings {
        out,
        kind,
        classes,
        defaults,
        network,
        guidance,
    })
}

/// The stages run so far, with their wall times; each finished stage also goes to `times.log`
/// in the work folder (as docs/reproduce.sh logged them).
struct Stages {
    log: PathBuf,
    times: Vec<StageTime>,
}

impl Stages {
    /// Runs a stage unless `output` exists ("skip … (exists)").
    fn unless_exists<T: Args + FromArgMatches>(
        &mut self,
        name: &str,
        output: &Path,
        command: &'static str,
        argv: &[String],
        run: impl FnOnce(T) -> Result<()>,
    ) -> Result<()> {
        if output.exists() {
            println!("skip {name} ({} exists)", output.display());
            self.skipped(name);
            return Ok(());
        }
        self.run(name, command, argv, run)
    }

    /// Runs a stage: parses `argv` with `bns <command>`'s flags, prints the command line, runs
    /// it and prints and logs its wall time.
    fn run<T: Args + FromArgMatches>(
        &mut self,
        name: &str,
        command: &'static str,
        argv: &[String],
        run: impl FnOnce(T) -> Result<()>,
    ) -> Result<()> {
        let args = parse_stage::<T>(command, argv)?;
        println!("== {name}: bns {command} {}", shell_words(argv));
        let started = Instant::now();
        run(args).with_context(|| format!("pipeline stage {name}"))?;
        let seconds = started.elapsed().as_secs_f64();
        println!("{name}: {seconds:.1} s");
        let line = format!("{name}: {seconds:.1} s\n");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()))
            .with_context(|| format!("{}: cannot append the stage time", self.log.display()))?;
        self.times.push(StageTime {
            name: name.into(),
            seconds: Some(seconds),
        });
        Ok(())
    }

    fn skipped(&mut self, name: &str) {
        self.times.push(StageTime {
            name: name.into(),
            seconds: None,
        });
    }
}

/// `argv` parsed by the flags of `bns <command>`, with that command's defaults.
fn parse_stage<T: Args + FromArgMatches>(command: &'static str, argv: &[String]) -> Result<T> {
    let flags = T::augment_args(clap::Command::new(command)).no_binary_name(true);
    let matches = flags
        .try_get_matches_from(argv)
        .with_context(|| format!("bns {command} {}", shell_words(argv)))?;
    Ok(T::from_arg_matches(&matches)?)
}

/// True when `manifest` publishes this model with exactly the solvers of `solvers`.
fn is_published(manifest: &Path, model: &Path, solvers: &[PathBuf]) -> Result<bool> {
    let Ok(text) = std::fs::read_to_string(manifest) else {
        return Ok(false);
    };
    let Ok(published) = Manifest::from_json(&text, &manifest.display().to_string()) else {
        return Ok(false);
    };
    let model = Model::load(model)?;
    let mut published_files: Vec<&str> =
        published.solvers.iter().map(|s| s.file.as_str()).collect();
    published_files.sort_unstable();
    let mut planned: Vec<String> = solvers
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    planned.sort_unstable();
    Ok(published.model_id == model.id() && published_files == planned)
}

fn conditioning(classes: usize) -> String {
    if classes > 0 {
        format!("class-conditional, {classes} classes")
    } else {
        "unconditional".into()
    }
}

fn default_title(
    dataset: &DatasetSource,
    classes: usize,
    architecture: ArchitectureName,
) -> String {
    let network = match architecture {
        ArchitectureName::Mlp => "MLP",
        ArchitectureName::Unet => "U-Net",
    };
    let conditioning = if classes > 0 {
        "class-conditional"
    } else {
        "unconditional"
    };
    format!("{}, {conditioning} {network}", dataset.recorded_name())
}

fn list<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The arguments as a shell would need them: quoted when they hold anything but plain
/// characters.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./,=:+".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

mod stages;
#[cfg(test)]
mod tests;
