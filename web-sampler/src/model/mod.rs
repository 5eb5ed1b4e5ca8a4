//! The model file (one `.safetensors`) and the MLP velocity network `u(x, t, c)` on the CPU.
//!
//! # Architecture
//!
//! With `D` = [`ModelSpec::data_dim`], `E_t` = `time_embedding`, `E_c` = `class_embedding`,
//! `W` = `hidden_width` and `L` = `depth`:
//!
//! * input = concat(`x` `[D]`, [`time_embedding`]`(t)` `[E_t]`, `class_embedding.weight[c]`
//!   `[E_c]`) — the class part only for conditional models;
//! * `layers.0`: Linear(`D + E_t + E_c → W`) + SiLU;
//! * `layers.1` … `layers.{L−1}`: Linear(`W → W`) + SiLU;
//! * `layers.{L}`: Linear(`W → D`), no activation: the velocity.
//!
//! # Tensors
//!
//! All `F32`, little-endian, in this order ([`ModelSpec::tensor_shapes`]):
//! `class_embedding.weight` `[num_classes + 1, E_c]` (conditional models only; the last row,
//! index [`ModelSpec::null_class`], is the null class used for guidance), then
//! `layers.{i}.weight` `[out, in]` (the PyTorch/candle `Linear` layout) and `layers.{i}.bias`
//! `[out]` for `i = 0..=L`. The file's `__metadata__` holds the [`ModelSpec`] as JSON under the
//! key [`MODEL_METADATA_KEY`]. The model id is the lowercase hex SHA-256 of the file.
//!
//! # Determinism
//!
//! The forward uses no BLAS and no platform maths: the dense layers sum in a fixed order (see
//! `linear.rs`), SiLU and the time embedding use the `libm` crate, so the same model and inputs
//! give bit-identical `f32` outputs natively and in wasm, for any batch size.

mod file;
mod linear;
mod mlp;
mod spec;

#[cfg(test)]
mod tests;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::noise::Noise;
use mlp::{Layer, Network};

pub use mlp::{time_embedding, time_frequencies, DEFAULT_TIME_SCALE};
pub use spec::{
    ModelSpec, MAX_CLASSES, MAX_DATASET_LEN, MAX_DATA_DIM, MAX_DEPTH, MAX_PARAMETERS, MAX_WIDTH,
    MODEL_FORMAT_VERSION, MODEL_METADATA_KEY,
};
pub use spec::{Prediction, DATA_PREDICTION_MIN_REMAINING};
/// The CPU dense layer and SiLU, the references of the GPU kernels' tests.
#[cfg(test)]
pub(crate) use {
    linear::linear as cpu_linear, mlp::silu as cpu_silu, spec::tests::small_spec as spec_for_tests,
};

/// Origin of errors about a model built by [`Model::from_tensors`].
const FROM_TENSORS_ORIGIN: &str = "<model from tensors>";
/// Origin of errors about a model built by [`Model::random`].
const RANDOM_ORIGIN: &str = "<random model>";

/// A validated velocity network: its spec, its weights and its id.
#[derive(Clone, Debug)]
pub struct Model {
    spec: ModelSpec,
    /// `[num_classes + 1, class_embedding]`; empty when unconditional.
    class_embedding: Vec<f32>,
    /// `depth + 1` dense layers.
    layers: Vec<Layer>,
    id: String,
    /// The file (or source) the model came from, for error messages.
    origin: String,
}

