//! Adaptive Dormand–Prince 5(4) (DOPRI5): the reference ODE solver that makes the ground truth
//! `x(1)` of the flow ODE `dx/dt = u_t(x)` from seeded noise `x(0)` (`docs/MATH.md` §6).
//!
//! Generic over the right-hand side `f(x, t)`, which may fail, and over where the state lives
//! ([`State`]): a host `Vec<f64>` ([`integrate_rows`], the reference, which `bns truth` and the
//! page's distillation use) or another implementation of [`State`] through [`integrate_state`]
//! (the distiller's candle tensor on any device: `bns truth --device cuda` keeps the batch on
//! the GPU and brings back only the per-row error norms), with the same arithmetic in the same
//! order. The method is the one of Hairer,
//! Nørsett & Wanner, *Solving ODEs I*, §II.4–II.5 (code `DOPRI5`): seven stages with FSAL (the
//! last stage of an accepted step is the first of the next, so a step costs six evaluations), the
//! 5th-order solution propagated (local extrapolation), the embedded 4th-order one used only for
//! the error estimate.
//!
//! # Error norm
//!
//! The state may be a batch of `rows` samples of `row_len` values each, stepped together (one
//! call of `f` per stage for the whole batch). The error of a step is
//!
//! ```text
//! err = max over rows r of  sqrt( mean_{i in r} ( e_i / (atol + rtol·max(|x_i|, |x̃_i|)) )² )
//! ```
//!
//! — the RMS norm of HNW II.4 (4.11) taken per sample, then the worst sample. With one row (see
//! [`integrate`]) this is exactly HNW's norm. Taking the worst sample rather than the RMS over the
//! whole batch keeps every sample within tolerance whatever else is in its batch: with the plain
//! RMS a single hard sample among B easy ones could carry √B times the tolerated error.
//!
//! # Step-size control
//!
//! A step is accepted when `err ≤ 1`; the next step is `h·min(10, max(0.2, 0.9·err^(−1/5)))`,
//! with no growth on the step right after a rejection. The initial step comes from HNW's
//! heuristic (II.4, "starting step size", one extra evaluation of `f`). The last step is
//! stretched or shortened to land exactly on `t1`.

use std::fmt;

/// Largest number of steps (accepted + rejected) [`integrate`] takes before giving up.
pub const MAX_STEPS: usize = 100_000;

/// Safety factor of the step-size controller.
const SAFETY: f64 = 0.9;
/// Smallest factor by which a step may shrink.
const FACTOR_MIN: f64 = 0.2;
/// Largest factor by which a step may grow.
const FACTOR_MAX: f64 = 10.0;
/// Exponent of the controller: the error estimate is O(h⁵) (the embedded method has order 4).
const CONTROL_EXPONENT: f64 = 1.0 / 5.0;

/// Nodes `c_i` of the Dormand–Prince tableau.
pub const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];

/// The Runge–Kutta matrix `a_ij` (row `i` = stage `i`, lower triangular).
pub const A: [[f64; 6]; 7] = [
    [0.0; 6],
    [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];

/// Weights `b_i` of the 5th-order solution: the last row of [`A`] (FSAL), which the step uses.
pub const B5: [f64; 7] = [
    35.0 / 384.0,
    0.0,
    500.0 / 1113.0,
    125.0 / 192.0,
    -2187.0 / 6784.0,
    11.0 / 84.0,
    0.0,
];

/// Weights `b̂_i` of the embedded 4th-order solution (the step uses `E = b − b̂`).
pub const B4: [f64; 7] = [
    5179.0 / 57600.0,
    0.0,
    7571.0 / 16695.0,
    393.0 / 640.0,
    -92097.0 / 339200.0,
    187.0 / 2100.0,
    1.0 / 40.0,
];

/// `b_i − b̂_i`, written out exactly (HNW's `e_i`): the local error estimate is `h·Σ e_i k_i`.
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// Relative and absolute tolerance of each step's local error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

/// The state at `t1` and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Solution<S = Vec<f64>> {
    /// `x(t1)`.
    pub x: S,
    /// Number of calls of `f` (including the two of the start: `f(x0)` and the step-size probe).
    pub nfe: usize,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps.
    pub rejected: usize,
}

