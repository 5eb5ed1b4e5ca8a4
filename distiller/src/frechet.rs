//! Distances between two sets of samples, for `bns eval`'s quality-and-diversity figures
//! (`docs/MATH.md` §8):
//!
//! * the **Fréchet distance** between Gaussians fitted to two sets of feature vectors,
//!   `|μ1−μ2|² + Tr(Σ1 + Σ2 − 2(Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2})` — the formula of FID, here applied
//!   to the features of the project's own small classifier ([`crate::classifier`]), so the figure
//!   is *not* Inception FID and is comparable only with itself;
//! * the **sliced Wasserstein distance** between two point sets, for 2-D data, where the points
//!   themselves are the features.
//!
//! Everything is computed in f64. The matrix square roots come from a symmetric eigen-decomposition
//! by cyclic Jacobi rotations, which is exact to rounding for the symmetric positive semi-definite
//! matrices used here (a few hundred rows at most).

use web_sampler::noise::Noise;

/// A Gaussian fitted to `count` rows of `dim` values: their mean and their (unbiased, `n − 1`)
/// covariance, `dim × dim` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianFit {
    pub dim: usize,
    pub count: usize,
    pub mean: Vec<f64>,
    pub covariance: Vec<f64>,
}

impl GaussianFit {
    /// Fits the rows `[count, dim]` (row-major). Needs at least two rows, all values finite.
    pub fn of_rows(rows: &[f32], dim: usize) -> Result<GaussianFit, String> {
        if dim == 0 || !rows.len().is_multiple_of(dim) {
            return Err(format!(
                "{} values are not rows of {dim} features",
                rows.len()
            ));
        }
        let count = rows.len() / dim;
        if count < 2 {
            return Err(format!(
                "a covariance needs at least 2 samples, got {count}"
            ));
        }
        if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "sample {} has a non-finite feature ({})",
                i / dim,
                rows[i]
            ));
        }
        let mut mean = vec![0.0f64; dim];
        for row in rows.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= count as f64);
        // Upper triangle of Σ (x−μ)(x−μ)ᵀ, then mirrored.
        let mut covariance = vec![0.0f64; dim * dim];
        let mut centred = vec![0.0f64; dim];
        for row in rows.chunks_exact(dim) {
            for ((c, &v), m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = f64::from(v) - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                let out = &mut covariance[i * dim + i..(i + 1) * dim];
                for (o, &cj) in out.iter_mut().zip(&centred[i..]) {
                    *o += ci * cj;
                }
            }
        }
        let scale = 1.0 / (count - 1) as f64;
        for i in 0..dim {
            for j in i..dim {
                let v = covariance[i * dim + j] * scale;
                covariance[i * dim + j] = v;
                covariance[j * dim + i] = v;
            }
        }
        Ok(GaussianFit {
            dim,
            count,
            mean,
            covariance,
        })
    }
}

/// The Fréchet distance between two fitted Gaussians,
/// `|μ1−μ2|² + Tr Σ1 + Tr Σ2 − 2·Tr (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}`. Tiny negative values from
/// rounding are reported as 0.
pub fn frechet_distance(a: &GaussianFit, b: &GaussianFit) -> Result<f64, String> {
    FrechetReference::new(a.clone()).distance(b)
}

/// One side of many Fréchet distances, with its covariance's square root computed once (the
/// trace term is symmetric in the two Gaussians, so the fixed side is the one under the root).
#[derive(Clone, Debug)]
pub struct FrechetReference {
    fit: GaussianFit,
    /// `Σ^{1/2}`, `dim × dim` row-major.
    root: Vec<f64>,
}

impl FrechetReference {
    pub fn new(fit: GaussianFit) -> FrechetReference {
        let root = psd_sqrt(&fit.covariance, fit.dim);
        FrechetReference { fit, root }
    }

