//! The velocity network in candle: the runtime's networks (same architectures, same tensors,
//! same time embedding), differentiable, for training and for distilling solvers through them.
//!
//! Weights are found **by name** in the runtime's tensor list ([`ModelSpec::tensor_shapes`]),
//! so a tensor the runtime reads under a name is the tensor used here under that name. The time
//! embedding `e(t)` is `web_sampler::model::time_embedding` (computed here in f64, then cast,
//! as the runtime does); the class table's last row is the null class.
//!
//! Architectures: the MLP, `u(x, t, c) = L_depth ∘ (SiLU ∘ L_i)… (concat(x, e(t), E[c]))`, and
//! the U-Net (`network/unet.rs`, the runtime's `UnetLayout`).

mod conv2d;
mod group_norm;
#[cfg(test)]
mod op_check;
mod unet;

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use web_sampler::model::{time_frequencies, Architecture, Model, ModelSpec, Prediction};
use web_sampler::path::DATA_PREDICTION_MIN_REMAINING;

use unet::CandleUnet;

/// A contiguous f32 CPU tensor's values, for the CPU ops of `conv2d.rs` and `group_norm.rs`
/// (`op`), which name `what` in the error.
fn contiguous_f32<'a>(
    op: &str,
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: the {what} must be contiguous");
    };
    Ok(&storage.as_slice::<f32>()?[start..end])
}

/// A runtime model's network as candle tensors.
pub struct CandleNetwork {
    spec: ModelSpec,
    body: Body,
    /// `s·f_k` (the spec's time scale times the frequencies) as an f64 row `[1, E_t/2]`.
    frequencies: Tensor,
}

/// The architecture-specific weights.
enum Body {
    Mlp {
        /// `[num_classes + 1, E_c]` for conditional models.
        class_embedding: Option<Tensor>,
        /// `(weight [out, in], bias [out])` of every dense layer, first to last.
        layers: Vec<(Tensor, Tensor)>,
    },
    /// The U-Net's layers (with the class table of conditional models).
    Unet(Box<CandleUnet>),
}

impl CandleNetwork {
    /// The network of a runtime model, on `device`, with constant (non-trainable) weights.
    pub fn from_model(model: &Model, device: &Device) -> Result<CandleNetwork> {
        let mut weights = HashMap::new();
        for (name, shape) in model.spec().tensor_shapes() {
            let Some(values) = model.tensor(&name) else {
                bail!("model {}: missing tensor {name}", model.id());
            };
            let tensor = Tensor::from_slice(values, shape.as_slice(), device)?;
            weights.insert(name, tensor);
        }
        CandleNetwork::from_named(model.spec().clone(), weights, device)
    }

    /// A network whose weights are the trainable `vars`, named as in
    /// [`ModelSpec::tensor_shapes`].
    pub fn from_vars(
        spec: ModelSpec,
        vars: &[(String, Var)],
        device: &Device,
    ) -> Result<CandleNetwork> {
        let weights = vars
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
            .collect();
        CandleNetwork::from_named(spec, weights, device)
    }

