//! The model description stored in the file's `__metadata__` (key [`MODEL_METADATA_KEY`]): the
//! part every velocity network shares (format version, data shape, time and class embeddings,
//! what the network predicts, the path, provenance) and the [`Architecture`] with its own sizes.
//! The list of tensors with their shapes follows from it ([`ModelSpec::tensor_shapes`]).
//! Every key, its type, limits and default when absent: `FORMATS.md` §1.1–1.2.

use serde::{Deserialize, Serialize};

use super::mlp::MlpSpec;
use super::unet::UnetSpec;

/// Version of the model file format this runtime reads and writes.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// The `__metadata__` key whose value is the [`ModelSpec`] as JSON.
pub const MODEL_METADATA_KEY: &str = "bns.model";

/// Largest data size accepted: a 3×64×64 image.
pub const MAX_DATA_DIM: usize = 3 * 64 * 64;
/// Largest hidden width (and embedding width) accepted.
pub const MAX_WIDTH: usize = 4096;
/// Largest number of hidden layers accepted.
pub const MAX_DEPTH: usize = 16;
/// Largest number of real classes accepted.
pub const MAX_CLASSES: usize = 100_000;
/// Largest total number of parameters accepted (256 MB of `f32`).
pub const MAX_PARAMETERS: usize = 64 << 20;
/// Longest `dataset` text accepted, in bytes.
pub const MAX_DATASET_LEN: usize = 1024;

/// A velocity network's description: the fields every architecture shares, and the
/// architecture with its own sizes.
///
/// In the file it is one JSON object (see [`SpecRecord`]): `architecture` names the variant.
/// The MLP's fields sit beside the shared ones, in the order format version 1 has always
/// written them, so the files written before the architecture became an enum load and are
/// written back byte for byte (same model id); the U-Net's sit in a nested object `unet`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "SpecRecord", try_from = "SpecRecord")]
pub struct ModelSpec {
    /// Must be [`MODEL_FORMAT_VERSION`].
    pub format_version: u32,
    /// The network and its sizes.
    pub architecture: Architecture,
    /// `[C, H, W]`: images `[1, 28, 28]`; 2-D points `[2, 1, 1]`.
    pub data_shape: Vec<usize>,
    /// Width of the sinusoidal time embedding: even, ≥ 2.
    pub time_embedding: usize,
    /// Scale `s` of the time inside the sinusoidal embedding `sin(s·t·f_k)`, `cos(s·t·f_k)`
    /// (files without it use [`DEFAULT_TIME_SCALE`](super::DEFAULT_TIME_SCALE)).
    pub time_scale: f64,
    /// What the network outputs: `"velocity"` (files without the field) or `"data"`.
    pub prediction: Prediction,
    /// Width of the learned class embedding; 0 when unconditional.
    pub class_embedding: usize,
    /// Real classes, not counting the null class; 0 = unconditional.
    pub num_classes: usize,
    /// The probability path the model was trained on.
    pub path: ProbabilityPath,
    /// Name of the training data (informational).
    pub dataset: String,
    /// Optimizer steps the model was trained for (informational).
    pub training_steps: u64,
    /// Names of the classes, in label order (informational; empty, or one per class).
    pub class_names: Vec<String>,
    /// The id of the model whose weights these are, rounded to `f16` (a model converted to half
    /// precision); solvers and pairs bound to that id fit this model too. `None` for a model as
    /// trained.
    pub rounded_from: Option<String>,
}

/// The velocity networks this runtime runs, each with the sizes only it has.
#[derive(Clone, Debug, PartialEq)]
pub enum Architecture {
    /// `"mlp"`: concat(x, time embedding, class embedding) → dense layers with SiLU
    /// (see [`MlpSpec`]).
    Mlp(MlpSpec),
    /// `"unet"`: a convolutional U-Net with residual blocks, GroupNorm and optional attention
    /// (see [`UnetSpec`]; its fields are the object `unet` in the file).
    Unet(UnetSpec),
}

