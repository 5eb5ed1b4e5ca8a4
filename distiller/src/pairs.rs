//! The ground-truth pairs file: noise `x_0` and the DOPRI5 solution `x_1` it leads to, for one
//! model (and guidance scale), split into training, validation and test rows (`docs/MATH.md`
//! §6). `bns truth` writes it; distillation and evaluation read it. Distillation learns on
//! the training rows and keeps the parameters that do best on the validation rows; the test rows
//! are used for nothing but the figures that are reported.
//!
//! The file (version [`PAIRS_FORMAT_VERSION`]) is safetensors with the tensors `noise`, `truth`
//! and `labels` and [`PairsMeta`] as JSON under [`PAIRS_METADATA_KEY`]; `FORMATS.md` §3 is its
//! normative description (every tensor and key, the splits, the labels, shards).
//!
//! Reading validates everything (every failure names the file and the problem, nothing panics);
//! writing goes through a temporary file in the same folder and a rename. The same encoding
//! (under metadata key [`PARTIAL_METADATA_KEY`]) carries `bns truth`'s partial progress,
//! [`Partial`].

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use web_sampler::model::{Model, ModelSpec, MAX_DATA_DIM};
use web_sampler::tensor_file::{self, check_finite, TensorBytes, TensorFile};
use web_sampler::versioned_json::{self, MetadataFormat};

use crate::files::write_atomically;
use crate::shard::ShardMeta;

/// Version of the pairs file format this crate reads and writes.
pub const PAIRS_FORMAT_VERSION: u32 = 1;

/// The `__metadata__` key whose value is the [`PairsMeta`] as JSON.
pub const PAIRS_METADATA_KEY: &str = "bns.pairs";

/// The pairs metadata as a versioned document.
const PAIRS_FORMAT: MetadataFormat = MetadataFormat {
    kind: "pairs",
    key: PAIRS_METADATA_KEY,
    version: PAIRS_FORMAT_VERSION,
    reader: "this build",
    advice: "; recompute the pairs with this build's `bns truth`",
    unversioned: None,
};

/// The `__metadata__` key of a partial-progress file; its value is the progress as JSON.
pub const PARTIAL_METADATA_KEY: &str = "bns.truth.partial";

/// The partial-progress metadata as a versioned document.
const PARTIAL_FORMAT: MetadataFormat = MetadataFormat {
    kind: "partial-progress",
    key: PARTIAL_METADATA_KEY,
    version: 1,
    reader: "this build",
    advice: "",
    unversioned: None,
};

/// Ground-truth pairs: row `i` of `truth` is the DOPRI5 solution from row `i` of `noise`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pairs {
    /// `[N, D]` row-major: `x_0`.
    pub noise: Vec<f32>,
    /// `[N, D]` row-major: `x_1` from DOPRI5.
    pub truth: Vec<f32>,
    /// `[N]`: the class of each pair (the model's null class when unconditional).
    pub labels: Vec<u32>,
    pub meta: PairsMeta,
}

/// What the pairs were made from and how; stored as JSON in the file's metadata.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PairsMeta {
    /// Must be [`PAIRS_FORMAT_VERSION`].
    pub format_version: u32,
    /// Id (SHA-256) of the model whose ODE was solved.
    pub model_id: String,
    /// The model's data shape `[C, H, W]`; `D` is its product.
    pub data_shape: Vec<usize>,
    /// Guidance scale `w` of the velocity.
    pub guidance: f64,
    /// DOPRI5's relative tolerance.
    pub rtol: f64,
    /// DOPRI5's absolute tolerance.
    pub atol: f64,
    /// Velocity evaluations per pair, averaged over the batches weighted by their rows.
    pub mean_nfe: f64,
    /// Seed of the noise (`gaussian_batch(seed, N, D)`).
    pub seed: u64,
    /// Rows of the training split (the first ones).
    pub train: usize,
    /// Rows of the validation split (after the training split).
    pub validation: usize,
    /// Rows of the test split (the last ones); 0 in files written before it existed.
    #[serde(default)]
    pub test: usize,
    /// Wall-clock seconds the solves took.
    pub seconds: f64,
    /// Present in the file of one shard of a run ([`crate::shard`]): which rows it holds. The
    /// splits above are then the whole run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardMeta>,
}

