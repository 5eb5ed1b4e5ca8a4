//! The conditional-OT probability path `x_t = (1−t)·x0 + t·x1` (DESIGN §2).
//!
//! Time runs from noise (t = 0) to data (t = 1). The scheduler is `α_t = t`, `σ_t = 1 − t`,
//! the log signal-to-noise ratio is `λ_t = log(α_t/σ_t)`, and a velocity `u` at `(x, t)` gives
//! the data prediction `x̂1 = x + (1−t)·u` and the noise prediction `x̂0 = x − t·u`.

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
}