    /// The Fréchet distance between this Gaussian and `other`.
    pub fn distance(&self, other: &GaussianFit) -> Result<f64, String> {
        let a = &self.fit;
        if a.dim != other.dim {
            return Err(format!(
                "cannot compare features of {} and {} dimensions",
                a.dim, other.dim
            ));
        }
        let n = a.dim;
        let mean_term: f64 = a
            .mean
            .iter()
            .zip(&other.mean)
            .map(|(x, y)| (x - y) * (x - y))
            .sum();
        let trace = |m: &[f64]| (0..n).map(|i| m[i * n + i]).sum::<f64>();
        let product = multiply(&multiply(&self.root, &other.covariance, n), &self.root, n);
        let (eigenvalues, _) = symmetric_eigen(&product, n);
        let cross: f64 = eigenvalues.iter().map(|&l| l.max(0.0).sqrt()).sum();
        let distance = mean_term + trace(&a.covariance) + trace(&other.covariance) - 2.0 * cross;
        if !distance.is_finite() {
            return Err(format!("the Fréchet distance is not finite ({distance})"));
        }
        Ok(distance.max(0.0))
    }
}

/// Eigenvalues and eigenvectors of a symmetric `n × n` matrix (row-major; only its symmetric
/// part is used) by cyclic Jacobi rotations. Returns the eigenvalues (unsorted) and the
/// eigenvectors as the columns of an `n × n` row-major matrix `V`, so that `A = V·diag(λ)·Vᵀ`.
pub fn symmetric_eigen(matrix: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = 0.5 * (matrix[i * n + j] + matrix[j * n + i]);
        }
    }
    let mut v = vec![0.0f64; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    let total: f64 = a.iter().map(|x| x * x).sum();
    const MAX_SWEEPS: usize = 100;
    for _ in 0..MAX_SWEEPS {
        let off: f64 = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off <= 1e-30 * total || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                let (app, aqq) = (a[p * n + p], a[q * n + q]);
                // An element negligible next to both diagonal entries is set to zero (NR §11.1).
                if apq == 0.0 || apq.abs() < 1e-18 * app.abs().min(aqq.abs()) {
                    a[p * n + q] = 0.0;
                    a[q * n + p] = 0.0;
                    continue;
                }
                // The rotation that zeroes a_pq (Numerical Recipes §11.1): t = tan φ.
                let theta = (aqq - app) / (2.0 * apq);
                let t = if theta.abs() > 1e150 {
                    0.5 / theta
                } else {
                    theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
                };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A' = Jᵀ·A·J changes rows and columns p and q only; A stays symmetric.
                for k in 0..n {
                    if k == p || k == q {
                        continue;
                    }
                    let (kp, kq) = (a[k * n + p], a[k * n + q]);
                    let (new_kp, new_kq) = (c * kp - s * kq, s * kp + c * kq);
                    a[k * n + p] = new_kp;
                    a[p * n + k] = new_kp;
                    a[k * n + q] = new_kq;
                    a[q * n + k] = new_kq;
                }
                a[p * n + p] = app - t * apq;
                a[q * n + q] = aqq + t * apq;
                a[p * n + q] = 0.0;
                a[q * n + p] = 0.0;
                for k in 0..n {
                    let (kp, kq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * kp - s * kq;
                    v[k * n + q] = s * kp + c * kq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// The square root of a symmetric positive semi-definite matrix, `V·diag(√max(λ, 0))·Vᵀ`.
fn psd_sqrt(matrix: &[f64], n: usize) -> Vec<f64> {
    let (values, vectors) = symmetric_eigen(matrix, n);
    let roots: Vec<f64> = values.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut out = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let s: f64 = (0..n)
                .map(|k| vectors[i * n + k] * roots[k] * vectors[j * n + k])
                .sum();
            out[i * n + j] = s;
            out[j * n + i] = s;
        }
    }
    out
}

/// `A·B` for `n × n` row-major matrices.
fn multiply(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for (o, &bkj) in out[i * n..(i + 1) * n]
                .iter_mut()
                .zip(&b[k * n..(k + 1) * n])
            {
                *o += aik * bkj;
            }
        }
    }
    out
}

/// The sliced Wasserstein-2 distance between point sets `a` `[N, dim]` and `b` `[M, dim]`
/// (N and M may differ): `sqrt(mean_θ W2²(θ·a, θ·b))` over `directions` random unit
/// directions θ drawn from `Noise::new(seed)`, each 1-D W2 computed exactly from the two sorted
/// projections (quantile functions). Shifting a whole set by `s` gives `sqrt(mean_θ (θ·s)²)`,
/// which tends to `|s|/√dim` as the number of directions grows.
pub fn sliced_wasserstein(
    a: &[f32],
    b: &[f32],
    dim: usize,
    directions: usize,
    seed: u64,
) -> Result<f64, String> {
    SlicedReference::new(b, dim, directions, seed)?.distance(a)
}