impl Architecture {
    /// The name written in the file's `architecture` field.
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Mlp(_) => "mlp",
            Architecture::Unet(_) => "unet",
        }
    }

    /// A short description of the sizes, for people (`bns model show`, the page).
    pub fn summary(&self) -> String {
        match self {
            Architecture::Mlp(mlp) => mlp.summary(),
            Architecture::Unet(unet) => unet.summary(),
        }
    }
}

/// The architecture's name, as in the file.
impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The names of the architectures this runtime runs, for error messages.
const KNOWN_ARCHITECTURES: &str = "\"mlp\", \"unet\"";

/// `bns.model` as it is written: one object whose field order is the file format's (and so
/// part of every model id). Architecture-specific fields are optional here; which are required
/// (and which refused) follows from `architecture` (checked when it becomes a [`ModelSpec`]).
/// The MLP's are flat (format version 1's keys); the U-Net's are the nested object `unet`.
#[derive(Serialize, Deserialize)]
struct SpecRecord {
    format_version: u32,
    architecture: String,
    data_shape: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hidden_width: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    depth: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unet: Option<UnetSpec>,
    time_embedding: usize,
    #[serde(default = "default_time_scale")]
    time_scale: f64,
    #[serde(default, skip_serializing_if = "Prediction::is_velocity")]
    prediction: Prediction,
    class_embedding: usize,
    num_classes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activation: Option<String>,
    path: String,
    #[serde(default)]
    dataset: String,
    #[serde(default)]
    training_steps: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    class_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rounded_from: Option<String>,
}

impl From<ModelSpec> for SpecRecord {
    fn from(spec: ModelSpec) -> SpecRecord {
        let mut record = SpecRecord {
            format_version: spec.format_version,
            architecture: spec.architecture.name().to_string(),
            data_shape: spec.data_shape,
            hidden_width: None,
            depth: None,
            unet: None,
            time_embedding: spec.time_embedding,
            time_scale: spec.time_scale,
            prediction: spec.prediction,
            class_embedding: spec.class_embedding,
            num_classes: spec.num_classes,
            activation: None,
            path: spec.path.name().to_string(),
            dataset: spec.dataset,
            training_steps: spec.training_steps,
            class_names: spec.class_names,
            rounded_from: spec.rounded_from,
        };
        match spec.architecture {
            Architecture::Mlp(mlp) => {
                record.hidden_width = Some(mlp.hidden_width);
                record.depth = Some(mlp.depth);
                record.activation = Some(mlp.activation.name().to_string());
            }
            Architecture::Unet(unet) => record.unet = Some(unet),
        }
        record
    }
}

impl TryFrom<SpecRecord> for ModelSpec {
    type Error = String;

    fn try_from(record: SpecRecord) -> Result<ModelSpec, String> {
        /// The value of an architecture-specific field, or the error naming it.
        fn required<T>(architecture: &str, field: &str, value: Option<T>) -> Result<T, String> {
            value.ok_or_else(|| {
                format!("missing field `{field}` (an {architecture:?} model needs it)")
            })
        }
        /// An error when another architecture's field is present.
        fn refused(architecture: &str, field: &str, present: bool) -> Result<(), String> {
            if present {
                return Err(format!(
                    "field `{field}` is not part of an {architecture:?} model"
                ));
            }
            Ok(())
        }
        let name = record.architecture.as_str();
        let architecture = match name {
            "mlp" => {
                refused(name, "unet", record.unet.is_some())?;
                Architecture::Mlp(MlpSpec {
                    hidden_width: required(name, "hidden_width", record.hidden_width)?,
                    depth: required(name, "depth", record.depth)?,
                    activation: required(name, "activation", record.activation)?.parse()?,
                })
            }
            "unet" => {
                refused(name, "hidden_width", record.hidden_width.is_some())?;
                refused(name, "depth", record.depth.is_some())?;
                refused(name, "activation", record.activation.is_some())?;
                Architecture::Unet(required(name, "unet", record.unet)?)
            }
            other => {
                return Err(format!(
                    "unknown architecture {other:?} (this runtime runs {KNOWN_ARCHITECTURES})"
                ))
            }
        };
        Ok(ModelSpec {
            format_version: record.format_version,
            architecture,
            data_shape: record.data_shape,
            time_embedding: record.time_embedding,
            time_scale: record.time_scale,
            prediction: record.prediction,
            class_embedding: record.class_embedding,
            num_classes: record.num_classes,
            path: record.path.parse()?,
            dataset: record.dataset,
            training_steps: record.training_steps,
            class_names: record.class_names,
            rounded_from: record.rounded_from,
        })
    }
}

