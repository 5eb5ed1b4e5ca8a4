//! `bns eval`: every classical and distilled solver of one model, side by side, against the
//! ground truth (DESIGN §2, "Metrics").
//!
//! * **PSNR** (mean ± std over the validation pairs of a pairs file, at the pairs' guidance),
//!   measured by the runtime's CPU path ([`metrics::solver_psnr`]): every classical method on
//!   every grid at every NFE of `--nfe` it supports (an NFE that is not a multiple of a method's
//!   stages leaves an empty cell), and every distilled solver given with `--solvers`.
//! * **Quality and diversity**: for image models, the Fréchet distance between the features of
//!   generated samples and of the real test split, the features taken from a small classifier
//!   trained on the same dataset ([`crate::classifier`]: *not* Inception FID); for 2-D models,
//!   the sliced Wasserstein distance between the points. Generated samples come from fixed seeds
//!   with the classes cycling, for every solver at each `--fd-nfe`, for a tight reference
//!   ([`REFERENCE_LABEL`]) and, as a floor, for real train images against the test split.
//! * **Outputs** in the output folder: `psnr.csv`, `results.md`, `psnr.png` and `psnr.svg`,
//!   `distance.csv`, and `samples-<solver>-nfe<N>.png` grids (the same seeds for every solver).
//!
//! [`evaluate`] does the work and returns an [`Evaluation`]; [`run`] is the command.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::Device;
use clap::{Args, ValueEnum};
use web_sampler::grid::Grid;
use web_sampler::model::Model;
use web_sampler::sample::{grid_picture, is_image, sample, SampleRequest, MAX_BATCH};
use web_sampler::solver::{Method, NsTable, SolverFile, MAX_STEPS};

use crate::classifier::{self, Classifier, TrainSettings};
use crate::compute::ComputeArgs;
use crate::data::{self, DataSources, Dataset, DatasetName};
use crate::files::write_atomically;
use crate::frechet::{FrechetReference, GaussianFit, SlicedReference};
use crate::metrics::{mean_std, solver_psnr};
use crate::pairs::Pairs;
use crate::picture::{save_png, scatter_picture};
use crate::plot::{save_line_chart, Line, LineChart};
use crate::progress::Progress;

/// Label of the tight classical solver whose samples stand for the ground truth.
pub const REFERENCE_LABEL: &str = "reference (RK4, 200 NFE)";
/// NFE of the reference (RK4 on the uniform grid: 50 steps).
pub const REFERENCE_NFE: usize = 200;
/// Kinds of solver files taken from a `--solvers` folder.
pub const DISTILLED_KINDS: [&str; 2] = ["bns", "bns-time-only"];
/// The classifier file used (or trained) when `--classifier` is not given.
pub const CLASSIFIER_FILE: &str = "classifier.safetensors";
/// Seed of the sample grids (the same for every solver).
const PICTURE_SEED: u64 = 0;
/// Images per sample grid, and points per scatter plot of a 2-D model.
const PICTURE_IMAGES: usize = 16;
const SCATTER_POINTS: usize = 1000;
/// Generated samples for the distances: chunk `c` starts from seed `DISTANCE_SEED + c`.
const DISTANCE_SEED: u64 = 1_000_000;
/// Rows per sampling call when generating for the distances (rounded to whole class cycles).
const DISTANCE_CHUNK: usize = 500;
/// Random directions (and their seed) of the sliced Wasserstein distance.
const SW_DIRECTIONS: usize = 256;
const SW_SEED: u64 = 0;

#[derive(Args, Clone, Debug)]
#[command(after_help = "\
PSNR: every classical method (Euler, midpoint, Heun, RK4, AB2, AB3, DPM-Solver++(2M)) on the uniform
and EDM grids at every --nfe it supports, and every distilled solver given, on the validation pairs
of --pairs at their guidance, run by the runtime's CPU path.

Quality and diversity: for image models, the Fréchet distance (FD) between the features of
--fd-samples generated images and of the real test split, the features taken from a small MLP
classifier trained on the same dataset: FD on a small Fashion-MNIST/MNIST classifier's features,
NOT Inception FID. For 2-D models, the sliced Wasserstein distance between the points.
This part is the expensive one on a CPU: every solver at every --fd-nfe, and a 200-NFE reference,
generate --fd-samples samples each (a width-512 Fashion-MNIST model with the defaults: about 4
minutes on 2 busy cores, plus 2 minutes to train the classifier once); --fd-samples 0 skips it.

Writes psnr.csv, results.md, psnr.png, psnr.svg, distance.csv, samples-<solver>-nfe<N>.png and
classifier.safetensors into the output folder.")]
pub struct EvalArgs {
    /// The model file (.safetensors)
    #[arg(long)]
    pub model: PathBuf,
    /// Ground-truth pairs from `bns truth` for this model: PSNR is measured on their validation
    /// split, every sample is generated at their guidance
    #[arg(long)]
    pub pairs: PathBuf,
    /// Distilled solver files, or folders from which every *.json solver of kind bns or
    /// bns-time-only for this model and guidance is taken
    #[arg(long, num_args = 1..)]
    pub solvers: Vec<PathBuf>,
    /// NFE values of the PSNR table (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "4,6,8,10,12,16,20")]
    pub nfe: Vec<usize>,
    /// Classifier for the Fréchet distance (default: <output>/classifier.safetensors, trained
    /// there on the model's dataset if missing)
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Training steps of a new classifier (batch 256, AdamW)
    #[arg(long, default_value_t = 3000)]
    pub classifier_steps: u64,
    /// The model's dataset, for models whose file names none (e.g. from `bns model init`)
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetName>,
    /// Generated samples per solver for FD / sliced Wasserstein (0 skips them). Expensive on a
    /// CPU: every solver at every --fd-nfe, and a 200-NFE reference, generate this many
    #[arg(long, default_value_t = 2000)]
    pub fd_samples: usize,
    /// NFE values at which FD / sliced Wasserstein is measured and sample grids are drawn
    #[arg(long, value_delimiter = ',', default_value = "8,16")]
    pub fd_nfe: Vec<usize>,
    /// Output folder (created if missing)
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// A solver of the table: a classical method on a grid, or a distilled solver file.
#[derive(Clone, Debug)]
pub struct EvalSolver {
    /// Row label, also used in file names: `euler-uniform`, `dpmpp2m-edm`, `bns`, ….
    pub label: String,
    /// `euler`, …, `bns`, `bns-time-only`.
    pub kind: String,
    /// `uniform` or `edm` for classical solvers, `learned` for distilled ones.
    pub grid: String,
    pub nfe: usize,
    pub table: NsTable,
    /// The classical method and grid, or `None` for a solver file.
    pub method: Option<(Method, Grid)>,
    /// The solver file it came from.
    pub file: Option<PathBuf>,
}

/// One cell of the PSNR table.
#[derive(Clone, Debug, PartialEq)]
pub struct PsnrCell {
    pub solver: String,
    pub kind: String,
    pub grid: String,
    pub nfe: usize,
    pub mean: f64,
    pub std: f64,
}

/// What the quality-and-diversity distance is.
#[derive(Clone, Debug, PartialEq)]
pub enum DistanceKind {
    /// Fréchet distance on the features of a small classifier (not Inception FID).
    Frechet {
        classifier: PathBuf,
        /// Layer widths, input to classes (e.g. 784, 256, 128, 10).
        widths: Vec<usize>,
        test_accuracy: f64,
        /// Whether the classifier was trained by this run (rather than loaded).
        trained: bool,
    },
    /// Sliced Wasserstein-2 distance between 2-D points.
    SlicedWasserstein { directions: usize },
}

/// One measured distance; `nfe` is `None` for the real-data floor.
#[derive(Clone, Debug, PartialEq)]
pub struct DistanceRow {
    pub solver: String,
    pub nfe: Option<usize>,
    /// NaN when the samples were not finite (a diverging solver).
    pub value: f64,
}

/// The quality-and-diversity table.
#[derive(Clone, Debug, PartialEq)]
pub struct Distances {
    pub kind: DistanceKind,
    pub dataset: DatasetName,
    /// Generated samples per solver (and real train rows for the floor).
    pub samples: usize,
    /// Rows of the test split compared against.
    pub test_rows: usize,
    /// Every solver at every `--fd-nfe`, then the reference, then the floor.
    pub rows: Vec<DistanceRow>,
}

/// Everything `bns eval` measured.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub model_id: String,
    /// The dataset the model's file names.
    pub model_dataset: String,
    pub pairs_file: PathBuf,
    pub guidance: f64,
    pub rtol: f64,
    pub atol: f64,
    /// Mean NFE DOPRI5 used for the pairs.
    pub truth_mean_nfe: f64,
    pub validation_pairs: usize,
    /// Every solver of the PSNR table, distilled ones first.
    pub solvers: Vec<EvalSolver>,
    pub psnr: Vec<PsnrCell>,
    pub distances: Option<Distances>,
    /// Sample grids written.
    pub pictures: Vec<PathBuf>,
    /// What was skipped and why.
    pub notes: Vec<String>,
    pub seconds: f64,
}