/// Borrowed rows of a [`Pairs`]: `len` pairs of `dim` values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairsView<'a> {
    pub noise: &'a [f32],
    pub truth: &'a [f32],
    pub labels: &'a [u32],
    pub len: usize,
    pub dim: usize,
}

impl PairsMeta {
    /// Everything but the tensors: version, shape, tolerances, numbers finite, split sizes.
    /// Returns `(N, D)`.
    fn validate(&self) -> std::result::Result<(usize, usize), String> {
        if self.format_version != PAIRS_FORMAT_VERSION {
            return Err(
                PAIRS_FORMAT.describe(&versioned_json::Problem::UnknownVersion(u64::from(
                    self.format_version,
                ))),
            );
        }
        if self.model_id.is_empty() {
            return Err("model_id is empty".into());
        }
        let dim = data_dim(&self.data_shape)?;
        let finite_at_least = |name: &str, v: f64, min: f64, strict: bool| {
            let ok = v.is_finite() && if strict { v > min } else { v >= min };
            if ok {
                Ok(())
            } else {
                let relation = if strict { ">" } else { "≥" };
                Err(format!(
                    "{name} must be finite and {relation} {min}, got {v}"
                ))
            }
        };
        finite_at_least("guidance", self.guidance, 0.0, false)?;
        finite_at_least("rtol", self.rtol, 0.0, true)?;
        finite_at_least("atol", self.atol, 0.0, true)?;
        finite_at_least("mean_nfe", self.mean_nfe, 0.0, false)?;
        finite_at_least("seconds", self.seconds, 0.0, false)?;
        if self.train == 0 || self.validation == 0 {
            return Err(format!(
                "the training and validation splits need at least one pair each, got train = {}, \
                 validation = {}",
                self.train, self.validation
            ));
        }
        let count = self
            .train
            .checked_add(self.validation)
            .and_then(|n| n.checked_add(self.test))
            .filter(|n| n.checked_mul(dim).is_some())
            .ok_or_else(|| {
                format!(
                    "train + validation + test = {} + {} + {} pairs of {dim} values is too large",
                    self.train, self.validation, self.test
                )
            })?;
        let rows = match &self.shard {
            Some(shard) => shard.validate(count)?,
            None => count,
        };
        Ok((rows, dim))
    }
}

impl Pairs {
    /// Number of pairs `N` (all splits).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per sample `D` (the product of `data_shape`).
    pub fn dim(&self) -> usize {
        self.meta.data_shape.iter().product()
    }

