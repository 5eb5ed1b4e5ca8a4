//! The velocity network in candle: the runtime's MLP (same architecture, same tensor names, same
//! time embedding), differentiable, for training and for distilling solvers through it.
//!
//! `u(x, t, c) = L_depth ∘ (SiLU ∘ L_i)… (concat(x, e(t), E[c]))`, where `e(t)` is the sinusoidal
//! embedding of `web_sampler::model::time_embedding` (computed here in f64, then cast, as the
//! runtime does) and `E` the class table whose last row is the null class.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use web_sampler::model::{
    time_frequencies, Model, ModelSpec, Prediction, DATA_PREDICTION_MIN_REMAINING,
};

/// The network's weights as candle tensors, in `ModelSpec::tensor_shapes` order.
pub struct Network {
    spec: ModelSpec,
    weights: Vec<Tensor>,
    /// `s·f_k` (the spec's time scale times the frequencies) as an f64 row `[1, E_t/2]`.
    frequencies: Tensor,
}

impl Network {
    /// The network of a runtime model, on `device`, with constant (non-trainable) weights.
    pub fn from_model(model: &Model, device: &Device) -> Result<Network> {
        let spec = model.spec().clone();
        let mut weights = Vec::new();
        for (name, shape) in spec.tensor_shapes() {
            let Some(values) = model.tensor(&name) else {
                bail!("model {}: missing tensor {name}", model.id());
            };
            weights.push(Tensor::from_slice(values, shape.as_slice(), device)?);
        }
        Network::assemble(spec, weights, device)
    }

    /// A network whose weights are `vars` (trainable), in `tensor_shapes` order.
    pub fn from_vars(spec: ModelSpec, vars: &[Var], device: &Device) -> Result<Network> {
        let weights = vars.iter().map(|v| v.as_tensor().clone()).collect();
        Network::assemble(spec, weights, device)
    }

    fn assemble(spec: ModelSpec, weights: Vec<Tensor>, device: &Device) -> Result<Network> {
        let frequencies: Vec<f64> = time_frequencies(spec.time_embedding)
            .into_iter()
            .map(|f| spec.time_scale * f)
            .collect();
        let half = frequencies.len();
        let frequencies = Tensor::from_vec(frequencies, (1, half), device)?;
        Ok(Network {
            spec,
            weights,
            frequencies,
        })
    }

    /// Sinusoidal embedding `[B, E_t]` of times `t` `[B]` (f32); differentiable in `t`.
    pub fn time_embedding(&self, t: &Tensor) -> Result<Tensor> {
        let angles = t
            .to_dtype(DType::F64)?
            .unsqueeze(1)?
            .broadcast_mul(&self.frequencies)?;
        Ok(Tensor::cat(&[angles.sin()?, angles.cos()?], 1)?.to_dtype(DType::F32)?)
    }

    /// The velocity `u(x, t, c)`: `x` `[B, D]`, `t` `[B]` f32, `classes` `[B]` u32 → `[B, D]`.
    pub fn velocity(&self, x: &Tensor, t: &Tensor, classes: &Tensor) -> Result<Tensor> {
        let mut parts = vec![x.clone(), self.time_embedding(t)?];
        let mut layers = &self.weights[..];
        if self.spec.is_conditional() {
            parts.push(self.weights[0].index_select(classes, 0)?);
            layers = &self.weights[1..];
        }
        let mut h = Tensor::cat(&parts, D::Minus1)?;
        let count = layers.len() / 2;
        for (i, pair) in layers.chunks_exact(2).enumerate() {
            h = h.matmul(&pair[0].t()?)?.broadcast_add(&pair[1])?;
            if i + 1 < count {
                h = h.silu()?;
            }
        }
        if self.spec.prediction == Prediction::Data {
            // h is x̂1: u = (x̂1 − x)/max(1 − t, c), as the runtime computes it.
            let remaining = t
                .affine(-1.0, 1.0)?
                .maximum(DATA_PREDICTION_MIN_REMAINING)?
                .unsqueeze(1)?;
            h = (h - x)?.broadcast_div(&remaining)?;
        }
        Ok(h)
    }

    /// The guided velocity `(1+w)·u(x,t,c) − w·u(x,t,∅)`, both passes in one batch; `t` is one
    /// time for the whole batch, as a scalar tensor (differentiable).
    pub fn guided_velocity(
        &self,
        x: &Tensor,
        t: &Tensor,
        classes: &Tensor,
        guidance: f64,
    ) -> Result<Tensor> {
        let rows = x.dim(0)?;
        if guidance == 0.0 || !self.spec.is_conditional() {
            let t = t.broadcast_as(rows)?.contiguous()?;
            return self.velocity(x, &t, classes);
        }
        let x2 = Tensor::cat(&[x, x], 0)?;
        let null = Tensor::full(self.spec.null_class(), rows, x.device())?;
        let c2 = Tensor::cat(&[classes, &null], 0)?;
        let t2 = t.broadcast_as(2 * rows)?.contiguous()?;
        let u = self.velocity(&x2, &t2, &c2)?;
        let conditional = u.narrow(0, 0, rows)?;
        let unconditional = u.narrow(0, rows, rows)?;
        Ok(((conditional * (1.0 + guidance))? - (unconditional * guidance)?)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use web_sampler::model::MODEL_FORMAT_VERSION;
    use web_sampler::noise::gaussian_batch;
    use web_sampler::sample::guided_velocity;

    pub(crate) fn tiny_spec(shape: [usize; 3], classes: usize) -> ModelSpec {
        ModelSpec {
            format_version: MODEL_FORMAT_VERSION,
            architecture: "mlp".into(),
            data_shape: shape.to_vec(),
            hidden_width: 20,
            depth: 2,
            time_embedding: 8,
            time_scale: 1000.0,
            prediction: Default::default(),
            class_embedding: if classes > 0 { 4 } else { 0 },
            num_classes: classes,
            activation: "silu".into(),
            path: "cond-ot".into(),
            dataset: "test".into(),
            training_steps: 0,
            class_names: Vec::new(),
        }
    }

    #[test]
    fn candle_forward_matches_the_runtime() {
        for (shape, classes, w) in [
            ([2, 1, 1], 0, 0.0),
            ([1, 3, 3], 3, 0.0),
            ([1, 3, 3], 3, 1.5),
        ] {
            let model = Model::random(tiny_spec(shape, classes), 3).unwrap();
            let net = Network::from_model(&model, &Device::Cpu).unwrap();
            let dim = model.spec().data_dim();
            let x = gaussian_batch(4, 5, dim);
            let labels: Vec<u32> = if classes > 0 {
                vec![0, 1, 2, 3, 1]
            } else {
                vec![0; 5]
            };
            for t in [0.0, 0.3, 0.97, 1.0] {
                let expected = guided_velocity(&model, &x, t, &labels, w).unwrap();
                let xt = Tensor::from_slice(&x, (5, dim), &Device::Cpu).unwrap();
                let tt = Tensor::new(t as f32, &Device::Cpu).unwrap();
                let ct = Tensor::from_slice(&labels, 5, &Device::Cpu).unwrap();
                let got = net.guided_velocity(&xt, &tt, &ct, w).unwrap();
                let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for (g, e) in got.iter().zip(&expected) {
                    assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "{g} vs {e}");
                }
            }
        }
    }
}