impl Evaluation {
    /// The PSNR cell of `solver` at `nfe`, if measured.
    pub fn psnr_cell(&self, solver: &str, nfe: usize) -> Option<&PsnrCell> {
        self.psnr
            .iter()
            .find(|c| c.solver == solver && c.nfe == nfe)
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.compute.open()?;
    let sources = DataSources::default();
    let mut load = |name: DatasetName| data::load(name, &sources, 0);
    let evaluation = evaluate(&args, &device, &mut load, true)?;
    println!("{}", markdown(&evaluation, &args));
    println!(
        "wrote psnr.csv, results.md, psnr.png, psnr.svg{} and {} sample grids to {} in {:.0} s",
        if evaluation.distances.is_some() {
            ", distance.csv"
        } else {
            ""
        },
        evaluation.pictures.len(),
        args.output.display(),
        evaluation.seconds
    );
    Ok(())
}

/// The real data, ready for the comparisons: what generated samples are measured against, the
/// real-data floor, and what the table says about them.
struct Real {
    data: RealData,
    kind: DistanceKind,
    dataset: DatasetName,
    test_rows: usize,
    floor: DistanceRow,
}

/// What generated samples are compared with.
enum RealData {
    Features {
        classifier: Box<Classifier>,
        test: FrechetReference,
    },
    Points {
        test: SlicedReference,
    },
}

impl RealData {
    /// The distance of `samples` `[N, D]` from the test split; `Err` names what went wrong
    /// (e.g. non-finite samples).
    fn distance(&self, samples: &[f32]) -> std::result::Result<f64, String> {
        match self {
            RealData::Features {
                classifier, test, ..
            } => {
                let features = classifier.features(samples).map_err(|e| e.to_string())?;
                let fit = GaussianFit::of_rows(&features, classifier.feature_dim())?;
                test.distance(&fit)
            }
            RealData::Points { test } => test.distance(samples),
        }
    }
}

/// Runs the whole evaluation and writes its outputs into `args.output`. `load_dataset` supplies
/// the dataset for the distances (the command reads the installed files; tests pass small sets).
pub fn evaluate(
    args: &EvalArgs,
    device: &Device,
    load_dataset: &mut dyn FnMut(DatasetName) -> Result<Dataset>,
    show_progress: bool,
) -> Result<Evaluation> {
    let started = Instant::now();
    check_nfe("--nfe", &args.nfe)?;
    check_nfe("--fd-nfe", &args.fd_nfe)?;
    if args.fd_samples == 1 {
        bail!("--fd-samples must be 0 (skip the distances) or at least 2");
    }
    let threads = match args.compute.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let model = Model::load(&args.model)?;
    let pairs = Pairs::load(&args.pairs)?;
    pairs.check_model(model.id(), &args.pairs)?;
    let guidance = pairs.meta.guidance;
    let validation = pairs.validation();
    let mut notes = Vec::new();
    let mut note = |text: String| {
        println!("note: {text}");
        notes.push(text);
    };

    let distilled = collect_distilled(&args.solvers, model.id(), guidance, &mut note)?;
    let mut solvers = distilled_solvers(distilled);
    solvers.extend(classical_solvers(&args.nfe));

    let dataset = distance_dataset(args, &model, &mut *load_dataset, &mut note)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("{}: cannot create the output folder", args.output.display()))?;
    // The classifier (trained here if needed), the real data's statistics and the floor, before
    // the evaluation's progress bar starts; the dataset itself is not kept.
    let real = match dataset {
        None => None,
        Some(dataset) => Some(prepare_real(args, dataset, device, show_progress)?),
    };

    let image = is_image(&model.spec().data_shape);
    let picture_count = if image {
        PICTURE_IMAGES
    } else {
        SCATTER_POINTS
    };
    let distance_nfe: Vec<usize> = if real.is_some() {
        args.fd_nfe.clone()
    } else {
        Vec::new()
    };
    let distance_jobs = distance_jobs(&solvers, &distance_nfe);

    // PSNR, then pictures, then distances, under one progress bar weighted by NFE × samples.
    let psnr_cost = |s: &EvalSolver| (s.nfe * validation.len) as u64;
    let mut total: u64 = solvers.iter().map(psnr_cost).sum();
    total += distance_jobs
        .iter()
        .map(|j| (j.nfe * args.fd_samples) as u64)
        .sum::<u64>();
    let mut tracker = Tracker {
        progress: Progress::new("eval", total.max(1), show_progress),
        position: 0,
    };

    let psnr_values = run_jobs(
        &solvers,
        threads,
        &mut tracker,
        |s| (format!("PSNR {} at {} NFE", s.label, s.nfe), psnr_cost(s)),
        |s, _| {
            Ok(mean_std(&solver_psnr(
                &model,
                &s.table,
                &validation,
                guidance,
            )?))
        },
    )?;
    let psnr: Vec<PsnrCell> = solvers
        .iter()
        .zip(psnr_values)
        .map(|(s, (mean, std))| PsnrCell {
            solver: s.label.clone(),
            kind: s.kind.clone(),
            grid: s.grid.clone(),
            nfe: s.nfe,
            mean,
            std,
        })
        .collect();
    write_atomically(&args.output.join("psnr.csv"), psnr_csv(&psnr).as_bytes())?;
    let title = format!(
        "PSNR vs NFE: {}, guidance w = {guidance}",
        dataset_title(&model.spec().dataset)
    );
    save_line_chart(
        &psnr_chart(&solvers, &psnr, title),
        &args.output.join("psnr.png"),
        &args.output.join("psnr.svg"),
    )?;

    let picture_jobs = picture_jobs(&solvers, &psnr, &args.fd_nfe, &args.output);
    let pictures = run_jobs(
        &picture_jobs,
        threads,
        &mut tracker,
        |j| (format!("samples {} at {} NFE", j.label, j.nfe), 0),
        |j, _| {
            let request = SampleRequest {
                seed: PICTURE_SEED,
                batch: picture_count,
                class: None,
                guidance,
            };
            let samples = sample(&model, &j.table, &request)?;
            let picture = if image {
                grid_picture(&samples, 4)?
            } else {
                scatter_picture(&samples.values, 512)
            };
            save_png(&j.path, &picture)?;
            Ok(j.path.clone())
        },
    )?;