/// Why an integration stopped.
#[derive(Debug)]
pub enum Dopri5Error<E> {
    /// `f` failed at time `t`.
    Callback { t: f64, error: E },
    /// The arguments cannot be integrated (empty state, `t1 ≤ t0`, bad tolerance, …).
    BadInput(String),
    /// `f` returned `got` values for a state of `expected`.
    WrongLength { t: f64, expected: usize, got: usize },
    /// The step size fell below what `t` can resolve: the problem is too stiff or singular.
    StepSizeUnderflow { t: f64, h: f64 },
    /// More than `max_steps` steps (accepted + rejected) were needed.
    TooManySteps { t: f64, max_steps: usize },
    /// The state or `f` became infinite or NaN at time `t`.
    NonFinite { t: f64 },
    /// An operation on a state held by a device failed at time `t`.
    Device { t: f64, error: String },
}

impl<E: fmt::Display> fmt::Display for Dopri5Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The callback's own error follows as the source (anyhow's `{:#}` prints both).
            Dopri5Error::Callback { t, .. } => {
                write!(f, "DOPRI5: the right-hand side failed at t = {t}")
            }
            Dopri5Error::BadInput(problem) => write!(f, "DOPRI5: {problem}"),
            Dopri5Error::WrongLength { t, expected, got } => write!(
                f,
                "DOPRI5: the right-hand side returned {got} values at t = {t} for a state of \
                 {expected}"
            ),
            Dopri5Error::StepSizeUnderflow { t, h } => write!(
                f,
                "DOPRI5: step size underflow at t = {t} (h = {h:e}): the ODE is too stiff or \
                 singular for these tolerances"
            ),
            Dopri5Error::TooManySteps { t, max_steps } => write!(
                f,
                "DOPRI5: more than {max_steps} steps needed (stopped at t = {t}); loosen the \
                 tolerances"
            ),
            Dopri5Error::NonFinite { t } => {
                write!(f, "DOPRI5: the solution became infinite or NaN at t = {t}")
            }
            Dopri5Error::Device { t, error } => {
                write!(
                    f,
                    "DOPRI5: a state operation failed on the device at t = {t}: {error}"
                )
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Dopri5Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Dopri5Error::Callback { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What the integrator needs of a state: a batch of `rows` samples of `row_len` values, as a host
/// vector (`Vec<f64>`, the reference) or elsewhere (the distiller's candle tensor on a device,
/// where only the step's error norm and finiteness checks come back to the host). Every
/// implementation follows the same arithmetic in the same order, so they differ only by the
/// device's rounding.
pub trait State: Sized {
    /// Number of values.
    fn value_count(&self) -> usize;
    /// `base + h·(Σ_m c_m·k_m)` (just `h·Σ` without a base), the sum taken in the order given.
    fn combine(base: Option<&Self>, h: f64, terms: &[(f64, &Self)]) -> Result<Self, String>;
    /// Whether every value is finite.
    fn all_finite(&self) -> Result<bool, String>;
    /// The weighted norm of the module documentation: per row the RMS of
    /// `v_i / (atol + rtol·max(|a_i|, |b_i|))`, then the largest over rows; NaN if a row's is.
    fn norm(v: &Self, a: &Self, b: &Self, row_len: usize, tol: Tolerance) -> Result<f64, String>;
}

impl State for Vec<f64> {
    fn value_count(&self) -> usize {
        self.len()
    }

    fn combine(base: Option<&Self>, h: f64, terms: &[(f64, &Self)]) -> Result<Self, String> {
        let n = terms.first().map_or(0, |(_, k)| k.value_count());
        Ok((0..n)
            .map(|j| {
                let mut sum = terms[0].0 * terms[0].1[j];
                for (c, k) in &terms[1..] {
                    sum += c * k[j];
                }
                match base {
                    Some(x) => x[j] + h * sum,
                    None => h * sum,
                }
            })
            .collect())
    }

    fn all_finite(&self) -> Result<bool, String> {
        Ok(all_finite(self))
    }

    fn norm(v: &Self, a: &Self, b: &Self, row_len: usize, tol: Tolerance) -> Result<f64, String> {
        let mut worst: f64 = 0.0;
        for start in (0..a.len()).step_by(row_len) {
            let mut sum = 0.0;
            for i in start..start + row_len {
                let scale = tol.atol + tol.rtol * a[i].abs().max(b[i].abs());
                let r = v[i] / scale;
                sum += r * r;
            }
            let rms = (sum / row_len as f64).sqrt();
            // `max` ignores NaN: keep it visible so the caller can report it.
            if rms.is_nan() {
                return Ok(f64::NAN);
            }
            worst = worst.max(rms);
        }
        Ok(worst)
    }
}

/// Integrates `dx/dt = f(x, t)` from `t0` to `t1` (`t1 > t0`) with the whole state as one sample
/// (HNW's RMS error norm over all components), at most [`MAX_STEPS`] steps.
pub fn integrate<E>(
    x0: &[f64],
    t0: f64,
    t1: f64,
    tol: Tolerance,
    f: impl FnMut(&[f64], f64) -> Result<Vec<f64>, E>,
) -> Result<Solution, Dopri5Error<E>> {
    integrate_rows(x0, x0.len(), t0, t1, tol, MAX_STEPS, f)
}

/// Integrates a batch stepped together: `x0` holds rows of `row_len` values, and the error norm
/// is the worst row's RMS norm (see the [module documentation](self)). `f` is called with the
/// whole batch. Fails with [`Dopri5Error::TooManySteps`] after `max_steps` steps.
pub fn integrate_rows<E>(
    x0: &[f64],
    row_len: usize,
    t0: f64,
    t1: f64,
    tol: Tolerance,
    max_steps: usize,
    mut f: impl FnMut(&[f64], f64) -> Result<Vec<f64>, E>,
) -> Result<Solution, Dopri5Error<E>> {
    check_input(x0, row_len, t0, t1, tol)?;
    integrate_state(x0.to_vec(), row_len, t0, t1, tol, max_steps, |x, t| f(x, t))
}

/// The method on any [`State`]: `x0` holds rows of `row_len` values, stepped together. The
/// caller has checked the input ([`check_interval`], and that `x0` is non-empty, whole rows
/// and finite), as [`integrate_rows`] does for a host vector.
pub fn integrate_state<S: State, E>(
    x0: S,
    row_len: usize,
    t0: f64,
    t1: f64,
    tol: Tolerance,
    max_steps: usize,
    mut f: impl FnMut(&S, f64) -> Result<S, E>,
) -> Result<Solution<S>, Dopri5Error<E>> {
    let n = x0.value_count();
    let norm = |v: &S, a: &S, b: &S, t: f64| {
        S::norm(v, a, b, row_len, tol).map_err(|error| Dopri5Error::Device { t, error })
    };
    let finite = |v: &S, t: f64| {
        v.all_finite()
            .map_err(|error| Dopri5Error::Device { t, error })
    };
    let combine = |base: Option<&S>, h: f64, terms: &[(f64, &S)], t: f64| {
        S::combine(base, h, terms).map_err(|error| Dopri5Error::Device { t, error })
    };
    let mut nfe = 0usize;
    let mut call = |x: &S, t: f64| -> Result<S, Dopri5Error<E>> {
        nfe += 1;
        let k = f(x, t).map_err(|error| Dopri5Error::Callback { t, error })?;
        if k.value_count() != n {
            return Err(Dopri5Error::WrongLength {
                t,
                expected: n,
                got: k.value_count(),
            });
        }
        if !finite(&k, t)? {
            return Err(Dopri5Error::NonFinite { t });
        }
        Ok(k)
    };

    let mut x = x0;
    let mut t = t0;
    let mut k1 = call(&x, t)?;
    let mut h = {
        // HNW's starting step size (II.4): from the sizes of `x0`, `f(x0)` and a
        // finite-difference estimate of the second derivative (one call of `f`).
        let span = t1 - t0;
        let d0 = norm(&x, &x, &x, t0)?;
        let d1 = norm(&k1, &x, &x, t0)?;
        let h0 = if d0 < 1e-5 || d1 < 1e-5 {
            1e-6
        } else {
            0.01 * d0 / d1
        }
        .min(span);
        let x1 = combine(Some(&x), h0, &[(1.0, &k1)], t0)?;
        let f1 = call(&x1, t0 + h0)?;
        let difference = combine(None, 1.0, &[(1.0, &f1), (-1.0, &k1)], t0)?;
        let d2 = norm(&difference, &x, &x, t0)? / h0;
        let d = d1.max(d2);
        let h1 = if d <= 1e-15 {
            (h0 * 1e-3).max(1e-6)
        } else {
            (0.01 / d).powf(CONTROL_EXPONENT)
        };
        (100.0 * h0).min(h1).min(span)
    };

    let mut k: Vec<S> = Vec::with_capacity(7);
    let mut accepted = 0usize;
    let mut rejected = 0usize;
    let mut after_rejection = false;
    let span = t1 - t0;
    loop {
        if accepted + rejected >= max_steps {
            return Err(Dopri5Error::TooManySteps { t, max_steps });
        }
        if h.is_nan() || h <= 10.0 * f64::EPSILON * t.abs().max(span) {
            return Err(Dopri5Error::StepSizeUnderflow { t, h });
        }
        // Land exactly on t1, stretching a step that would leave a sliver.
        let last = t + 1.01 * h >= t1;
        if last {
            h = t1 - t;
        }

        // Stages 2..7; stage 1 is k1 (FSAL). k[i − 1] holds stage i + 1's slope.
        k.clear();
        let mut stage = None;
        for i in 1..7 {
            let terms: Vec<(f64, &S)> = std::iter::once(&k1)
                .chain(&k)
                .enumerate()
                .map(|(m, km)| (A[i][m], km))
                .collect();
            let input = combine(Some(&x), h, &terms, t)?;
            let t_stage = if i == 6 { t + h } else { t + C[i] * h };
            k.push(call(&input, t_stage)?);
            stage = Some(input);
        }
        // The last stage's input is the 5th-order solution x̃ (A's last row = B5); k[5] = f(x̃).
        let x_new = stage.expect("six stages ran");
        if !finite(&x_new, t + h)? {
            return Err(Dopri5Error::NonFinite { t: t + h });
        }
        // The error estimate h·Σ e_i k_i (e_2 = 0 is left out).
        let estimate = combine(
            None,
            h,
            &[
                (E[0], &k1),
                (E[2], &k[1]),
                (E[3], &k[2]),
                (E[4], &k[3]),
                (E[5], &k[4]),
                (E[6], &k[5]),
            ],
            t,
        )?;
        let err = norm(&estimate, &x, &x_new, t)?;
        if !err.is_finite() {
            return Err(Dopri5Error::NonFinite { t: t + h });
        }
        let factor = if err == 0.0 {
            FACTOR_MAX
        } else {
            (SAFETY * err.powf(-CONTROL_EXPONENT)).clamp(FACTOR_MIN, FACTOR_MAX)
        };
        if err <= 1.0 {
            accepted += 1;
            x = x_new;
            k1 = k.pop().expect("six stages ran");
            if last {
                break;
            }
            t += h;
            h *= if after_rejection {
                factor.min(1.0)
            } else {
                factor
            };
            after_rejection = false;
        } else {
            rejected += 1;
            after_rejection = true;
            h *= factor.min(1.0);
        }
    }
    Ok(Solution {
        x,
        nfe,
        accepted,
        rejected,
    })
}

/// Refuses what cannot be integrated, before any call of `f`.
fn check_input<E>(
    x0: &[f64],
    row_len: usize,
    t0: f64,
    t1: f64,
    tol: Tolerance,
) -> Result<(), Dopri5Error<E>> {
    let bad = |problem: String| Err(Dopri5Error::BadInput(problem));
    if x0.is_empty() {
        return bad("the initial state is empty".into());
    }
    if row_len == 0 || !x0.len().is_multiple_of(row_len) {
        return bad(format!(
            "the state's {} values are not whole rows of {row_len}",
            x0.len()
        ));
    }
    check_interval(t0, t1, tol)?;
    if let Some(i) = x0.iter().position(|v| !v.is_finite()) {
        return bad(format!(
            "the initial state has a non-finite value ({}) at index {i}",
            x0[i]
        ));
    }
    Ok(())
}

/// Refuses an interval that does not go forward and tolerances that are not finite and positive
/// (the checks that do not look at the state).
pub fn check_interval<E>(t0: f64, t1: f64, tol: Tolerance) -> Result<(), Dopri5Error<E>> {
    let bad = |problem: String| Err(Dopri5Error::BadInput(problem));
    if !(t0.is_finite() && t1.is_finite() && t1 > t0) {
        return bad(format!(
            "integrates forward from t0 to t1 > t0, got t0 = {t0}, t1 = {t1}"
        ));
    }
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !(positive(tol.rtol) && positive(tol.atol)) {
        return bad(format!(
            "tolerances must be finite and positive, got rtol = {}, atol = {}",
            tol.rtol, tol.atol
        ));
    }
    Ok(())
}

fn all_finite(values: &[f64]) -> bool {
    values.iter().all(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn tol(t: f64) -> Tolerance {
        Tolerance { rtol: t, atol: t }
    }

    /// Integrates with `f`, counting its calls; returns the solution and the count.
    fn counted(
        x0: &[f64],
        t1: f64,
        tolerance: Tolerance,
        mut f: impl FnMut(&[f64], f64) -> Vec<f64>,
    ) -> (Solution, usize) {
        let mut calls = 0;
        let solution = integrate::<Infallible>(x0, 0.0, t1, tolerance, |x, t| {
            calls += 1;
            Ok(f(x, t))
        })
        .unwrap();
        (solution, calls)
    }

    /// Largest error relative to the tolerance's scale at the exact solution.
    fn scaled_error(x: &[f64], exact: &[f64], t: f64) -> f64 {
        x.iter()
            .zip(exact)
            .map(|(a, b)| (a - b).abs() / (t + t * b.abs()))
            .fold(0.0, f64::max)
    }

    #[test]
    fn tableau_rows_sum_to_nodes() {
        for (i, row) in A.iter().enumerate() {
            let sum: f64 = row.iter().sum();
            assert!((sum - C[i]).abs() < 1e-14, "row {i}: {sum} vs c = {}", C[i]);
        }
        // FSAL: the last stage is evaluated at the 5th-order solution.
        for j in 0..6 {
            assert_eq!(A[6][j], B5[j]);
        }
        for j in 0..7 {
            assert!((E[j] - (B5[j] - B4[j])).abs() < 1e-16, "e_{j}");
        }
    }

    #[test]
    fn weights_satisfy_the_order_conditions() {
        let dot = |b: &[f64; 7], v: &dyn Fn(usize) -> f64| (0..7).map(|i| b[i] * v(i)).sum();
        let ac = |i: usize| (0..6).map(|j| A[i][j] * C[j]).sum::<f64>();
        let ac2 = |i: usize| (0..6).map(|j| A[i][j] * C[j] * C[j]).sum::<f64>();
        // Quadrature conditions Σ b_i c_i^(q−1) = 1/q: up to q = 5 for b, q = 4 for b̂.
        for q in 1..=5 {
            let v = |i: usize| C[i].powi(q - 1);
            let s: f64 = dot(&B5, &v);
            assert!((s - 1.0 / q as f64).abs() < 1e-14, "b, q = {q}: {s}");
            if q <= 4 {
                let s: f64 = dot(&B4, &v);
                assert!((s - 1.0 / q as f64).abs() < 1e-14, "b̂, q = {q}: {s}");
            }
        }
        // Some tree conditions: Σ b_i a_ij c_j = 1/6, Σ b_i c_i a_ij c_j = 1/8,
        // Σ b_i a_ij c_j² = 1/12 (order 3 and 4), and Σ b_i c_i² a_ij c_j = 1/10 (order 5).
        let s: f64 = dot(&B5, &ac);
        assert!((s - 1.0 / 6.0).abs() < 1e-14, "{s}");
        let s: f64 = dot(&B5, &|i| C[i] * ac(i));
        assert!((s - 1.0 / 8.0).abs() < 1e-14, "{s}");
        let s: f64 = dot(&B5, &ac2);
        assert!((s - 1.0 / 12.0).abs() < 1e-14, "{s}");
        let s: f64 = dot(&B5, &|i| C[i] * C[i] * ac(i));
        assert!((s - 1.0 / 10.0).abs() < 1e-14, "{s}");
    }

    #[test]
    fn exponential_decay_and_growth_within_tolerance() {
        for lambda in [-1.3, 0.7] {
            let mut previous = f64::INFINITY;
            for t in [1e-4, 1e-6, 1e-8] {
                let (s, calls) = counted(&[1.0], 2.0, tol(t), |x, _| vec![lambda * x[0]]);
                let exact = [(2.0 * lambda).exp()];
                let err = (s.x[0] - exact[0]).abs();
                let scaled = scaled_error(&s.x, &exact, t);
                assert!(
                    scaled < 5.0,
                    "λ = {lambda}, tol {t}: error {err:e} ({scaled} tol)"
                );
                assert!(
                    err < previous,
                    "λ = {lambda}: error does not decrease at tol {t}"
                );
                previous = err;
                assert_eq!(s.nfe, calls);
                assert_eq!(s.nfe, 2 + 6 * (s.accepted + s.rejected));
            }
        }
    }

    #[test]
    fn rotation_within_tolerance() {
        let omega: f64 = 1.7;
        let t1 = 3.0;
        let x0 = [1.0, 0.5];
        let exact = {
            let (s, c) = (omega * t1).sin_cos();
            [c * x0[0] - s * x0[1], s * x0[0] + c * x0[1]]
        };
        let mut previous = f64::INFINITY;
        let mut previous_nfe = 0;
        for t in [1e-4, 1e-6, 1e-8] {
            let (s, calls) = counted(&x0, t1, tol(t), |x, _| vec![-omega * x[1], omega * x[0]]);
            let scaled = scaled_error(&s.x, &exact, t);
            assert!(scaled < 10.0, "tol {t}: {scaled} tol");
            let err = scaled * t;
            assert!(err < previous, "error does not decrease at tol {t}");
            assert!(s.nfe > previous_nfe, "tighter tolerance, fewer steps");
            previous = err;
            previous_nfe = s.nfe;
            assert_eq!(s.nfe, calls);
        }
    }

    #[test]
    fn time_dependent_right_hand_side() {
        // dx/dt = cos(t)·x, x(0) = 1: x(t) = exp(sin t). Exercises the stage times.
        let (s, _) = counted(&[1.0], 2.5, tol(1e-8), |x, t| vec![t.cos() * x[0]]);
        let exact = [2.5f64.sin().exp()];
        assert!(scaled_error(&s.x, &exact, 1e-8) < 10.0, "{:?}", s.x);
    }

    #[test]
    fn rows_are_each_held_to_the_tolerance() {
        // One hard row (fast decay) among easy ones: the per-row norm is at least as strict as
        // the RMS over the batch, so it takes at least as many steps and stays within tolerance.
        let rates = [-0.1, -0.1, -0.1, -0.1, -0.1, -0.1, -0.1, -6.0];
        let f = |x: &[f64], _t: f64| -> Result<Vec<f64>, Infallible> {
            Ok(x.iter().zip(&rates).map(|(x, r)| r * x).collect())
        };
        let x0 = [1.0; 8];
        let t = 1e-6;
        let per_row = integrate_rows(&x0, 1, 0.0, 1.0, tol(t), MAX_STEPS, f).unwrap();
        let whole = integrate(&x0, 0.0, 1.0, tol(t), f).unwrap();
        assert!(per_row.nfe >= whole.nfe);
        let exact: Vec<f64> = rates.iter().map(|r| r.exp()).collect();
        assert!(scaled_error(&per_row.x, &exact, t) < 5.0);
    }

    #[test]
    fn a_failing_callback_propagates() {
        let mut calls = 0;
        let result = integrate(&[1.0], 0.0, 1.0, tol(1e-6), |x, t| {
            calls += 1;
            if calls == 5 {
                Err(format!("broken at t = {t}"))
            } else {
                Ok(vec![-x[0]])
            }
        });
        match result {
            Err(Dopri5Error::Callback { error, .. }) => assert!(error.starts_with("broken")),
            other => panic!("expected the callback's error, got {other:?}"),
        }
        assert_eq!(calls, 5, "stops at the first failure");
    }

    #[test]
    fn bad_input_is_refused_before_any_call() {
        let mut calls = 0;
        let mut f = |x: &[f64], _t: f64| -> Result<Vec<f64>, Infallible> {
            calls += 1;
            Ok(x.to_vec())
        };
        let cases: Vec<(Vec<f64>, f64, f64, Tolerance)> = vec![
            (vec![], 0.0, 1.0, tol(1e-6)),
            (vec![1.0], 1.0, 1.0, tol(1e-6)),
            (vec![1.0], 1.0, 0.0, tol(1e-6)),
            (vec![1.0], 0.0, f64::NAN, tol(1e-6)),
            (vec![1.0], 0.0, 1.0, tol(0.0)),
            (vec![1.0], 0.0, 1.0, tol(f64::INFINITY)),
            (vec![f64::NAN], 0.0, 1.0, tol(1e-6)),
        ];
        for (x0, t0, t1, tolerance) in cases {
            let result = integrate(&x0, t0, t1, tolerance, &mut f);
            assert!(
                matches!(result, Err(Dopri5Error::BadInput(_))),
                "{x0:?} {t0} {t1} {tolerance:?}: {result:?}"
            );
        }
        let result = integrate_rows(&[1.0; 3], 2, 0.0, 1.0, tol(1e-6), MAX_STEPS, &mut f);
        assert!(matches!(result, Err(Dopri5Error::BadInput(_))));
        assert_eq!(calls, 0);
    }

    #[test]
    fn blow_up_stops_with_an_error() {
        // dx/dt = x², x(0) = 1: x = 1/(1 − t) blows up at t = 1.
        let result =
            integrate::<Infallible>(&[1.0], 0.0, 2.0, tol(1e-6), |x, _| Ok(vec![x[0] * x[0]]));
        match result {
            Err(Dopri5Error::StepSizeUnderflow { t, .. })
            | Err(Dopri5Error::NonFinite { t })
            | Err(Dopri5Error::TooManySteps { t, .. }) => {
                assert!((0.99..=1.01).contains(&t), "stopped at t = {t}")
            }
            other => panic!("expected a failure near t = 1, got {other:?}"),
        }
    }

    #[test]
    fn non_finite_and_wrong_length_outputs_are_errors() {
        let result = integrate::<Infallible>(&[1.0], 0.0, 1.0, tol(1e-6), |x, t| {
            Ok(vec![if t > 0.3 { f64::NAN } else { -x[0] }])
        });
        assert!(
            matches!(result, Err(Dopri5Error::NonFinite { .. })),
            "{result:?}"
        );
        let result =
            integrate::<Infallible>(&[1.0], 0.0, 1.0, tol(1e-6), |_, _| Ok(vec![1.0, 2.0]));
        assert!(
            matches!(
                result,
                Err(Dopri5Error::WrongLength {
                    expected: 1,
                    got: 2,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn too_many_steps_is_an_error() {
        let result = integrate_rows::<Infallible>(&[1.0], 1, 0.0, 10.0, tol(1e-10), 5, |x, _| {
            Ok(vec![-x[0]])
        });
        assert!(
            matches!(result, Err(Dopri5Error::TooManySteps { max_steps: 5, .. })),
            "{result:?}"
        );
    }

    #[test]
    fn errors_read_well() {
        let e: Dopri5Error<std::io::Error> = Dopri5Error::Callback {
            t: 0.25,
            error: std::io::Error::other("model broke"),
        };
        // The message, then its source, as an error report (anyhow's `{:#}`) prints them.
        let source = std::error::Error::source(&e).map(|s| s.to_string());
        let shown = format!("{e}: {}", source.unwrap_or_default());
        assert!(
            shown.contains("t = 0.25") && shown.contains("model broke"),
            "{shown}"
        );
    }
}
