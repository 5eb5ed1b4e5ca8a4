//! The MLP velocity network: its part of the spec ([`MlpSpec`]), its tensors, and its CPU
//! forward (input assembly — data, sinusoidal time embedding, class embedding — then dense
//! layers with SiLU), in an order that is the same natively and in wasm (specified in
//! `FORMATS.md` §1.3).
//!
//! With `D` = [`ModelSpec::data_dim`], `E_t` = `time_embedding`, `E_c` = `class_embedding`,
//! `W` = `hidden_width` and `L` = `depth`:
//!
//! * input = concat(`x` `[D]`, [`time_embedding`](super::time_embedding)`(t)` `[E_t]`,
//!   `class_embedding.weight[c]` `[E_c]`) — the class part only for conditional models;
//! * `layers.0`: Linear(`D + E_t + E_c → W`) + SiLU;
//! * `layers.1` … `layers.{L−1}`: Linear(`W → W`) + SiLU;
//! * `layers.{L}`: Linear(`W → D`), no activation: the network's output (the velocity, or `x̂1`
//!   for data-predicting models).

mod vjp;

use serde::{Deserialize, Serialize};

use super::activation::silu_in_place;
use super::buffers;
use super::embedding::write_time_embedding;
use super::linear::PackedLinear;
use super::network::{Tape, VelocityNetwork};
use super::spec::{ModelSpec, MAX_DEPTH, MAX_WIDTH};
use crate::noise::Noise;

/// Rows of a batch that go through the layers together: the activations of one chunk
/// (`CHUNK_ROWS × width` floats) stay in the L2 cache, and memory stays bounded for any batch.
/// Rows are independent, so chunking never changes a result.
const CHUNK_ROWS: usize = 64;

/// The MLP's own sizes (`architecture: "mlp"` in the file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpSpec {
    /// Width of every hidden layer.
    pub hidden_width: usize,
    /// Number of hidden layers, ≥ 1 (there are `depth + 1` dense layers).
    pub depth: usize,
    /// The hidden layers' activation (`"silu"` in the file).
    pub activation: Activation,
}

/// The activation of an MLP's hidden layers. The file writes its name ([`Activation::name`]);
/// a name this runtime does not know is refused when the spec is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `"silu"`: `x·σ(x)` ([`silu`]).
    #[default]
    Silu,
}

impl Activation {
    /// The name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Silu => "silu",
        }
    }
}

impl std::str::FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "silu" => Ok(Activation::Silu),
            other => Err(format!(
                "unknown activation {other:?} (this runtime supports \"silu\")"
            )),
        }
    }
}

impl super::Architecture {
    /// An MLP with `depth` hidden layers of `hidden_width` and SiLU.
    pub fn mlp(hidden_width: usize, depth: usize) -> super::Architecture {
        super::Architecture::Mlp(MlpSpec {
            hidden_width,
            depth,
            activation: Activation::Silu,
        })
    }
}

impl MlpSpec {
    /// Width of the first layer's input: `data_dim + time_embedding + class_embedding`.
    pub fn input_width(&self, spec: &ModelSpec) -> usize {
        spec.data_dim()
            .saturating_add(spec.time_embedding)
            .saturating_add(spec.class_embedding)
    }

    /// `(out, in)` of every linear layer, first to last (`depth + 1` layers).
    pub fn layer_sizes(&self, spec: &ModelSpec) -> Vec<(usize, usize)> {
        let mut sizes = Vec::with_capacity(self.depth + 1);
        sizes.push((self.hidden_width, self.input_width(spec)));
        for _ in 1..self.depth {
            sizes.push((self.hidden_width, self.hidden_width));
        }
        sizes.push((spec.data_dim(), self.hidden_width));
        sizes
    }

