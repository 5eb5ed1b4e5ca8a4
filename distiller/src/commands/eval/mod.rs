//! `bns eval`: every classical and distilled solver of one model, side by side, against the
//! ground truth (`docs/MATH.md` §8).
//!
//! * **PSNR** (mean ± std over the test pairs of a pairs file, at the pairs' guidance),
//!   measured by the runtime's CPU path ([`metrics::solver_psnr`]): every classical method on
//!   every grid at every NFE of `--nfe` it supports (an NFE that is not a multiple of a method's
//!   stages leaves an empty cell), and every distilled solver given with `--solvers`.
//! * **Quality and diversity**: for image models, the Fréchet distance between the features of
//!   generated samples and of the real test split, the features taken from a small classifier
//!   trained on the same dataset ([`crate::classifier`]: *not* Inception FID); for 2-D models,
//!   the sliced Wasserstein distance between the points. Generated samples come from fixed seeds
//!   with the classes cycling, for every solver at each `--fd-nfe`, for a tight reference
//!   ([`solvers::REFERENCE_LABEL`]) and, as a floor, for real train images against the test split.
//! * **Outputs** in the output folder: `psnr.csv`, `results.md`, `psnr.png` and `psnr.svg`,
//!   `distance.csv`, `samples-<solver>-nfe<N>.png` grids (the same seeds for every solver) and,
//!   for image models measured against a test split, `real-test.png` (real test images).
//! * **Interrupted**, it continues: each finished PSNR and distance job is kept in
//!   `eval.partial.json` in the output folder until `results.md` is written, and a rerun with
//!   the same inputs takes those instead of measuring them again ([`finished`]).
//!
//! [`evaluate`] does the work and returns an [`Evaluation`]; [`run`] is the command. The solvers
//! compared are in [`solvers`], the distances in [`distance`], the files written in [`report`],
//! and [`jobs`] runs the sampling on worker threads under one progress bar.

mod distance;
mod finished;
mod jobs;
mod report;
pub(crate) mod solvers;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use web_sampler::model::Model;
use web_sampler::sample::{grid_picture, is_image, sample, SampleRequest, Samples};
use web_sampler::solver::MAX_STEPS;

use crate::compute::ComputeArgs;
use crate::data::{self, DataSources, Dataset, DatasetSource, ImageFolderOptions};
use crate::files::{file_sha256, write_atomically};
use crate::pairs::Pairs;
use crate::picture::{save_png, scatter_picture};
use crate::plot::save_line_chart;
use crate::psnr_cache::PsnrCache;
use distance::{classifier_path, distance_dataset, generate, prepare_test_reference, Distances};
use finished::Finished;
use jobs::{run_jobs, Tracker};
use report::{dataset_title, distance_csv, markdown, psnr_chart, psnr_csv};
use solvers::{
    classical_solvers, collect_distilled, distance_jobs, distilled_solvers, picture_jobs,
    EvalSolver,
};

/// Seed of the sample grids (the same for every solver).
const PICTURE_SEED: u64 = 0;
/// Images per sample grid, and points per scatter plot of a 2-D model.
const PICTURE_IMAGES: usize = 16;
const SCATTER_POINTS: usize = 1000;
/// The grid of real test images written beside the sample grids.
pub const REAL_TEST_PICTURE: &str = "real-test.png";

#[derive(Args, Clone, Debug)]
#[command(after_help = "\
PSNR: every classical method (Euler, midpoint, Heun, RK4, AB2, AB3, DPM-Solver++(2M)) on the uniform
and EDM grids at every --nfe it supports, and every distilled solver given, on the test pairs of
--pairs (which took no part in distilling) at their guidance, run by the runtime's CPU path.

Quality and diversity: for image models, the Fréchet distance (FD) between the features of
--fd-samples generated images and of the real test split, the features taken from a small MLP
classifier trained on the same dataset: FD on a small Fashion-MNIST/MNIST classifier's features,
NOT Inception FID. A model trained on images:DIR needs --dataset images:DIR (the same folder):
its classifier learns the folder's classes, or, with no class folders, which rotation was applied
to an image. For 2-D models, the sliced Wasserstein distance between the points.
This part is the expensive one on a CPU: every solver at every --fd-nfe, and a 200-NFE reference,
generate --fd-samples samples each (a width-512 Fashion-MNIST model with the defaults: about 4
minutes on 2 busy cores, plus 2 minutes to train the classifier once); --fd-samples 0 skips it.

