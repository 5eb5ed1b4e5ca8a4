//! Ground truth on the CPU path (`docs/MATH.md` §6): the flow ODE `dx/dt = ũ_t(x)`
//! solved from seeded noise to t = 1 by the adaptive Dormand–Prince 5(4) of [`crate::dopri5`],
//! the state in f64 and the guided velocity evaluated in f32 on the runtime's network, a batch
//! of rows stepped together. `bns truth` (its default, CPU, field) and the page's distillation
//! make the same pairs from the same seed: pair `i` starts from row `i` of
//! [`gaussian_batch`]`(seed, count, D)`, with class `i mod K` for a class-conditional model.

use crate::dopri5::{integrate_rows, Dopri5Error, Tolerance, MAX_STEPS};
use crate::model::Model;
use crate::noise::gaussian_batch;
use crate::sample::guided_velocity;
use crate::{Error, Result};

/// `bns truth`'s default tolerance (rtol = atol = 1e-5).
pub const DEFAULT_TOLERANCE: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-5,
};

/// The noise `[count, D]` and the labels `[count]` of pairs `0..count` from `seed` (class
/// `i mod K`, or the null class for an unconditional model).
pub fn pair_inputs(model: &Model, seed: u64, count: usize) -> (Vec<f32>, Vec<u32>) {
    let spec = model.spec();
    let noise = gaussian_batch(seed, count, spec.data_dim());
    let labels = if spec.is_conditional() {
        let k = spec.num_classes as u64;
        (0..count).map(|i| (i as u64 % k) as u32).collect()
    } else {
        vec![spec.null_class(); count]
    };
    (noise, labels)
}

/// DOPRI5 from `x0` (rows of `D`) with `labels` at guidance `w` to t = 1: the truth in f32 and
/// the number of evaluations (each of the whole batch) it took.
pub fn solve_rows(
    model: &Model,
    x0: &[f32],
    labels: &[u32],
    guidance: f64,
    tol: Tolerance,
) -> Result<(Vec<f32>, usize)> {
    let dim = model.spec().data_dim();
    let x0: Vec<f64> = x0.iter().map(|&v| f64::from(v)).collect();
    let solution = integrate_rows(&x0, dim, 0.0, 1.0, tol, MAX_STEPS, |x, t| {
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        guided_velocity(model, &x32, t, labels, guidance)
            .map(|u| u.into_iter().map(f64::from).collect())
    })
    .map_err(|e| match e {
        Dopri5Error::Callback { error, .. } => error,
        other => Error::new("ground truth", other.to_string()),
    })?;
    let truth: Vec<f32> = solution.x.iter().map(|&v| v as f32).collect();
    if let Some(i) = truth.iter().position(|v| !v.is_finite()) {
        return Err(Error::new(
            "ground truth",
            format!("pair {} leaves the range of f32", i / dim.max(1)),
        ));
    }
    Ok((truth, solution.nfe))
}
