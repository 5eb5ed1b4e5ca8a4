//! The small image classifier whose features `bns eval` compares generated and real images with
//! (`docs/MATH.md` §8): an MLP `D → 256 → 128 → K` with SiLU, trained with AdamW on the
//! train split of the model's dataset. The features are the 128 activations of the second hidden
//! layer (after SiLU). A Fréchet distance on these features is *not* Inception FID: it is only
//! comparable with itself, on the same classifier file. A dataset without classes (a folder of
//! images with no class folders) has no labels to learn: its classifier learns which rotation was
//! applied to an image instead ([`rotation_task`]), a self-supervised task whose features still
//! describe the images' content (Gidaris et al., "Unsupervised Representation Learning by
//! Predicting Image Rotations", ICLR 2018).
//!
//! # File format (version [`CLASSIFIER_FORMAT_VERSION`])
//!
//! One safetensors file with the `F32` tensors `layers.{i}.weight` `[out, in]` and
//! `layers.{i}.bias` `[out]` for `i = 0, 1, 2`, and `__metadata__` key
//! [`CLASSIFIER_METADATA_KEY`] holding [`ClassifierMeta`] as JSON (dataset, sizes, training
//! settings and the test accuracy). Loading validates everything and names the file in every
//! error; saving writes a temporary file and renames it.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};
use web_sampler::noise::Noise;
use web_sampler::tensor_file::{self, TensorBytes, TensorFile};
use web_sampler::versioned_json::MetadataFormat;

use crate::data::{self, Dataset, Split};
use crate::files::write_atomically;
use crate::optim::AdamW;
use crate::progress::Progress;

/// Version of the classifier file this build reads and writes.
pub const CLASSIFIER_FORMAT_VERSION: u32 = 1;
/// The `__metadata__` key whose value is the [`ClassifierMeta`] as JSON.
pub const CLASSIFIER_METADATA_KEY: &str = "bns.classifier";
/// The classifier metadata as a versioned document.
const CLASSIFIER_FORMAT: MetadataFormat = MetadataFormat {
    kind: "classifier",
    key: CLASSIFIER_METADATA_KEY,
    version: CLASSIFIER_FORMAT_VERSION,
    reader: "this build",
    advice: "; delete the file to train a new classifier",
    unversioned: None,
};
/// Widths of the two hidden layers; the second is the feature size.
pub const HIDDEN: [usize; 2] = [256, 128];
/// Rows per forward pass when computing features or accuracy.
const CHUNK: usize = 2048;

/// What a classifier file says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMeta {
    /// Must be [`CLASSIFIER_FORMAT_VERSION`].
    pub format_version: u32,
    /// The dataset it was trained on (command-line spelling, e.g. `fashion-mnist`).
    pub dataset: String,
    /// Values per input image `D`.
    pub input_dim: usize,
    /// Hidden widths (`[256, 128]`); the last is the feature size.
    pub hidden: Vec<usize>,
    /// Number of classes `K`.
    pub classes: usize,
    /// Always `silu`.
    pub activation: String,
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
    /// Fraction of the test split classified correctly.
    pub test_accuracy: f64,
    /// A reminder of what the features are for.
    pub note: String,
}

/// How to train a classifier.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSettings {
    pub steps: u64,
    pub batch: usize,
    /// Peak learning rate (cosine decay to 10% of it).
    pub lr: f64,
    pub seed: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            steps: 3000,
            batch: 256,
            lr: 2e-3,
            seed: 0,
        }
    }
}

/// A trained classifier: its description and its three layers on a candle device.
pub struct Classifier {
    meta: ClassifierMeta,
    /// `(weight [out, in], bias [out])` per layer.
    layers: Vec<(Tensor, Tensor)>,
}

/// The `(name, shape)` of every tensor of a classifier with these sizes, in file order.
fn tensor_shapes(input_dim: usize, classes: usize) -> Vec<(String, Vec<usize>)> {
    let widths = [input_dim, HIDDEN[0], HIDDEN[1], classes];
    let mut shapes = Vec::new();
    for (i, pair) in widths.windows(2).enumerate() {
        shapes.push((format!("layers.{i}.weight"), vec![pair[1], pair[0]]));
        shapes.push((format!("layers.{i}.bias"), vec![pair[1]]));
    }
    shapes
}

impl Classifier {
    pub fn meta(&self) -> &ClassifierMeta {
        &self.meta
    }

    /// Feature size (the width of the last hidden layer).
    pub fn feature_dim(&self) -> usize {
        HIDDEN[1]
    }

