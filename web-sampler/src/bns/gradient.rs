//! The BNS loss and its gradient in the solver's parameters, through the whole n-step sampling
//! loop (the network frozen): reverse-mode by hand, with the network's vector–Jacobian product
//! ([`Model::velocity_vjp`]).
//!
//! Forward (reduced form, states in f32 as the runtime samples):
//! `u_i = ũ(x_i, t_i)`, `x_{i+1} = α_i·x_0 + Σ_{j≤i} β_ij·u_j`, and the loss
//! `L = mean_b log(MSE_b(x_n, x_truth))` (the negative PSNR up to scale and shift).
//!
//! Backward: `∂L/∂x_n = 2(x_n − x_truth)/(B·D·MSE_b)`; then for `j = n−1, …, 0` (every state
//! after `x_j` already has its gradient, since `x_j` enters only `u_j`):
//! `∂L/∂u_j = Σ_{i≥j} β_ij·∂L/∂x_{i+1}`, and the network's VJP at `(x_j, t_j)` gives `∂L/∂x_j`
//! (`j ≥ 1`) and `∂L/∂t_j` (summed over the batch). The coefficients' gradients are
//! `∂L/∂α_i = ⟨∂L/∂x_{i+1}, x_0⟩`, `∂L/∂β_ij = ⟨∂L/∂x_{i+1}, u_j⟩`; the times' go to θ through
//! the cumulative softmax, `∂L/∂θ_m = p_m·(∂L/∂p_m − Σ_k p_k·∂L/∂p_k)` with
//! `∂L/∂p_k = Σ_{i>k} ∂L/∂t_i`. For `time_only`, `β_ij = t_{j+1} − t_j` and `α_i = 1`, so the
//! coefficients' gradients flow into the times too.
//!
//! The guided velocity `ũ = (1+w)·u(x, t, c) − w·u(x, t, ∅)` runs both passes in one batch of
//! `2B` rows, as sampling does; its VJP splits `∂L/∂ũ` into `(1+w)·` and `−w·` of it.

use crate::model::{Model, VelocityTape};
use crate::Result;

use super::BnsParameters;

/// The loss of a batch and its gradient, laid out as [`BnsParameters::values`].
#[derive(Clone, Debug)]
pub struct LossAndGradient {
    pub loss: f64,
    pub gradient: Vec<f64>,
}

/// Smallest MSE the loss takes the log of (as [`crate::metrics::psnr`] floors it).
const MIN_MSE: f64 = 1e-20;

/// One evaluation of the guided velocity with what its VJP needs.
struct GuidedStep {
    tape: VelocityTape,
    /// Rows of the batch (the tape holds `2·rows` when guided).
    rows: usize,
    guided: bool,
}

/// `ũ(x, t)` for `x` `[B, D]` with its tape.
fn guided_velocity_recorded(
    model: &Model,
    x: &[f32],
    t: f64,
    classes: &[u32],
    guidance: f64,
) -> Result<(Vec<f32>, GuidedStep)> {
    let rows = classes.len();
    let spec = model.spec();
    if guidance == 0.0 || !spec.is_conditional() {
        let (u, tape) = model.velocity_recorded(x, &vec![t as f32; rows], classes)?;
        let step = GuidedStep {
            tape,
            rows,
            guided: false,
        };
        return Ok((u, step));
    }
    let mut x2 = Vec::with_capacity(2 * x.len());
    x2.extend_from_slice(x);
    x2.extend_from_slice(x);
    let mut c2 = classes.to_vec();
    c2.extend(std::iter::repeat_n(spec.null_class(), rows));
    let (u, tape) = model.velocity_recorded(&x2, &vec![t as f32; 2 * rows], &c2)?;
    let (conditional, unconditional) = u.split_at(x.len());
    let (wc, wu) = ((1.0 + guidance) as f32, guidance as f32);
    let guided = conditional
        .iter()
        .zip(unconditional)
        .map(|(c, n)| wc * c - wu * n)
        .collect();
    let step = GuidedStep {
        tape,
        rows,
        guided: true,
    };
    Ok((guided, step))
}

