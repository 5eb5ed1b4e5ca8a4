//! Test support: an op with its own backward checked against candle's operations (forward and
//! every input's gradient) and against finite differences.

use candle_core::{Device, Tensor, Var};
use web_sampler::noise::Noise;

/// A tensor of `dims` drawn N(offset, scale²) from seed `seed`.
pub(super) fn random(seed: u64, dims: &[usize], offset: f32, scale: f32) -> Tensor {
    let len = dims.iter().product();
    let values: Vec<f32> = Noise::new(seed)
        .gaussian_f32(len)
        .iter()
        .map(|v| offset + scale * v)
        .collect();
    Tensor::from_vec(values, dims, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// The largest `|a − b| / (1 + |b|)`.
fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0, f32::max)
}

/// Checks `op` against `reference` on `inputs`:
/// * the outputs agree to `1e-5` relative;
/// * the gradients of `L = Σ y·r` (a fixed random `r`) with respect to every input agree to
///   `gradient_tolerance` relative;
/// * the gradient of `op` agrees with central differences of `L` at a few entries of every
///   input, to 1% (plus 1e-3 absolute).
pub(super) fn check(
    what: &str,
    inputs: &[Tensor],
    op: impl Fn(&[Tensor]) -> Tensor,
    reference: impl Fn(&[Tensor]) -> Tensor,
    gradient_tolerance: f32,
) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = op(&tensors);
    let expected = reference(&tensors);
    assert_eq!(y.dims(), expected.dims(), "{what}: output shape");
    let error = worst(&flat(&y), &flat(&expected));
    assert!(error <= 1e-5, "{what}: forward differs by {error:e}");

    let r = random(99, y.dims(), 0.0, 1.0);
    let loss = |y: &Tensor| (y * &r).unwrap().sum_all().unwrap();
    let grads = loss(&y).backward().unwrap();
    let expected_grads = loss(&expected).backward().unwrap();
    for (i, var) in vars.iter().enumerate() {
        let got = flat(grads.get(var).unwrap());
        let want = flat(expected_grads.get(var).unwrap());
        let error = worst(&got, &want);
        assert!(
            error <= gradient_tolerance,
            "{what}: gradient of input {i} differs by {error:e}"
        );

        let values = flat(var.as_tensor());
        let len = values.len();
        for index in [0, len / 3, (len / 2 + 1).min(len - 1), len - 1] {
            let at = |delta: f32| {
                let mut moved = values.clone();
                moved[index] += delta;
                let mut shifted = inputs.to_vec();
                shifted[i] = Tensor::from_vec(moved, var.shape(), &Device::Cpu).unwrap();
                f64::from(loss(&op(&shifted)).to_scalar::<f32>().unwrap())
            };
            let h = 1e-2;
            let numeric = ((at(h) - at(-h)) / (2.0 * f64::from(h))) as f32;
            let analytic = got[index];
            assert!(
                (analytic - numeric).abs() <= 1e-2 * analytic.abs().max(numeric.abs()) + 1e-3,
                "{what}: input {i}[{index}]: backward {analytic} vs finite differences {numeric}"
            );
        }
    }
}
