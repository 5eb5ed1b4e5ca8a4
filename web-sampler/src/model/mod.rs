//! The model file (one `.safetensors`) and the network that defines the velocity `u(x, t, c)`,
//! on the CPU.
//!
//! The file format — every `bns.model` key with its default, the tensors of each architecture
//! in file order, the time and class embeddings, the null class, the model id — is specified in
//! `FORMATS.md` §1 (the normative description, checked by `distiller/tests/formats_doc.rs`).
//!
//! A [`Model`] is a validated spec ([`ModelSpec`]: the fields every architecture shares plus
//! its [`Architecture`]), the network's weights behind the [`VelocityNetwork`] seam, and the
//! model id. Architectures: the MLP (`mlp.rs`, [`MlpSpec`]) and the convolutional U-Net
//! (`unet/`, [`UnetSpec`]). The network's output is the velocity only for `prediction:
//! "velocity"`; the image models predict the data `x̂1`, and [`Model::velocity`] turns their
//! output into the velocity with [`crate::path::velocity_from_data`] (FORMATS.md §1.6).
//!
//! # Determinism
//!
//! The forward uses no BLAS and no platform maths: the dense layers (and the U-Net's
//! convolutions, in im2col's order: `conv2d.rs`, or for the 3×3 ones with stride 1 Winograd's
//! F(2×2, 3×3): `winograd.rs`) sum in a fixed order (see `linear.rs`), the
//! U-Net's group norm in a fixed order of `f64` sums, SiLU's exponential is plain
//! `f32` arithmetic (`activation.rs`), and the time embedding and the U-Net's group norm and softmax use
//! the `libm` crate, so the same model and inputs give bit-identical `f32` outputs natively and in
//! wasm, for any batch size and any number of threads ([`Model::set_threads`] splits a batch's
//! rows, which are independent).

mod activation;
mod buffers;
mod conv2d;
mod embedding;
mod file;
mod linear;
mod mlp;
mod network;
mod spec;
mod unet;
mod winograd;
#[cfg(not(target_arch = "wasm32"))]
mod workers;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::noise::Noise;
use mlp::Mlp;
use unet::Unet;

pub use activation::exp;
pub use embedding::{time_embedding, time_frequencies, DEFAULT_TIME_SCALE};
pub(crate) use file::f16_le_bytes;
pub use file::WeightDtype;
pub use mlp::{Activation, MlpSpec};
pub use network::{Tape, VelocityNetwork};
pub use spec::{
    Architecture, ModelSpec, MAX_CLASSES, MAX_DATASET_LEN, MAX_DATA_DIM, MAX_DEPTH, MAX_PARAMETERS,
    MAX_TIME_SCALE, MAX_WIDTH, MODEL_FORMAT_VERSION, MODEL_METADATA_KEY,
};
pub use spec::{Prediction, ProbabilityPath};
/// The U-Net's CPU convolution, GroupNorm, attention and data movements, the references of the
/// GPU kernels' tests.
#[cfg(test)]
pub(crate) use unet::{
    attention as cpu_attention, concat_channels as cpu_concat_channels, conv2d as cpu_conv2d,
    group_norm as cpu_group_norm, to_position_major as cpu_to_position_major,
    upsample_nearest as cpu_upsample_nearest, AttentionScratch, ConvShape,
};
pub use unet::{
    AttentionBlock, ConvLayer, DenseLayer, LayerMap, MappedLayout, NormLayer, ResidualBlock,
    UnetLayout, UnetLevel, UnetSpec, GROUP_NORM_EPSILON, MAX_ATTENTION_POSITIONS,
    MAX_BASE_CHANNELS, MAX_EMBEDDING_WIDTH, MAX_GROUPS, MAX_LEVELS, MAX_MULTIPLIER,
    MAX_RESIDUAL_BLOCKS, MAX_UNET_CHANNELS, MAX_UNET_CHANNELS_IN, MAX_UNET_FLOPS,
};
/// The CPU dense layer and SiLU, the references of the GPU kernels' tests.
#[cfg(test)]
pub(crate) use {
    activation::silu as cpu_silu, linear::linear as cpu_linear,
    spec::tests::small_spec as spec_for_tests, unet::tests::tiny_unet_spec as unet_spec_for_tests,
};