    let distances = match real {
        None => None,
        Some(real) => {
            let measured = run_jobs(
                &distance_jobs,
                threads,
                &mut tracker,
                |j| {
                    (
                        format!("samples for the distance: {} at {} NFE", j.label, j.nfe),
                        (j.nfe * args.fd_samples) as u64,
                    )
                },
                |j, report| {
                    let samples = generate(&model, &j.table, args.fd_samples, guidance, report)?;
                    Ok(real.data.distance(&samples))
                },
            )?;
            let mut rows = Vec::new();
            for (job, value) in distance_jobs.iter().zip(measured) {
                let value = value.unwrap_or_else(|problem| {
                    note(format!(
                        "{} at {} NFE: no distance ({problem})",
                        job.label, job.nfe
                    ));
                    f64::NAN
                });
                rows.push(DistanceRow {
                    solver: job.label.clone(),
                    nfe: Some(job.nfe),
                    value,
                });
            }
            rows.push(real.floor);
            Some(Distances {
                kind: real.kind,
                dataset: real.dataset,
                samples: args.fd_samples,
                test_rows: real.test_rows,
                rows,
            })
        }
    };
    tracker.progress.finish();

    let evaluation = Evaluation {
        model_id: model.id().to_string(),
        model_dataset: model.spec().dataset.clone(),
        pairs_file: args.pairs.clone(),
        guidance,
        rtol: pairs.meta.rtol,
        atol: pairs.meta.atol,
        truth_mean_nfe: pairs.meta.mean_nfe,
        validation_pairs: validation.len,
        solvers,
        psnr,
        distances,
        pictures,
        notes,
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(d) = &evaluation.distances {
        write_atomically(
            &args.output.join("distance.csv"),
            distance_csv(d).as_bytes(),
        )?;
    }
    write_atomically(
        &args.output.join("results.md"),
        markdown(&evaluation, args).as_bytes(),
    )?;
    Ok(evaluation)
}

/// Every NFE must be between 1 and the runtime's step limit.
fn check_nfe(option: &str, values: &[usize]) -> Result<()> {
    if values.is_empty() {
        bail!("{option} needs at least one NFE");
    }
    if let Some(bad) = values.iter().find(|&&n| n == 0 || n > MAX_STEPS) {
        bail!("{option}: NFE {bad} is outside 1..={MAX_STEPS}");
    }
    Ok(())
}

/// The solver files of `--solvers`: files are taken whatever their kind, but must be for this
/// model and guidance (an error names the file and both ids or guidances); from a folder, every
/// `*.json` solver of a distilled kind for this model and guidance, the others skipped with a
/// note. The same file named twice is taken once.
fn collect_distilled(
    paths: &[PathBuf],
    model_id: &str,
    guidance: f64,
    note: &mut dyn FnMut(String),
) -> Result<Vec<(PathBuf, SolverFile)>> {
    let mut found: Vec<(PathBuf, SolverFile)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut keep = |path: PathBuf, file: SolverFile| {
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if seen.insert(key) {
            found.push((path, file));
        }
    };
    for path in paths {
        let origin = path.display().to_string();
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("{origin}: cannot list the folder"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
                .collect();
            entries.sort();
            for entry in entries {
                let shown = entry.display();
                let file = match SolverFile::load(&entry) {
                    Ok(file) => file,
                    Err(e) => {
                        note(format!(
                            "skipping {shown}: not a solver file ({})",
                            e.problem
                        ));
                        continue;
                    }
                };
                if !DISTILLED_KINDS.contains(&file.kind.as_str()) {
                    note(format!(
                        "skipping {shown}: kind {:?} is not a distilled solver (the classical \
                         methods are evaluated anyway)",
                        file.kind
                    ));
                } else if file.model_id.as_deref() != Some(model_id) {
                    note(format!(
                        "skipping {shown}: distilled for model {}, not for this model {model_id}",
                        file.model_id.as_deref().unwrap_or("(none)")
                    ));
                } else if file.guidance != guidance {
                    note(format!(
                        "skipping {shown}: distilled for guidance {}, but the pairs' guidance is \
                         {guidance}",
                        file.guidance
                    ));
                } else {
                    keep(entry, file);
                }
            }
        } else if path.is_file() {
            let file = SolverFile::load(path)?;
            file.check_model(model_id, &origin)?;
            if file.guidance != guidance {
                bail!(
                    "{origin}: this solver is for guidance {}, but the pairs' guidance is \
                     {guidance}; evaluate it with pairs computed at its guidance",
                    file.guidance
                );
            }
            keep(path.clone(), file);
        } else {
            bail!("{origin}: no such solver file or folder");
        }
    }
    Ok(found)
}

/// The table rows of the distilled solvers. A row is labelled by the solver's kind; when two
/// files of one kind share an NFE, that kind's rows also name their initialisation
/// (`bns (midpoint-uniform)`), and if that is not enough, their file.
fn distilled_solvers(files: Vec<(PathBuf, SolverFile)>) -> Vec<EvalSolver> {
    let clash = |labels: &[String], i: usize| {
        (0..files.len())
            .any(|j| j != i && labels[j] == labels[i] && files[j].1.nfe == files[i].1.nfe)
    };
    let mut labels: Vec<String> = files.iter().map(|(_, f)| f.kind.clone()).collect();
    let clashing_kinds: BTreeSet<String> = (0..files.len())
        .filter(|&i| clash(&labels, i))
        .map(|i| files[i].1.kind.clone())
        .collect();
    for (label, (_, f)) in labels.iter_mut().zip(&files) {
        if clashing_kinds.contains(&f.kind) {
            let text = |key: &str| f.provenance.get(key).and_then(|v| v.as_str());
            if let (Some(init), Some(grid)) = (text("init"), text("grid")) {
                *label = format!("{} ({init}-{grid})", f.kind);
            }
        }
    }
    let still: Vec<bool> = (0..files.len()).map(|i| clash(&labels, i)).collect();
    for ((label, (path, _)), clashes) in labels.iter_mut().zip(&files).zip(still) {
        if clashes {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            *label = format!("{label} [{}]", stem.unwrap_or_default());
        }
    }
    files
        .into_iter()
        .zip(labels)
        .map(|((path, file), label)| EvalSolver {
            label: label.replace('|', "/"),
            grid: if file.kind.starts_with("bns") {
                "learned".into()
            } else {
                "custom".into()
            },
            kind: file.kind.clone(),
            nfe: file.nfe,
            table: file.table(),
            method: None,
            file: Some(path),
        })
        .collect()
}

/// Every classical method on every grid at every NFE it supports.
fn classical_solvers(nfe: &[usize]) -> Vec<EvalSolver> {
    let nfe: BTreeSet<usize> = nfe.iter().copied().collect();
    let mut out = Vec::new();
    for method in Method::ALL {
        for grid in Grid::ALL {
            for &n in &nfe {
                if let Ok(table) = method.build(n, grid) {
                    out.push(classical(method, grid, n, table));
                }
            }
        }
    }
    out
}

fn classical(method: Method, grid: Grid, nfe: usize, table: NsTable) -> EvalSolver {
    EvalSolver {
        label: format!("{}-{}", method.name(), grid.name()),
        kind: method.name().into(),
        grid: grid.name().into(),
        nfe,
        table,
        method: Some((method, grid)),
        file: None,
    }
}

/// Decides whether the distances can be measured and loads the dataset for them: the model's
/// own dataset, or `--dataset` (which must then agree with it), with the model's data shape.
/// `None` (with a note) when they are not measured.
fn distance_dataset(
    args: &EvalArgs,
    model: &Model,
    load_dataset: &mut dyn FnMut(DatasetName) -> Result<Dataset>,
    note: &mut dyn FnMut(String),
) -> Result<Option<Dataset>> {
    if args.fd_samples == 0 {
        note("--fd-samples 0: no FD / sliced Wasserstein distances".into());
        return Ok(None);
    }
    let spec = model.spec();
    let own = DatasetName::from_str(&spec.dataset, true).ok();
    let name = match (args.dataset, own) {
        (Some(given), Some(own)) if given != own => bail!(
            "--dataset {}: the model {} was trained on {}",
            given.name(),
            args.model.display(),
            own.name()
        ),
        (Some(name), _) | (None, Some(name)) => name,
        (None, None) => {
            note(format!(
                "no FD / sliced Wasserstein distances: the model's file names no known dataset \
                 ({:?}); pass --dataset to measure them",
                spec.dataset
            ));
            return Ok(None);
        }
    };
    let dataset = load_dataset(name)?;
    if dataset.shape.as_slice() != spec.data_shape.as_slice() {
        bail!(
            "{}: the model's data shape {:?} is not {}'s {:?}",
            args.model.display(),
            spec.data_shape,
            name.name(),
            dataset.shape
        );
    }
    if dataset.test.len < 2 {
        bail!("{}: the test split has fewer than 2 rows", name.name());
    }
    Ok(Some(dataset))
}

/// The classifier file this run uses.
fn classifier_path(args: &EvalArgs) -> PathBuf {
    args.classifier
        .clone()
        .unwrap_or_else(|| args.output.join(CLASSIFIER_FILE))
}

/// The real data the samples are compared with: for images, the classifier (loaded from
/// `--classifier` or `<output>/classifier.safetensors`, else trained and saved there) and the
/// Gaussian fit of the test split's features; for 2-D points, the test split itself. The floor
/// is the distance of the first `--fd-samples` rows of the train split.
fn prepare_real(
    args: &EvalArgs,
    dataset: Dataset,
    device: &Device,
    show_progress: bool,
) -> Result<Real> {
    let name = dataset.name.name();
    let image = is_image(&dataset.shape);
    // Rows spread evenly over the train split (a split may be ordered by class, as MNIST's is).
    let floor_rows = args.fd_samples.min(dataset.train.len);
    let floor_indices: Vec<usize> = (0..floor_rows)
        .map(|i| i * dataset.train.len / floor_rows.max(1))
        .collect();
    let (floor_points, _) = data::batch(&dataset.train, &floor_indices);
    let floor_points = floor_points.as_slice();
    let (data, kind) = if image {
        let path = classifier_path(args);
        let trained = args.classifier.is_none() && !path.exists();
        let classifier = if trained {
            let settings = TrainSettings {
                steps: args.classifier_steps,
                ..TrainSettings::default()
            };
            let started = Instant::now();
            let classifier = classifier::train(&dataset, &settings, device, show_progress)?;
            classifier.save(&path)?;
            println!(
                "classifier: trained on {name} in {:.0} s ({} steps), test accuracy {:.2}%; \
                 saved to {}",
                started.elapsed().as_secs_f64(),
                settings.steps,
                100.0 * classifier.meta().test_accuracy,
                path.display()
            );
            classifier
        } else {
            let classifier = Classifier::load(&path, device)?;
            classifier.check_dataset(&dataset, &path)?;
            println!(
                "classifier: {} ({}, test accuracy {:.2}%)",
                path.display(),
                classifier.meta().dataset,
                100.0 * classifier.meta().test_accuracy
            );
            classifier
        };
        let features = classifier.features(&dataset.test.x)?;
        let test = GaussianFit::of_rows(&features, classifier.feature_dim())
            .map_err(|problem| anyhow!("{name}'s test split: {problem}"))?;
        let meta = classifier.meta();
        let mut widths = vec![meta.input_dim];
        widths.extend(&meta.hidden);
        widths.push(meta.classes);
        let kind = DistanceKind::Frechet {
            classifier: path,
            widths,
            test_accuracy: classifier.meta().test_accuracy,
            trained,
        };
        let test = FrechetReference::new(test);
        (
            RealData::Features {
                classifier: Box::new(classifier),
                test,
            },
            kind,
        )
    } else {
        let test = SlicedReference::new(&dataset.test.x, dataset.test.dim, SW_DIRECTIONS, SW_SEED)
            .map_err(|problem| anyhow!("{name}'s test split: {problem}"))?;
        let kind = DistanceKind::SlicedWasserstein {
            directions: SW_DIRECTIONS,
        };
        (RealData::Points { test }, kind)
    };
    let floor = data
        .distance(floor_points)
        .map_err(|problem| anyhow!("{name}'s train split against its test split: {problem}"))?;
    Ok(Real {
        data,
        kind,
        dataset: dataset.name,
        test_rows: dataset.test.len,
        floor: DistanceRow {
            solver: floor_label(floor_rows, image),
            nfe: None,
            value: floor,
        },
    })
}

/// A solver to generate samples with, for a distance or a picture.
struct SampleJob {
    label: String,
    nfe: usize,
    table: NsTable,
    path: PathBuf,
}

/// Every solver at every `nfe` (classical ones rebuilt at that NFE if it is not in the PSNR
/// table; distilled ones only at their own NFE), then the reference.
fn distance_jobs(solvers: &[EvalSolver], nfe: &[usize]) -> Vec<SampleJob> {
    if nfe.is_empty() {
        return Vec::new();
    }
    let mut jobs = Vec::new();
    let mut labels: Vec<&str> = Vec::new();
    for s in solvers {
        if !labels.contains(&s.label.as_str()) {
            labels.push(&s.label);
        }
    }
    let unique: BTreeSet<usize> = nfe.iter().copied().collect();
    for label in labels {
        let first = solvers.iter().find(|s| s.label == label);
        for &n in &unique {
            let table = match first.and_then(|s| s.method) {
                Some((method, grid)) => method.build(n, grid).ok(),
                None => solvers
                    .iter()
                    .find(|s| s.label == label && s.nfe == n)
                    .map(|s| s.table.clone()),
            };
            if let Some(table) = table {
                jobs.push(SampleJob {
                    label: label.to_string(),
                    nfe: n,
                    table,
                    path: PathBuf::new(),
                });
            }
        }
    }
    jobs.push(reference_job(PathBuf::new()));
    jobs
}

fn reference_job(path: PathBuf) -> SampleJob {
    SampleJob {
        label: REFERENCE_LABEL.into(),
        nfe: REFERENCE_NFE,
        table: Method::Rk4
            .build(REFERENCE_NFE, Grid::Uniform)
            .unwrap_or_else(|_| unreachable!("200 is a multiple of RK4's 4 stages")),
        path,
    }
}

/// The sample grids: at each `nfe`, every distilled solver of kind `bns` with that NFE, and
/// Euler, midpoint and DPM-Solver++ on their better grid there (by PSNR at that NFE, else over
/// all NFE); then the reference.
fn picture_jobs(
    solvers: &[EvalSolver],
    psnr: &[PsnrCell],
    nfe: &[usize],
    output: &Path,
) -> Vec<SampleJob> {
    let path =
        |label: &str, n: usize| output.join(format!("samples-{}-nfe{n}.png", file_label(label)));
    let mut jobs = Vec::new();
    let unique: BTreeSet<usize> = nfe.iter().copied().collect();
    for &n in &unique {
        for s in solvers.iter().filter(|s| s.kind == "bns" && s.nfe == n) {
            jobs.push(SampleJob {
                label: s.label.clone(),
                nfe: n,
                table: s.table.clone(),
                path: path(&s.label, n),
            });
        }
        for method in [Method::Euler, Method::Midpoint, Method::DpmPp2m] {
            let grid = better_grid(method, psnr, Some(n));
            if let Ok(table) = method.build(n, grid) {
                let label = format!("{}-{}", method.name(), grid.name());
                jobs.push(SampleJob {
                    path: path(&label, n),
                    label,
                    nfe: n,
                    table,
                });
            }
        }
    }
    jobs.push(reference_job(
        output.join(format!("samples-reference-rk4-nfe{REFERENCE_NFE}.png")),
    ));
    jobs
}

/// A label as a file-name piece: letters, digits, `-`, `_` and `.` kept, the rest `-`.
fn file_label(label: &str) -> String {
    let mapped: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    mapped.trim_matches('-').to_string()
}

/// The grid on which `method` has the higher PSNR: at `nfe` if both grids were measured there,
/// else averaged over the NFE measured on both; uniform when nothing decides.
fn better_grid(method: Method, psnr: &[PsnrCell], nfe: Option<usize>) -> Grid {
    let cell = |grid: Grid, n: usize| {
        psnr.iter()
            .find(|c| c.kind == method.name() && c.grid == grid.name() && c.nfe == n)
            .map(|c| c.mean)
            .filter(|m| m.is_finite())
    };
    if let Some(n) = nfe {
        if let (Some(u), Some(e)) = (cell(Grid::Uniform, n), cell(Grid::Edm, n)) {
            return if e > u { Grid::Edm } else { Grid::Uniform };
        }
    }
    let both: Vec<(f64, f64)> = psnr
        .iter()
        .filter(|c| c.kind == method.name())
        .filter_map(|c| Some((cell(Grid::Uniform, c.nfe)?, cell(Grid::Edm, c.nfe)?)))
        .collect();
    let edm_wins = !both.is_empty()
        && both.iter().map(|p| p.1).sum::<f64>() > both.iter().map(|p| p.0).sum::<f64>();
    if edm_wins {
        Grid::Edm
    } else {
        Grid::Uniform
    }
}

/// `count` samples of `table` at `guidance`, from the distance seeds, classes cycling over all
/// classes (whole cycles per chunk); `report` hears of the NFE × rows done.
fn generate(
    model: &Model,
    table: &NsTable,
    count: usize,
    guidance: f64,
    report: &dyn Fn(u64),
) -> Result<Vec<f32>> {
    let classes = model.spec().num_classes;
    let chunk = match DISTANCE_CHUNK.checked_div(classes) {
        Some(cycles) => (cycles.max(1) * classes).min(MAX_BATCH),
        None => DISTANCE_CHUNK,
    };
    let mut out = Vec::with_capacity(count * model.spec().data_dim());
    for (c, start) in (0..count).step_by(chunk).enumerate() {
        let request = SampleRequest {
            seed: DISTANCE_SEED + c as u64,
            batch: chunk.min(count - start),
            class: None,
            guidance,
        };
        out.extend(sample(model, table, &request)?.values);
        report((table.steps() * request.batch) as u64);
    }
    Ok(out)
}

/// The label of the real-data floor.
fn floor_label(rows: usize, image: bool) -> String {
    let what = if image { "images" } else { "points" };
    format!("real data: {rows} train {what} (spread over the split) vs the test split (floor)")
}

/// "Fashion-MNIST", "MNIST", or the file's own name for other datasets.
fn dataset_title(name: &str) -> String {
    match DatasetName::from_str(name, true) {
        Ok(DatasetName::FashionMnist) => "Fashion-MNIST".into(),
        Ok(DatasetName::Mnist) => "MNIST".into(),
        Ok(other) => other.name().into(),
        Err(_) => name.into(),
    }
}

/// `psnr.csv`: one row per measured cell; numbers in full precision (they read back exactly).
fn psnr_csv(cells: &[PsnrCell]) -> String {
    let mut text = String::from("solver,kind,grid,nfe,psnr_mean,psnr_std\n");
    for c in cells {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{}",
            csv_field(&c.solver),
            csv_field(&c.kind),
            csv_field(&c.grid),
            c.nfe,
            c.mean,
            c.std
        );
    }
    text
}

