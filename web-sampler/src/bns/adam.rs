//! Adam (Kingma & Ba 2015, Algorithm 1) over a flat vector of parameters, with the defaults
//! `β1 = 0.9`, `β2 = 0.999`, `ε = 1e-8` and no weight decay (the distiller's `AdamW` with
//! decay 0 for solver parameters).

/// First-moment decay rate β1.
pub const BETA1: f64 = 0.9;
/// Second-moment decay rate β2.
pub const BETA2: f64 = 0.999;
/// ε added to the root of the second moment.
pub const EPSILON: f64 = 1e-8;

/// Adam's state: the moments of each parameter and the number of steps taken.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    pub steps: u64,
}

impl Adam {
    /// Zero moments for `len` parameters.
    pub fn new(len: usize) -> Adam {
        Adam {
            m: vec![0.0; len],
            v: vec![0.0; len],
            steps: 0,
        }
    }

    /// One step with learning rate `lr`: `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
    /// `θ ← θ − lr·m̂/(√v̂ + ε)` with the bias-corrected `m̂ = m/(1−β1^k)`, `v̂ = v/(1−β2^k)`.
    pub fn step(&mut self, values: &mut [f64], gradient: &[f64], lr: f64) {
        self.steps += 1;
        let k = self.steps as i32;
        let (c1, c2) = (1.0 - BETA1.powi(k), 1.0 - BETA2.powi(k));
        for ((value, &g), (m, v)) in values
            .iter_mut()
            .zip(gradient)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
        {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *value -= lr * (*m / c1) / ((*v / c2).sqrt() + EPSILON);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_step_moves_each_parameter_by_the_learning_rate_against_its_gradient() {
        // m̂ = g and v̂ = g² after one step, so the step is lr·g/(|g| + ε).
        let mut adam = Adam::new(3);
        let mut values = vec![1.0, -2.0, 0.5];
        adam.step(&mut values, &[3.0, -0.25, 0.0], 0.1);
        assert!((values[0] - 0.9).abs() < 1e-8);
        assert!((values[1] + 1.9).abs() < 1e-8);
        assert_eq!(values[2], 0.5);
    }

    #[test]
    fn minimises_a_quadratic() {
        let mut adam = Adam::new(2);
        let mut values = vec![3.0, -4.0];
        for _ in 0..2000 {
            let gradient = [2.0 * (values[0] - 1.0), 20.0 * (values[1] + 0.5)];
            adam.step(&mut values, &gradient, 0.01);
        }
        assert!((values[0] - 1.0).abs() < 1e-3, "{values:?}");
        assert!((values[1] + 0.5).abs() < 1e-3, "{values:?}");
    }
}