    /// The first `meta.train` rows.
    pub fn train(&self) -> PairsView<'_> {
        self.rows(0, self.meta.train.min(self.len()))
    }

    /// The `meta.validation` rows after the training split.
    pub fn validation(&self) -> PairsView<'_> {
        let start = self.meta.train.min(self.len());
        let end = (start + self.meta.validation).min(self.len());
        self.rows(start, end)
    }

    /// The last `meta.test` rows (none in a file written before the test split existed).
    pub fn test(&self) -> PairsView<'_> {
        let start = (self.meta.train + self.meta.validation).min(self.len());
        self.rows(start, self.len())
    }

    /// The test split, refused (naming the file) when the file has none.
    pub fn test_split(&self, path: &Path) -> Result<PairsView<'_>> {
        if self.meta.test == 0 {
            bail!(
                "{}: these pairs have no test split (they were computed before `bns truth` made \
                 one); recompute them with `bns truth --test N`",
                path.display()
            );
        }
        Ok(self.test())
    }

    fn rows(&self, start: usize, end: usize) -> PairsView<'_> {
        let dim = self.dim();
        PairsView {
            noise: &self.noise[start * dim..end * dim],
            truth: &self.truth[start * dim..end * dim],
            labels: &self.labels[start..end],
            len: end - start,
            dim,
        }
    }

    /// Checks the pairs against their metadata (the checks [`load`](Self::load) makes).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let (rows, dim) = self.meta.validate()?;
        let check = |name: &str, got: usize, expected: usize| {
            if got == expected {
                Ok(())
            } else {
                Err(format!(
                    "{name} has {got} values, expected {expected} ({rows} pairs of {dim})"
                ))
            }
        };
        check("noise", self.noise.len(), rows * dim)?;
        check("truth", self.truth.len(), rows * dim)?;
        check("labels", self.labels.len(), rows)?;
        check_finite("noise", &self.noise)?;
        check_finite("truth", &self.truth)
    }

    /// Validates, then writes the file through a temporary file and a rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let origin = path.display();
        self.validate()
            .map_err(|problem| anyhow!("{origin}: cannot save these pairs: {problem}"))?;
        let json = serde_json::to_string(&self.meta)
            .with_context(|| format!("{origin}: cannot encode the pairs metadata"))?;
        let tensors = Tensors {
            noise: self.noise.clone(),
            truth: self.truth.clone(),
            labels: self.labels.clone(),
        };
        let bytes = encode(&tensors, self.dim(), PAIRS_METADATA_KEY, &json)
            .with_context(|| format!("{origin}: cannot encode the pairs file"))?;
        write_atomically(path, &bytes)
    }

    /// Reads and validates a pairs file: safetensors structure, metadata version and values,
    /// tensors present with the shapes the metadata implies, `F32`/`U32`, all finite, nothing
    /// else in the file. Every error names the file.
    pub fn load(path: &Path) -> Result<Pairs> {
        let pairs = Pairs::load_shard(path)?;
        if let Some(shard) = &pairs.meta.shard {
            bail!(
                "{}: holds shard {}/{} (pairs {}..{}) of a ground truth, not all of it; join the \
                 shards with `bns pairs merge`",
                path.display(),
                shard.index,
                shard.of,
                shard.start,
                shard.end
            );
        }
        Ok(pairs)
    }

    /// [`load`](Self::load) that also accepts the file of one shard of a run (for
    /// [`crate::shard::merge`]).
    pub fn load_shard(path: &Path) -> Result<Pairs> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow!("{origin}: cannot read the pairs file: {e}"))?;
        Pairs::from_bytes(&bytes, &origin)
    }

    /// The pairs (or shard) in `bytes`, validated as [`load`](Self::load) does; `origin` (a
    /// file name) begins every error.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Pairs> {
        let (meta, tensors) = decode(bytes, &PAIRS_FORMAT, |meta: &PairsMeta| meta.validate())
            .map_err(|problem| anyhow!("{origin}: {problem}"))?;
        Ok(Pairs {
            noise: tensors.noise,
            truth: tensors.truth,
            labels: tensors.labels,
            meta,
        })
    }

    /// Refuses pairs that are not `model`'s: made for another model ([`check_model`]), of
    /// another data shape, or with a label the model has no class for ([`check_labels`]). Every
    /// error names the file.
    ///
    /// [`check_model`]: Self::check_model
    /// [`check_labels`]: Self::check_labels
    pub fn check_for(&self, model: &Model, path: &Path) -> Result<()> {
        if !model.answers_to(&self.meta.model_id) {
            self.check_model(model.id(), path)?;
        }
        let spec = model.spec();
        if self.meta.data_shape != spec.data_shape {
            bail!(
                "{}: these pairs are of shape {:?}, the model's samples of {:?}",
                path.display(),
                self.meta.data_shape,
                spec.data_shape
            );
        }
        self.check_labels(spec, path)
    }

    /// Refuses a label above the model's null class (a class-conditional model takes classes
    /// `0..K` and the null class `K`; an unconditional one only its null class 0).
    pub fn check_labels(&self, spec: &ModelSpec, path: &Path) -> Result<()> {
        let null = spec.null_class();
        if let Some((row, label)) = self.labels.iter().enumerate().find(|(_, &l)| l > null) {
            let classes = if spec.is_conditional() {
                format!(
                    "classes 0..{} and the null class {null}",
                    spec.num_classes - 1
                )
            } else {
                format!("only its null class {null} (it is unconditional)")
            };
            bail!(
                "{}: pair {row} has label {label}, but the model has {classes}; recompute the pairs \
                 with `bns truth`",
                path.display()
            );
        }
        Ok(())
    }

    /// Refuses pairs made for another model: the error names the file and both ids.
    pub fn check_model(&self, model_id: &str, path: &Path) -> Result<()> {
        if self.meta.model_id != model_id {
            anyhow::bail!(
                "{}: these pairs were computed for model {}, but the model given is {model_id}; \
                 compute pairs for this model with `bns truth`",
                path.display(),
                self.meta.model_id
            );
        }
        Ok(())
    }
}