impl Model {
    /// Parse and validate a model file. `origin` names the file in every error.
    ///
    /// Errors (each naming the file, and the field or tensor): not a safetensors file or
    /// truncated (safetensors' own error, wrapped); no `__metadata__` or no `"bns.model"` key;
    /// metadata JSON invalid; unknown `format_version`; spec invalid; missing tensor; wrong
    /// shape; wrong dtype; non-finite weights; unexpected extra tensors. No input panics.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Model> {
        let (spec, tensors) = file::parse(bytes, origin)?;
        let id = hex(&Sha256::digest(bytes));
        Model::assemble(spec, tensors, id, origin)
    }

    /// Reads and parses the model file at `path` (errors name the path).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path) -> Result<Model> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::new(&origin, format!("cannot read the model file: {e}")))?;
        Model::from_bytes(&bytes, &origin)
    }

    /// Build from a spec and named tensors (the distiller uses this to save trained weights); validated like a file.
    ///
    /// The tensors may come in any order; each must be one of [`ModelSpec::tensor_shapes`],
    /// with as many values as its shape holds, all finite.
    pub fn from_tensors(spec: ModelSpec, tensors: Vec<(String, Vec<f32>)>) -> Result<Model> {
        Model::from_named(spec, tensors, FROM_TENSORS_ORIGIN)
    }

    /// Random weights (uniform ±1/sqrt(fan_in), as PyTorch's Linear init; embedding N(0,1)), from Noise::new(seed). For tests and demos.
    ///
    /// Values are drawn in [`ModelSpec::tensor_shapes`] order, each tensor row-major.
    pub fn random(spec: ModelSpec, seed: u64) -> Result<Model> {
        spec.validate()
            .map_err(|p| Error::new(RANDOM_ORIGIN, format!("invalid model description: {p}")))?;
        let mut noise = Noise::new(seed);
        let tensors = spec
            .tensor_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let len = shape.iter().product();
                let values: Vec<f32> = if name == "class_embedding.weight" {
                    noise.gaussian_f32(len)
                } else {
                    // Weight [out, in] and bias [out] of a layer both use the layer's fan-in.
                    let fan_in = if shape.len() == 2 {
                        shape[1]
                    } else {
                        fan_in_of_bias(&spec, &name)
                    };
                    let bound = 1.0 / libm::sqrt(fan_in as f64);
                    (0..len)
                        .map(|_| ((2.0 * noise.uniform() - 1.0) * bound) as f32)
                        .collect()
                };
                (name, values)
            })
            .collect();
        Model::from_named(spec, tensors, RANDOM_ORIGIN)
    }

    /// The network's description.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Model id: lowercase hex SHA-256 of the file bytes (for from_tensors/random: of to_bytes()).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The safetensors file (metadata + tensors in tensor_shapes order); from_bytes(to_bytes()) round-trips with the same id.
    ///
    /// The file is canonical: a model loaded from a file this crate wrote gives back exactly
    /// that file. (A file written by another tool, e.g. with other `__metadata__` keys or
    /// another tensor order, is rewritten in the canonical form, whose id differs.)
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        file::write(&self.spec, &self.named_tensors(), &mut |piece| {
            bytes.extend_from_slice(piece)
        });
        bytes
    }

    /// Writes [`to_bytes`](Self::to_bytes) to `path` through a temporary file in the same
    /// folder and a rename, so that no half-written model is ever left at `path`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let origin = path.display().to_string();
        if path.file_name().is_none() {
            return Err(Error::new(
                &origin,
                "cannot save a model: the path names no file",
            ));
        }
        crate::atomic_write::write_atomically(path, &self.to_bytes())
            .map_err(|e| Error::new(&origin, format!("cannot save the model: {e}")))
    }

    /// The values of the tensor `name` (one of [`ModelSpec::tensor_shapes`]), row-major.
    pub fn tensor(&self, name: &str) -> Option<&[f32]> {
        self.named_tensors()
            .into_iter()
            .find(|(known, _)| *known == name)
            .map(|(_, values)| values)
    }

    /// Velocity u(x, t, c) for a batch: x [B, D] row-major, t [B], class [B] (null class = spec.null_class(); ignored when unconditional) → [B, D].
    ///
    /// `B = t.len()`. For an unconditional model `class` may be empty or have `B` entries
    /// (ignored). Errors (naming the model's file): `x` not `B·D` values, `class` not `B`
    /// entries, a class above [`ModelSpec::null_class`]. Row `i` of the result depends only on
    /// row `i` of the inputs, bit for bit.
    pub fn velocity(&self, x: &[f32], t: &[f32], class: &[u32]) -> Result<Vec<f32>> {
        let rows = t.len();
        let d = self.spec.data_dim();
        let fail = |problem: String| Error::new(&self.origin, problem);
        let expected = rows
            .checked_mul(d)
            .ok_or_else(|| fail(format!("velocity: a batch of {rows} rows is too large")))?;
        if x.len() != expected {
            return Err(fail(format!(
                "velocity: x has {} values, expected {rows} rows × {d} = {expected} (one row per time)",
                x.len()
            )));
        }
        let classes: &[u32] = if self.spec.is_conditional() {
            if class.len() != rows {
                return Err(fail(format!(
                    "velocity: {} class labels for {rows} rows",
                    class.len()
                )));
            }
            let null = self.spec.null_class();
            if let Some(bad) = class.iter().find(|&&c| c > null) {
                return Err(fail(format!(
                    "velocity: class {bad} is out of range (classes 0..{null}, {null} = null class)"
                )));
            }
            class
        } else {
            if !class.is_empty() && class.len() != rows {
                return Err(fail(format!(
                    "velocity: {} class labels for {rows} rows",
                    class.len()
                )));
            }
            &[]
        };
        let mut out = vec![0.0; expected];
        if rows > 0 {
            self.network().forward(x, t, classes, &mut out);
        }
        if self.spec.prediction == Prediction::Data {
            // The network predicts x̂1; the velocity is (x̂1 − x)/max(1 − t, c).
            for ((u, x), &t) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(t) {
                let scale = 1.0 / (1.0 - t).max(DATA_PREDICTION_MIN_REMAINING);
                for (u, x) in u.iter_mut().zip(x) {
                    *u = (*u - x) * scale;
                }
            }
        }
        Ok(out)
    }

    /// The weights as the forward sees them.
    fn network(&self) -> Network<'_> {
        Network {
            data_dim: self.spec.data_dim(),
            time_embedding: self.spec.time_embedding,
            time_scale: self.spec.time_scale,
            class_embedding: &self.class_embedding,
            class_width: self.spec.class_embedding,
            layers: &self.layers,
        }
    }

    /// Every tensor with its name, in [`ModelSpec::tensor_shapes`] order.
    fn named_tensors(&self) -> Vec<(String, &[f32])> {
        let names = self.spec.tensor_shapes();
        let mut values: Vec<&[f32]> = Vec::with_capacity(names.len());
        if self.spec.is_conditional() {
            values.push(&self.class_embedding);
        }
        for layer in &self.layers {
            values.push(&layer.weight);
            values.push(&layer.bias);
        }
        names
            .into_iter()
            .zip(values)
            .map(|((name, _), v)| (name, v))
            .collect()
    }

    /// Checks named tensors (any order) against the spec, then assembles the model with the
    /// id of its canonical file.
    fn from_named(
        spec: ModelSpec,
        tensors: Vec<(String, Vec<f32>)>,
        origin: &str,
    ) -> Result<Model> {
        let fail = |problem: String| Error::new(origin, problem);
        spec.validate()
            .map_err(|p| fail(format!("invalid model description: {p}")))?;
        let expected = spec.tensor_shapes();
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected.len()];
        for (name, values) in tensors {
            let Some(index) = expected.iter().position(|(known, _)| *known == name) else {
                return Err(fail(format!(
                    "unexpected tensor {name} (not part of this {} model)",
                    spec.architecture
                )));
            };
            let shape = &expected[index].1;
            let len: usize = shape.iter().product();
            if values.len() != len {
                return Err(fail(format!(
                    "tensor {name} has {} values, expected shape {shape:?} ({len} values)",
                    values.len()
                )));
            }
            file::check_finite(&name, &values).map_err(fail)?;
            if slots[index].replace(values).is_some() {
                return Err(fail(format!("tensor {name} is given twice")));
            }
        }
        let mut ordered = Vec::with_capacity(expected.len());
        for ((name, _), slot) in expected.into_iter().zip(slots) {
            let values = slot.ok_or_else(|| fail(format!("missing tensor {name}")))?;
            ordered.push((name, values));
        }
        let mut model = Model::assemble(spec, ordered, String::new(), origin)?;
        let mut hasher = Sha256::new();
        file::write(&model.spec, &model.named_tensors(), &mut |piece| {
            hasher.update(piece)
        });
        model.id = hex(&hasher.finalize());
        Ok(model)
    }

    /// The model from checked tensors in `tensor_shapes` order.
    fn assemble(
        spec: ModelSpec,
        tensors: Vec<(String, Vec<f32>)>,
        id: String,
        origin: &str,
    ) -> Result<Model> {
        let mut values = tensors.into_iter().map(|(_, v)| v);
        let class_embedding = if spec.is_conditional() {
            values.next().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut layers = Vec::with_capacity(spec.depth + 1);
        while let (Some(weight), Some(bias)) = (values.next(), values.next()) {
            layers.push(Layer { weight, bias });
        }
        // Both callers checked every tensor against tensor_shapes; this guards the invariant.
        let sizes = spec.layer_sizes();
        let consistent = layers.len() == sizes.len()
            && layers
                .iter()
                .zip(&sizes)
                .all(|(layer, &(fan_out, fan_in))| {
                    layer.bias.len() == fan_out && layer.weight.len() == fan_out * fan_in
                })
            && class_embedding.len()
                == (spec.num_classes + usize::from(spec.is_conditional())) * spec.class_embedding;
        if !consistent {
            return Err(Error::new(
                origin,
                "internal error: tensors do not match the model description",
            ));
        }
        Ok(Model {
            spec,
            class_embedding,
            layers,
            id,
            origin: origin.to_string(),
        })
    }
}

/// The fan-in of the layer that the bias `layers.{i}.bias` belongs to.
fn fan_in_of_bias(spec: &ModelSpec, name: &str) -> usize {
    let index = name
        .strip_prefix("layers.")
        .and_then(|rest| rest.strip_suffix(".bias"))
        .and_then(|i| i.parse::<usize>().ok());
    index
        .and_then(|i| spec.layer_sizes().get(i).map(|&(_, fan_in)| fan_in))
        .unwrap_or(1)
}

/// Lowercase hexadecimal of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