    /// Logits `[B, K]` and features `[B, 128]` of a batch `x` `[B, D]`.
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let layer = |h: &Tensor, i: usize| -> Result<Tensor> {
            let (w, b) = &self.layers[i];
            Ok(h.matmul(&w.t()?)?.broadcast_add(b)?)
        };
        let h1 = layer(x, 0)?.silu()?;
        let features = layer(&h1, 1)?.silu()?;
        let logits = layer(&features, 2)?;
        Ok((logits, features))
    }

    /// The features `[N, 128]` (row-major) of images `x` `[N, D]` with values in [−1, 1].
    pub fn features(&self, x: &[f32]) -> Result<Vec<f32>> {
        let dim = self.meta.input_dim;
        if !x.len().is_multiple_of(dim) {
            bail!(
                "the classifier takes rows of {dim} values; got {} values",
                x.len()
            );
        }
        let device = self.layers[0].0.device();
        let mut out = Vec::with_capacity(x.len() / dim * self.feature_dim());
        for chunk in x.chunks(CHUNK * dim) {
            let rows = chunk.len() / dim;
            let input = Tensor::from_slice(chunk, (rows, dim), device)?;
            let (_, features) = self.forward(&input)?;
            out.extend(features.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Fraction of `split`'s rows whose arg-max logit is their label.
    pub fn accuracy(&self, split: &Split) -> Result<f64> {
        let device = self.layers[0].0.device();
        let mut correct = 0usize;
        for start in (0..split.len).step_by(CHUNK) {
            let rows = CHUNK.min(split.len - start);
            let x = &split.x[start * split.dim..(start + rows) * split.dim];
            let input = Tensor::from_slice(x, (rows, split.dim), device)?;
            let (logits, _) = self.forward(&input)?;
            let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            correct += predicted
                .iter()
                .zip(&split.labels[start..start + rows])
                .filter(|(p, l)| p == l)
                .count();
        }
        Ok(correct as f64 / split.len.max(1) as f64)
    }

    /// Refuses a classifier trained on another dataset, for another image size or another
    /// number of classes; the error names `path` and both datasets.
    pub fn check_dataset(&self, dataset: &Dataset, path: &Path) -> Result<()> {
        let name = &dataset.name;
        if self.meta.dataset != *name
            || self.meta.input_dim != dataset.train.dim
            || self.meta.classes != dataset.num_classes
        {
            bail!(
                "{}: this classifier was trained on {} ({} values per image, {} classes), but \
                 the model's dataset is {name} ({} values per image, {} classes); remove the \
                 file or pass another --classifier to train or use one for {name}",
                path.display(),
                self.meta.dataset,
                self.meta.input_dim,
                self.meta.classes,
                dataset.train.dim,
                dataset.num_classes
            );
        }
        Ok(())
    }

    /// Writes the classifier atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let origin = path.display();
        let json = serde_json::to_string(&self.meta)
            .with_context(|| format!("{origin}: cannot encode the classifier metadata"))?;
        let shapes = tensor_shapes(self.meta.input_dim, self.meta.classes);
        let mut tensors = Vec::new();
        for ((name, shape), t) in shapes
            .iter()
            .zip(self.layers.iter().flat_map(|(w, b)| [w, b]))
        {
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            tensors.push(TensorBytes::f32s(name, shape.clone(), &values));
        }
        let bytes = tensor_file::write(&tensors, (CLASSIFIER_METADATA_KEY, &json))
            .map_err(|problem| anyhow!("{origin}: cannot encode the classifier file: {problem}"))?;
        write_atomically(path, &bytes)
    }

    /// Reads and validates a classifier file: safetensors structure, metadata key and version,
    /// sizes, every tensor present as `F32` with its shape, all finite, nothing else. Every error
    /// names the file.
    pub fn load(path: &Path, device: &Device) -> Result<Classifier> {
        let origin = path.display();
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow!("{origin}: cannot read the classifier file: {e}"))?;
        Classifier::from_bytes(&bytes, &origin.to_string(), device)
    }

    /// [`load`](Classifier::load) of the bytes of a classifier file; every error names `origin`
    /// (the file).
    pub fn from_bytes(bytes: &[u8], origin: &str, device: &Device) -> Result<Classifier> {
        Classifier::parse(bytes, device)
            .map_err(|problem| anyhow!("{origin}: not a valid classifier file: {problem}"))
    }

    fn parse(bytes: &[u8], device: &Device) -> std::result::Result<Classifier, String> {
        let file = TensorFile::parse(bytes)?;
        let meta: ClassifierMeta = file.metadata_document(&CLASSIFIER_FORMAT)?;
        if meta.hidden != HIDDEN
            || meta.activation != "silu"
            || meta.input_dim == 0
            || meta.input_dim > web_sampler::model::MAX_DATA_DIM
            || meta.classes < 2
            || meta.classes > web_sampler::model::MAX_CLASSES
            || !(0.0..=1.0).contains(&meta.test_accuracy)
        {
            return Err(format!(
                "unsupported architecture or values: input {}, hidden {:?}, classes {}, \
                 activation {:?}, test accuracy {} (expected hidden {HIDDEN:?}, SiLU)",
                meta.input_dim, meta.hidden, meta.classes, meta.activation, meta.test_accuracy
            ));
        }
        let shapes = tensor_shapes(meta.input_dim, meta.classes);
        let mut tensors = Vec::new();
        for (name, shape) in &shapes {
            let values = file.f32s(name, shape)?;
            let tensor = Tensor::from_vec(values, shape.as_slice(), device)
                .map_err(|e| format!("tensor {name}: {e}"))?;
            tensors.push(tensor);
        }
        let names: Vec<&str> = shapes.iter().map(|(name, _)| name.as_str()).collect();
        file.check_no_other_tensors(&names, "")?;
        let mut layers = Vec::new();
        let mut it = tensors.into_iter();
        while let (Some(w), Some(b)) = (it.next(), it.next()) {
            layers.push((w, b));
        }
        Ok(Classifier { meta, layers })
    }
}