/// `distance.csv`: solver, NFE (empty for the floor), metric, value.
fn distance_csv(d: &Distances) -> String {
    let metric = match d.kind {
        DistanceKind::Frechet { .. } => "fd_small_classifier_features_not_inception_fid",
        DistanceKind::SlicedWasserstein { .. } => "sliced_wasserstein",
    };
    let mut text = String::from("solver,nfe,metric,value\n");
    for row in &d.rows {
        let nfe = row.nfe.map(|n| n.to_string()).unwrap_or_default();
        let _ = writeln!(
            text,
            "{},{nfe},{metric},{}",
            csv_field(&row.solver),
            row.value
        );
    }
    text
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// `results.md`: the header, the PSNR table (best per column in bold) and the distance table.
fn markdown(e: &Evaluation, args: &EvalArgs) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Solver evaluation\n");
    let _ = writeln!(
        md,
        "* Model `{}` ({}), dataset {}",
        e.model_id,
        args.model.display(),
        e.model_dataset
    );
    let _ = writeln!(
        md,
        "* Ground truth `{}`: DOPRI5 with rtol {:e}, atol {:e}, mean NFE {:.1}; {} validation pairs",
        e.pairs_file.display(),
        e.rtol,
        e.atol,
        e.truth_mean_nfe,
        e.validation_pairs
    );
    let _ = writeln!(md, "* Guidance w = {}", e.guidance);
    for s in &e.solvers {
        if let Some(file) = &s.file {
            let _ = writeln!(
                md,
                "* Distilled solver {} at {} NFE: `{}`",
                s.label,
                s.nfe,
                file.display()
            );
        }
    }
    let _ = writeln!(
        md,
        "* PSNR: mean ± std over the validation pairs, in dB on images mapped to [0, 1], as the \
         runtime's CPU path runs each solver; best per column in bold; an empty cell is an NFE the \
         method cannot take (not a multiple of its stages)\n"
    );
    let _ = writeln!(md, "## PSNR (dB) against the ground truth\n");
    let columns: BTreeSet<usize> = e.psnr.iter().map(|c| c.nfe).collect();
    let mut rows: Vec<&str> = Vec::new();
    for s in &e.solvers {
        if !rows.contains(&s.label.as_str()) {
            rows.push(&s.label);
        }
    }
    let best = |n: usize| {
        e.psnr
            .iter()
            .filter(|c| c.nfe == n && c.mean.is_finite())
            .map(|c| c.mean)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let _ = write!(md, "| solver |");
    columns.iter().for_each(|n| {
        let _ = write!(md, " NFE {n} |");
    });
    let _ = write!(md, "\n|---|");
    columns.iter().for_each(|_| md.push_str("---:|"));
    md.push('\n');
    for label in rows {
        let _ = write!(md, "| {label} |");
        for &n in &columns {
            match e.psnr_cell(label, n) {
                Some(c) => {
                    let text = format!("{:.2} ± {:.2}", c.mean, c.std);
                    if c.mean == best(n) {
                        let _ = write!(md, " **{text}** |");
                    } else {
                        let _ = write!(md, " {text} |");
                    }
                }
                None => md.push_str("  |"),
            }
        }
        md.push('\n');
    }
    md.push('\n');
    match &e.distances {
        None => {
            let _ = writeln!(
                md,
                "## Quality and diversity\n\nNot measured (see the notes).\n"
            );
        }
        Some(d) => distance_markdown(&mut md, d),
    }
    if !e.pictures.is_empty() {
        let _ = writeln!(
            md,
            "## Samples\n\nThe same seeds for every solver (classes cycling), at the pairs' \
             guidance.\n"
        );
        for path in &e.pictures {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = writeln!(md, "* `{name}`: ![{name}]({name})");
        }
        md.push('\n');
    }
    if !e.notes.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for n in &e.notes {
            let _ = writeln!(md, "* {n}");
        }
    }
    md
}