/// The three tensors of a pairs file (or of a partial one), row-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensors {
    pub noise: Vec<f32>,
    pub truth: Vec<f32>,
    pub labels: Vec<u32>,
}

/// The bytes of a file holding `tensors` (rows of `dim` values) and `json` under `key`.
pub(crate) fn encode(tensors: &Tensors, dim: usize, key: &str, json: &str) -> Result<Vec<u8>> {
    let rows = tensors.labels.len();
    let tensors = [
        TensorBytes::f32s("noise", vec![rows, dim], &tensors.noise),
        TensorBytes::f32s("truth", vec![rows, dim], &tensors.truth),
        TensorBytes::u32s("labels", vec![rows], &tensors.labels),
    ];
    tensor_file::write(&tensors, (key, json)).map_err(|problem| anyhow!(problem))
}

/// Parses a file written by [`encode`]: the versioned metadata `format` describes, then
/// `rows_and_dim` of it says how many rows of how many values the tensors must have. Errors are
/// the problem alone (the caller names the file).
fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    format: &MetadataFormat,
    rows_and_dim: impl FnOnce(&T) -> std::result::Result<(usize, usize), String>,
) -> std::result::Result<(T, Tensors), String> {
    let file = TensorFile::parse(bytes)?;
    let meta: T = file.metadata_document(format)?;
    let (rows, dim) = rows_and_dim(&meta)?;
    let noise = file.f32s("noise", &[rows, dim])?;
    let truth = file.f32s("truth", &[rows, dim])?;
    let labels = file.u32s("labels", &[rows])?;
    file.check_no_other_tensors(&["noise", "truth", "labels"], "")?;
    Ok((
        meta,
        Tensors {
            noise,
            truth,
            labels,
        },
    ))
}

/// The rows of a pairs file computed so far, with what they were computed from: `bns truth`'s
/// progress, kept in `<output>.partial` (the pairs file's tensors, metadata key
/// [`PARTIAL_METADATA_KEY`]). `O` is the command's options, compared on resuming.
#[derive(Clone, Debug, PartialEq)]
pub struct Partial<O> {
    /// Id of the model whose ODE is being solved.
    pub model_id: String,
    /// The model's data shape; `D` is its product.
    pub data_shape: Vec<usize>,
    pub options: O,
    /// The rows done.
    pub tensors: Tensors,
    /// Σ over the finished batches of NFE × rows.
    pub nfe_rows: u64,
    /// Seconds spent so far.
    pub seconds: f64,
}

/// The metadata of a partial-progress file (after its `format_version`).
#[derive(Deserialize)]
struct PartialMeta<O> {
    model_id: String,
    data_shape: Vec<usize>,
    options: O,
    /// Pairs done (the rows of the tensors).
    done: usize,
    nfe_rows: u64,
    seconds: f64,
}

impl<O: Serialize + DeserializeOwned> Partial<O> {
    /// Pairs done.
    pub fn rows(&self) -> usize {
        self.tensors.labels.len()
    }