/// `(∂L/∂x [B, D], ∂L/∂t summed over the batch)` of a guided step, from `∂L/∂ũ`.
fn guided_vjp(
    model: &Model,
    step: &GuidedStep,
    grad_u: &[f32],
    guidance: f64,
) -> Result<(Vec<f32>, f64)> {
    if !step.guided {
        let (grad_x, grad_t) = model.velocity_vjp(&step.tape, grad_u)?;
        return Ok((grad_x, grad_t.iter().map(|&g| f64::from(g)).sum()));
    }
    let (wc, wu) = ((1.0 + guidance) as f32, guidance as f32);
    let mut grad_u2 = Vec::with_capacity(2 * grad_u.len());
    grad_u2.extend(grad_u.iter().map(|g| wc * g));
    grad_u2.extend(grad_u.iter().map(|g| -wu * g));
    let (grad_x2, grad_t2) = model.velocity_vjp(&step.tape, &grad_u2)?;
    let (top, bottom) = grad_x2.split_at(grad_u.len());
    let grad_x = top.iter().zip(bottom).map(|(a, b)| a + b).collect();
    debug_assert_eq!(grad_t2.len(), 2 * step.rows);
    Ok((grad_x, grad_t2.iter().map(|&g| f64::from(g)).sum()))
}

/// The states `x_1 … x_n` of the solver from `x0` `[B, D]`, the velocities and their tapes.
struct Trajectory {
    velocities: Vec<Vec<f32>>,
    steps: Vec<GuidedStep>,
    last: Vec<f32>,
}

fn run(
    model: &Model,
    times: &[f64],
    alpha: &[f64],
    beta: &[f64],
    x0: &[f32],
    classes: &[u32],
    guidance: f64,
) -> Result<Trajectory> {
    let n = alpha.len();
    let mut velocities: Vec<Vec<f32>> = Vec::with_capacity(n);
    let mut steps = Vec::with_capacity(n);
    let mut x = x0.to_vec();
    for i in 0..n {
        let (u, step) = guided_velocity_recorded(model, &x, times[i], classes, guidance)?;
        velocities.push(u);
        steps.push(step);
        let a = alpha[i] as f32;
        x = x0.iter().map(|&v| a * v).collect();
        for (j, u) in velocities.iter().enumerate() {
            let b = beta[i * n + j] as f32;
            for (xv, &uv) in x.iter_mut().zip(u) {
                *xv += b * uv;
            }
        }
    }
    Ok(Trajectory {
        velocities,
        steps,
        last: x,
    })
}

/// The loss of `params` on the pairs `(x0, truth)` `[B, D]` with `classes` `[B]` at guidance
/// `w`, and its gradient (see the module).
pub fn loss_and_gradient(
    model: &Model,
    params: &BnsParameters,
    x0: &[f32],
    truth: &[f32],
    classes: &[u32],
    guidance: f64,
) -> Result<LossAndGradient> {
    let n = params.steps();
    let rows = classes.len();
    let d = model.spec().data_dim();
    let times = params.times();
    let (alpha, beta) = params.coefficients(&times);
    let trajectory = run(model, &times, &alpha, &beta, x0, classes, guidance)?;

    // The loss and ∂L/∂x_n.
    let mses = row_mses(&trajectory.last, truth, d);
    let loss = mean_log(&mses);
    let mut grad_last = vec![0.0f32; rows * d];
    for (r, &mse) in mses.iter().enumerate() {
        let span = r * d..(r + 1) * d;
        let scale = 2.0 / (rows as f64 * d as f64 * mse);
        for ((g, &a), &b) in grad_last[span.clone()]
            .iter_mut()
            .zip(&trajectory.last[span.clone()])
            .zip(&truth[span])
        {
            *g = (scale * (f64::from(a) - f64::from(b))) as f32;
        }
    }

    // grad_states[i] = ∂L/∂x_{i+1}, filled from the last.
    let mut grad_states: Vec<Vec<f32>> = vec![Vec::new(); n];
    grad_states[n - 1] = grad_last;
    let mut grad_times = vec![0.0f64; n + 1];
    let mut grad_alpha = vec![0.0f64; n];
    let mut grad_beta = vec![0.0f64; n * n];
    let dot = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum()
    };
    for j in (0..n).rev() {
        // ∂L/∂u_j = Σ_{i≥j} β_ij·∂L/∂x_{i+1}.
        let mut grad_u = vec![0.0f32; rows * d];
        for i in j..n {
            let b = beta[i * n + j] as f32;
            for (g, &s) in grad_u.iter_mut().zip(&grad_states[i]) {
                *g += b * s;
            }
            grad_beta[i * n + j] = dot(&grad_states[i], &trajectory.velocities[j]);
        }
        grad_alpha[j] = dot(&grad_states[j], x0);
        let (grad_x, grad_t) = guided_vjp(model, &trajectory.steps[j], &grad_u, guidance)?;
        grad_times[j] += grad_t;
        if j >= 1 {
            grad_states[j - 1] = grad_x;
        }
    }

    let mut gradient = Vec::with_capacity(params.values().len());
    if params.time_only {
        // β_ij = t_{j+1} − t_j for every i ≥ j.
        for j in 0..n {
            let total: f64 = (j..n).map(|i| grad_beta[i * n + j]).sum();
            grad_times[j + 1] += total;
            grad_times[j] -= total;
        }
    }
    // Through t_i = Σ_{k<i} p_k and p = softmax(θ).
    let p = params.increments();
    let mut grad_p = vec![0.0; n];
    let mut suffix = 0.0;
    for k in (0..n).rev() {
        suffix += grad_times[k + 1];
        grad_p[k] = suffix;
    }
    let mean: f64 = p.iter().zip(&grad_p).map(|(a, b)| a * b).sum();
    gradient.extend(p.iter().zip(&grad_p).map(|(pm, gm)| pm * (gm - mean)));
    if !params.time_only {
        gradient.extend(&grad_alpha);
        for i in 0..n {
            gradient.extend(&grad_beta[i * n..i * n + i + 1]);
        }
    }
    Ok(LossAndGradient { loss, gradient })
}