    /// The network from its tensors by name; each must have the shape the spec gives it.
    fn from_named(
        spec: ModelSpec,
        mut weights: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<CandleNetwork> {
        for (name, shape) in spec.tensor_shapes() {
            let Some(tensor) = weights.get(&name) else {
                bail!("the network has no tensor {name}");
            };
            if tensor.dims() != shape.as_slice() {
                bail!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    tensor.dims()
                );
            }
        }
        let mut take = |name: &str| {
            weights
                .remove(name)
                .with_context(|| format!("the network has no tensor {name}"))
        };
        let body = match &spec.architecture {
            Architecture::Mlp(mlp) => {
                let class_embedding = if spec.is_conditional() {
                    Some(take("class_embedding.weight")?)
                } else {
                    None
                };
                let mut layers = Vec::with_capacity(mlp.depth + 1);
                for i in 0..=mlp.depth {
                    let weight = take(&format!("layers.{i}.weight"))?;
                    let bias = take(&format!("layers.{i}.bias"))?;
                    layers.push((weight, bias));
                }
                Body::Mlp {
                    class_embedding,
                    layers,
                }
            }
            Architecture::Unet(unet) => {
                let class_embedding = if spec.is_conditional() {
                    Some(take("class_embedding.weight")?)
                } else {
                    None
                };
                let layout = unet.layout(&spec);
                Body::Unet(Box::new(CandleUnet::new(
                    &layout,
                    class_embedding,
                    &mut take,
                )?))
            }
        };
        if let Some(extra) = weights.keys().min() {
            bail!(
                "unexpected tensor {extra} (not part of this {} model)",
                spec.architecture
            );
        }
        let frequencies: Vec<f64> = time_frequencies(spec.time_embedding)
            .into_iter()
            .map(|f| spec.time_scale * f)
            .collect();
        let half = frequencies.len();
        let frequencies = Tensor::from_vec(frequencies, (1, half), device)?;
        Ok(CandleNetwork {
            spec,
            body,
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
        let output = match &self.body {
            Body::Mlp {
                class_embedding,
                layers,
            } => {
                let mut parts = vec![x.clone(), self.time_embedding(t)?];
                if let Some(table) = class_embedding {
                    parts.push(table.index_select(classes, 0)?);
                }
                let mut h = Tensor::cat(&parts, D::Minus1)?;
                for (i, (weight, bias)) in layers.iter().enumerate() {
                    h = h.matmul(&weight.t()?)?.broadcast_add(bias)?;
                    if i + 1 < layers.len() {
                        h = h.silu()?;
                    }
                }
                h
            }
            Body::Unet(unet) => unet.forward(x, &self.time_embedding(t)?, classes)?,
        };
        if self.spec.prediction == Prediction::Data {
            // The output is x̂1: u = (x̂1 − x)/max(1 − t, c), path::velocity_from_data in
            // tensor operations (differentiable in t).
            let remaining = t
                .affine(-1.0, 1.0)?
                .maximum(DATA_PREDICTION_MIN_REMAINING)?
                .unsqueeze(1)?;
            return Ok((output - x)?.broadcast_div(&remaining)?);
        }
        Ok(output)
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
    use web_sampler::noise::gaussian_batch;
    use web_sampler::sample::guided_velocity;

    pub(crate) fn tiny_spec(shape: [usize; 3], classes: usize) -> ModelSpec {
        ModelSpec {
            dataset: "test".into(),
            ..ModelSpec::new(Architecture::mlp(20, 2), &shape, 8, classes, 4)
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
            let net = CandleNetwork::from_model(&model, &Device::Cpu).unwrap();
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

    /// A U-Net spec for tests: `base` channels, two levels, one block per level, 2 groups.
    pub(crate) fn tiny_unet_spec(shape: [usize; 3], classes: usize, attention: bool) -> ModelSpec {
        ModelSpec {
            dataset: "test".into(),
            ..ModelSpec::new(
                Architecture::unet(4, &[1, 2], 1, 2, attention, 8),
                &shape,
                8,
                classes,
                8,
            )
        }
    }

    /// `model` with every tensor redrawn N(0, 0.3²) (GroupNorm weights 1 + that), so that every
    /// weight and bias changes the output.
    fn perturbed(model: &Model, seed: u64) -> Model {
        let mut noise = web_sampler::noise::Noise::new(seed);
        let tensors = model
            .spec()
            .tensor_shapes()
            .into_iter()
            .map(|(name, _)| {
                let values = model.tensor(&name).unwrap();
                let offset = if name.contains("norm") && name.ends_with(".weight") {
                    1.0
                } else {
                    0.0
                };
                let drawn = noise.gaussian_f32(values.len());
                let values = drawn.iter().map(|v| offset + 0.3 * v).collect();
                (name, values)
            })
            .collect();
        Model::from_tensors(model.spec().clone(), tensors).unwrap()
    }

    #[test]
    fn candle_unet_matches_the_runtime() {
        let cases = [
            (tiny_unet_spec([1, 8, 8], 3, true), 1.5),
            (tiny_unet_spec([1, 28, 28], 10, false), 0.0),
            (
                ModelSpec {
                    architecture: Architecture::unet(8, &[1, 1, 2], 1, 4, true, 8),
                    ..tiny_unet_spec([1, 28, 28], 10, false)
                },
                2.0,
            ),
            (tiny_unet_spec([3, 32, 32], 0, true), 0.0),
            (
                ModelSpec {
                    prediction: Prediction::Data,
                    ..tiny_unet_spec([3, 32, 32], 0, false)
                },
                0.0,
            ),
        ];
        for (spec, w) in cases {
            let model = perturbed(&Model::random(spec, 3).unwrap(), 4);
            let net = CandleNetwork::from_model(&model, &Device::Cpu).unwrap();
            let dim = model.spec().data_dim();
            let x = gaussian_batch(4, 3, dim);
            let classes = model.spec().num_classes as u32;
            let labels: Vec<u32> = vec![0, classes / 2, classes];
            for t in [0.0, 0.4, 1.0] {
                let expected = guided_velocity(&model, &x, t, &labels, w).unwrap();
                let xt = Tensor::from_slice(&x, (3, dim), &Device::Cpu).unwrap();
                let tt = Tensor::new(t as f32, &Device::Cpu).unwrap();
                let ct = Tensor::from_slice(&labels, 3, &Device::Cpu).unwrap();
                let got = net.guided_velocity(&xt, &tt, &ct, w).unwrap();
                let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(got.len(), expected.len());
                let worst = got
                    .iter()
                    .zip(&expected)
                    .map(|(g, e)| (g - e).abs() / (1.0 + e.abs()))
                    .fold(0.0f32, f32::max);
                // The network's outputs agree to 1e-5; guidance (1+w)·u_c − w·u_∅ adds the two
                // passes' rounding, and a data prediction's velocity divides it by 1 − t.
                let mut tolerance = 1e-5 * (1.0 + 2.0 * w as f32);
                if model.spec().prediction == Prediction::Data {
                    tolerance *= web_sampler::path::data_to_velocity_factor(t as f32);
                }
                assert!(
                    worst <= tolerance,
                    "{} at t = {t}: candle vs runtime {worst:e} > {tolerance:e}",
                    model.spec().architecture.summary()
                );
            }
        }
    }

    /// Every U-Net tensor gets a gradient, and the gradient of the weights behind the softmax
    /// and the nearest ×2 agrees with finite differences.
    #[test]
    fn candle_unet_gradients_reach_every_tensor() {
        let model = perturbed(
            &Model::random(tiny_unet_spec([1, 8, 8], 3, true), 5).unwrap(),
            6,
        );
        let device = Device::Cpu;
        let x = Tensor::from_slice(&gaussian_batch(7, 2, 64), (2, 64), &device).unwrap();
        let t = Tensor::new(&[0.3f32, 0.8], &device).unwrap();
        let c = Tensor::new(&[1u32, 3], &device).unwrap();
        let vars: Vec<(String, Var)> = model
            .spec()
            .tensor_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let values = model.tensor(&name).unwrap();
                let tensor = Tensor::from_slice(values, shape.as_slice(), &device).unwrap();
                (name, Var::from_tensor(&tensor).unwrap())
            })
            .collect();
        let loss = |vars: &[(String, Var)]| {
            let net = CandleNetwork::from_vars(model.spec().clone(), vars, &device).unwrap();
            net.velocity(&x, &t, &c)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap()
        };
        let grads = loss(&vars).backward().unwrap();
        for (name, var) in &vars {
            let grad = grads
                .get(var)
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let norm = grad
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "zero gradient for {name}");
        }
        for (name, index) in [
            ("middle.attention.qkv.weight", 3),
            ("middle.attention.qkv.weight", 70),
            ("up.1.upsample.weight", 5),
            ("down.0.0.conv1.weight", 2),
        ] {
            let (_, var) = vars.iter().find(|(n, _)| n == name).unwrap();
            let analytic = grads
                .get(var)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[index];
            let values = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let at = |delta: f32| {
                let mut moved = values.clone();
                moved[index] += delta;
                let moved = Tensor::from_vec(moved, var.shape(), &device).unwrap();
                let mut vars = vars.clone();
                vars.iter_mut().find(|(n, _)| n == name).unwrap().1 =
                    Var::from_tensor(&moved).unwrap();
                f64::from(loss(&vars).to_scalar::<f32>().unwrap())
            };
            let h = 1e-2;
            let numeric = ((at(h) - at(-h)) / (2.0 * f64::from(h))) as f32;
            assert!(
                (analytic - numeric).abs() <= 2e-2 * analytic.abs().max(numeric.abs()) + 1e-4,
                "{name}[{index}]: backward {analytic} vs finite differences {numeric}"
            );
        }
    }

    #[test]
    fn weights_are_found_by_name() {
        let model = Model::random(tiny_spec([1, 3, 3], 3), 5).unwrap();
        let device = Device::Cpu;
        let mut vars: Vec<(String, Var)> = model
            .spec()
            .tensor_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let values = model.tensor(&name).unwrap();
                let tensor = Tensor::from_slice(values, shape.as_slice(), &device).unwrap();
                (name, Var::from_tensor(&tensor).unwrap())
            })
            .collect();
        vars.reverse();
        let by_name = CandleNetwork::from_vars(model.spec().clone(), &vars, &device).unwrap();
        let constant = CandleNetwork::from_model(&model, &device).unwrap();
        let x = Tensor::from_slice(&gaussian_batch(2, 3, 9), (3, 9), &device).unwrap();
        let t = Tensor::new(&[0.1f32, 0.5, 0.9], &device).unwrap();
        let c = Tensor::new(&[0u32, 2, 3], &device).unwrap();
        let a = by_name.velocity(&x, &t, &c).unwrap().flatten_all().unwrap();
        let b = constant
            .velocity(&x, &t, &c)
            .unwrap()
            .flatten_all()
            .unwrap();
        assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());

        let mut missing = vars.clone();
        missing.pop();
        let error = CandleNetwork::from_vars(model.spec().clone(), &missing, &device)
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .contains("no tensor class_embedding.weight"),
            "{error}"
        );
        let mut extra = vars.clone();
        extra.push(("layers.9.weight".into(), vars[0].1.clone()));
        let error = CandleNetwork::from_vars(model.spec().clone(), &extra, &device)
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .contains("unexpected tensor layers.9.weight"),
            "{error}"
        );
        let mut swapped = vars.clone();
        let (a, b) = (swapped[0].1.clone(), swapped[1].1.clone());
        swapped[0].1 = b;
        swapped[1].1 = a;
        assert!(CandleNetwork::from_vars(model.spec().clone(), &swapped, &device).is_err());
    }
}