    /// Writes the progress through a temporary file and a rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        /// [`PartialMeta`], borrowed.
        #[derive(Serialize)]
        struct Fields<'a, O> {
            model_id: &'a str,
            data_shape: &'a [usize],
            options: &'a O,
            done: usize,
            nfe_rows: u64,
            seconds: f64,
        }
        let meta = Fields {
            model_id: &self.model_id,
            data_shape: &self.data_shape,
            options: &self.options,
            done: self.rows(),
            nfe_rows: self.nfe_rows,
            seconds: self.seconds,
        };
        let json = versioned_json::write(PARTIAL_FORMAT.version, &meta)
            .with_context(|| format!("{}: cannot encode the progress", path.display()))?;
        let dim = data_dim(&self.data_shape).map_err(|e| anyhow!(e))?;
        let bytes = encode(&self.tensors, dim, PARTIAL_METADATA_KEY, &json)
            .with_context(|| format!("{}: cannot encode the progress", path.display()))?;
        write_atomically(path, &bytes)
    }

    /// The progress in `path`, or `None` if there is no such file. The tensors are checked
    /// against the metadata (rows done, data shape, finite values); comparing the model and the
    /// options is the caller's.
    pub fn load(path: &Path) -> Result<Option<Partial<O>>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => bail!(
                "{}: cannot read the partial-progress file: {e}",
                path.display()
            ),
        };
        let (meta, tensors) = decode(&bytes, &PARTIAL_FORMAT, |meta: &PartialMeta<O>| {
            Ok((meta.done, data_dim(&meta.data_shape)?))
        })
        .map_err(|problem| {
            anyhow!(
                "{}: not a usable partial-progress file: {problem}; delete it to start over",
                path.display()
            )
        })?;
        Ok(Some(Partial {
            model_id: meta.model_id,
            data_shape: meta.data_shape,
            options: meta.options,
            tensors,
            nfe_rows: meta.nfe_rows,
            seconds: meta.seconds,
        }))
    }
}

