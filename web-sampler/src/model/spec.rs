//! The model description stored in the file's `__metadata__` (key [`MODEL_METADATA_KEY`]): what
//! network the weights belong to, and the list of tensors with their shapes that it implies.

use serde::{Deserialize, Serialize};

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

/// The architecture of a velocity network (see the [module documentation](super)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Must be [`MODEL_FORMAT_VERSION`].
    pub format_version: u32,
    /// `"mlp"` (the only architecture for now).
    pub architecture: String,
    /// `[C, H, W]`: images `[1, 28, 28]`; 2-D points `[2, 1, 1]`.
    pub data_shape: Vec<usize>,
    /// Width of every hidden layer.
    pub hidden_width: usize,
    /// Number of hidden layers, ≥ 1.
    pub depth: usize,
    /// Width of the sinusoidal time embedding: even, ≥ 2.
    pub time_embedding: usize,
    /// Scale `s` of the time inside the sinusoidal embedding `sin(s·t·f_k)`, `cos(s·t·f_k)`
    /// (files without it use [`DEFAULT_TIME_SCALE`](super::DEFAULT_TIME_SCALE)).
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    /// What the network outputs: `"velocity"` (files without the field) or `"data"`.
    #[serde(default, skip_serializing_if = "Prediction::is_velocity")]
    pub prediction: Prediction,
    /// Width of the learned class embedding; 0 when unconditional.
    pub class_embedding: usize,
    /// Real classes, not counting the null class; 0 = unconditional.
    pub num_classes: usize,
    /// `"silu"`.
    pub activation: String,
    /// The probability path the model was trained on: `"cond-ot"`.
    pub path: String,
    /// Name of the training data (informational).
    #[serde(default)]
    pub dataset: String,
    /// Optimizer steps the model was trained for (informational).
    #[serde(default)]
    pub training_steps: u64,
    /// Names of the classes, in label order (informational; empty, or one per class).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
}

/// What the network's output means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prediction {
    /// The output is the velocity `u(x, t)` itself.
    #[default]
    Velocity,
    /// The output is the data prediction `x̂1`, and the velocity is
    /// `u = (x̂1 − x)/max(1 − t, c)` with `c` = [`DATA_PREDICTION_MIN_REMAINING`] ("x-prediction
    /// with a velocity loss", Li & He 2025, "Back to Basics: Let Denoising Generative Models
    /// Denoise"): the network denoises, and the division that removes the last of the noise is
    /// exact instead of learned.
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

/// The smallest `1 − t` a data-predicting model divides by.
pub const DATA_PREDICTION_MIN_REMAINING: f32 = 0.05;

fn default_time_scale() -> f64 {
    super::DEFAULT_TIME_SCALE
}

/// Largest accepted time scale.
pub const MAX_TIME_SCALE: f64 = 1e4;

impl ModelSpec {
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

    /// Width of the first layer's input: `data_dim + time_embedding + class_embedding`.
    pub fn input_width(&self) -> usize {
        self.data_dim()
            .saturating_add(self.time_embedding)
            .saturating_add(self.class_embedding)
    }