/// The CPU path's dense layer on its own, for `benches/kernel.rs` (not part of the API; with
/// the `testing` feature).
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod dense {
    use super::linear::{Kernel, PackedLinear};

    /// A dense layer `y = x·Wᵀ + b`, packed as the MLP packs its layers.
    pub struct Dense(PackedLinear);

    impl Dense {
        /// `weight` `[out, n]` (PyTorch layout), `bias` `[out]`.
        ///
        /// # Panics
        /// If `n` or `out` is 0 or `weight` is not `[out, n]`.
        pub fn new(weight: &[f32], bias: &[f32], n: usize) -> Dense {
            Dense(PackedLinear::new(weight, bias, n))
        }

        /// `y` `[rows, out]` from `x` `[rows, n]` with this CPU's best kernel.
        ///
        /// # Panics
        /// If `x` is not `[rows, n]` or `y` not `[rows, out]`.
        pub fn forward(&self, x: &[f32], y: &mut [f32]) {
            self.0.forward(x, y);
        }
    }

    /// The name of the kernel variant this CPU runs (`AVX-512F`, `AVX2`, `SSE2`, …).
    pub fn kernel() -> &'static str {
        Kernel::best().name()
    }
}

/// `len` initial weights of a layer with `fan_in` inputs: uniform in ±1/√fan_in, PyTorch's
/// default for dense layers and convolutions (and for their biases, with the layer's fan-in);
/// the same draws for every architecture.
pub(crate) fn fan_in_uniform(noise: &mut Noise, len: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / libm::sqrt(fan_in as f64);
    (0..len)
        .map(|_| ((2.0 * noise.uniform() - 1.0) * bound) as f32)
        .collect()
}

/// The fewest rows worth a thread of their own in [`Model::velocity`].
const MIN_ROWS_PER_THREAD: usize = 4;
/// Origin of errors about a model built by [`Model::from_tensors`].
const FROM_TENSORS_ORIGIN: &str = "<model from tensors>";
/// Origin of errors about a model built by [`Model::random`].
const RANDOM_ORIGIN: &str = "<random model>";

/// A validated velocity network: its spec, its weights and its id.
#[derive(Clone, Debug)]
pub struct Model {
    spec: ModelSpec,
    /// The weights and the forward of `spec.architecture`.
    network: Arc<dyn VelocityNetwork>,
    id: String,
    /// How the file stores the weights (the values are `f32` either way).
    dtype: WeightDtype,
    /// The file (or source) the model came from, for error messages.
    origin: String,
    /// Threads the CPU forward splits a batch's rows across (≥ 1; see [`Model::set_threads`]).
    threads: usize,
}

impl Model {
    /// Parse and validate a model file. `origin` names the file in every error.
    ///
    /// Errors (each naming the file, and the field or tensor): not a safetensors file or
    /// truncated (safetensors' own error, wrapped); no `__metadata__` or no `"bns.model"` key;
    /// metadata JSON invalid; unknown `format_version`; spec invalid; missing tensor; wrong
    /// shape; wrong dtype; non-finite weights; unexpected extra tensors. No input panics.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Model> {
        let (spec, tensors, dtype) = file::parse(bytes, origin)?;
        let id = sha256_hex(bytes);
        Model::assemble(spec, tensors, id, dtype, origin)
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