/// Trains a classifier on `dataset`'s train split with AdamW (cross-entropy; a linear warm-up
/// then cosine decay of the learning rate) and measures its test accuracy. Every random draw
/// comes from `settings.seed`.
pub fn train(
    dataset: &Dataset,
    settings: &TrainSettings,
    device: &Device,
    show_progress: bool,
) -> Result<Classifier> {
    let (dim, classes) = (dataset.train.dim, dataset.num_classes);
    if classes < 2 {
        bail!(
            "{}: a classifier needs a dataset with classes; this one has {classes}",
            dataset.name
        );
    }
    if settings.steps == 0 || settings.batch == 0 || dataset.train.len == 0 {
        bail!("a classifier needs at least one step, a batch of at least one and training data");
    }
    // PyTorch's Linear initialisation: weight and bias uniform in ±1/√fan_in.
    let mut noise = Noise::new(settings.seed);
    let mut vars = Vec::new();
    for (name, shape) in tensor_shapes(dim, classes) {
        let layer = vars.len() / 2;
        let fan_in = [dim, HIDDEN[0], HIDDEN[1]][layer] as f64;
        let bound = 1.0 / fan_in.sqrt();
        let len: usize = shape.iter().product();
        let values: Vec<f32> = (0..len)
            .map(|_| ((2.0 * noise.uniform() - 1.0) * bound) as f32)
            .collect();
        let tensor = Tensor::from_vec(values, shape.as_slice(), device)
            .with_context(|| format!("classifier tensor {name}"))?;
        vars.push(Var::from_tensor(&tensor)?);
    }
    let mut classifier = Classifier {
        meta: ClassifierMeta {
            format_version: CLASSIFIER_FORMAT_VERSION,
            dataset: dataset.name.clone(),
            input_dim: dim,
            hidden: HIDDEN.to_vec(),
            classes,
            activation: "silu".into(),
            steps: settings.steps,
            batch: settings.batch,
            lr: settings.lr,
            seed: settings.seed,
            test_accuracy: 0.0,
            note: "features for bns eval's Fréchet distance (FD on this small classifier's \
                   features, not Inception FID)"
                .into(),
        },
        layers: vars
            .chunks_exact(2)
            .map(|p| (p[0].as_tensor().clone(), p[1].as_tensor().clone()))
            .collect(),
    };
    let mut adam = AdamW::new(vars.clone(), 1e-4)?;
    let mut progress = Progress::new("classifier", settings.steps, "steps", show_progress);
    let warmup = (settings.steps / 20).max(1);
    let mut recent = Vec::new();
    for step in 1..=settings.steps {
        let n = dataset.train.len;
        let rows: Vec<usize> = (0..settings.batch)
            .map(|_| ((noise.uniform() * n as f64) as usize).min(n - 1))
            .collect();
        let (x, labels) = data::batch(&dataset.train, &rows);
        let x = Tensor::from_vec(x, (rows.len(), dim), device)?;
        let labels = Tensor::from_vec(labels, rows.len(), device)?;
        let (logits, _) = classifier.forward(&x)?;
        // Cross-entropy: log Σ exp(logits) − logit of the label.
        let picked = logits.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
        let loss = (logits.log_sum_exp(1)? - picked)?.mean_all()?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            bail!("classifier training diverged at step {step} (loss {value})");
        }
        let lr = if step <= warmup {
            settings.lr * step as f64 / warmup as f64
        } else {
            let done = (step - warmup) as f64 / (settings.steps - warmup).max(1) as f64;
            settings.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * done).cos()))
        };
        adam.step(&loss.backward()?, lr)?;
        recent.push(value);
        if recent.len() > 50 {
            recent.remove(0);
        }
        if step % 20 == 0 || step == settings.steps {
            let mean = recent.iter().sum::<f64>() / recent.len() as f64;
            progress.set_message(format!("loss {mean:.3}"));
        }
        progress.set_position(step);
    }
    progress.finish();
    // Detached copies: the saved and evaluated weights are plain tensors.
    classifier.layers = vars
        .chunks_exact(2)
        .map(|p| (p[0].as_detached_tensor(), p[1].as_detached_tensor()))
        .collect();
    classifier.meta.test_accuracy = classifier.accuracy(&dataset.test)?;
    Ok(classifier)
}