    /// Every tensor the file must hold, with its shape, in a fixed order: the class embedding
    /// (conditional models only), then `layers.{i}.weight` `[out, in]` and `layers.{i}.bias`
    /// `[out]` for `i = 0..=depth`.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut shapes = Vec::with_capacity(2 * self.depth + 3);
        if self.is_conditional() {
            shapes.push((
                "class_embedding.weight".to_string(),
                vec![self.num_classes.saturating_add(1), self.class_embedding],
            ));
        }
        for (i, (fan_out, fan_in)) in self.layer_sizes().into_iter().enumerate() {
            shapes.push((format!("layers.{i}.weight"), vec![fan_out, fan_in]));
            shapes.push((format!("layers.{i}.bias"), vec![fan_out]));
        }
        shapes
    }

    /// `(out, in)` of every linear layer, first to last (`depth + 1` layers).
    pub(crate) fn layer_sizes(&self) -> Vec<(usize, usize)> {
        let mut sizes = Vec::with_capacity(self.depth + 1);
        sizes.push((self.hidden_width, self.input_width()));
        for _ in 1..self.depth {
            sizes.push((self.hidden_width, self.hidden_width));
        }
        sizes.push((self.data_dim(), self.hidden_width));
        sizes
    }

    /// Total number of parameters (saturating).
    pub fn parameter_count(&self) -> usize {
        self.tensor_shapes()
            .iter()
            .map(|(_, shape)| shape.iter().fold(1usize, |acc, &d| acc.saturating_mul(d)))
            .fold(0usize, usize::saturating_add)
    }

    /// Checks that this runtime can run the model and that its sizes are bounded; the message
    /// names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.format_version != MODEL_FORMAT_VERSION {
            return Err(format!(
                "unknown model format version {} (this runtime reads version {MODEL_FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.architecture != "mlp" {
            return Err(format!(
                "unknown architecture {:?} (this runtime runs \"mlp\")",
                self.architecture
            ));
        }
        if self.activation != "silu" {
            return Err(format!(
                "unknown activation {:?} (this runtime supports \"silu\")",
                self.activation
            ));
        }
        if self.path != "cond-ot" {
            return Err(format!(
                "unknown probability path {:?} (this runtime supports \"cond-ot\")",
                self.path
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
        if self.hidden_width == 0 || self.hidden_width > MAX_WIDTH {
            return Err(format!(
                "hidden_width must be in 1..={MAX_WIDTH}, got {}",
                self.hidden_width
            ));
        }
        if self.depth == 0 || self.depth > MAX_DEPTH {
            return Err(format!(
                "depth must be in 1..={MAX_DEPTH}, got {}",
                self.depth
            ));
        }
        if self.time_embedding < 2
            || self.time_embedding % 2 != 0
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
        let parameters = self.parameter_count();
        if parameters > MAX_PARAMETERS {
            return Err(format!(
                "the model has {parameters} parameters (at most {MAX_PARAMETERS})"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small conditional spec for tests.
    pub(crate) fn small_spec() -> ModelSpec {
        ModelSpec {
            format_version: MODEL_FORMAT_VERSION,
            architecture: "mlp".into(),
            data_shape: vec![1, 3, 5],
            hidden_width: 13,
            depth: 2,
            time_embedding: 6,
            time_scale: 1000.0,
            prediction: Default::default(),
            class_embedding: 5,
            num_classes: 3,
            activation: "silu".into(),
            path: "cond-ot".into(),
            dataset: "test".into(),
            training_steps: 7,
            class_names: Vec::new(),
        }
    }

    #[test]
    fn derived_sizes() {
        let spec = small_spec();
        assert_eq!(spec.data_dim(), 15);
        assert!(spec.is_conditional());
        assert_eq!(spec.null_class(), 3);
        assert_eq!(spec.input_width(), 15 + 6 + 5);
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
                    architecture: "unet".into(),
                    ..small_spec()
                },
                "architecture",
            ),
            (
                ModelSpec {
                    activation: "relu".into(),
                    ..small_spec()
                },
                "activation",
            ),
            (
                ModelSpec {
                    path: "vp".into(),
                    ..small_spec()
                },
                "path",
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
            (
                ModelSpec {
                    hidden_width: 0,
                    ..small_spec()
                },
                "hidden_width",
            ),
            (
                ModelSpec {
                    hidden_width: 5000,
                    ..small_spec()
                },
                "hidden_width",
            ),
            (
                ModelSpec {
                    depth: 0,
                    ..small_spec()
                },
                "depth",
            ),
            (
                ModelSpec {
                    depth: 17,
                    ..small_spec()
                },
                "depth",
            ),
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
            (
                ModelSpec {
                    hidden_width: 4096,
                    depth: 16,
                    ..small_spec()
                },
                "parameters",
            ),
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
