//! The quality-and-diversity distances of `bns eval`: the Fréchet distance on a small
//! classifier's features for image models (not Inception FID), the sliced Wasserstein distance
//! for 2-D models, both against the real test split, and the real-data floor.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use candle_core::Device;
use web_sampler::model::Model;
use web_sampler::sample::{is_image, sample, SampleRequest, MAX_BATCH};
use web_sampler::solver::NsTable;

use super::solvers::SampleJob;
use super::EvalArgs;
use crate::classifier::{self, Classifier, TrainSettings};
use crate::data::{self, Dataset, DatasetName, DatasetSource, ImageFolderOptions, IMAGES_PREFIX};
use crate::frechet::{FrechetReference, GaussianFit, SlicedReference};

/// The classifier file used (or trained) when `--classifier` is not given.
pub const CLASSIFIER_FILE: &str = "classifier.safetensors";
/// Generated samples for the distances: chunk `c` starts from seed `DISTANCE_SEED + c`.
const DISTANCE_SEED: u64 = 1_000_000;
/// Rows per sampling call when generating for the distances (rounded to whole class cycles).
const DISTANCE_CHUNK: usize = 500;
/// Random directions (and their seed) of the sliced Wasserstein distance.
const SW_DIRECTIONS: usize = 256;
const SW_SEED: u64 = 0;

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
        /// Whether it was trained to tell the images' rotations apart, the dataset having no
        /// classes ([`classifier::rotation_task`]), rather than to tell the classes apart.
        rotations: bool,
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
    /// The dataset's recorded name (`fashion-mnist`, `images:<folder name>`).
    pub dataset: String,
    /// Generated samples per solver (and real train rows for the floor).
    pub samples: usize,
    /// Rows of the test split compared against.
    pub test_rows: usize,
    /// Every solver at every `--fd-nfe`, then the reference, then the floor.
    pub rows: Vec<DistanceRow>,
}

/// The real test data the generated samples are measured against, ready for the comparisons,
/// with the real-data floor and what the table says about them.
pub struct TestReference {
    split: TestSplit,
    kind: DistanceKind,
    dataset: String,
    test_rows: usize,
    floor: DistanceRow,
}

/// The test split as a distance sees it.
enum TestSplit {
    /// The classifier and the Gaussian fit of the test images' features.
    Features {
        classifier: Box<Classifier>,
        test: FrechetReference,
    },
    /// The test points.
    Points { test: SlicedReference },
}

impl TestSplit {
    /// The distance of `samples` `[N, D]` from the test split; `Err` names what went wrong
    /// (e.g. non-finite samples).
    fn distance(&self, samples: &[f32]) -> std::result::Result<f64, String> {
        match self {
            TestSplit::Features { classifier, test } => {
                let features = classifier.features(samples).map_err(|e| e.to_string())?;
                let fit = GaussianFit::of_rows(&features, classifier.feature_dim())?;
                test.distance(&fit)
            }
            TestSplit::Points { test } => test.distance(samples),
        }
    }
}

impl TestReference {
    /// The distance of `samples` `[N, D]` from the test split; `Err` names what went wrong.
    pub fn distance(&self, samples: &[f32]) -> std::result::Result<f64, String> {
        self.split.distance(samples)
    }