/// One side of many sliced Wasserstein distances: the directions and this set's sorted
/// projections on them, computed once.
#[derive(Clone, Debug)]
pub struct SlicedReference {
    dim: usize,
    /// Unit vectors θ.
    directions: Vec<Vec<f64>>,
    /// The reference set's projections on each θ, sorted.
    projections: Vec<Vec<f64>>,
}

impl SlicedReference {
    /// The reference set `points` `[M, dim]` and `directions` directions from `seed`.
    pub fn new(
        points: &[f32],
        dim: usize,
        directions: usize,
        seed: u64,
    ) -> Result<SlicedReference, String> {
        if directions == 0 {
            return Err("at least one direction is needed".into());
        }
        check_points("reference", points, dim)?;
        let mut noise = Noise::new(seed);
        let directions: Vec<Vec<f64>> = (0..directions)
            .map(|_| {
                let theta: Vec<f64> = (0..dim).map(|_| noise.gaussian()).collect();
                let norm = theta.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
                theta.into_iter().map(|v| v / norm).collect()
            })
            .collect();
        let projections = directions
            .iter()
            .map(|theta| sorted_projection(points, theta))
            .collect();
        Ok(SlicedReference {
            dim,
            directions,
            projections,
        })
    }

    /// The sliced Wasserstein-2 distance between `points` `[N, dim]` and the reference set.
    pub fn distance(&self, points: &[f32]) -> Result<f64, String> {
        check_points("compared", points, self.dim)?;
        let total: f64 = self
            .directions
            .iter()
            .zip(&self.projections)
            .map(|(theta, reference)| {
                wasserstein2_squared_sorted(&sorted_projection(points, theta), reference)
            })
            .sum();
        Ok((total / self.directions.len() as f64).sqrt())
    }
}

/// A non-empty set of finite rows of `dim` values, or an error naming the problem.
fn check_points(name: &str, points: &[f32], dim: usize) -> Result<(), String> {
    if dim == 0 || !points.len().is_multiple_of(dim) {
        return Err(format!(
            "the {name} set's {} values are not rows of {dim}",
            points.len()
        ));
    }
    if points.is_empty() {
        return Err(format!("the {name} set is empty"));
    }
    match points.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!(
            "point {} of the {name} set is not finite ({})",
            i / dim,
            points[i]
        )),
        None => Ok(()),
    }
}

/// `θ·x` for every row `x` of `points`, sorted.
fn sorted_projection(points: &[f32], theta: &[f64]) -> Vec<f64> {
    let mut p: Vec<f64> = points
        .chunks_exact(theta.len())
        .map(|row| row.iter().zip(theta).map(|(&x, t)| f64::from(x) * t).sum())
        .collect();
    p.sort_unstable_by(f64::total_cmp);
    p
}

