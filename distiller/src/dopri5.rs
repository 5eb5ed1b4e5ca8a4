//! DOPRI5 with its state on a device: the distiller's candle tensor as a [`State`] of the
//! runtime's adaptive Dormand–Prince 5(4) ([`web_sampler::dopri5`], whose host `Vec<f64>` state
//! is the reference; the step-size control is written once, there). `bns truth --device cuda`
//! keeps the batch on the GPU and brings back only the per-row error norms.

use candle_core::{DType, Tensor};

pub use web_sampler::dopri5::*;

/// The state as an `f64` tensor `[rows, row_len]` on its device (a wrapper, since both the
/// trait and the tensor type are another crate's).
#[derive(Clone, Debug)]
pub struct DeviceState(pub Tensor);

impl State for DeviceState {
    fn value_count(&self) -> usize {
        self.0.elem_count()
    }

    fn combine(base: Option<&Self>, h: f64, terms: &[(f64, &Self)]) -> Result<Self, String> {
        let run = || -> candle_core::Result<Tensor> {
            let mut sum = terms[0].1 .0.affine(terms[0].0, 0.0)?;
            for (c, k) in &terms[1..] {
                sum = (sum + k.0.affine(*c, 0.0)?)?;
            }
            let step = sum.affine(h, 0.0)?;
            match base {
                Some(x) => &x.0 + step,
                None => Ok(step),
            }
        };
        run().map(DeviceState).map_err(|e| e.to_string())
    }

    fn all_finite(&self) -> Result<bool, String> {
        // 0·x is 0 for finite x and NaN for ±∞ and NaN, so the sum is finite iff every x is.
        let run = || self.0.affine(0.0, 0.0)?.sum_all()?.to_scalar::<f64>();
        run().map(f64::is_finite).map_err(|e| e.to_string())
    }

    fn norm(v: &Self, a: &Self, b: &Self, row_len: usize, tol: Tolerance) -> Result<f64, String> {
        let run = || -> candle_core::Result<Vec<f64>> {
            let rows = a.0.elem_count() / row_len;
            let scale =
                a.0.abs()?
                    .maximum(&b.0.abs()?)?
                    .affine(tol.rtol, tol.atol)?;
            let r = (&v.0 / scale)?.reshape((rows, row_len))?;
            r.sqr()?.mean(1)?.sqrt()?.to_vec1::<f64>()
        };
        let rms = run().map_err(|e| e.to_string())?;
        if rms.iter().any(|r| r.is_nan()) {
            return Ok(f64::NAN);
        }
        Ok(rms.into_iter().fold(0.0, f64::max))
    }
}

/// [`integrate_rows`] for a state on a device: `x0` an `f64` tensor `[rows, row_len]`, `f` the
/// batch's right-hand side as a tensor of the same shape. The input checks the host does before
/// the first call of `f` are made on the device's values.
pub fn integrate_tensor<E>(
    x0: &Tensor,
    t0: f64,
    t1: f64,
    tol: Tolerance,
    max_steps: usize,
    mut f: impl FnMut(&Tensor, f64) -> Result<Tensor, E>,
) -> Result<TensorSolution, Dopri5Error<E>> {
    let bad = |problem: String| Dopri5Error::BadInput(problem);
    let (rows, row_len) = x0.dims2().map_err(|_| {
        bad(format!(
            "the state must be [rows, row_len], got {:?}",
            x0.dims()
        ))
    })?;
    if x0.dtype() != DType::F64 {
        return Err(bad(format!("the state must be f64, got {:?}", x0.dtype())));
    }
    check_interval(t0, t1, tol)?;
    if rows == 0 || row_len == 0 {
        return Err(bad("the initial state is empty".into()));
    }
    let x0 = DeviceState(x0.clone());
    if !x0
        .all_finite()
        .map_err(|error| Dopri5Error::Device { t: t0, error })?
    {
        return Err(bad("the initial state has a non-finite value".into()));
    }
    let solution = integrate_state(x0, row_len, t0, t1, tol, max_steps, |x: &DeviceState, t| {
        f(&x.0, t).map(DeviceState)
    })?;
    Ok(Solution {
        x: solution.x.0,
        nfe: solution.nfe,
        accepted: solution.accepted,
        rejected: solution.rejected,
    })
}

