//! How close samples are to a reference: PSNR per sample (`docs/MATH.md` §8). The distiller
//! scores solvers with it, and the page's compare view shows it. What it means for images and
//! for 2-D points: `FORMATS.md` §2.

/// PSNR of each sample `x` `[N, dim]` against `truth`, on values mapped from [−1, 1] to [0, 1]:
/// `10·log10(1/MSE)` (so `MSE_01 = MSE/4`). Identical samples give 200 dB (the MSE is floored
/// at 1e-20). Trailing values that do not fill a whole sample are ignored.
pub fn psnr(x: &[f32], truth: &[f32], dim: usize) -> Vec<f64> {
    if dim == 0 {
        return Vec::new();
    }
    x.chunks_exact(dim)
        .zip(truth.chunks_exact(dim))
        .map(|(a, b)| {
            let mse = a
                .iter()
                .zip(b)
                .map(|(p, q)| {
                    let d = f64::from(p - q) * 0.5;
                    d * d
                })
                .sum::<f64>()
                / dim as f64;
            -10.0 * libm::log10(mse.max(1e-20))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_known_errors() {
        // An error of 0.2 on the [−1, 1] scale is 0.1 on [0, 1]: MSE 0.01, 20 dB.
        let x = [0.2f32, -0.2, 0.2, -0.2];
        let truth = [0.0f32; 4];
        let p = psnr(&x, &truth, 2);
        assert!(
            (p[0] - 20.0).abs() < 1e-6 && (p[1] - 20.0).abs() < 1e-6,
            "{p:?}"
        );
        assert_eq!(psnr(&truth, &truth, 2), [200.0, 200.0]);
        assert!(psnr(&x, &truth, 0).is_empty());
    }
}