    /// The table: one row per job with its measured distance (NaN, with a note, where there is
    /// none), then the floor.
    pub fn into_distances(
        self,
        jobs: &[SampleJob],
        measured: Vec<std::result::Result<f64, String>>,
        samples: usize,
        note: &mut dyn FnMut(String),
    ) -> Distances {
        let mut rows = Vec::new();
        for (job, value) in jobs.iter().zip(measured) {
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
        rows.push(self.floor);
        Distances {
            kind: self.kind,
            dataset: self.dataset,
            samples,
            test_rows: self.test_rows,
            rows,
        }
    }
}

/// Decides whether the distances can be measured and loads the dataset for them: the model's
/// own dataset, or `--dataset` (which must then agree with it), with the model's data shape (a
/// folder of images is read at the model's size and channels). A model trained on a folder needs
/// `--dataset images:DIR`, its file naming the folder but not its path. `None` (with a note) when
/// they are not measured.
pub fn distance_dataset(
    args: &EvalArgs,
    model: &Model,
    load_dataset: &mut dyn FnMut(&DatasetSource, &ImageFolderOptions) -> Result<Dataset>,
    note: &mut dyn FnMut(String),
) -> Result<Option<Dataset>> {
    if args.fd_samples == 0 {
        note("--fd-samples 0: no FD / sliced Wasserstein distances".into());
        return Ok(None);
    }
    let spec = model.spec();
    let recorded = &spec.dataset;
    let own = recorded.parse::<DatasetName>().ok();
    let folder = recorded.starts_with(IMAGES_PREFIX);
    let source = match (&args.dataset, own) {
        (Some(given), _) if (own.is_some() || folder) && !given.matches_recorded(recorded) => {
            bail!(
                "--dataset {given}: the model {} was trained on {recorded}",
                args.model.display(),
            )
        }
        (Some(given), _) => given.clone(),
        (None, Some(own)) => DatasetSource::Named(own),
        (None, None) if folder => {
            note(format!(
                "no FD distances: the model was trained on a folder of images ({recorded}); pass \
                 --dataset images:DIR with that folder to measure them on its test split"
            ));
            return Ok(None);
        }
        (None, None) => {
            note(format!(
                "no FD / sliced Wasserstein distances: the model's file names no known dataset \
                 ({recorded:?}); pass --dataset to measure them"
            ));
            return Ok(None);
        }
    };
    let (c, h, w) = match spec.data_shape.as_slice() {
        &[c, h, w] => (c, h, w),
        _ => (0, 0, 0),
    };
    let options = match source {
        DatasetSource::Named(_) => ImageFolderOptions::default(),
        DatasetSource::Images(_) => ImageFolderOptions {
            size: (h == w).then_some(h),
            channels: Some(c),
            skip_bad: args.skip_bad_images,
        },
    };
    let dataset = load_dataset(&source, &options)?;
    if dataset.shape.as_slice() != spec.data_shape.as_slice() {
        bail!(
            "{}: the model's data shape {:?} is not {source}'s {:?}",
            args.model.display(),
            spec.data_shape,
            dataset.shape
        );
    }
    if dataset.test.len < 2 {
        bail!("{source}: the test split has fewer than 2 rows");
    }
    Ok(Some(dataset))
}

/// The classifier file this run uses.
pub fn classifier_path(args: &EvalArgs) -> PathBuf {
    args.classifier
        .clone()
        .unwrap_or_else(|| args.output.join(CLASSIFIER_FILE))
}

/// The real data the samples are compared with: for images, the classifier (loaded from
/// `--classifier` or `<output>/classifier.safetensors`, else trained and saved there) and the
/// Gaussian fit of the test split's features; for 2-D points, the test split itself. The floor
/// is the distance of `--fd-samples` rows of the train split, spread evenly over it.
pub fn prepare_test_reference(
    args: &EvalArgs,
    dataset: Dataset,
    device: &Device,
    show_progress: bool,
) -> Result<TestReference> {
    let name = dataset.name.clone();
    let image = is_image(&dataset.shape);
    // Rows spread evenly over the train split (a split may be ordered by class, as MNIST's is).
    let floor_rows = args.fd_samples.min(dataset.train.len);
    let floor_indices: Vec<usize> = (0..floor_rows)
        .map(|i| i * dataset.train.len / floor_rows.max(1))
        .collect();
    let (floor_points, _) = data::batch(&dataset.train, &floor_indices);
    let floor_points = floor_points.as_slice();
    let (split, kind) = if image {
        let path = classifier_path(args);
        let trained = args.classifier.is_none() && !path.exists();
        // Without classes, the classifier learns the images' rotations.
        let rotations = dataset.num_classes < 2;
        let rotated = rotations.then(|| classifier::rotation_task(&dataset));
        let labelled = rotated.as_ref().unwrap_or(&dataset);
        let classifier = if trained {
            let settings = TrainSettings {
                steps: args.classifier_steps,
                ..TrainSettings::default()
            };
            let started = Instant::now();
            let classifier = classifier::train(labelled, &settings, device, show_progress)?;
            classifier.save(&path)?;
            println!(
                "classifier: trained on {name}{} in {:.0} s ({} steps), test accuracy {:.2}%; \
                 saved to {}",
                if rotations {
                    " to tell the images' rotations apart (no class labels)"
                } else {
                    ""
                },
                started.elapsed().as_secs_f64(),
                settings.steps,
                100.0 * classifier.meta().test_accuracy,
                path.display()
            );
            classifier
        } else {
            let classifier = Classifier::load(&path, device)?;
            classifier.check_dataset(labelled, &path)?;
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
            rotations,
        };
        let test = FrechetReference::new(test);
        (
            TestSplit::Features {
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
        (TestSplit::Points { test }, kind)
    };
    let floor = split
        .distance(floor_points)
        .map_err(|problem| anyhow!("{name}'s train split against its test split: {problem}"))?;
    Ok(TestReference {
        split,
        kind,
        dataset: name,
        test_rows: dataset.test.len,
        floor: DistanceRow {
            solver: floor_label(floor_rows, image),
            nfe: None,
            value: floor,
        },
    })
}

/// `count` samples of `table` at `guidance`, from the distance seeds, classes cycling over all
/// classes (whole cycles per chunk); `report` hears of the NFE × rows done.
pub fn generate(
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
            first_row: 0,
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