/// A [`Solution`] whose state stayed on a device.
pub type TensorSolution = Solution<Tensor>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn tol(t: f64) -> Tolerance {
        Tolerance { rtol: t, atol: t }
    }

    /// Largest error relative to the tolerance's scale at the exact solution.
    fn scaled_error(x: &[f64], exact: &[f64], t: f64) -> f64 {
        x.iter()
            .zip(exact)
            .map(|(a, b)| (a - b).abs() / (t + t * b.abs()))
            .fold(0.0, f64::max)
    }

    #[test]
    fn a_tensor_state_steps_like_the_host_state() {
        // Rows of a linear time-dependent system, x' = r·x·cos(t), on the host and as a
        // candle tensor: the same steps, the same values up to the device's summation order.
        let device = candle_core::Device::Cpu;
        let (rows, row_len) = (3, 4);
        let rates: Vec<f64> = (0..rows * row_len).map(|i| -2.0 + 0.3 * i as f64).collect();
        let x0: Vec<f64> = (0..rows * row_len).map(|i| 1.0 + 0.1 * i as f64).collect();
        let host = integrate_rows(&x0, row_len, 0.0, 1.5, tol(1e-7), MAX_STEPS, |x, t| {
            Ok::<_, Infallible>(x.iter().zip(&rates).map(|(x, r)| r * x * t.cos()).collect())
        })
        .unwrap();
        let r = Tensor::from_slice(&rates, (rows, row_len), &device).unwrap();
        let x0t = Tensor::from_slice(&x0, (rows, row_len), &device).unwrap();
        let on_device = integrate_tensor(&x0t, 0.0, 1.5, tol(1e-7), MAX_STEPS, |x, t| {
            (x * &r)?.affine(t.cos(), 0.0)
        })
        .unwrap();
        assert_eq!(
            (on_device.nfe, on_device.accepted, on_device.rejected),
            (host.nfe, host.accepted, host.rejected)
        );
        let values: Vec<f64> = on_device.x.flatten_all().unwrap().to_vec1().unwrap();
        for (a, b) in values.iter().zip(&host.x) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
        }
        // x(t) = x0·exp(r·sin t).
        let exact: Vec<f64> = x0
            .iter()
            .zip(&rates)
            .map(|(x, r)| x * (r * 1.5f64.sin()).exp())
            .collect();
        assert!(scaled_error(&values, &exact, 1e-7) < 10.0);

        // The tensor path's own input checks.
        let f32_state = x0t.to_dtype(candle_core::DType::F32).unwrap();
        let bad = integrate_tensor(&f32_state, 0.0, 1.0, tol(1e-6), MAX_STEPS, |x, _| {
            Ok::<_, candle_core::Error>(x.clone())
        });
        assert!(matches!(bad, Err(Dopri5Error::BadInput(ref m)) if m.contains("f64")));
        let with_nan = Tensor::from_slice(&[1.0, f64::NAN], (1, 2), &device).unwrap();
        let bad = integrate_tensor(&with_nan, 0.0, 1.0, tol(1e-6), MAX_STEPS, |x, _| {
            Ok::<_, candle_core::Error>(x.clone())
        });
        assert!(matches!(bad, Err(Dopri5Error::BadInput(ref m)) if m.contains("non-finite")));
        let blow_up = integrate_tensor(&x0t, 0.0, 3.0, tol(1e-6), MAX_STEPS, |x, _| x.sqr());
        assert!(
            matches!(
                blow_up,
                Err(Dopri5Error::NonFinite { .. }
                    | Dopri5Error::StepSizeUnderflow { .. }
                    | Dopri5Error::TooManySteps { .. })
            ),
            "{blow_up:?}"
        );
    }
}