/// The probability path a model was trained on, from noise `x_0` to data `x_1`. The file writes
/// its name ([`ProbabilityPath::name`]); a name this runtime does not know is refused when the spec
/// is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProbabilityPath {
    /// `"cond-ot"`: the conditional-OT path `x_t = (1−t)·x_0 + t·x_1` ([`crate::path`]).
    #[default]
    CondOt,
}

impl ProbabilityPath {
    /// The name in the file.
    pub fn name(self) -> &'static str {
        match self {
            ProbabilityPath::CondOt => "cond-ot",
        }
    }
}

impl std::str::FromStr for ProbabilityPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cond-ot" => Ok(ProbabilityPath::CondOt),
            other => Err(format!(
                "unknown probability path {other:?} (this runtime supports \"cond-ot\")"
            )),
        }
    }
}

/// What the network's output means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prediction {
    /// The output is the velocity `u(x, t)` itself.
    #[default]
    Velocity,
    /// The output is the data prediction `x̂1`, and the velocity is derived from it by
    /// [`crate::path::velocity_from_data`] ("x-prediction with a velocity loss", Li & He 2025,
    /// "Back to Basics: Let Denoising Generative Models Denoise"): the network denoises, and the
    /// division that removes the last of the noise is exact instead of learned.
    Data,
}

impl Prediction {
    pub fn is_velocity(&self) -> bool {
        *self == Prediction::Velocity
    }

    pub fn name(&self) -> &'static str {
        match self {
            Prediction::Velocity => "velocity",
            Prediction::Data => "data",
        }
    }
}

impl std::str::FromStr for Prediction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "velocity" => Ok(Prediction::Velocity),
            "data" => Ok(Prediction::Data),
            other => Err(format!(
                "unknown prediction {other:?} (expected \"velocity\" or \"data\")"
            )),
        }
    }
}

fn default_time_scale() -> f64 {
    super::DEFAULT_TIME_SCALE
}

/// Largest accepted time scale.
pub const MAX_TIME_SCALE: f64 = 1e4;

impl ModelSpec {
    /// A spec of the current format version on the cond-OT path, with the default time scale,
    /// velocity prediction and no provenance (set those fields after). `class_embedding` is
    /// used only when `num_classes > 0` (it is 0 for unconditional models).
    pub fn new(
        architecture: Architecture,
        data_shape: &[usize],
        time_embedding: usize,
        num_classes: usize,
        class_embedding: usize,
    ) -> ModelSpec {
        ModelSpec {
            format_version: MODEL_FORMAT_VERSION,
            architecture,
            data_shape: data_shape.to_vec(),
            time_embedding,
            time_scale: super::DEFAULT_TIME_SCALE,
            prediction: Prediction::Velocity,
            class_embedding: if num_classes > 0 { class_embedding } else { 0 },
            num_classes,
            path: ProbabilityPath::CondOt,
            dataset: String::new(),
            training_steps: 0,
            class_names: Vec::new(),
            rounded_from: None,
        }
    }

    /// Number of values in one sample: the product of `data_shape` (saturating; [`validate`]
    /// rejects sizes that large).
    ///
    /// [`validate`]: Self::validate
    pub fn data_dim(&self) -> usize {
        self.data_shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .unwrap_or(usize::MAX)
    }

    /// Whether the model takes a class label (`num_classes > 0`).
    pub fn is_conditional(&self) -> bool {
        self.num_classes > 0
    }

    /// Index of the null (unconditional) class: the last row of the class embedding.
    pub fn null_class(&self) -> u32 {
        u32::try_from(self.num_classes).unwrap_or(u32::MAX)
    }