/// `W2²` between the empirical distributions of two sorted samples: `∫₀¹ (F⁻¹(u) − G⁻¹(u))² du`,
/// the quantile functions being step functions with steps at `i/n` and `j/m` (compared in
/// integers, in units of `1/(n·m)`, so the breakpoints are exact).
fn wasserstein2_squared_sorted(x: &[f64], y: &[f64]) -> f64 {
    let (n, m) = (x.len() as u128, y.len() as u128);
    let (mut i, mut j) = (0usize, 0usize);
    let mut at = 0u128;
    let mut total = 0.0;
    while i < x.len() && j < y.len() {
        let end_x = (i as u128 + 1) * m;
        let end_y = (j as u128 + 1) * n;
        let end = end_x.min(end_y);
        let d = x[i] - y[j];
        total += (end - at) as f64 * d * d;
        at = end;
        if end_x == end {
            i += 1;
        }
        if end_y == end {
            j += 1;
        }
    }
    total / (n * m) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(mean: Vec<f64>, covariance: Vec<f64>) -> GaussianFit {
        GaussianFit {
            dim: mean.len(),
            count: 100,
            mean,
            covariance,
        }
    }

    fn diagonal(values: &[f64]) -> Vec<f64> {
        let n = values.len();
        let mut m = vec![0.0; n * n];
        values
            .iter()
            .enumerate()
            .for_each(|(i, &v)| m[i * n + i] = v);
        m
    }

    /// A random symmetric positive definite matrix `B·Bᵀ + εI`.
    fn random_spd(n: usize, seed: u64) -> Vec<f64> {
        let mut noise = Noise::new(seed);
        let b: Vec<f64> = (0..n * n).map(|_| noise.gaussian()).collect();
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                m[i * n + j] = (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum::<f64>()
                    + if i == j { 0.1 } else { 0.0 };
            }
        }
        m
    }

    #[test]
    fn jacobi_decomposes_a_symmetric_matrix() {
        let n = 12;
        let a = random_spd(n, 4);
        let (values, v) = symmetric_eigen(&a, n);
        // A·v_k = λ_k·v_k and VᵀV = I.
        for k in 0..n {
            for i in 0..n {
                let av: f64 = (0..n).map(|j| a[i * n + j] * v[j * n + k]).sum();
                assert!((av - values[k] * v[i * n + k]).abs() < 1e-9, "k={k} i={i}");
            }
            for l in 0..n {
                let dot: f64 = (0..n).map(|i| v[i * n + k] * v[i * n + l]).sum();
                let expected = if k == l { 1.0 } else { 0.0 };
                assert!((dot - expected).abs() < 1e-12);
            }
        }
        // The square root squares back.
        let root = psd_sqrt(&a, n);
        let square = multiply(&root, &root, n);
        for (s, x) in square.iter().zip(&a) {
            assert!((s - x).abs() < 1e-9 * (1.0 + x.abs()));
        }
    }

    #[test]
    fn frechet_distance_matches_closed_forms() {
        // Identical Gaussians: 0.
        let n = 16;
        let sigma = random_spd(n, 1);
        let mean: Vec<f64> = (0..n).map(|i| i as f64 * 0.1).collect();
        let a = fit(mean.clone(), sigma.clone());
        let d = frechet_distance(&a, &a).unwrap();
        assert!(d < 1e-8, "{d}");
        // Shifted means, same covariance: |δ|².
        let shifted: Vec<f64> = mean.iter().enumerate().map(|(i, m)| m + i as f64).collect();
        let expected: f64 = (0..n).map(|i| (i * i) as f64).sum();
        let d = frechet_distance(&a, &fit(shifted, sigma.clone())).unwrap();
        assert!((d - expected).abs() < 1e-8 * expected, "{d} vs {expected}");
        // Diagonal covariances: Σ (√a − √b)².
        let (da, db) = ([1.0, 4.0, 0.25, 9.0], [4.0, 1.0, 0.25, 0.0]);
        let expected: f64 = da
            .iter()
            .zip(&db)
            .map(|(x, y): (&f64, &f64)| (x.sqrt() - y.sqrt()).powi(2))
            .sum();
        let d = frechet_distance(
            &fit(vec![0.0; 4], diagonal(&da)),
            &fit(vec![0.0; 4], diagonal(&db)),
        )
        .unwrap();
        assert!((d - expected).abs() < 1e-12, "{d} vs {expected}");
        // Proportional covariances Σ2 = c·Σ1 (they commute): (1 − √c)²·Tr Σ1, plus a shift.
        let c: f64 = 2.5;
        let scaled: Vec<f64> = sigma.iter().map(|v| v * c).collect();
        let trace: f64 = (0..n).map(|i| sigma[i * n + i]).sum();
        let mut moved = mean.clone();
        moved[3] += 2.0;
        let expected = 4.0 + (1.0 - c.sqrt()).powi(2) * trace;
        let d = frechet_distance(&a, &fit(moved, scaled)).unwrap();
        assert!((d - expected).abs() < 1e-8 * expected, "{d} vs {expected}");
        // Symmetric in its arguments, and dimensions must agree.
        let b = fit(vec![1.0; n], random_spd(n, 2));
        let (ab, ba) = (
            frechet_distance(&a, &b).unwrap(),
            frechet_distance(&b, &a).unwrap(),
        );
        assert!((ab - ba).abs() < 1e-8 * ab, "{ab} vs {ba}");
        assert!(frechet_distance(&a, &fit(vec![0.0; 4], diagonal(&da))).is_err());
    }

    #[test]
    fn fitting_rows_gives_the_sample_mean_and_unbiased_covariance() {
        let rows = [1.0f32, 2.0, 3.0, 6.0, 5.0, 10.0];
        let g = GaussianFit::of_rows(&rows, 2).unwrap();
        assert_eq!(g.count, 3);
        assert_eq!(g.mean, vec![3.0, 6.0]);
        // x: 1,3,5 → var 4; y: 2,6,10 → var 16; cov 8.
        assert_eq!(g.covariance, vec![4.0, 8.0, 8.0, 16.0]);
        assert!(GaussianFit::of_rows(&rows[..2], 2).is_err());
        assert!(GaussianFit::of_rows(&rows[..5], 2).is_err());
        let mut bad = rows;
        bad[4] = f32::NAN;
        let e = GaussianFit::of_rows(&bad, 2).unwrap_err();
        assert!(e.contains("sample 2"), "{e}");
    }

    #[test]
    fn sliced_wasserstein_of_identical_and_shifted_sets() {
        let mut noise = Noise::new(9);
        let a: Vec<f32> = noise.gaussian_f32(2 * 500);
        assert_eq!(sliced_wasserstein(&a, &a, 2, 256, 0).unwrap(), 0.0);
        // A shuffled copy is the same set.
        let mut rows: Vec<[f32; 2]> = a.chunks_exact(2).map(|r| [r[0], r[1]]).collect();
        rows.reverse();
        let flipped: Vec<f32> = rows.concat();
        assert!(sliced_wasserstein(&a, &flipped, 2, 256, 0).unwrap() < 1e-12);
        // A shift s of every point: W2 along θ is exactly |θ·s|, so SW = sqrt(mean (θ·s)²),
        // which for 256 directions in 2-D is close to |s|/√2.
        let s = [3.0f32, -4.0];
        let b: Vec<f32> = a.iter().enumerate().map(|(i, v)| v + s[i % 2]).collect();
        let d = sliced_wasserstein(&a, &b, 2, 256, 0).unwrap();
        let expected = 5.0 / 2f64.sqrt();
        assert!((d - expected).abs() < 0.05 * expected, "{d} vs {expected}");
        // Sets of different sizes: two samples of one distribution are close, and a set of
        // n copies of each point equals the set itself.
        let c = Noise::new(10).gaussian_f32(2 * 2000);
        assert!(sliced_wasserstein(&a, &c, 2, 64, 1).unwrap() < 0.15);
        let doubled: Vec<f32> = a.iter().chain(&a).copied().collect();
        assert!(sliced_wasserstein(&a, &doubled, 2, 16, 1).unwrap() < 1e-12);
        // Bad input is an error, not a panic.
        assert!(sliced_wasserstein(&a, &[], 2, 8, 0).is_err());
        assert!(sliced_wasserstein(&a, &[f32::NAN, 0.0], 2, 8, 0).is_err());
        assert!(sliced_wasserstein(&a[..3], &a, 2, 8, 0).is_err());
    }

    #[test]
    fn one_dimensional_w2_is_exact() {
        // {0, 1} vs {0, 1, 2, 3}: quantiles 0|1 vs 0,1|2,3 → ∫ = ¼·0 + ¼·1 + ¼·1 + ¼·4 = 1.5.
        let w = wasserstein2_squared_sorted(&[0.0, 1.0], &[0.0, 1.0, 2.0, 3.0]);
        assert!((w - 1.5).abs() < 1e-15, "{w}");
        // {0, 3} vs {1, 2, 4}: breakpoints 1/3, 1/2, 2/3 → (1/3)·1 + (1/6)·4 + (1/6)·1 + (1/3)·1.
        let w = wasserstein2_squared_sorted(&[0.0, 3.0], &[1.0, 2.0, 4.0]);
        let expected = 1.0 / 3.0 + 4.0 / 6.0 + 1.0 / 6.0 + 1.0 / 3.0;
        assert!((w - expected).abs() < 1e-15, "{w}");
    }
}