    /// The tensors, in the file's order: the class embedding (conditional models only), then
    /// `layers.{i}.weight` `[out, in]` (the PyTorch/candle `Linear` layout) and
    /// `layers.{i}.bias` `[out]` for `i = 0..=depth`.
    pub fn tensor_shapes(&self, spec: &ModelSpec) -> Vec<(String, Vec<usize>)> {
        let mut shapes = Vec::with_capacity(2 * self.depth + 3);
        shapes.extend(spec.class_table_shape());
        for (i, (fan_out, fan_in)) in self.layer_sizes(spec).into_iter().enumerate() {
            shapes.push((format!("layers.{i}.weight"), vec![fan_out, fan_in]));
            shapes.push((format!("layers.{i}.bias"), vec![fan_out]));
        }
        shapes
    }

    /// "depth 3, width 512, silu".
    pub fn summary(&self) -> String {
        format!(
            "depth {}, width {}, {}",
            self.depth,
            self.hidden_width,
            self.activation.name()
        )
    }

    /// Checks the MLP's sizes; the message names the field.
    pub(crate) fn validate(&self) -> Result<(), String> {
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
        Ok(())
    }

    /// Random weights in [`tensor_shapes`](Self::tensor_shapes) order, each row-major: linear
    /// layers uniform ±1/sqrt(fan_in) (PyTorch's `Linear` init; a bias uses its layer's
    /// fan-in), the class embedding N(0, 1).
    pub(crate) fn random_tensors(
        &self,
        spec: &ModelSpec,
        noise: &mut Noise,
    ) -> Vec<(String, Vec<f32>)> {
        let sizes = self.layer_sizes(spec);
        let mut tensors = Vec::new();
        if let Some((name, shape)) = spec.class_table_shape() {
            tensors.push((name, noise.gaussian_f32(shape.iter().product())));
        }
        for (i, &(fan_out, fan_in)) in sizes.iter().enumerate() {
            let weight = super::fan_in_uniform(noise, fan_out * fan_in, fan_in);
            let bias = super::fan_in_uniform(noise, fan_out, fan_in);
            tensors.push((format!("layers.{i}.weight"), weight));
            tensors.push((format!("layers.{i}.bias"), bias));
        }
        tensors
    }
}

/// One dense layer: `weight` `[out, in]` (PyTorch layout) and `bias` `[out]` as in the file,
/// and the same packed for the kernel (once, at load).
#[derive(Clone, Debug)]
struct Layer {
    weight: Vec<f32>,
    bias: Vec<f32>,
    packed: PackedLinear,
}

impl Layer {
    fn fan_in(&self) -> usize {
        self.packed.fan_in()
    }

    fn fan_out(&self) -> usize {
        self.packed.fan_out()
    }
}

/// The MLP's weights in the shape the forward needs.
#[derive(Clone, Debug)]
pub(crate) struct Mlp {
    data_dim: usize,
    time_embedding: usize,
    time_scale: f64,
    /// `[num_classes + 1, class_embedding]`; empty when unconditional.
    class_embedding: Vec<f32>,
    class_width: usize,
    /// `depth + 1` dense layers.
    layers: Vec<Layer>,
    /// Each layer's transpose `W` `[in, out]` packed, with zero bias (made on the first
    /// vector–Jacobian product: `∂L/∂input = ∂L/∂output · W`).
    transposed: std::sync::OnceLock<Vec<PackedLinear>>,
}

impl Mlp {
    /// The network from its tensors in [`MlpSpec::tensor_shapes`] order, or `None` when they
    /// do not have those shapes (the caller checked them against the spec: an internal error).
    pub(crate) fn new(spec: &ModelSpec, mlp: &MlpSpec, tensors: Vec<Vec<f32>>) -> Option<Mlp> {
        let mut values = tensors.into_iter();
        let class_embedding = if spec.is_conditional() {
            values.next()?
        } else {
            Vec::new()
        };
        let sizes = mlp.layer_sizes(spec);
        let mut layers = Vec::with_capacity(sizes.len());
        for &(fan_out, fan_in) in &sizes {
            let (weight, bias) = (values.next()?, values.next()?);
            if fan_in == 0
                || fan_out == 0
                || bias.len() != fan_out
                || weight.len() != fan_out * fan_in
            {
                return None;
            }
            let packed = PackedLinear::new(&weight, &bias, fan_in);
            layers.push(Layer {
                weight,
                bias,
                packed,
            });
        }
        let consistent = values.next().is_none()
            && class_embedding.len()
                == (spec.num_classes + usize::from(spec.is_conditional())) * spec.class_embedding;
        consistent.then(|| Mlp {
            data_dim: spec.data_dim(),
            time_embedding: spec.time_embedding,
            time_scale: spec.time_scale,
            class_embedding,
            class_width: spec.class_embedding,
            layers,
            transposed: std::sync::OnceLock::new(),
        })
    }
}

