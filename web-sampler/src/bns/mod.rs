//! BNS distillation on the runtime (`docs/MATH.md` §7), so that the page can learn a
//! solver in its worker and native tests can check it: the parametrisation ([`BnsParameters`]),
//! the loss and its gradient through the n-step sampling loop ([`gradient`]), Adam ([`adam`]),
//! the procedure that ties them to ground-truth pairs ([`distillation`]), and a whole run from
//! a model alone, ground truth included, in small pieces for the page's worker ([`job`]).
//!
//! The parametrisation is the distiller's (`distiller/src/bns.rs`, in candle): the solver in
//! reduced form `x_{i+1} = α_i·x_0 + Σ_{j≤i} β_ij·u_j`, times `t_i = Σ_{k<i} softmax(θ)_k`
//! (non-decreasing, `t_0 = 0`, `t_n = 1` by construction), initialised from a classical table;
//! with `time_only`, only θ is learned and the coefficients are Euler's on those times.

pub mod adam;
pub mod distillation;
pub mod gradient;
pub mod job;

use crate::solver::NsTable;

pub use adam::Adam;
pub use distillation::{BatchOrder, Distillation, DistillationSettings, Iteration, TruthPairs};
pub use gradient::{loss_and_gradient, LossAndGradient};
pub use job::{Advance, DistillJob, JobSettings};

/// Smallest step a classical table's time increment is raised to when it initialises θ (RK4's
/// two middle stages share a time; `log 0` would be −∞). The distiller's value.
const MIN_INCREMENT: f64 = 1e-4;

/// A BNS solver's free parameters, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct BnsParameters {
    /// Time logits θ `[n]`.
    pub theta: Vec<f64>,
    /// α `[n]` (unused when `time_only`).
    pub alpha: Vec<f64>,
    /// β `[n, n]` row-major; only the lower triangle (j ≤ i) is used, the rest stays 0.
    pub beta: Vec<f64>,
    /// Only θ is learned; the coefficients are Euler's on the times.
    pub time_only: bool,
}

impl BnsParameters {
    /// Parameters of a classical table (its reduced form, its times as softmax logits), as the
    /// distiller initialises them: a time step shorter than `MIN_INCREMENT` (Heun's and RK4's
    /// repeated times) is raised to it and the increments renormalised, so such a table's times
    /// move by about 10⁻⁴. For `time_only` the table should be Euler's (the coefficients are then
    /// derived from the times). Errors if the table does not start at t = 0.
    pub fn from_table(table: &NsTable, time_only: bool) -> Result<BnsParameters, String> {
        let n = table.steps();
        if table.times.first() != Some(&0.0) {
            return Err("the initial solver must start at t = 0".into());
        }
        let increments: Vec<f64> = table
            .times
            .windows(2)
            .map(|w| (w[1] - w[0]).max(MIN_INCREMENT))
            .collect();
        let total: f64 = increments.iter().sum();
        let theta = increments.iter().map(|d| libm::log(d / total)).collect();
        let reduced = table.reduced();
        let mut beta = vec![0.0; n * n];
        for i in 0..n {
            beta[i * n..i * n + i + 1].copy_from_slice(&reduced.beta[i][..=i]);
        }
        Ok(BnsParameters {
            theta,
            alpha: reduced.alpha,
            beta,
            time_only,
        })
    }

    /// Number of steps n (= NFE).
    pub fn steps(&self) -> usize {
        self.theta.len()
    }

    /// `softmax(θ)` `[n]`, the time increments.
    pub fn increments(&self) -> Vec<f64> {
        let top = self.theta.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = self.theta.iter().map(|&v| libm::exp(v - top)).collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|v| v / sum).collect()
    }

    /// The times `[n+1]`: 0, then the cumulative sums of [`increments`](Self::increments),
    /// the last set to exactly 1 and each clamped to stay non-decreasing in [0, 1].
    pub fn times(&self) -> Vec<f64> {
        let mut times = Vec::with_capacity(self.steps() + 1);
        let mut sum = 0.0;
        times.push(0.0);
        for p in self.increments() {
            sum += p;
            times.push(sum);
        }
        let n = self.steps();
        times[n] = 1.0;
        for i in 1..n {
            times[i] = times[i].clamp(times[i - 1], 1.0);
        }
        times
    }

    /// `(α [n], β [n, n])` of the sampling loop at `times` (Euler's for `time_only`).
    pub fn coefficients(&self, times: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let n = self.steps();
        if !self.time_only {
            return (self.alpha.clone(), self.beta.clone());
        }
        let mut beta = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                beta[i * n + j] = times[j + 1] - times[j];
            }
        }
        (vec![1.0; n], beta)
    }

    /// The solver as a general NS table (`a_i0 = α_i`, the other `a_ij = 0`, `b = β`).
    pub fn table(&self) -> NsTable {
        let n = self.steps();
        let times = self.times();
        let (alpha, beta) = self.coefficients(&times);
        let mut a = Vec::with_capacity(n);
        let mut b = Vec::with_capacity(n);
        for i in 0..n {
            let mut row = vec![0.0; i + 1];
            row[0] = alpha[i];
            a.push(row);
            b.push(beta[i * n..i * n + i + 1].to_vec());
        }
        NsTable { times, a, b }
    }

    /// The learned values in one vector, for the optimiser: θ, then (unless `time_only`) α,
    /// then β's lower triangle row by row.
    pub fn values(&self) -> Vec<f64> {
        let n = self.steps();
        let mut values = self.theta.clone();
        if !self.time_only {
            values.extend(&self.alpha);
            for i in 0..n {
                values.extend(&self.beta[i * n..i * n + i + 1]);
            }
        }
        values
    }

    /// Sets the values from a vector laid out as [`values`](Self::values).
    pub fn set_values(&mut self, values: &[f64]) {
        let n = self.steps();
        self.theta.copy_from_slice(&values[..n]);
        if !self.time_only {
            self.alpha.copy_from_slice(&values[n..2 * n]);
            let mut k = 2 * n;
            for i in 0..n {
                self.beta[i * n..i * n + i + 1].copy_from_slice(&values[k..k + i + 1]);
                k += i + 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::solver::Method;

    #[test]
    fn parameters_give_back_the_classical_table_they_start_from() {
        for (method, grid, time_only) in [
            (Method::Euler, Grid::Uniform, false),
            (Method::Euler, Grid::Edm, true),
            (Method::Midpoint, Grid::Uniform, false),
            (Method::DpmPp2m, Grid::Edm, false),
        ] {
            let table = method.build(6, grid).unwrap();
            let params = BnsParameters::from_table(&table, time_only).unwrap();
            let back = params.table();
            back.validate().unwrap();
            let (expected, got) = (table.reduced(), back.reduced());
            for (a, b) in expected.times.iter().zip(&got.times) {
                assert!((a - b).abs() < 1e-12, "{}: times {a} vs {b}", method.name());
            }
            for (a, b) in expected.alpha.iter().zip(&got.alpha) {
                assert!((a - b).abs() < 1e-12, "{}: α {a} vs {b}", method.name());
            }
            for (ra, rb) in expected.beta.iter().zip(&got.beta) {
                for (a, b) in ra.iter().zip(rb) {
                    assert!((a - b).abs() < 1e-12, "{}: β {a} vs {b}", method.name());
                }
            }
            let mut again = params.clone();
            again.set_values(&params.values());
            assert_eq!(again, params);
        }
    }
}
