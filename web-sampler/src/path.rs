//! The conditional-OT probability path `x_t = (1−t)·x0 + t·x1` (`docs/MATH.md` §1).
//!
//! Time runs from noise (t = 0) to data (t = 1). The scheduler is `α_t = t`, `σ_t = 1 − t`,
//! the log signal-to-noise ratio is `λ_t = log(α_t/σ_t)`, and a velocity `u` at `(x, t)` gives
//! the data prediction `x̂1 = x + (1−t)·u` and the noise prediction `x̂0 = x − t·u`.
//!
//! The conversion between parametrisations that networks need lives here too: a data-predicting
//! network outputs `x̂1`, and its velocity is [`velocity_from_data`] (the CPU path and the GPU
//! path call it; the WGSL kernel `guidance.wgsl` applies the same formula with the factor
//! [`data_to_velocity_factor`] computed here, and the distiller's candle network mirrors it in
//! differentiable tensor operations). The conversion and its constant are specified in
//! `FORMATS.md` §1.6.

/// Signal coefficient `α_t = t`.
pub fn alpha(t: f64) -> f64 {
    t
}

/// Noise coefficient `σ_t = 1 − t`.
pub fn sigma(t: f64) -> f64 {
    1.0 - t
}

/// Log signal-to-noise ratio `λ_t = log(α_t/σ_t)`; `−∞` at t = 0 and `+∞` at t = 1.
pub fn lambda(t: f64) -> f64 {
    (alpha(t) / sigma(t)).ln()
}

/// Inverse of [`lambda`]: `t = 1/(1 + e^{−λ})`.
pub fn time_of_lambda(lambda: f64) -> f64 {
    1.0 / (1.0 + (-lambda).exp())
}

/// Flow time of an EDM noise level σ (variance-exploding scale): `t = 1/(1 + σ)`.
pub fn time_of_edm_sigma(sigma_edm: f64) -> f64 {
    1.0 / (1.0 + sigma_edm)
}

/// The smallest `1 − t` a data-predicting model divides by.
pub const DATA_PREDICTION_MIN_REMAINING: f32 = 0.05;

/// The factor `1/max(1 − t, c)`, `c` = [`DATA_PREDICTION_MIN_REMAINING`], that turns
/// `x̂1 − x` into the velocity (in f32, as every path applies it).
pub fn data_to_velocity_factor(t: f32) -> f32 {
    1.0 / (1.0 - t).max(DATA_PREDICTION_MIN_REMAINING)
}

/// The velocity of a data prediction, in place: `u = (x̂1 − x)·`[`data_to_velocity_factor`]`(t)`
/// for `rows = t.len()` rows, `x_hat1` and `x` `[rows, D]`; `x_hat1` becomes `u`.
pub fn velocity_from_data(x_hat1: &mut [f32], x: &[f32], t: &[f32]) {
    let d = x_hat1.len() / t.len().max(1);
    if d == 0 {
        return;
    }
    for ((u, x), &t) in x_hat1.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(t) {
        let scale = data_to_velocity_factor(t);
        for (u, x) in u.iter_mut().zip(x) {
            *u = (*u - x) * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_round_trips() {
        for &t in &[0.01, 0.3, 0.5, 0.77, 0.99] {
            assert!((time_of_lambda(lambda(t)) - t).abs() < 1e-12);
        }
        assert_eq!(lambda(0.0), f64::NEG_INFINITY);
        assert_eq!(lambda(1.0), f64::INFINITY);
    }

    #[test]
    fn velocity_of_a_data_prediction() {
        // x̂1 = x + (1−t)·u inverted, and the division bounded near t = 1.
        let x = [0.5f32, -1.0, 2.0, 0.25];
        let mut u = [1.5f32, 1.0, 2.0, 0.25];
        velocity_from_data(&mut u, &x, &[0.5, 1.0]);
        assert_eq!(u, [2.0, 4.0, 0.0, 0.0]);
        assert_eq!(data_to_velocity_factor(0.99), 20.0);
    }
}