Writes psnr.csv, results.md, psnr.png, psnr.svg, distance.csv, samples-<solver>-nfe<N>.png,
real-test.png (real test images) and classifier.safetensors into the output folder.")]
pub struct EvalArgs {
    /// The model file (.safetensors)
    #[arg(long)]
    pub model: PathBuf,
    /// Ground-truth pairs from `bns truth` for this model: PSNR is measured on their test split,
    /// every sample is generated at their guidance
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
    /// The model's dataset, for models whose file names none (e.g. from `bns model init`), and
    /// the folder of a model trained on `images:DIR` (its file names the folder, not its path):
    /// a built-in name or images:DIR, read at the model's size and channels
    #[arg(long, value_name = "NAME|images:DIR")]
    pub dataset: Option<DatasetSource>,
    /// images:DIR only: leave unreadable image files out (listed on stderr) instead of refusing
    #[arg(long)]
    pub skip_bad_images: bool,
    /// Generated samples per solver for FD / sliced Wasserstein (0 skips them). Expensive on a
    /// CPU: every solver at every --fd-nfe, and a 200-NFE reference, generate this many
    #[arg(long, default_value_t = 2000)]
    pub fd_samples: usize,
    /// NFE values at which FD / sliced Wasserstein is measured and sample grids are drawn
    #[arg(long, value_delimiter = ',', default_value = "8,16")]
    pub fd_nfe: Vec<usize>,
    /// Take the PSNR figures this file holds (`bns distill --psnr-cache` keeps them: each
    /// solver's and every classical solver's at its NFE, on the same pairs) instead of
    /// measuring them again, and keep those measured here
    #[arg(long, value_name = "FILE")]
    pub psnr_cache: Option<PathBuf>,
    /// Output folder (created if missing)
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub compute: ComputeArgs,
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
    /// Pairs of the test split, on which the PSNR is measured.
    pub test_pairs: usize,
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
    let mut load = |source: &DatasetSource, options: &ImageFolderOptions| {
        data::load(source, &sources, options, 0)
    };
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

/// The model for a phase of `jobs` jobs on `threads` threads: the workers take the threads
/// first (one job each), and each CPU forward splits its batch across the threads left over
/// (the samples do not depend on it).
fn model_for_jobs(model: &Model, threads: usize, jobs: usize) -> Model {
    let mut model = model.clone();
    model.set_threads(threads / jobs.clamp(1, threads.max(1)));
    model
}

/// Runs the whole evaluation and writes its outputs into `args.output`. `load_dataset` supplies
/// the dataset for the distances (the command reads the installed files or the folder; tests pass
/// small sets).
pub fn evaluate(
    args: &EvalArgs,
    device: &Device,
    load_dataset: &mut dyn FnMut(&DatasetSource, &ImageFolderOptions) -> Result<Dataset>,
    show_progress: bool,
) -> Result<Evaluation> {
    let started = Instant::now();
    check_nfe("--nfe", &args.nfe)?;
    check_nfe("--fd-nfe", &args.fd_nfe)?;
    if args.fd_samples == 1 {
        bail!("--fd-samples must be 0 (skip the distances) or at least 2");
    }
    let threads = args.compute.thread_count()?;
    let model = Model::load(&args.model)?;
    let pairs = Pairs::load(&args.pairs)?;
    pairs.check_for(&model, &args.pairs)?;
    let guidance = pairs.meta.guidance;
    let test = pairs.test_split(&args.pairs)?;
    let cache = match &args.psnr_cache {
        Some(file) => PsnrCache::open(file, model.id(), &file_sha256(&args.pairs)?, guidance)?,
        None => PsnrCache::none(),
    };
    let mut notes = Vec::new();
    let mut note = |text: String| {
        println!("note: {text}");
        notes.push(text);
    };

    let distilled = collect_distilled(&args.solvers, &model, guidance, &mut note)?;
    let mut solvers = distilled_solvers(distilled);
    solvers.extend(classical_solvers(&args.nfe));

    let dataset = distance_dataset(args, &model, &mut *load_dataset, &mut note)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("{}: cannot create the output folder", args.output.display()))?;
    // The classifier (trained here if needed), the real data's statistics and the floor, before
    // the evaluation's progress bar starts; the dataset itself is not kept.
    let mut pictures = Vec::new();
    if let Some(dataset) = dataset.as_ref().filter(|d| is_image(&d.shape)) {
        pictures.push(save_real_test_grid(dataset, &args.output)?);
    }
    let reference = match dataset {
        None => None,
        Some(dataset) => Some(prepare_test_reference(
            args,
            dataset,
            device,
            show_progress,
        )?),
    };

    // Jobs finished by an interrupted run of this evaluation are not run again.
    let classifier = classifier_path(args);
    let classifier = (reference.is_some() && classifier.is_file()).then_some(classifier);
    let finished = Finished::open(
        &args.output,
        finished::inputs(
            model.id(),
            &args.pairs,
            classifier.as_deref(),
            args.fd_samples,
        )?,
        &mut note,
    );