fn distance_markdown(md: &mut String, d: &Distances) {
    let data = dataset_title(d.dataset.name());
    let (heading, short) = match &d.kind {
        DistanceKind::Frechet {
            classifier,
            widths,
            test_accuracy,
            trained,
        } => {
            let widths: Vec<String> = widths.iter().map(|w| w.to_string()).collect();
            let _ = writeln!(
                md,
                "## Quality and diversity: FD on a small {data} classifier's features, not Inception FID\n"
            );
            let _ =
                writeln!(
                md,
                "Fréchet distance between Gaussians fitted to the {}-d penultimate features of a \
                 small MLP classifier ({}, SiLU; `{}`, {}test accuracy {:.2}%) for \
                 {} generated images per solver and for the {} test images. This is FD on a \
                 small {data} classifier's features, not Inception FID: compare it only with \
                 itself. Lower is better; best per column in bold.\n",
                widths
                    .get(widths.len().saturating_sub(2))
                    .map_or("?", String::as_str),
                widths.join("→"),
                classifier.display(),
                if *trained { "trained by this run, " } else { "" },
                100.0 * test_accuracy,
                d.samples,
                d.test_rows
            );
            ("FD", "FD")
        }
        DistanceKind::SlicedWasserstein { directions } => {
            let _ = writeln!(
                md,
                "## Quality and diversity: sliced Wasserstein distance\n"
            );
            let _ = writeln!(
                md,
                "Sliced Wasserstein-2 distance ({directions} random directions) between {} \
                 generated points per solver and the {} points of the {data} test split. Lower \
                 is better; best per column in bold.\n",
                d.samples, d.test_rows
            );
            ("SW", "SW")
        }
    };
    let columns: BTreeSet<usize> = d
        .rows
        .iter()
        .filter(|r| r.solver != REFERENCE_LABEL)
        .filter_map(|r| r.nfe)
        .collect();
    let mut labels: Vec<&str> = Vec::new();
    for r in &d.rows {
        if r.nfe.is_some() && r.solver != REFERENCE_LABEL && !labels.contains(&r.solver.as_str()) {
            labels.push(&r.solver);
        }
    }
    let best = |n: usize| {
        d.rows
            .iter()
            .filter(|r| r.nfe == Some(n) && r.solver != REFERENCE_LABEL && r.value.is_finite())
            .map(|r| r.value)
            .fold(f64::INFINITY, f64::min)
    };
    let _ = write!(md, "| solver |");
    columns.iter().for_each(|n| {
        let _ = write!(md, " {heading} at NFE {n} |");
    });
    let _ = write!(md, "\n|---|");
    columns.iter().for_each(|_| md.push_str("---:|"));
    md.push('\n');
    for label in labels {
        let _ = write!(md, "| {label} |");
        for &n in &columns {
            match d
                .rows
                .iter()
                .find(|r| r.solver == label && r.nfe == Some(n))
            {
                Some(r) if !r.value.is_finite() => md.push_str(" diverged |"),
                Some(r) if r.value == best(n) => {
                    let _ = write!(md, " **{}** |", number(r.value));
                }
                Some(r) => {
                    let _ = write!(md, " {} |", number(r.value));
                }
                None => md.push_str("  |"),
            }
        }
        md.push('\n');
    }
    let _ = writeln!(md, "\n| baseline | {short} |\n|---|---:|");
    for r in d
        .rows
        .iter()
        .filter(|r| r.solver == REFERENCE_LABEL || r.nfe.is_none())
    {
        let _ = writeln!(md, "| {} | {} |", r.solver, number(r.value));
    }
    md.push('\n');
}