/// `D`, the product of a data shape `[C, H, W]`, bounded by the runtime's [`MAX_DATA_DIM`].
pub(crate) fn data_dim(shape: &[usize]) -> std::result::Result<usize, String> {
    let dim = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&d| d <= MAX_DATA_DIM);
    match dim {
        Some(d) if !shape.is_empty() && d > 0 => Ok(d),
        _ => Err(format!(
            "data_shape {shape:?} is not a shape of 1 to {MAX_DATA_DIM} values"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use web_sampler::scratch::ScratchDir;

    fn sample() -> Pairs {
        let (n, d) = (7, 2);
        Pairs {
            noise: (0..n * d).map(|i| i as f32 * 0.5 - 2.0).collect(),
            truth: (0..n * d).map(|i| (i as f32).sin()).collect(),
            labels: vec![0, 1, 2, 0, 1, 2, 0],
            meta: PairsMeta {
                format_version: PAIRS_FORMAT_VERSION,
                model_id: "ab".repeat(32),
                data_shape: vec![2, 1, 1],
                guidance: 0.5,
                rtol: 1e-5,
                atol: 1e-6,
                mean_nfe: 86.4,
                seed: 7,
                train: 3,
                validation: 2,
                test: 2,
                seconds: 1.25,
                shard: None,
            },
        }
    }

    /// The error of loading `bytes` written to a file, as displayed.
    fn load_error(dir: &Path, bytes: &[u8]) -> String {
        let path = dir.join("bad.safetensors");
        std::fs::write(&path, bytes).unwrap();
        let e = Pairs::load(&path).unwrap_err();
        let shown = format!("{e:#}");
        assert!(shown.contains("bad.safetensors"), "names the file: {shown}");
        shown
    }

    /// A file with `meta` replaced (the tensors of `sample()`).
    fn with_meta(meta: &Value) -> Vec<u8> {
        let p = sample();
        let tensors = Tensors {
            noise: p.noise,
            truth: p.truth,
            labels: p.labels,
        };
        encode(&tensors, 2, PAIRS_METADATA_KEY, &meta.to_string()).unwrap()
    }

    #[test]
    fn round_trip_and_splits() {
        let scratch = ScratchDir::new("pairs-round-trip");
        let dir = scratch.path();
        let path = dir.join("pairs.safetensors");
        let p = sample();
        p.save(&path).unwrap();
        let q = Pairs::load(&path).unwrap();
        assert_eq!(p, q);
        assert_eq!((q.len(), q.dim()), (7, 2));
        let train = q.train();
        assert_eq!((train.len, train.dim), (3, 2));
        assert_eq!(train.noise, &p.noise[..6]);
        assert_eq!(train.labels, &[0, 1, 2]);
        let validation = q.validation();
        assert_eq!(validation.len, 2);
        assert_eq!(validation.truth, &p.truth[6..10]);
        assert_eq!(validation.labels, &[0, 1]);
        let test = q.test_split(&path).unwrap();
        assert_eq!(test.len, 2);
        assert_eq!(test.truth, &p.truth[10..]);
        assert_eq!(test.noise, &p.noise[10..]);
        assert_eq!(test.labels, &[2, 0]);
        // Nothing else left in the folder (no temporary file).
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("pairs.safetensors")]);
    }

    #[test]
    fn corrupt_and_truncated_files_are_refused() {
        let scratch = ScratchDir::new("pairs-corrupt");
        let dir = scratch.path();
        let path = dir.join("good.safetensors");
        sample().save(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        for cut in [0, 4, 8, 40, good.len() / 2, good.len() - 1] {
            let shown = load_error(dir, &good[..cut]);
            assert!(
                shown.contains("safetensors") || shown.contains("truncated"),
                "cut at {cut}: {shown}"
            );
        }
        // Garbage, and a header length pointing far beyond the file.
        load_error(dir, b"this is not a safetensors file at all");
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        load_error(dir, &huge);
        // A data offset near usize::MAX must not overflow.
        let header =
            r#"{"noise":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        let shown = load_error(dir, &bytes);
        assert!(shown.contains("beyond the file"), "{shown}");
        // A flipped byte in the metadata JSON.
        let mut flipped = good.clone();
        let at = good.windows(9).position(|w| w == b"bns.pairs").unwrap();
        flipped[at + 12] = b'x';
        load_error(dir, &flipped);
    }

    #[test]
    fn a_file_from_before_the_test_split_loads_with_an_empty_one() {
        let scratch = ScratchDir::new("pairs-two-splits");
        let dir = scratch.path();
        // Two splits over the 7 rows, and no `test` key, as files were written before.
        let mut meta = serde_json::to_value(&sample().meta).unwrap();
        meta["validation"] = 4.into();
        meta.as_object_mut().unwrap().remove("test");
        let path = dir.join("old.safetensors");
        std::fs::write(&path, with_meta(&meta)).unwrap();
        let pairs = Pairs::load(&path).unwrap();
        assert_eq!((pairs.meta.test, pairs.validation().len), (0, 4));
        assert_eq!(pairs.test().len, 0);
        let shown = format!("{:#}", pairs.test_split(&path).unwrap_err());
        assert!(
            shown.contains("old.safetensors") && shown.contains("no test split"),
            "{shown}"
        );
    }

    #[test]
    fn inconsistent_contents_are_refused() {
        let scratch = ScratchDir::new("pairs-inconsistent");
        let dir = scratch.path();
        let meta = serde_json::to_value(&sample().meta).unwrap();
        let cases: Vec<(&str, Value, &str)> = vec![
            ("train", 4.into(), "shape"),
            (
                "validation",
                0.into(),
                "validation splits need at least one pair",
            ),
            ("test", 3.into(), "shape"),
            ("data_shape", serde_json::json!([3, 1, 1]), "shape"),
            ("data_shape", serde_json::json!([]), "data_shape"),
            ("rtol", (-1.0).into(), "rtol"),
            ("mean_nfe", Value::Null, "expected f64"),
            ("model_id", "".into(), "model_id"),
        ];
        for (field, value, expected) in cases {
            let mut m = meta.clone();
            m[field] = value;
            let shown = load_error(dir, &with_meta(&m));
            assert!(shown.contains(expected), "{field}: {shown}");
        }
        // A non-finite value in a tensor.
        let mut p = sample();
        p.truth[3] = f32::NAN;
        let tensors = Tensors {
            noise: p.noise.clone(),
            truth: p.truth.clone(),
            labels: p.labels.clone(),
        };
        let json = serde_json::to_string(&p.meta).unwrap();
        let shown = load_error(
            dir,
            &encode(&tensors, 2, PAIRS_METADATA_KEY, &json).unwrap(),
        );
        assert!(
            shown.contains("non-finite") && shown.contains("truth"),
            "{shown}"
        );
        // ... which save refuses to write in the first place.
        let path = dir.join("nan.safetensors");
        let e = p.save(&path).unwrap_err();
        assert!(format!("{e:#}").contains("non-finite"), "{e:#}");
        assert!(!path.exists());
        // Another metadata key (e.g. a model file).
        let shown = load_error(dir, &encode(&tensors, 2, "bns.model", &json).unwrap());
        assert!(shown.contains("bns.pairs"), "{shown}");
    }

    #[test]
    fn wrong_version_is_refused() {
        let scratch = ScratchDir::new("pairs-version");
        let dir = scratch.path();
        let mut meta = serde_json::to_value(&sample().meta).unwrap();
        meta["format_version"] = 2.into();
        // Another version may have other fields: the version is what gets reported.
        meta.as_object_mut().unwrap().remove("seconds");
        let shown = load_error(dir, &with_meta(&meta));
        assert!(shown.contains("unknown pairs format version 2"), "{shown}");
        meta.as_object_mut().unwrap().remove("format_version");
        let shown = load_error(dir, &with_meta(&meta));
        assert!(shown.contains("format_version"), "{shown}");
    }

    #[test]
    fn labels_the_model_has_no_class_for_are_refused() {
        let mut p = sample();
        let path = Path::new("runs/pairs.safetensors");
        let conditional = ModelSpec::new(
            web_sampler::model::Architecture::mlp(8, 2),
            &[2, 1, 1],
            4,
            3,
            2,
        );
        // Classes 0..2 and the null class 3 are fine.
        p.labels = vec![0, 1, 2, 3, 1];
        p.check_labels(&conditional, path).unwrap();
        for (bad, expected) in [(4, "label 4"), (u32::MAX, "label 4294967295")] {
            p.labels[2] = bad;
            let shown = format!("{:#}", p.check_labels(&conditional, path).unwrap_err());
            assert!(
                shown.contains("runs/pairs.safetensors")
                    && shown.contains("pair 2")
                    && shown.contains(expected)
                    && shown.contains("classes 0..2 and the null class 3"),
                "{shown}"
            );
        }
        let unconditional = ModelSpec::new(
            web_sampler::model::Architecture::mlp(8, 2),
            &[2, 1, 1],
            4,
            0,
            0,
        );
        p.labels = vec![0; 5];
        p.check_labels(&unconditional, path).unwrap();
        p.labels[4] = 1;
        let shown = format!("{:#}", p.check_labels(&unconditional, path).unwrap_err());
        assert!(shown.contains("unconditional"), "{shown}");
    }

    #[test]
    fn pairs_fit_their_model_rounded_to_f16() {
        let spec = ModelSpec::new(
            web_sampler::model::Architecture::mlp(8, 2),
            &[2, 1, 1],
            4,
            3,
            2,
        );
        let model = Model::random(spec, 3).unwrap();
        let mut p = sample();
        p.meta.model_id = model.id().to_string();
        let path = Path::new("runs/pairs.safetensors");
        let half = model
            .with_dtype(web_sampler::model::WeightDtype::F16)
            .unwrap();
        p.check_for(&model, path).unwrap();
        p.check_for(&half, path).unwrap();
        let other = Model::random(model.spec().clone(), 4).unwrap();
        let shown = format!("{:#}", p.check_for(&other, path).unwrap_err());
        assert!(shown.contains("computed for model"), "{shown}");
    }

    #[test]
    fn pairs_for_another_model_are_refused() {
        let p = sample();
        let path = Path::new("runs/pairs.safetensors");
        assert!(p.check_model(&"ab".repeat(32), path).is_ok());
        let other = "cd".repeat(32);
        let shown = format!("{:#}", p.check_model(&other, path).unwrap_err());
        assert!(
            shown.contains("runs/pairs.safetensors")
                && shown.contains(&"ab".repeat(32))
                && shown.contains(&other),
            "{shown}"
        );
    }
}