    /// Random weights from `Noise::new(seed)`, drawn in [`ModelSpec::tensor_shapes`] order with
    /// the architecture's initialisation (the MLP: uniform ±1/sqrt(fan_in), as PyTorch's
    /// `Linear`; the class embedding N(0, 1)). For tests and demos.
    pub fn random(spec: ModelSpec, seed: u64) -> Result<Model> {
        spec.validate()
            .map_err(|p| Error::new(RANDOM_ORIGIN, format!("invalid model description: {p}")))?;
        let mut noise = Noise::new(seed);
        let tensors = match &spec.architecture {
            Architecture::Mlp(mlp) => mlp.random_tensors(&spec, &mut noise),
            Architecture::Unet(unet) => unet.random_tensors(&spec, &mut noise),
        };
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

    /// Whether files bound to model `id` (solvers, ground-truth pairs) fit this model: `id` is
    /// its own, or that of the model it was rounded from (`spec.rounded_from`).
    pub fn answers_to(&self, id: &str) -> bool {
        self.id == id || self.spec.rounded_from.as_deref() == Some(id)
    }

    /// How the model's file stores its weights.
    pub fn dtype(&self) -> WeightDtype {
        self.dtype
    }

    /// The model with its weights stored as `dtype`. To `F16`: every weight rounded to the
    /// nearest `f16` (ties to even), and `spec.rounded_from` set to this model's id (kept when
    /// this model was rounded already), so that its solvers fit the result; refused, naming the
    /// tensor, if a weight lies beyond `f16`'s range. To `F32`: the same values (and spec),
    /// stored wide. The result's id is that of its canonical file.
    pub fn with_dtype(&self, dtype: WeightDtype) -> Result<Model> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        let mut spec = self.spec.clone();
        let mut tensors = Vec::new();
        for (name, values) in self.named_tensors() {
            let values = match dtype {
                WeightDtype::F32 => values.to_vec(),
                WeightDtype::F16 => file::round_to_f16(&name, values)
                    .map_err(|problem| Error::new(&self.origin, problem))?,
            };
            tensors.push((name, values));
        }
        if dtype == WeightDtype::F16 && spec.rounded_from.is_none() {
            spec.rounded_from = Some(self.id.clone());
        }
        let mut model = Model::assemble(spec, tensors, String::new(), dtype, &self.origin)?;
        model.id = model.canonical_id();
        model.threads = self.threads;
        Ok(model)
    }