/// A distance with four significant digits.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return "diverged".into();
    }
    let digits = (3 - v.abs().max(1e-12).log10().floor() as i32).clamp(0, 8) as usize;
    format!("{v:.digits$}")
}

/// The chart: each classical method on its better grid (thin lines), every distilled solver
/// (thick lines).
fn psnr_chart(solvers: &[EvalSolver], psnr: &[PsnrCell], title: String) -> LineChart {
    const COLORS: [(u8, u8, u8); 7] = [
        (31, 119, 180),
        (44, 160, 44),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (23, 190, 207),
    ];
    const DISTILLED: [(u8, u8, u8); 4] = [(214, 39, 40), (255, 127, 14), (188, 189, 34), (0, 0, 0)];
    let points = |label: &str| -> Vec<(f64, f64)> {
        psnr.iter()
            .filter(|c| c.solver == label)
            .map(|c| (c.nfe as f64, c.mean))
            .collect()
    };
    let mut lines = Vec::new();
    let mut distilled: Vec<&str> = Vec::new();
    for s in solvers.iter().filter(|s| s.method.is_none()) {
        if !distilled.contains(&s.label.as_str()) {
            distilled.push(&s.label);
        }
    }
    for (i, label) in distilled.iter().enumerate() {
        let color = match *label {
            "bns" => DISTILLED[0],
            "bns-time-only" => DISTILLED[1],
            _ => DISTILLED[2 + i % 2],
        };
        let mut p = points(label);
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        lines.push(Line {
            label: label.to_string(),
            points: p,
            color,
            dashed: false,
            emphasis: true,
        });
    }
    for (method, color) in Method::ALL.iter().zip(COLORS) {
        let grid = better_grid(*method, psnr, None);
        let label = format!("{}-{}", method.name(), grid.name());
        let p = points(&label);
        if !p.is_empty() {
            lines.push(Line {
                label: format!("{} ({} grid)", method.name(), grid.name()),
                points: p,
                color,
                dashed: grid == Grid::Edm,
                emphasis: false,
            });
        }
    }
    LineChart {
        title,
        x_label: "NFE (network evaluations)".into(),
        y_label: "PSNR vs ground truth (dB)".into(),
        lines,
    }
}

/// The evaluation's progress: a bar over NFE × samples, with the current job as its message.
struct Tracker {
    progress: Progress,
    position: u64,
}

impl Tracker {
    fn advance(&mut self, units: u64) {
        if units == 0 {
            return;
        }
        self.position += units;
        self.progress.set_position(self.position);
    }
}

enum Event<R> {
    Started(usize),
    Advance(u64),
    Done(usize, Result<R>, u64),
}

