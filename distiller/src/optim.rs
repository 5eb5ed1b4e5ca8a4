//! AdamW (Loshchilov & Hutter 2019; Adam of Kingma & Ba 2015 with decoupled weight decay) over
//! candle `Var`s, with its moment estimates exposed so that checkpoints can hold them.

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

pub const BETAS: (f64, f64) = (0.9, 0.999);
pub const EPSILON: f64 = 1e-8;

/// One parameter and its first and second moment estimates.
pub struct Moments {
    pub var: Var,
    pub m: Tensor,
    pub v: Tensor,
}

pub struct AdamW {
    pub params: Vec<Moments>,
    pub weight_decay: f64,
    /// Updates taken so far (bias correction uses it).
    pub steps: u64,
}

impl AdamW {
    /// Fresh moments (zeros) for `vars`.
    pub fn new(vars: Vec<Var>, weight_decay: f64) -> Result<AdamW> {
        let mut params = Vec::new();
        for var in vars {
            let zeros = var.as_tensor().zeros_like()?;
            params.push(Moments {
                m: zeros.clone(),
                v: zeros,
                var,
            });
        }
        Ok(AdamW {
            params,
            weight_decay,
            steps: 0,
        })
    }

    /// One update with learning rate `lr`: `w ← w·(1 − lr·λ) − lr·m̂/(√v̂ + ε)`. Parameters
    /// without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let (b1, b2) = BETAS;
        let c1 = 1.0 - b1.powi(self.steps as i32);
        let c2 = 1.0 - b2.powi(self.steps as i32);
        for p in self.params.iter_mut() {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            // A gradient can still record the ops that made it (a convolution's kernel gradient
            // is a convolution of the tracked input); detached, the moments never hold a
            // step's graph, which would otherwise keep every step's activations alive.
            let g = g.detach();
            let g = &g;
            p.m = ((&p.m * b1)? + (g * (1.0 - b1))?)?;
            p.v = ((&p.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&p.m / c1)? / ((&p.v / c2)?.sqrt()? + EPSILON)?)?;
            let w = p.var.as_tensor();
            let decayed = if self.weight_decay == 0.0 {
                w.clone()
            } else {
                (w * (1.0 - lr * self.weight_decay))?
            };
            p.var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn minimises_a_quadratic() {
        // f(w) = Σ (w − c)²: Adam with a small learning rate walks w to c.
        let c = Tensor::new(&[1.5f32, -2.0, 0.25], &Device::Cpu).unwrap();
        let w = Var::new(&[0.0f32, 0.0, 0.0], &Device::Cpu).unwrap();
        let mut adam = AdamW::new(vec![w.clone()], 0.0).unwrap();
        for _ in 0..2000 {
            let loss = (w.as_tensor() - &c)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            adam.step(&loss.backward().unwrap(), 1e-2).unwrap();
        }
        let got = w.as_tensor().to_vec1::<f32>().unwrap();
        for (g, e) in got.iter().zip([1.5f32, -2.0, 0.25]) {
            assert!((g - e).abs() < 1e-2, "{got:?}");
        }
        assert_eq!(adam.steps, 2000);
    }
}