impl VelocityNetwork for Mlp {
    fn tensors(&self) -> Vec<&[f32]> {
        let mut tensors: Vec<&[f32]> = Vec::with_capacity(2 * self.layers.len() + 1);
        if self.class_width > 0 {
            tensors.push(&self.class_embedding);
        }
        for layer in &self.layers {
            tensors.push(&layer.weight);
            tensors.push(&layer.bias);
        }
        tensors
    }

    fn forward(&self, x: &[f32], t: &[f32], class: &[u32], out: &mut [f32]) {
        let d = self.data_dim;
        let input_width = d + self.time_embedding + self.class_width;
        let widest = self.layers.iter().map(Layer::fan_out).max().unwrap_or(0);
        // The working buffers of this thread's last forward, reused (see `buffers::reused`).
        let mut input = buffers::reused(&INPUT, 0);
        let mut front = buffers::reused(&FRONT, 0);
        let mut back = buffers::reused(&BACK, 0);
        for (chunk_index, t_chunk) in t.chunks(CHUNK_ROWS).enumerate() {
            let first = chunk_index * CHUNK_ROWS;
            let rows = t_chunk.len();
            input.clear();
            input.resize(rows * input_width, 0.0);
            for (r, row) in input.chunks_exact_mut(input_width).enumerate() {
                let (data, rest) = row.split_at_mut(d);
                let (time, class_part) = rest.split_at_mut(self.time_embedding);
                data.copy_from_slice(&x[(first + r) * d..(first + r + 1) * d]);
                write_time_embedding(t_chunk[r], self.time_scale, time);
                if self.class_width > 0 {
                    let c = class[first + r] as usize;
                    let w = self.class_width;
                    class_part.copy_from_slice(&self.class_embedding[c * w..(c + 1) * w]);
                }
            }
            front.resize(rows * widest, 0.0);
            back.resize(rows * widest, 0.0);
            let last = self.layers.len() - 1;
            for (i, layer) in self.layers.iter().enumerate() {
                let source: &[f32] = if i == 0 {
                    &input
                } else {
                    &front[..rows * layer.fan_in()]
                };
                if i == last {
                    let target = &mut out[first * d..(first + rows) * d];
                    layer.packed.forward(source, target);
                } else {
                    let target = &mut back[..rows * layer.fan_out()];
                    layer.packed.forward(source, target);
                    silu_in_place(target);
                    std::mem::swap(&mut front, &mut back);
                }
            }
        }
        buffers::keep(&INPUT, input);
        buffers::keep(&FRONT, front);
        buffers::keep(&BACK, back);
    }

    fn forward_recorded(
        &self,
        x: &[f32],
        t: &[f32],
        class: &[u32],
        out: &mut [f32],
    ) -> Option<Tape> {
        Some(vjp::forward_recorded(self, x, t, class, out))
    }

    fn input_vjp(&self, tape: &Tape, grad_out: &[f32], grad_x: &mut [f32], grad_t: &mut [f32]) {
        vjp::input_vjp(self, tape, grad_out, grad_x, grad_t);
    }
}

std::thread_local! {
    /// [`Mlp::forward`]'s input rows and its two activation buffers, kept between calls.
    static INPUT: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    static FRONT: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    static BACK: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}