    let image = is_image(&model.spec().data_shape);
    let picture_count = if image {
        PICTURE_IMAGES
    } else {
        SCATTER_POINTS
    };
    let distance_nfe: Vec<usize> = if reference.is_some() {
        args.fd_nfe.clone()
    } else {
        Vec::new()
    };
    let distance_jobs = distance_jobs(&solvers, &distance_nfe);

    // PSNR, then pictures, then distances, under one progress bar weighted by NFE × samples.
    let psnr_cost = |s: &EvalSolver| (s.nfe * test.len) as u64;
    let mut total: u64 = solvers.iter().map(psnr_cost).sum();
    total += distance_jobs
        .iter()
        .map(|j| (j.nfe * args.fd_samples) as u64)
        .sum::<u64>();
    let mut tracker = Tracker::new(
        "eval",
        total,
        "network evaluations (samples × NFE)",
        show_progress,
    );

    let psnr_model = model_for_jobs(&model, threads, solvers.len());
    let psnr_values = run_jobs(
        &solvers,
        threads,
        &mut tracker,
        |s| (format!("PSNR {} at {} NFE", s.label, s.nfe), psnr_cost(s)),
        |s, _| {
            let key = finished::key("psnr", &s.label, s.nfe, &s.table);
            if let Some(Ok(kept)) = finished.get(&key) {
                if let [mean, std] = kept[..] {
                    return Ok((mean, std));
                }
            }
            let (mean, std) = cache.psnr(&psnr_model, &s.table, &test, guidance)?;
            finished.keep(&key, Ok(&[mean, std]))?;
            Ok((mean, std))
        },
    )?;
    let psnr: Vec<PsnrCell> = solvers
        .iter()
        .zip(psnr_values)
        .map(|(s, (mean, std))| PsnrCell {
            solver: s.label.clone(),
            kind: s.kind().to_string(),
            grid: s.grid_name().to_string(),
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
    let picture_model = model_for_jobs(&model, threads, picture_jobs.len());
    let generated = run_jobs(
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
                first_row: 0,
            };
            let samples = sample(&picture_model, &j.table, &request)?;
            let picture = if image {
                grid_picture(&samples, 4)?
            } else {
                scatter_picture(&samples.values, 512)
            };
            save_png(&j.path, &picture)?;
            Ok(j.path.clone())
        },
    )?;
    pictures.extend(generated);

    let distances = match reference {
        None => None,
        Some(reference) => {
            let distance_model = model_for_jobs(&model, threads, distance_jobs.len());
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
                    let key = finished::key("distance", &j.label, j.nfe, &j.table);
                    match finished.get(&key) {
                        Some(Ok(kept)) if kept.len() == 1 => return Ok(Ok(kept[0])),
                        Some(Err(problem)) => return Ok(Err(problem)),
                        _ => {}
                    }
                    let samples =
                        generate(&distance_model, &j.table, args.fd_samples, guidance, report)?;
                    let distance = reference.distance(&samples);
                    finished.keep(
                        &key,
                        distance
                            .as_ref()
                            .map(std::slice::from_ref)
                            .map_err(String::as_str),
                    )?;
                    Ok(distance)
                },
            )?;
            Some(reference.into_distances(&distance_jobs, measured, args.fd_samples, &mut note))
        }
    };
    tracker.finish();

    let evaluation = Evaluation {
        model_id: model.id().to_string(),
        model_dataset: model.spec().dataset.clone(),
        pairs_file: args.pairs.clone(),
        guidance,
        rtol: pairs.meta.rtol,
        atol: pairs.meta.atol,
        truth_mean_nfe: pairs.meta.mean_nfe,
        test_pairs: test.len,
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
    finished.remove()?;
    Ok(evaluation)
}

/// Writes `real-test.png`: a grid of [`PICTURE_IMAGES`] test images spread over the test split,
/// beside the sample grids, for comparison.
fn save_real_test_grid(dataset: &Dataset, output: &std::path::Path) -> Result<PathBuf> {
    let count = PICTURE_IMAGES.min(dataset.test.len);
    let rows: Vec<usize> = (0..count).map(|i| i * dataset.test.len / count).collect();
    let (values, _) = data::batch(&dataset.test, &rows);
    let [c, h, w] = dataset.shape;
    let samples = Samples {
        values,
        shape: [count, c, h, w],
    };
    let path = output.join(REAL_TEST_PICTURE);
    save_png(&path, &grid_picture(&samples, 4)?)?;
    Ok(path)
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