/// Runs `work` on every job with up to `threads` workers, the costliest first (so that a long job
/// does not run alone at the end); results come back in job order. The first error stops the
/// remaining jobs and is returned. `describe` gives each job's progress message and cost; `work`
/// may report part of its cost as it goes.
fn run_jobs<J: Sync, R: Send>(
    jobs: &[J],
    threads: usize,
    tracker: &mut Tracker,
    describe: impl Fn(&J) -> (String, u64) + Sync,
    work: impl Fn(&J, &dyn Fn(u64)) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(describe(&jobs[i]).1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let (sender, receiver) = mpsc::channel::<Event<R>>();
    let mut results: Vec<Option<R>> = (0..jobs.len()).map(|_| None).collect();
    let mut first_error = None;
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            let sender = sender.clone();
            let (next, failed, work, describe, order) = (&next, &failed, &work, &describe, &order);
            scope.spawn(move || loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let job = &jobs[i];
                let _ = sender.send(Event::Started(i));
                let reported = std::cell::Cell::new(0u64);
                let report = |units: u64| {
                    reported.set(reported.get() + units);
                    let _ = sender.send(Event::Advance(units));
                };
                let result = work(job, &report);
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                let rest = describe(job).1.saturating_sub(reported.get());
                let _ = sender.send(Event::Done(i, result, rest));
            });
        }
        drop(sender);
        for event in receiver {
            match event {
                Event::Started(i) => tracker.progress.set_message(describe(&jobs[i]).0),
                Event::Advance(units) => tracker.advance(units),
                Event::Done(i, result, rest) => {
                    tracker.advance(rest);
                    match result {
                        Ok(r) => results[i] = Some(r),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| anyhow!("an evaluation job did not finish")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::tests::synthetic_images;
    use crate::commands::truth::{compute_pairs, TruthOptions};
    use crate::compute::DeviceKind;
    use crate::network::tests::tiny_spec;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bns-eval-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A random 4×4 image model with 4 classes (the synthetic dataset's), and its pairs at
    /// guidance 0.5, written into `dir`.
    fn image_setup(dir: &Path) -> (PathBuf, PathBuf, Model) {
        let mut spec = tiny_spec([1, 4, 4], 4);
        spec.dataset = "fashion-mnist".into();
        let model = Model::random(spec, 7).unwrap();
        let model_path = dir.join("m.safetensors");
        model.save(&model_path).unwrap();
        let model = Model::load(&model_path).unwrap();
        let options = TruthOptions {
            count: 24,
            validation: 10,
            seed: 3,
            guidance: 0.5,
            class: None,
            rtol: 1e-6,
            atol: 1e-6,
            batch: 24,
        };
        let pairs = compute_pairs(&model, &options, &mut |_| {}).unwrap();
        let pairs_path = dir.join("pairs.safetensors");
        pairs.save(&pairs_path).unwrap();
        (model_path, pairs_path, model)
    }

    fn args(model: &Path, pairs: &Path, output: &Path) -> EvalArgs {
        EvalArgs {
            model: model.to_path_buf(),
            pairs: pairs.to_path_buf(),
            solvers: Vec::new(),
            nfe: vec![2, 3, 4],
            classifier: None,
            classifier_steps: 5,
            dataset: None,
            fd_samples: 0,
            fd_nfe: vec![4],
            output: output.to_path_buf(),
            compute: ComputeArgs {
                device: DeviceKind::Cpu,
                threads: Some(2),
            },
        }
    }

    fn synthetic(name: DatasetName) -> Result<Dataset> {
        assert_eq!(name, DatasetName::FashionMnist);
        Ok(synthetic_images(4, 200, 60))
    }

    /// A "distilled" solver file for `model_id`: the Euler table at 4 NFE, kind `bns`.
    fn solver_file(model_id: &str, guidance: f64) -> SolverFile {
        solver_file_at(4, model_id, guidance)
    }

    /// A "distilled" solver file for `model_id`: the Euler table at `nfe`, kind `bns`.
    fn solver_file_at(nfe: usize, model_id: &str, guidance: f64) -> SolverFile {
        let table = Method::Euler.build(nfe, Grid::Uniform).unwrap();
        let mut f = SolverFile::new("bns-4", "bns", guidance, table);
        f.model_id = Some(model_id.to_string());
        f
    }

    #[test]
    fn psnr_table_has_every_cell_and_matches_solver_psnr() {
        let dir = scratch("table");
        let (model_path, pairs_path, model) = image_setup(&dir);
        let solvers = dir.join("solvers");
        std::fs::create_dir_all(&solvers).unwrap();
        solver_file(model.id(), 0.5)
            .save(&solvers.join("bns-4.json"))
            .unwrap();
        solver_file(&"ab".repeat(32), 0.5)
            .save(&solvers.join("other-model.json"))
            .unwrap();
        solver_file(model.id(), 2.0)
            .save(&solvers.join("other-guidance.json"))
            .unwrap();
        std::fs::write(solvers.join("manifest.json"), "{\"models\": []}").unwrap();
        let out = dir.join("out");
        let mut a = args(&model_path, &pairs_path, &out);
        a.solvers = vec![solvers.clone()];
        let e = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();

        // Every classical method × grid × supported NFE, and nothing else.
        for method in Method::ALL {
            for grid in Grid::ALL {
                for nfe in [2, 3, 4] {
                    let label = format!("{}-{}", method.name(), grid.name());
                    let cell = e.psnr_cell(&label, nfe);
                    assert_eq!(
                        cell.is_some(),
                        nfe % method.stages() == 0,
                        "{label} at {nfe}"
                    );
                }
            }
        }
        let classical = e.psnr.iter().filter(|c| c.grid != "learned").count();
        assert_eq!(classical, (4 * 3 + 2 * 2 + 1) * 2);
        // The distilled solver: only the one for this model and guidance.
        let bns: Vec<&PsnrCell> = e.psnr.iter().filter(|c| c.kind == "bns").collect();
        assert_eq!(bns.len(), 1);
        assert_eq!((bns[0].solver.as_str(), bns[0].nfe), ("bns", 4));
        let notes = e.notes.join("\n");
        assert!(
            notes.contains("other-model.json") && notes.contains(&"ab".repeat(32)),
            "{notes}"
        );
        assert!(notes.contains("other-guidance.json"), "{notes}");
        assert!(notes.contains("manifest.json"), "{notes}");

        // One cell equals metrics::solver_psnr; the bns file holds the Euler table.
        let pairs = Pairs::load(&pairs_path).unwrap();
        let table = Method::DpmPp2m.build(3, Grid::Edm).unwrap();
        let (mean, std) = mean_std(&solver_psnr(&model, &table, &pairs.validation(), 0.5).unwrap());
        let cell = e.psnr_cell("dpmpp2m-edm", 3).unwrap();
        assert_eq!((cell.mean, cell.std), (mean, std));
        assert_eq!(bns[0].mean, e.psnr_cell("euler-uniform", 4).unwrap().mean);

        // psnr.csv reads back to the same cells.
        let csv = std::fs::read_to_string(out.join("psnr.csv")).unwrap();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("solver,kind,grid,nfe,psnr_mean,psnr_std")
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), e.psnr.len());
        let row = rows
            .iter()
            .find(|r| r[0] == "dpmpp2m-edm" && r[3] == "3")
            .unwrap();
        assert_eq!((row[1], row[2]), ("dpmpp2m", "edm"));
        assert_eq!(row[4].parse::<f64>().unwrap(), mean);
        assert_eq!(row[5].parse::<f64>().unwrap(), std);

        // results.md: the header, one row per solver with a column per NFE, a bold best.
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        assert!(
            md.contains(model.id()) && md.contains("pairs.safetensors"),
            "{md}"
        );
        assert!(md.contains("10 validation pairs") && md.contains("Guidance w = 0.5"));
        assert!(md.contains("| solver | NFE 2 | NFE 3 | NFE 4 |"), "{md}");
        let table_rows: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| solver"))
            .collect();
        assert_eq!(table_rows.len(), 1 + 14, "{md}");
        for row in &table_rows {
            assert_eq!(row.matches('|').count(), 5, "{row}");
        }
        assert!(md.contains("**"), "{md}");
        let midpoint = table_rows
            .iter()
            .find(|r| r.starts_with("| midpoint-uniform |"))
            .unwrap();
        assert!(
            midpoint.contains("|  |"),
            "the NFE 3 cell is empty: {midpoint}"
        );
        // The chart and the sample grids.
        for name in ["psnr.png", "psnr.svg"] {
            assert!(out.join(name).exists(), "{name}");
        }
        for name in ["samples-bns-nfe4.png", "samples-reference-rk4-nfe200.png"] {
            assert!(out.join(name).exists(), "{name}");
        }
        assert!(e.pictures.len() >= 5, "{:?}", e.pictures);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn explicit_solver_files_for_another_model_or_guidance_are_errors() {
        let dir = scratch("explicit");
        let (model_path, pairs_path, model) = image_setup(&dir);
        let other_id = "cd".repeat(32);
        let foreign = dir.join("foreign.json");
        solver_file(&other_id, 0.5).save(&foreign).unwrap();
        let mut a = args(&model_path, &pairs_path, &dir.join("out"));
        a.solvers = vec![foreign];
        let e = format!(
            "{:#}",
            evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap_err()
        );
        assert!(
            e.contains("foreign.json") && e.contains(&other_id) && e.contains(model.id()),
            "{e}"
        );
        let wrong = dir.join("wrong-w.json");
        solver_file(model.id(), 1.0).save(&wrong).unwrap();
        a.solvers = vec![wrong];
        let e = format!(
            "{:#}",
            evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap_err()
        );
        assert!(e.contains("wrong-w.json") && e.contains("guidance"), "{e}");
        a.solvers = vec![dir.join("missing.json")];
        let e = format!(
            "{:#}",
            evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap_err()
        );
        assert!(e.contains("missing.json"), "{e}");
        let mut a = args(&model_path, &pairs_path, &dir.join("out"));
        a.nfe = vec![0];
        assert!(evaluate(&a, &Device::Cpu, &mut synthetic, false).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn frechet_distances_with_a_trained_then_reused_classifier() {
        let dir = scratch("fd");
        let (model_path, pairs_path, model) = image_setup(&dir);
        let out = dir.join("out");
        let file = dir.join("bns.json");
        solver_file_at(3, model.id(), 0.5).save(&file).unwrap();
        let mut a = args(&model_path, &pairs_path, &out);
        a.solvers = vec![file];
        a.fd_samples = 40;
        // At 3 NFE only the one-stage methods run: fewer distances to compute.
        a.nfe = vec![3];
        a.fd_nfe = vec![3];
        let e = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();
        let d = e.distances.as_ref().unwrap();
        let DistanceKind::Frechet {
            trained,
            classifier,
            ..
        } = &d.kind
        else {
            panic!("{:?}", d.kind)
        };
        assert!(*trained);
        assert_eq!(classifier, &out.join(CLASSIFIER_FILE));
        // Every solver at NFE 3 (the 4 one-stage methods on 2 grids), the reference, the floor.
        assert_eq!(d.rows.len(), 1 + 8 + 1 + 1, "{:?}", d.rows);
        assert!(d.rows.iter().all(|r| r.value.is_finite() && r.value >= 0.0));
        let bns = d.rows.iter().find(|r| r.solver == "bns").unwrap();
        let euler = d.rows.iter().find(|r| r.solver == "euler-uniform").unwrap();
        assert_eq!(bns.value, euler.value, "same table, same seeds");
        assert!(d.rows.iter().any(|r| r.solver == REFERENCE_LABEL));
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        assert!(md.contains("not Inception FID"), "{md}");
        assert!(md.contains(REFERENCE_LABEL), "{md}");
        let csv = std::fs::read_to_string(out.join("distance.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + d.rows.len());

        // A second run reuses the classifier and gives the same distances.
        let again = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();
        let d2 = again.distances.unwrap();
        assert!(matches!(
            d2.kind,
            DistanceKind::Frechet { trained: false, .. }
        ));
        assert_eq!(d.rows, d2.rows);

        // A corrupt classifier file is an error naming it.
        let bad = dir.join("bad-classifier.safetensors");
        std::fs::write(&bad, b"garbage").unwrap();
        a.classifier = Some(bad);
        let e = format!(
            "{:#}",
            evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap_err()
        );
        assert!(e.contains("bad-classifier.safetensors"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn two_dimensional_models_use_sliced_wasserstein() {
        let dir = scratch("sw");
        let mut spec = tiny_spec([2, 1, 1], 0);
        spec.dataset = "checkerboard".into();
        let model = Model::random(spec, 3).unwrap();
        let model_path = dir.join("m.safetensors");
        model.save(&model_path).unwrap();
        let options = TruthOptions {
            count: 20,
            validation: 8,
            seed: 1,
            guidance: 0.0,
            class: None,
            rtol: 1e-6,
            atol: 1e-6,
            batch: 20,
        };
        let pairs = compute_pairs(&model, &options, &mut |_| {}).unwrap();
        let pairs_path = dir.join("pairs.safetensors");
        pairs.save(&pairs_path).unwrap();
        let out = dir.join("out");
        let mut a = args(&model_path, &pairs_path, &out);
        a.fd_samples = 64;
        a.nfe = vec![4];
        let sources = DataSources::default();
        let mut load = |name: DatasetName| {
            let mut data = data::load(name, &sources, 0)?;
            data.test.len = 1000;
            data.test.x.truncate(2000);
            data.test.labels.truncate(1000);
            Ok(data)
        };
        let e = evaluate(&a, &Device::Cpu, &mut load, false).unwrap();
        let d = e.distances.unwrap();
        assert!(matches!(d.kind, DistanceKind::SlicedWasserstein { .. }));
        assert_eq!(d.rows.len(), 14 + 2);
        assert!(d.rows.iter().all(|r| r.value.is_finite()));
        assert!(!out.join(CLASSIFIER_FILE).exists());
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        assert!(md.contains("sliced Wasserstein"), "{md}");
        let grids = ["uniform", "edm"].map(|g| out.join(format!("samples-euler-{g}-nfe4.png")));
        assert!(grids.iter().any(|p| p.exists()), "{grids:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_model_without_a_known_dataset_skips_the_distances_with_a_note() {
        let dir = scratch("nodata");
        let (model_path, pairs_path, _) = image_setup(&dir);
        // Rewrite the model with an unknown dataset name (its pairs then no longer match).
        let mut spec = Model::load(&model_path).unwrap().spec().clone();
        spec.dataset = "none (random weights)".into();
        let model = Model::random(spec, 7).unwrap();
        model.save(&model_path).unwrap();
        let options = TruthOptions {
            count: 12,
            validation: 4,
            seed: 3,
            guidance: 0.5,
            class: None,
            rtol: 1e-5,
            atol: 1e-5,
            batch: 12,
        };
        let model = Model::load(&model_path).unwrap();
        compute_pairs(&model, &options, &mut |_| {})
            .unwrap()
            .save(&pairs_path)
            .unwrap();
        let mut a = args(&model_path, &pairs_path, &dir.join("out"));
        a.fd_samples = 10;
        a.nfe = vec![4];
        let e = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();
        assert!(e.distances.is_none());
        assert!(
            e.notes.iter().any(|n| n.contains("--dataset")),
            "{:?}",
            e.notes
        );
        // --dataset that disagrees with a model's own dataset is refused.
        let (model_path, pairs_path, _) = image_setup(&dir);
        a.model = model_path;
        a.pairs = pairs_path;
        a.dataset = Some(DatasetName::Mnist);
        let e = format!(
            "{:#}",
            evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap_err()
        );
        assert!(
            e.contains("--dataset mnist") && e.contains("fashion-mnist"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