    /// The class embedding table `class_embedding.weight` `[num_classes + 1, class_embedding]`
    /// of conditional models (every architecture has it under this name), or `None`.
    pub(crate) fn class_table_shape(&self) -> Option<(String, Vec<usize>)> {
        self.is_conditional().then(|| {
            (
                CLASS_TABLE.to_string(),
                vec![self.num_classes.saturating_add(1), self.class_embedding],
            )
        })
    }

    /// Every tensor the file must hold, with its shape, in the file's order (the
    /// architecture's: [`MlpSpec::tensor_shapes`], [`UnetSpec::tensor_shapes`]).
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        match &self.architecture {
            Architecture::Mlp(mlp) => mlp.tensor_shapes(self),
            Architecture::Unet(unet) => unet.tensor_shapes(self),
        }
    }

    /// Total number of parameters (saturating).
    pub fn parameter_count(&self) -> usize {
        self.tensor_shapes()
            .iter()
            .map(|(_, shape)| shape.iter().fold(1usize, |acc, &d| acc.saturating_mul(d)))
            .fold(0usize, usize::saturating_add)
    }

    /// Checks that this runtime can run the model and that its sizes are bounded; the message
    /// names the offending field. No size is used for an allocation before it is checked here.
    pub fn validate(&self) -> Result<(), String> {
        if self.format_version != MODEL_FORMAT_VERSION {
            return Err(format!(
                "unknown model format version {} (this runtime reads version {MODEL_FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.data_shape.len() != 3 || self.data_shape.contains(&0) {
            return Err(format!(
                "data_shape must be three positive sizes [C, H, W], got {:?}",
                self.data_shape
            ));
        }
        if self.data_dim() > MAX_DATA_DIM {
            return Err(format!(
                "data_shape {:?} is too large (at most {MAX_DATA_DIM} values per sample)",
                self.data_shape
            ));
        }
        if self.time_embedding < 2
            || !self.time_embedding.is_multiple_of(2)
            || self.time_embedding > MAX_WIDTH
        {
            return Err(format!(
                "time_embedding must be even and in 2..={MAX_WIDTH}, got {}",
                self.time_embedding
            ));
        }
        if self.num_classes > MAX_CLASSES {
            return Err(format!(
                "num_classes must be at most {MAX_CLASSES}, got {}",
                self.num_classes
            ));
        }
        if self.is_conditional() {
            if self.class_embedding == 0 || self.class_embedding > MAX_WIDTH {
                return Err(format!(
                    "class_embedding must be in 1..={MAX_WIDTH} for a conditional model \
                     (num_classes = {}), got {}",
                    self.num_classes, self.class_embedding
                ));
            }
        } else if self.class_embedding != 0 {
            return Err(format!(
                "class_embedding must be 0 for an unconditional model (num_classes = 0), got {}",
                self.class_embedding
            ));
        }
        if self.dataset.len() > MAX_DATASET_LEN {
            return Err(format!(
                "dataset name is {} bytes long (at most {MAX_DATASET_LEN})",
                self.dataset.len()
            ));
        }
        if !(self.time_scale > 0.0 && self.time_scale <= MAX_TIME_SCALE) {
            return Err(format!(
                "time_scale must be in (0, {MAX_TIME_SCALE}], got {}",
                self.time_scale
            ));
        }
        if !self.class_names.is_empty() && self.class_names.len() != self.num_classes {
            return Err(format!(
                "class_names has {} names for {} classes",
                self.class_names.len(),
                self.num_classes
            ));
        }
        if let Some(name) = self.class_names.iter().find(|n| n.len() > MAX_DATASET_LEN) {
            return Err(format!(
                "a class name is {} bytes long (at most {MAX_DATASET_LEN})",
                name.len()
            ));
        }
        if let Some(id) = &self.rounded_from {
            let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
            if id.len() != 64 || !id.chars().all(hex) {
                return Err(format!(
                    "rounded_from must be a model id (64 lowercase hexadecimal digits), got {id:?}"
                ));
            }
        }
        match &self.architecture {
            Architecture::Mlp(mlp) => mlp.validate()?,
            Architecture::Unet(unet) => unet.validate(self)?,
        }
        let parameters = self.parameter_count();
        if parameters > MAX_PARAMETERS {
            return Err(format!(
                "the model has {parameters} parameters (at most {MAX_PARAMETERS})"
            ));
        }
        Ok(())
    }
}

/// Name of the class embedding table in every architecture's file.
pub(crate) const CLASS_TABLE: &str = "class_embedding.weight";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small conditional spec for tests.
    pub(crate) fn small_spec() -> ModelSpec {
        ModelSpec {
            format_version: MODEL_FORMAT_VERSION,
            architecture: Architecture::mlp(13, 2),
            data_shape: vec![1, 3, 5],
            time_embedding: 6,
            time_scale: 1000.0,
            prediction: Default::default(),
            class_embedding: 5,
            num_classes: 3,
            path: ProbabilityPath::CondOt,
            dataset: "test".into(),
            training_steps: 7,
            class_names: Vec::new(),
            rounded_from: None,
        }
    }

    /// `small_spec` with another MLP part.
    fn with_mlp(hidden_width: usize, depth: usize) -> ModelSpec {
        ModelSpec {
            architecture: Architecture::mlp(hidden_width, depth),
            ..small_spec()
        }
    }

    #[test]
    fn derived_sizes() {
        let spec = small_spec();
        assert_eq!(spec.data_dim(), 15);
        assert!(spec.is_conditional());
        assert_eq!(spec.null_class(), 3);
        let Architecture::Mlp(mlp) = &spec.architecture else {
            panic!("an MLP spec")
        };
        assert_eq!(mlp.input_width(&spec), 15 + 6 + 5);
        let names: Vec<(String, Vec<usize>)> = spec.tensor_shapes();
        let expected: Vec<(String, Vec<usize>)> = vec![
            ("class_embedding.weight".into(), vec![4, 5]),
            ("layers.0.weight".into(), vec![13, 26]),
            ("layers.0.bias".into(), vec![13]),
            ("layers.1.weight".into(), vec![13, 13]),
            ("layers.1.bias".into(), vec![13]),
            ("layers.2.weight".into(), vec![15, 13]),
            ("layers.2.bias".into(), vec![15]),
        ];
        assert_eq!(names, expected);
        assert_eq!(
            spec.parameter_count(),
            20 + 13 * 26 + 13 + 13 * 13 + 13 + 15 * 13 + 15
        );
        spec.validate().unwrap();
    }

    #[test]
    fn unconditional_has_no_class_embedding() {
        let spec = ModelSpec {
            class_embedding: 0,
            num_classes: 0,
            ..small_spec()
        };
        spec.validate().unwrap();
        assert!(!spec.is_conditional());
        assert_eq!(spec.tensor_shapes()[0].0, "layers.0.weight");
        assert_eq!(spec.tensor_shapes().len(), 6);
    }

    #[test]
    fn validate_names_the_problem() {
        let cases: Vec<(ModelSpec, &str)> = vec![
            (
                ModelSpec {
                    format_version: 9,
                    ..small_spec()
                },
                "unknown model format version 9 (this runtime reads version 1)",
            ),
            (
                ModelSpec {
                    data_shape: vec![2, 1],
                    ..small_spec()
                },
                "data_shape",
            ),
            (
                ModelSpec {
                    data_shape: vec![1, 0, 3],
                    ..small_spec()
                },
                "data_shape",
            ),
            (
                ModelSpec {
                    data_shape: vec![usize::MAX, 2, 2],
                    ..small_spec()
                },
                "too large",
            ),
            (with_mlp(0, 2), "hidden_width"),
            (with_mlp(5000, 2), "hidden_width"),
            (with_mlp(13, 0), "depth"),
            (with_mlp(13, 17), "depth"),
            (
                ModelSpec {
                    time_embedding: 7,
                    time_scale: 1000.0,
                    prediction: Default::default(),
                    ..small_spec()
                },
                "time_embedding",
            ),
            (
                ModelSpec {
                    time_embedding: 0,
                    time_scale: 1000.0,
                    prediction: Default::default(),
                    ..small_spec()
                },
                "time_embedding",
            ),
            (
                ModelSpec {
                    class_embedding: 0,
                    ..small_spec()
                },
                "class_embedding",
            ),
            (
                ModelSpec {
                    num_classes: 0,
                    ..small_spec()
                },
                "class_embedding must be 0",
            ),
            (
                ModelSpec {
                    num_classes: 1 << 40,
                    ..small_spec()
                },
                "num_classes",
            ),
            (with_mlp(4096, 16), "parameters"),
            (
                ModelSpec {
                    time_scale: 0.0,
                    prediction: Default::default(),
                    ..small_spec()
                },
                "time_scale",
            ),
            (
                ModelSpec {
                    time_scale: f64::NAN,
                    prediction: Default::default(),
                    ..small_spec()
                },
                "time_scale",
            ),
            (
                ModelSpec {
                    class_names: vec!["one".into()],
                    ..small_spec()
                },
                "class_names",
            ),
        ];
        for (spec, needle) in cases {
            let problem = spec.validate().unwrap_err();
            assert!(problem.contains(needle), "{problem:?} lacks {needle:?}");
        }
    }

    #[test]
    fn unknown_architecture_is_refused_by_name() {
        let mut value = serde_json::to_value(small_spec()).unwrap();
        value["architecture"] = "transformer".into();
        let problem = serde_json::from_value::<ModelSpec>(value)
            .unwrap_err()
            .to_string();
        assert!(
            problem.contains(
                "unknown architecture \"transformer\" (this runtime runs \"mlp\", \"unet\")"
            ),
            "{problem}"
        );
        let mut value = serde_json::to_value(small_spec()).unwrap();
        value.as_object_mut().unwrap().remove("depth");
        let problem = serde_json::from_value::<ModelSpec>(value)
            .unwrap_err()
            .to_string();
        assert!(problem.contains("missing field `depth`"), "{problem}");
    }

    #[test]
    fn unknown_path_and_activation_are_refused_by_name() {
        let cases = [
            (
                "path",
                "vp",
                "unknown probability path \"vp\" (this runtime supports \"cond-ot\")",
            ),
            (
                "activation",
                "relu",
                "unknown activation \"relu\" (this runtime supports \"silu\")",
            ),
        ];
        for (field, value, expected) in cases {
            let mut json = serde_json::to_value(small_spec()).unwrap();
            json[field] = value.into();
            let problem = serde_json::from_value::<ModelSpec>(json)
                .unwrap_err()
                .to_string();
            assert!(problem.contains(expected), "{problem}");
        }
    }

    #[test]
    fn json_keeps_the_version_1_layout() {
        // The field order is part of the file, hence of every model id.
        let json = serde_json::to_string(&small_spec()).unwrap();
        assert_eq!(
            json,
            "{\"format_version\":1,\"architecture\":\"mlp\",\"data_shape\":[1,3,5],\
             \"hidden_width\":13,\"depth\":2,\"time_embedding\":6,\"time_scale\":1000.0,\
             \"class_embedding\":5,\"num_classes\":3,\"activation\":\"silu\",\
             \"path\":\"cond-ot\",\"dataset\":\"test\",\"training_steps\":7}"
        );
        let back: ModelSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, small_spec());
    }

    #[test]
    fn json_defaults_for_informational_fields() {
        let json = r#"{"format_version":1,"architecture":"mlp","data_shape":[2,1,1],
            "hidden_width":8,"depth":1,"time_embedding":2,"class_embedding":0,
            "num_classes":0,"activation":"silu","path":"cond-ot"}"#;
        let spec: ModelSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.dataset, "");
        assert_eq!(spec.training_steps, 0);
        // Files written before the time scale was recorded used 1000.
        assert_eq!(spec.time_scale, 1000.0);
        assert!(spec.class_names.is_empty());
        spec.validate().unwrap();
    }
}