/// The loss alone (the forward of [`loss_and_gradient`]), for finite differences.
pub fn loss(
    model: &Model,
    params: &BnsParameters,
    x0: &[f32],
    truth: &[f32],
    classes: &[u32],
    guidance: f64,
) -> Result<f64> {
    let times = params.times();
    let (alpha, beta) = params.coefficients(&times);
    let trajectory = run(model, &times, &alpha, &beta, x0, classes, guidance)?;
    let mses = row_mses(&trajectory.last, truth, model.spec().data_dim());
    Ok(mean_log(&mses))
}

/// Each row's MSE `(1/D)·Σ_d (x_d − y_d)²` (differences in f64), floored at [`MIN_MSE`].
fn row_mses(x: &[f32], truth: &[f32], d: usize) -> Vec<f64> {
    x.chunks_exact(d)
        .zip(truth.chunks_exact(d))
        .map(|(a, b)| {
            let sum: f64 = a
                .iter()
                .zip(b)
                .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
                .sum();
            (sum / d as f64).max(MIN_MSE)
        })
        .collect()
}

/// `mean_b log(MSE_b)`.
fn mean_log(mses: &[f64]) -> f64 {
    mses.iter().map(|&m| libm::log(m)).sum::<f64>() / mses.len().max(1) as f64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::model::{spec_for_tests, ModelSpec, Prediction};
    use crate::noise::{gaussian_batch, Noise};
    use crate::solver::Method;

    /// A tiny class-conditional MLP (3×5 data, width 13, depth 2) with a slow time embedding
    /// (scale 10, so finite differences in t resolve it), predicting the velocity or the data.
    pub(crate) fn tiny_model(prediction: Prediction, seed: u64) -> Model {
        let spec = ModelSpec {
            time_scale: 10.0,
            prediction,
            ..spec_for_tests()
        };
        Model::random(spec, seed).unwrap()
    }

    /// `⟨g, u(x + h·v, t + h·s)⟩` in f64 from the f32 velocity.
    fn projected(model: &Model, x: &[f32], t: &[f32], classes: &[u32], g: &[f32]) -> f64 {
        let u = model.velocity(x, t, classes).unwrap();
        u.iter()
            .zip(g)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum()
    }

    #[test]
    fn the_velocity_vjp_matches_central_differences() {
        for prediction in [Prediction::Velocity, Prediction::Data] {
            let model = tiny_model(prediction, 3);
            let (rows, d) = (5, model.spec().data_dim());
            let x = gaussian_batch(1, rows, d);
            let t: Vec<f32> = vec![0.05, 0.3, 0.5, 0.8, 0.9];
            let classes = vec![0u32, 1, 2, 3, 1];
            let g = gaussian_batch(2, rows, d);
            let (u, tape) = model.velocity_recorded(&x, &t, &classes).unwrap();
            assert_eq!(
                u,
                model.velocity(&x, &t, &classes).unwrap(),
                "the same bits"
            );
            let (grad_x, grad_t) = model.velocity_vjp(&tape, &g).unwrap();
            // Along a random direction v in x: ⟨grad_x, v⟩ = d/dh ⟨g, u(x + h·v)⟩.
            let v = gaussian_batch(4, rows, d);
            let h = 1e-2f32;
            let moved = |sign: f32| -> Vec<f32> {
                x.iter().zip(&v).map(|(a, b)| a + sign * h * b).collect()
            };
            let numeric = (projected(&model, &moved(1.0), &t, &classes, &g)
                - projected(&model, &moved(-1.0), &t, &classes, &g))
                / (2.0 * f64::from(h));
            let analytic: f64 = grad_x
                .iter()
                .zip(&v)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            assert!(
                (numeric - analytic).abs() < 2e-3 * (1.0 + analytic.abs()),
                "{prediction:?} x: {numeric} vs {analytic}"
            );
            // Each row's time (a smaller step: c(t) = 1/(1 − t) curves fast near t = 1).
            let h = 2e-3f32;
            for r in 0..rows {
                let shifted = |sign: f32| -> Vec<f32> {
                    let mut t = t.clone();
                    t[r] += sign * h;
                    t
                };
                let numeric = (projected(&model, &x, &shifted(1.0), &classes, &g)
                    - projected(&model, &x, &shifted(-1.0), &classes, &g))
                    / (2.0 * f64::from(h));
                let analytic = f64::from(grad_t[r]);
                assert!(
                    (numeric - analytic).abs() < 2e-3 * (1.0 + analytic.abs()),
                    "{prediction:?} t[{r}] = {}: {numeric} vs {analytic}",
                    t[r]
                );
            }
        }
    }

    #[test]
    fn the_loss_gradient_matches_central_differences() {
        for (prediction, guidance, time_only, method) in [
            (Prediction::Velocity, 0.0, false, Method::Midpoint),
            (Prediction::Data, 1.5, false, Method::Euler),
            (Prediction::Velocity, 0.5, true, Method::Euler),
        ] {
            let model = tiny_model(prediction, 7);
            let (rows, d) = (6, model.spec().data_dim());
            let x0 = gaussian_batch(11, rows, d);
            let truth = gaussian_batch(12, rows, d);
            let classes = vec![0u32, 1, 2, 0, 1, 2];
            let table = method.build(4, Grid::Uniform).unwrap();
            let mut params = BnsParameters::from_table(&table, time_only).unwrap();
            // Away from the classical values, so that no term is special.
            let mut noise = Noise::new(5);
            let mut values = params.values();
            for v in values.iter_mut() {
                *v += 0.05 * noise.gaussian();
            }
            params.set_values(&values);
            let exact =
                loss_and_gradient(&model, &params, &x0, &truth, &classes, guidance).unwrap();
            let at = |values: &[f64]| {
                let mut p = params.clone();
                p.set_values(values);
                loss(&model, &p, &x0, &truth, &classes, guidance).unwrap()
            };
            assert!((exact.loss - at(&values)).abs() < 1e-12);
            let largest = exact.gradient.iter().fold(0.0f64, |m, g| m.max(g.abs()));
            // A step large enough that the f32 states' rounding (≈ 1e-7 relative) stays far below
            // the difference, small enough for the O(h²) error: the worst value here is ~0.14%
            // of the largest gradient.
            let h = 3e-3;
            for k in 0..values.len() {
                let mut up = values.clone();
                up[k] += h;
                let mut down = values.clone();
                down[k] -= h;
                let numeric = (at(&up) - at(&down)) / (2.0 * h);
                let analytic = exact.gradient[k];
                assert!(
                    (numeric - analytic).abs() < 5e-3 * largest,
                    "{prediction:?} w = {guidance} time_only {time_only}: ∂L/∂value[{k}] \
                     {numeric} vs {analytic} (largest {largest})"
                );
            }
        }
    }
}
