//! Time grids `0 = τ_0 < τ_1 < … < τ_k = 1` on which the classical solvers step
//! (`docs/MATH.md` §5.1): the uniform grid and the EDM/Karras grid (ρ = 7) mapped to flow time
//! by `t = 1/(1+σ)`.

use crate::path;
use std::fmt;
use std::str::FromStr;

/// Exponent ρ of the EDM/Karras noise schedule (Karras et al. 2022, eq. 5).
pub const EDM_RHO: f64 = 7.0;
/// Smallest EDM noise level σ_min of the schedule (before the endpoint is moved to t = 1).
pub const EDM_SIGMA_MIN: f64 = 0.002;
/// Largest EDM noise level σ_max of the schedule (before the endpoint is moved to t = 0).
pub const EDM_SIGMA_MAX: f64 = 80.0;

/// A family of time grids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grid {
    /// `τ_i = i/k`.
    Uniform,
    /// The EDM/Karras grid (Karras et al., "Elucidating the Design Space of Diffusion-Based
    /// Generative Models", NeurIPS 2022, eq. 5):
    /// `σ_i = (σ_max^{1/ρ} + i/k·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`, mapped to flow time by
    /// `τ_i = 1/(1+σ_i)` ([`path::time_of_edm_sigma`]). Since `σ_max` and `σ_min` are finite, the
    /// mapped endpoints are `1/81` and `1/1.002`; they are then set to exactly 0 and 1, because the
    /// flow starts from pure noise at t = 0 and ends at the data at t = 1. In flow time the grid
    /// is dense at both ends (about 34% of the points in [0, 0.1] and 22% in [0.9, 1]) and
    /// coarsest in the middle. The first and last steps never get shorter than `1/81` and
    /// `0.002/1.002`, so a solver on this grid does not converge to the exact flow as the
    /// number of steps grows; it is a few-step grid.
    Edm,
}

impl Grid {
    /// Every grid, in the order the UI lists them.
    pub const ALL: [Grid; 2] = [Grid::Uniform, Grid::Edm];

    /// The name used in files, on the command line and in the UI.
    pub fn name(&self) -> &'static str {
        match self {
            Grid::Uniform => "uniform",
            Grid::Edm => "edm",
        }
    }

    /// The `steps + 1` grid points `τ_0 = 0 < τ_1 < … < τ_steps = 1` (first exactly 0.0, last
    /// exactly 1.0). A grid has at least one step: `steps = 0` is treated as `steps = 1`.
    pub fn points(&self, steps: usize) -> Vec<f64> {
        let k = steps.max(1);
        let mut points: Vec<f64> = match self {
            Grid::Uniform => (0..=k).map(|i| i as f64 / k as f64).collect(),
            Grid::Edm => {
                let inv_rho = 1.0 / EDM_RHO;
                let s_max = EDM_SIGMA_MAX.powf(inv_rho);
                let s_min = EDM_SIGMA_MIN.powf(inv_rho);
                (0..=k)
                    .map(|i| {
                        let sigma = (s_max + i as f64 / k as f64 * (s_min - s_max)).powf(EDM_RHO);
                        path::time_of_edm_sigma(sigma)
                    })
                    .collect()
            }
        };
        points[0] = 0.0;
        points[k] = 1.0;
        points
    }
}

impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Grid {
    type Err = String;

    /// Parses a grid name (case-insensitive); the error lists the valid names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Grid::ALL
            .into_iter()
            .find(|g| g.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = Grid::ALL.iter().map(|g| g.name()).collect();
                format!("unknown grid {s:?} (valid: {})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_exact_and_points_strictly_increase() {
        for grid in Grid::ALL {
            for steps in [1usize, 2, 3, 4, 7, 8, 16, 33, 100, 1000] {
                let p = grid.points(steps);
                assert_eq!(p.len(), steps + 1, "{grid} {steps}");
                assert_eq!(p[0], 0.0, "{grid} {steps}");
                assert_eq!(p[steps], 1.0, "{grid} {steps}");
                for i in 0..steps {
                    assert!(p[i] < p[i + 1], "{grid} {steps}: p[{i}] = {}", p[i]);
                }
            }
            assert_eq!(grid.points(0), vec![0.0, 1.0]);
        }
    }

    #[test]
    fn uniform_grid_is_uniform() {
        let p = Grid::Uniform.points(4);
        assert_eq!(p, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn edm_interior_points_follow_the_karras_schedule() {
        // The interior points, mapped back to EDM σ = (1−t)/t, are the Karras σ_i.
        let k = 10;
        let p = Grid::Edm.points(k);
        let r = 1.0 / EDM_RHO;
        for (i, &t) in p.iter().enumerate().take(k).skip(1) {
            let sigma = (1.0 - t) / t;
            let expected = (EDM_SIGMA_MAX.powf(r)
                + i as f64 / k as f64 * (EDM_SIGMA_MIN.powf(r) - EDM_SIGMA_MAX.powf(r)))
            .powf(EDM_RHO);
            assert!((sigma - expected).abs() < 1e-9 * expected, "i = {i}");
        }
        // σ decreases geometrically-ish: the log-SNR λ = −ln σ increases along the grid.
        let lam: Vec<f64> = p[1..k].iter().map(|&t| path::lambda(t)).collect();
        assert!(lam.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn edm_grid_is_dense_at_both_ends_and_coarse_in_the_middle() {
        // In σ^{1/ρ} the grid is uniform; t = 1/(1+σ) = 0.1 at σ = 9 and 0.9 at σ = 1/9, so a
        // fraction (80^{1/7} − 9^{1/7})/(80^{1/7} − 0.002^{1/7}) ≈ 0.34 of the points lies in
        // [0, 0.1] and ≈ 0.22 in [0.9, 1]: both ends are denser than the uniform grid (0.1 each),
        // the noise end most, and the middle is coarse.
        for k in [16usize, 32, 64, 128] {
            let p = Grid::Edm.points(k);
            let frac = |lo: f64, hi: f64| {
                p.iter().filter(|&&t| (lo..=hi).contains(&t)).count() as f64 / (k + 1) as f64
            };
            let (noise_end, data_end) = (frac(0.0, 0.1), frac(0.9, 1.0));
            assert!((0.3..0.4).contains(&noise_end), "k={k}: {noise_end}");
            assert!((0.2..0.3).contains(&data_end), "k={k}: {data_end}");
            assert!(frac(0.1, 0.9) < 0.5, "k={k}");
        }
        for k in 3..=64usize {
            let p = Grid::Edm.points(k);
            let h: Vec<f64> = p.windows(2).map(|w| w[1] - w[0]).collect();
            // The longest step is in the interior ...
            let longest = (0..k).fold(0, |m, i| if h[i] > h[m] { i } else { m });
            assert!(longest > 0 && longest < k - 1, "k={k}: {h:?}");
            // ... and the end steps never shrink below the gaps that σ_max and σ_min leave:
            // first step ≥ 1/(1+σ_max), last step ≥ 1 − 1/(1+σ_min).
            assert!(h[0] >= 1.0 / (1.0 + EDM_SIGMA_MAX), "k={k}");
            assert!(h[k - 1] >= 1.0 - 1.0 / (1.0 + EDM_SIGMA_MIN), "k={k}");
        }
        // A hand-checked value: with 10 steps σ_1 ≈ 45.3, so τ_1 = 1/(1+σ_1) ≈ 0.0216.
        let p = Grid::Edm.points(10);
        assert!((p[1] - 0.0216).abs() < 5e-4, "{}", p[1]);
    }

    #[test]
    fn names_round_trip_and_errors_list_valid_names() {
        for grid in Grid::ALL {
            assert_eq!(grid.name().parse::<Grid>(), Ok(grid));
            assert_eq!(grid.name().to_uppercase().parse::<Grid>(), Ok(grid));
        }
        let err = "karras7".parse::<Grid>().unwrap_err();
        assert!(err.contains("karras7") && err.contains("uniform") && err.contains("edm"));
    }
}
