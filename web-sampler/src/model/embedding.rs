//! The sinusoidal time embedding every architecture feeds its network with, computed in f64
//! with `libm` (never the platform's maths) so that it is the same natively and in wasm. The
//! normative statement (frequencies, layout, precision, the default scale) is `FORMATS.md` §1.4.

/// The scale of `t` inside the embedding of model files that do not state one (`time_scale` in
/// the spec): t ∈ [0, 1] spread like a step index in [0, 1000].
pub const DEFAULT_TIME_SCALE: f64 = 1000.0;
/// The longest period of the embedding's frequencies.
pub const MAX_PERIOD: f64 = 10000.0;

/// The frequencies `f_k = exp(−ln(10000)·k/(E/2))`, `k < E/2`, of a time embedding of size `dim`.
pub fn time_frequencies(dim: usize) -> Vec<f64> {
    let half = dim / 2;
    let log_max = libm::log(MAX_PERIOD);
    (0..half)
        .map(|k| libm::exp(-log_max * k as f64 / half as f64))
        .collect()
}

/// Sinusoidal embedding of the time `t`:
/// e(t) = [sin(s·t·f_k) for k < E/2, cos(s·t·f_k) for k < E/2], f_k = exp(−ln(10000)·k/(E/2)),
/// with the model's time scale `s`; computed in f64 with libm, stored as f32.
///
/// The argument is computed as `(s·t)·f_k`. For an odd `dim` the last value is 0 (model files
/// always have an even size).
pub fn time_embedding(t: f32, dim: usize, scale: f64) -> Vec<f32> {
    let mut embedding = vec![0.0; dim];
    write_time_embedding(t, scale, &mut embedding);
    embedding
}

/// [`time_embedding`] written into `out` (`dim = out.len()`).
pub(crate) fn write_time_embedding(t: f32, scale: f64, out: &mut [f32]) {
    let half = out.len() / 2;
    let scaled = scale * f64::from(t);
    let frequencies = time_frequencies(out.len());
    let (sines, rest) = out.split_at_mut(half);
    let cosines = &mut rest[..half];
    for ((sine, cosine), frequency) in sines.iter_mut().zip(cosines.iter_mut()).zip(frequencies) {
        let angle = scaled * frequency;
        *sine = libm::sin(angle) as f32;
        *cosine = libm::cos(angle) as f32;
    }
    if let Some(last) = rest.get_mut(half) {
        *last = 0.0;
    }
}

/// The derivative of [`time_embedding`] in `t`, written into `out` (`dim = out.len()`):
/// `s·f_k·cos(s·t·f_k)` for the sines and `−s·f_k·sin(s·t·f_k)` for the cosines (0 for the odd
/// last value), in f64 with libm; for the networks' vector–Jacobian products.
pub(crate) fn write_time_embedding_derivative(t: f32, scale: f64, out: &mut [f64]) {
    let half = out.len() / 2;
    let scaled = scale * f64::from(t);
    let frequencies = time_frequencies(out.len());
    let (sines, rest) = out.split_at_mut(half);
    let cosines = &mut rest[..half];
    for ((sine, cosine), frequency) in sines.iter_mut().zip(cosines.iter_mut()).zip(frequencies) {
        let angle = scaled * frequency;
        *sine = scale * frequency * libm::cos(angle);
        *cosine = -scale * frequency * libm::sin(angle);
    }
    if let Some(last) = rest.get_mut(half) {
        *last = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_embedding_at_zero_is_sines_then_cosines() {
        let e = time_embedding(0.0, 8, 1000.0);
        assert_eq!(e, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(time_embedding(0.0, 2, 1000.0), [0.0, 1.0]);
        assert_eq!(time_embedding(0.5, 5, 1000.0)[4], 0.0);
    }

    #[test]
    fn time_embedding_values() {
        let t = 0.37f32;
        let e = time_embedding(t, 6, 1000.0);
        let tt = f64::from(t) * 1000.0;
        for k in 0..3 {
            let f = (-(10000f64.ln()) * k as f64 / 3.0).exp();
            assert!((f64::from(e[k]) - (tt * f).sin()).abs() < 1e-6, "sin {k}");
            assert!(
                (f64::from(e[3 + k]) - (tt * f).cos()).abs() < 1e-6,
                "cos {k}"
            );
        }
        // The first frequency is exactly 1.
        assert_eq!(e[0], libm::sin(tt) as f32);
        assert_eq!(e[3], libm::cos(tt) as f32);
    }

    #[test]
    fn the_derivative_matches_central_differences() {
        let (dim, scale, t) = (10, 10.0, 0.37f32);
        let mut derivative = vec![0.0; dim];
        write_time_embedding_derivative(t, scale, &mut derivative);
        // The embedding in f64 at t ± h, from the same formula.
        let at = |t: f64| -> Vec<f64> {
            let f = time_frequencies(dim);
            let mut e: Vec<f64> = f.iter().map(|f| (scale * t * f).sin()).collect();
            e.extend(f.iter().map(|f| (scale * t * f).cos()));
            e
        };
        let h = 1e-6;
        let (up, down) = (at(f64::from(t) + h), at(f64::from(t) - h));
        for k in 0..dim {
            let numeric = (up[k] - down[k]) / (2.0 * h);
            assert!(
                (numeric - derivative[k]).abs() < 1e-6 * (1.0 + numeric.abs()),
                "{k}: {numeric} vs {}",
                derivative[k]
            );
        }
    }
}