/// The classification task of a dataset without classes: every image of each split in every
/// rotation that keeps its shape (0°, 90°, 180°, 270° for square images, 0° and 180° otherwise),
/// labelled by the rotation. The name and shape are the dataset's.
pub fn rotation_task(dataset: &Dataset) -> Dataset {
    let [channels, height, width] = dataset.shape;
    let quarter_turns: &[usize] = if height == width {
        &[0, 1, 2, 3]
    } else {
        &[0, 2]
    };
    let rotate = |split: &Split| {
        let mut x = Vec::with_capacity(split.x.len() * quarter_turns.len());
        let mut labels = Vec::with_capacity(split.len * quarter_turns.len());
        for i in 0..split.len {
            let image = split.row(i);
            for (label, &turns) in quarter_turns.iter().enumerate() {
                for c in 0..channels {
                    let plane = &image[c * height * width..(c + 1) * height * width];
                    for y in 0..height {
                        for x_ in 0..width {
                            // The pixel that a `turns`-fold quarter turn (clockwise) brings to
                            // (y, x_); 1 and 3 only occur for square images.
                            let (sy, sx) = match turns {
                                0 => (y, x_),
                                1 => (height - 1 - x_, y),
                                2 => (height - 1 - y, width - 1 - x_),
                                _ => (x_, width - 1 - y),
                            };
                            x.push(plane[sy * width + sx]);
                        }
                    }
                }
                labels.push(label as u32);
            }
        }
        Split {
            x,
            labels,
            len: split.len * quarter_turns.len(),
            dim: split.dim,
        }
    };
    Dataset {
        name: dataset.name.clone(),
        shape: dataset.shape,
        num_classes: quarter_turns.len(),
        class_names: quarter_turns
            .iter()
            .map(|t| format!("rotated {}°", 90 * t))
            .collect(),
        train: rotate(&dataset.train),
        test: rotate(&dataset.test),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use web_sampler::scratch::ScratchDir;

    /// A small synthetic image set: class `k` is noise around a bright band at rows `2k..2k+3`
    /// of an 8×8 image (so a classifier can learn it in a few steps).
    pub(crate) fn synthetic_images(side: usize, train: usize, test: usize) -> Dataset {
        let dim = side * side;
        let classes = 4;
        let split = |len: usize, seed: u64| {
            let mut noise = Noise::new(seed);
            let mut x = Vec::with_capacity(len * dim);
            let mut labels = Vec::with_capacity(len);
            for i in 0..len {
                let label = (i % classes) as u32;
                for p in 0..dim {
                    let row = p / side * 8 / side;
                    let band = row >= 2 * label as usize && row < 2 * label as usize + 3;
                    let base = if band { 0.6 } else { -0.6 };
                    x.push((base + 0.3 * noise.gaussian()).clamp(-1.0, 1.0) as f32);
                }
                labels.push(label);
            }
            Split {
                x,
                labels,
                len,
                dim,
            }
        };
        Dataset {
            name: "fashion-mnist".into(),
            shape: [1, side, side],
            num_classes: classes,
            class_names: Vec::new(),
            train: split(train, 1),
            test: split(test, 2),
        }
    }

    fn quick() -> TrainSettings {
        TrainSettings {
            steps: 30,
            batch: 32,
            lr: 3e-3,
            seed: 1,
        }
    }

    #[test]
    fn trains_saves_and_loads_back() {
        let scratch = ScratchDir::new("classifier-round-trip");
        let dir = scratch.path();
        let data = synthetic_images(8, 400, 200);
        let classifier = train(&data, &quick(), &Device::Cpu, false).unwrap();
        assert!(
            classifier.meta().test_accuracy > 0.9,
            "accuracy {}",
            classifier.meta().test_accuracy
        );
        let path = dir.join("classifier.safetensors");
        classifier.save(&path).unwrap();
        let loaded = Classifier::load(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded.meta(), classifier.meta());
        let x = &data.test.x[..10 * 64];
        let (a, b) = (classifier.features(x).unwrap(), loaded.features(x).unwrap());
        assert_eq!(a.len(), 10 * 128);
        assert_eq!(a, b);
        assert_eq!(
            loaded.accuracy(&data.test).unwrap(),
            classifier.meta().test_accuracy
        );
        loaded.check_dataset(&data, &path).unwrap();
        let mut other = data.clone();
        other.name = "mnist".into();
        let e = format!("{:#}", loaded.check_dataset(&other, &path).unwrap_err());
        assert!(
            e.contains("classifier.safetensors")
                && e.contains("fashion-mnist")
                && e.contains("mnist"),
            "{e}"
        );
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn the_rotation_task_labels_each_quarter_turn() {
        // One 2×3×3 image (two planes holding 0..9 and 10..19) and one 1×2×3 image.
        let square = Dataset {
            name: "images:shapes".into(),
            shape: [2, 3, 3],
            num_classes: 0,
            class_names: Vec::new(),
            train: Split {
                x: (0..18).map(|v| v as f32).collect(),
                labels: vec![0],
                len: 1,
                dim: 18,
            },
            test: Split {
                x: Vec::new(),
                labels: Vec::new(),
                len: 0,
                dim: 18,
            },
        };
        let task = rotation_task(&square);
        assert_eq!((task.num_classes, task.train.len, task.test.len), (4, 4, 0));
        assert_eq!(task.train.labels, vec![0, 1, 2, 3]);
        assert_eq!(task.name, "images:shapes");
        assert_eq!(task.train.row(0), square.train.row(0));
        // 0 1 2 / 3 4 5 / 6 7 8 turned clockwise is 6 3 0 / 7 4 1 / 8 5 2.
        assert_eq!(
            &task.train.row(1)[..9],
            &[6., 3., 0., 7., 4., 1., 8., 5., 2.]
        );
        assert_eq!(&task.train.row(1)[9..12], &[15., 12., 9.]);
        assert_eq!(
            &task.train.row(2)[..9],
            &[8., 7., 6., 5., 4., 3., 2., 1., 0.]
        );
        assert_eq!(
            &task.train.row(3)[..9],
            &[2., 5., 8., 1., 4., 7., 0., 3., 6.]
        );
        let mut wide = square.clone();
        wide.shape = [1, 2, 3];
        wide.train = Split {
            x: (0..6).map(|v| v as f32).collect(),
            labels: vec![0],
            len: 1,
            dim: 6,
        };
        let task = rotation_task(&wide);
        assert_eq!(task.num_classes, 2);
        assert_eq!(task.train.row(1), &[5., 4., 3., 2., 1., 0.]);
    }

    #[test]
    fn corrupt_files_are_refused_naming_the_file() {
        let scratch = ScratchDir::new("classifier-corrupt");
        let dir = scratch.path();
        let data = synthetic_images(8, 64, 16);
        let mut settings = quick();
        settings.steps = 2;
        let path = dir.join("good.safetensors");
        train(&data, &settings, &Device::Cpu, false)
            .unwrap()
            .save(&path)
            .unwrap();
        let good = std::fs::read(&path).unwrap();
        let bad = dir.join("bad.safetensors");
        let error = |bytes: &[u8]| {
            std::fs::write(&bad, bytes).unwrap();
            let e = Classifier::load(&bad, &Device::Cpu).err().unwrap();
            let shown = format!("{e:#}");
            assert!(shown.contains("bad.safetensors"), "{shown}");
            shown
        };
        for cut in [0, 5, 100, good.len() / 2, good.len() - 1] {
            error(&good[..cut]);
        }
        error(b"not a classifier");
        // A model-like file: right structure, other metadata key.
        let mut other = good.clone();
        let at = good
            .windows(14)
            .position(|w| w == b"bns.classifier")
            .unwrap();
        other[at..at + 3].copy_from_slice(b"xyz");
        assert!(error(&other).contains("bns.classifier"));
        // A NaN weight.
        let mut nan = good.clone();
        let end = nan.len();
        nan[end - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(error(&nan).contains("non-finite"));
        let e = format!(
            "{:#}",
            Classifier::load(&dir.join("missing.safetensors"), &Device::Cpu)
                .err()
                .unwrap()
        );
        assert!(e.contains("missing.safetensors"), "{e}");
    }
}