    /// The safetensors file (metadata + tensors in tensor_shapes order); from_bytes(to_bytes()) round-trips with the same id.
    ///
    /// The file is canonical: a model loaded from a file this crate wrote gives back exactly
    /// that file. (A file written by another tool, e.g. with other `__metadata__` keys or
    /// another tensor order, is rewritten in the canonical form, whose id differs.)
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        file::write(
            &self.spec,
            &self.named_tensors(),
            self.dtype,
            &mut |piece| bytes.extend_from_slice(piece),
        );
        bytes
    }

    /// The id of the canonical file ([`to_bytes`](Self::to_bytes)), hashed piece by piece.
    fn canonical_id(&self) -> String {
        let mut hasher = Sha256::new();
        file::write(
            &self.spec,
            &self.named_tensors(),
            self.dtype,
            &mut |piece| hasher.update(piece),
        );
        hex(&hasher.finalize())
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
        let classes = self.checked_classes(x, t, class)?;
        let mut out = vec![0.0; x.len()];
        self.forward_on_threads(x, t, classes, &mut out);
        if self.spec.prediction == Prediction::Data {
            crate::path::velocity_from_data(&mut out, x, t);
        }
        Ok(out)
    }

    /// [`velocity`](Self::velocity) (the same values), recording what
    /// [`velocity_vjp`](Self::velocity_vjp) needs. Errors as `velocity` does, and for an
    /// architecture without a vector–Jacobian product (the U-Net's is not written).
    pub fn velocity_recorded(
        &self,
        x: &[f32],
        t: &[f32],
        class: &[u32],
    ) -> Result<(Vec<f32>, VelocityTape)> {
        let classes = self.checked_classes(x, t, class)?;
        let mut out = vec![0.0; x.len()];
        let tape = self
            .network
            .forward_recorded(x, t, classes, &mut out)
            .ok_or_else(|| {
                Error::new(
                    &self.origin,
                    format!(
                        "the {} network has no vector–Jacobian product in this runtime (only \
                         the MLP's is written), so no solver can be distilled for it here",
                        self.spec.architecture.name()
                    ),
                )
            })?;
        // A data-predicting network's output x̂1 − x, kept for the time derivative of the
        // conversion to a velocity.
        let mut data_minus_x = Vec::new();
        if self.spec.prediction == Prediction::Data {
            data_minus_x = out.iter().zip(x).map(|(o, x)| o - x).collect();
            crate::path::velocity_from_data(&mut out, x, t);
        }
        Ok((out, VelocityTape { tape, data_minus_x }))
    }

    /// The vector–Jacobian product of the velocity recorded in `tape` with respect to `x` and
    /// `t`: for `grad_u` `[rows, D]` (∂L/∂u) returns `(∂L/∂x [rows, D], ∂L/∂t [rows])`. For a
    /// data-predicting model `u = (x̂1 − x)·c(t)`, `c(t) = 1/max(1 − t, 0.05)`, so
    /// `∂L/∂x̂1 = c·∂L/∂u`, `∂L/∂x = Jᵀ(c·∂L/∂u) − c·∂L/∂u` and `∂L/∂t` gains
    /// `c′(t)·⟨∂L/∂u, x̂1 − x⟩` with `c′ = c²` where `1 − t > 0.05` (0 where the floor holds).
    pub fn velocity_vjp(
        &self,
        tape: &VelocityTape,
        grad_u: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let rows = tape.tape.t.len();
        let d = self.spec.data_dim();
        if grad_u.len() != rows * d {
            return Err(Error::new(
                &self.origin,
                format!(
                    "velocity_vjp: {} gradient values for {rows} rows × {d}",
                    grad_u.len()
                ),
            ));
        }
        let mut grad_x = vec![0.0; rows * d];
        let mut grad_t = vec![0.0; rows];
        if self.spec.prediction != Prediction::Data {
            self.network
                .input_vjp(&tape.tape, grad_u, &mut grad_x, &mut grad_t);
            return Ok((grad_x, grad_t));
        }
        let mut grad_data = grad_u.to_vec();
        let mut extra_t = vec![0.0f32; rows];
        for (r, &t) in tape.tape.t.iter().enumerate() {
            let c = crate::path::data_to_velocity_factor(t);
            let c_prime = if 1.0 - t > crate::path::DATA_PREDICTION_MIN_REMAINING {
                c * c
            } else {
                0.0
            };
            let span = r * d..(r + 1) * d;
            let dot: f64 = grad_u[span.clone()]
                .iter()
                .zip(&tape.data_minus_x[span.clone()])
                .map(|(&g, &v)| f64::from(g) * f64::from(v))
                .sum();
            extra_t[r] = (f64::from(c_prime) * dot) as f32;
            grad_data[span].iter_mut().for_each(|g| *g *= c);
        }
        self.network
            .input_vjp(&tape.tape, &grad_data, &mut grad_x, &mut grad_t);
        for (r, (gt, extra)) in grad_t.iter_mut().zip(extra_t).enumerate() {
            *gt += extra;
            for (gx, g) in grad_x[r * d..(r + 1) * d]
                .iter_mut()
                .zip(&grad_data[r * d..(r + 1) * d])
            {
                *gx -= g;
            }
        }
        Ok((grad_x, grad_t))
    }

    /// Sets the threads [`velocity`](Self::velocity) splits a batch's rows across (natively;
    /// 0 counts as 1, and wasm always uses one). Rows are independent, bit for bit, so the
    /// results do not depend on it.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// The threads set by [`set_threads`](Self::set_threads) (1 unless set).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The checks of [`velocity`](Self::velocity): `x` is `t.len()` rows, the classes fit;
    /// returns the classes the network reads (none for an unconditional model).
    fn checked_classes<'a>(&self, x: &[f32], t: &[f32], class: &'a [u32]) -> Result<&'a [u32]> {
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
        if self.spec.is_conditional() {
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
            Ok(class)
        } else {
            if !class.is_empty() && class.len() != rows {
                return Err(fail(format!(
                    "velocity: {} class labels for {rows} rows",
                    class.len()
                )));
            }
            Ok(&[])
        }
    }

    /// The network's forward over `rows = t.len()` rows, split into contiguous runs of rows,
    /// one per thread (at least [`MIN_ROWS_PER_THREAD`] rows each).
    fn forward_on_threads(&self, x: &[f32], t: &[f32], classes: &[u32], out: &mut [f32]) {
        let rows = t.len();
        let threads = if cfg!(target_arch = "wasm32") {
            1
        } else {
            self.threads.min(rows / MIN_ROWS_PER_THREAD).max(1)
        };
        if rows == 0 {
            return;
        }
        if threads == 1 {
            self.network.forward(x, t, classes, out);
            return;
        }
        let d = self.spec.data_dim();
        let per_thread = rows.div_ceil(threads);
        // The parts: (x, t, classes, out) of each run of rows.
        let mut parts = Vec::with_capacity(threads);
        let mut rest = out;
        for (part, t_part) in t.chunks(per_thread).enumerate() {
            let first = part * per_thread;
            let count = t_part.len();
            let (target, tail) = rest.split_at_mut(count * d);
            rest = tail;
            let c_part = if classes.is_empty() {
                classes
            } else {
                &classes[first..first + count]
            };
            parts.push((&x[first * d..(first + count) * d], t_part, c_part, target));
        }
        let network = &self.network;
        let mut parts = parts.into_iter();
        let Some((x0, t0, c0, out0)) = parts.next() else {
            return;
        };
        // The first part on the calling thread, the others on its workers (or, if the system
        // could not start them, on threads of this call alone).
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(workers) = workers::of_this_thread(threads - 1) {
            workers.in_place_scope(|scope| {
                for (x, t, c, out) in parts {
                    scope.spawn(move |_| network.forward(x, t, c, out));
                }
                network.forward(x0, t0, c0, out0);
            });
            return;
        }
        std::thread::scope(|scope| {
            for (x, t, c, out) in parts {
                scope.spawn(move || network.forward(x, t, c, out));
            }
            network.forward(x0, t0, c0, out0);
        });
    }

    /// Every tensor with its name, in [`ModelSpec::tensor_shapes`] order.
    fn named_tensors(&self) -> Vec<(String, &[f32])> {
        self.spec
            .tensor_shapes()
            .into_iter()
            .zip(self.network.tensors())
            .map(|((name, _), values)| (name, values))
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
                    spec.architecture.name()
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
        let mut model = Model::assemble(spec, ordered, String::new(), WeightDtype::F32, origin)?;
        model.id = model.canonical_id();
        Ok(model)
    }

    /// The model from checked tensors in `tensor_shapes` order.
    fn assemble(
        spec: ModelSpec,
        tensors: Vec<(String, Vec<f32>)>,
        id: String,
        dtype: WeightDtype,
        origin: &str,
    ) -> Result<Model> {
        let values: Vec<Vec<f32>> = tensors.into_iter().map(|(_, v)| v).collect();
        // Both callers checked every tensor against tensor_shapes; `None` guards the invariant.
        let network: Option<Arc<dyn VelocityNetwork>> = match &spec.architecture {
            Architecture::Mlp(mlp) => Mlp::new(&spec, mlp, values).map(|n| Arc::new(n) as _),
            Architecture::Unet(unet) => Unet::new(&spec, unet, values).map(|n| Arc::new(n) as _),
        };
        let network = network.ok_or_else(|| {
            Error::new(
                origin,
                "internal error: tensors do not match the model description",
            )
        })?;
        Ok(Model {
            spec,
            network,
            id,
            dtype,
            origin: origin.to_string(),
            threads: 1,
        })
    }
}

/// What [`Model::velocity_recorded`] keeps for [`Model::velocity_vjp`].
#[derive(Clone, Debug)]
pub struct VelocityTape {
    tape: Tape,
    /// `x̂1 − x` of a data-predicting model (empty otherwise).
    data_minus_x: Vec<f32>,
}

/// The SHA-256 of `bytes` in lowercase hexadecimal, as a model's id names its file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hexadecimal of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
