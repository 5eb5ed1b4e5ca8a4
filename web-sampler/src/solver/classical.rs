//! Classical ODE solvers written as NS tables (`docs/MATH.md` §5): Euler, midpoint, Heun, RK4,
//! variable-step Adams–Bashforth 2 and 3, and DPM-Solver++(2M) for the conditional-OT path.
//! They are the baselines a BNS solver is compared with and the initialisations it is distilled
//! from. Each constructor takes grid points `τ_0 < … < τ_k` (normally `0` to `1`, from
//! [`Grid::points`]) and returns a table whose rows reproduce the method's own update exactly.

use super::{NsTable, MAX_STEPS};
use crate::grid::Grid;
use crate::path;
use std::fmt;
use std::str::FromStr;

/// A classical solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Euler,
    Midpoint,
    Heun,
    Rk4,
    Ab2,
    Ab3,
    DpmPp2m,
}

impl Method {
    /// Every method, in the order the UI lists them.
    pub const ALL: [Method; 7] = [
        Method::Euler,
        Method::Midpoint,
        Method::Heun,
        Method::Rk4,
        Method::Ab2,
        Method::Ab3,
        Method::DpmPp2m,
    ];

    /// The name used as the solver file's `kind`, on the command line and in the UI.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Euler => "euler",
            Method::Midpoint => "midpoint",
            Method::Heun => "heun",
            Method::Rk4 => "rk4",
            Method::Ab2 => "ab2",
            Method::Ab3 => "ab3",
            Method::DpmPp2m => "dpmpp2m",
        }
    }

    /// Network evaluations per grid step: 1, 2, 2, 4, 1, 1, 1.
    pub fn stages(&self) -> usize {
        match self {
            Method::Midpoint | Method::Heun => 2,
            Method::Rk4 => 4,
            Method::Euler | Method::Ab2 | Method::Ab3 | Method::DpmPp2m => 1,
        }
    }

    /// The NS table of this method on grid points `τ_0..τ_k` (k = steps, NFE = k·stages).
    pub fn table(&self, grid: &[f64]) -> NsTable {
        match self {
            Method::Euler => euler(grid),
            Method::Midpoint => midpoint(grid),
            Method::Heun => heun(grid),
            Method::Rk4 => rk4(grid),
            Method::Ab2 => ab2(grid),
            Method::Ab3 => ab3(grid),
            Method::DpmPp2m => dpmpp2m(grid),
        }
    }

    /// The table of this method with `nfe` evaluations on `nfe / stages()` steps of `grid`.
    /// NFE must be a positive multiple of [`stages`](Self::stages) and at most
    /// [`MAX_STEPS`]: the error says e.g. `"rk4 needs an NFE that is a multiple of 4, got 6"`.
    pub fn build(&self, nfe: usize, grid: Grid) -> Result<NsTable, String> {
        let stages = self.stages();
        if nfe == 0 {
            return Err(format!("{} needs a positive NFE, got 0", self.name()));
        }
        if !nfe.is_multiple_of(stages) {
            return Err(format!(
                "{} needs an NFE that is a multiple of {stages}, got {nfe}",
                self.name()
            ));
        }
        if nfe > MAX_STEPS {
            return Err(format!("NFE {nfe} is more than the limit of {MAX_STEPS}"));
        }
        Ok(self.table(&grid.points(nfe / stages)))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;

    /// Parses a method name (case-insensitive); the error lists the valid names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Method::ALL
            .into_iter()
            .find(|m| m.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                format!("unknown method {s:?} (valid: {})", names.join(", "))
            })
    }
}

/// Builds a table row by row; coefficients not given are zero.
struct Rows {
    table: NsTable,
}

impl Rows {
    fn new() -> Self {
        Rows {
            table: NsTable {
                times: Vec::new(),
                a: Vec::new(),
                b: Vec::new(),
            },
        }
    }

    /// Appends row i: `u_i` is evaluated at `t`, and
    /// `x_{i+1} = Σ a[(j, c)]: c·x_j + Σ b[(j, c)]: c·u_j`. Indices past i are ignored.
    fn row(&mut self, t: f64, a: &[(usize, f64)], b: &[(usize, f64)]) {
        let i = self.table.a.len();
        let mut a_row = vec![0.0; i + 1];
        let mut b_row = vec![0.0; i + 1];
        for &(j, c) in a {
            if let Some(slot) = a_row.get_mut(j) {
                *slot += c;
            }
        }
        for &(j, c) in b {
            if let Some(slot) = b_row.get_mut(j) {
                *slot += c;
            }
        }
        self.table.times.push(t);
        self.table.a.push(a_row);
        self.table.b.push(b_row);
    }

    /// Appends the final time `t_n` (the last grid point; none for an empty grid).
    fn finish(mut self, grid: &[f64]) -> NsTable {
        if let Some(&last) = grid.last() {
            self.table.times.push(last);
        }
        self.table
    }
}

/// Forward Euler: `x_{m+1} = x_m + h_m·u_{τ_m}(x_m)`, i.e. `t_i = τ_i`, `a_ii = 1`,
/// `b_ii = τ_{i+1} − τ_i` (`docs/MATH.md` §5.2). On this path DDIM is the same method.
pub fn euler(grid: &[f64]) -> NsTable {
    let mut rows = Rows::new();
    for (m, w) in grid.windows(2).enumerate() {
        rows.row(w[0], &[(m, 1.0)], &[(m, w[1] - w[0])]);
    }
    rows.finish(grid)
}

/// Explicit midpoint (RK2; Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.1): each grid step
/// is two NS steps, `x_{2m+1} = x_{2m} + (h/2)·u_{2m}` with `u_{2m}` at `τ_m`, then
/// `x_{2m+2} = x_{2m} + h·u_{2m+1}` with `u_{2m+1}` at `τ_m + h/2` (a coefficient on `x_{2m}`,
/// not on `x_{2m+1}`; `docs/MATH.md` §5.2).
pub fn midpoint(grid: &[f64]) -> NsTable {
    let mut rows = Rows::new();
    for (m, w) in grid.windows(2).enumerate() {
        let (i, h) = (2 * m, w[1] - w[0]);
        rows.row(w[0], &[(i, 1.0)], &[(i, h / 2.0)]);
        rows.row(w[0] + h / 2.0, &[(i, 1.0)], &[(i + 1, h)]);
    }
    rows.finish(grid)
}

/// Heun's method, the explicit trapezoidal rule (Hairer, Nørsett & Wanner, *Solving ODEs I*,
/// §II.1): predictor `x_{2m+1} = x_{2m} + h·u_{2m}` with `u_{2m}` at `τ_m`; corrector velocity
/// `u_{2m+1}` at `(x_{2m+1}, τ_{m+1})`; `x_{2m+2} = x_{2m} + (h/2)·(u_{2m} + u_{2m+1})`.
pub fn heun(grid: &[f64]) -> NsTable {
    let mut rows = Rows::new();
    for (m, w) in grid.windows(2).enumerate() {
        let (i, h) = (2 * m, w[1] - w[0]);
        rows.row(w[0], &[(i, 1.0)], &[(i, h)]);
        rows.row(w[1], &[(i, 1.0)], &[(i, h / 2.0), (i + 1, h / 2.0)]);
    }
    rows.finish(grid)
}

/// The classical 4-stage Runge–Kutta method (Kutta 1901; Hairer, Nørsett & Wanner, *Solving
/// ODEs I*, §II.1, Table 1.2): with `x = x_{4m}` and stage velocities `k_1..k_4` at times
/// `τ_m, τ_m + h/2, τ_m + h/2, τ_{m+1}`, the stage states are the NS rows
/// `x_{4m+1} = x + (h/2)k_1`, `x_{4m+2} = x + (h/2)k_2`, `x_{4m+3} = x + h·k_3`, and
/// `x_{4m+4} = x + (h/6)(k_1 + 2k_2 + 2k_3 + k_4)`.
pub fn rk4(grid: &[f64]) -> NsTable {
    let mut rows = Rows::new();
    for (m, w) in grid.windows(2).enumerate() {
        let (i, h) = (4 * m, w[1] - w[0]);
        let half = w[0] + h / 2.0;
        rows.row(w[0], &[(i, 1.0)], &[(i, h / 2.0)]);
        rows.row(half, &[(i, 1.0)], &[(i + 1, h / 2.0)]);
        rows.row(half, &[(i, 1.0)], &[(i + 2, h)]);
        rows.row(
            w[1],
            &[(i, 1.0)],
            &[
                (i, h / 6.0),
                (i + 1, h / 3.0),
                (i + 2, h / 3.0),
                (i + 3, h / 6.0),
            ],
        );
    }
    rows.finish(grid)
}

/// `∫_{from}^{to} L_j(s) ds` for every Lagrange basis polynomial `L_j` of `nodes` (the weights
/// of the Adams formulas; Hairer, Nørsett & Wanner, *Solving ODEs I*, §III.1, eq. 1.5 for
/// variable steps). The polynomials are expanded in `s − from`, so the weights are exact up to
/// rounding for the few nodes used here.
fn lagrange_integrals(nodes: &[f64], from: f64, to: f64) -> Vec<f64> {
    let len = to - from;
    (0..nodes.len())
        .map(|j| {
            // Coefficients of L_j in powers of (s − from), lowest first.
            let mut poly = vec![1.0];
            for (m, &node) in nodes.iter().enumerate() {
                if m == j {
                    continue;
                }
                let scale = 1.0 / (nodes[j] - node);
                let root = node - from;
                let mut next = vec![0.0; poly.len() + 1];
                for (k, &c) in poly.iter().enumerate() {
                    next[k + 1] += c * scale;
                    next[k] -= c * root * scale;
                }
                poly = next;
            }
            poly.iter()
                .enumerate()
                .map(|(k, &c)| c * len.powi(k as i32 + 1) / (k as f64 + 1.0))
                .sum()
        })
        .collect()
}

/// Variable-step Adams–Bashforth of order 2 (Hairer, Nørsett & Wanner, *Solving ODEs I*,
/// §III.1 and §III.5): `x_{i+1} = x_i + ∫_{τ_i}^{τ_{i+1}} p(s) ds` with `p` the Lagrange
/// interpolant of `u_i, u_{i−1}` at `τ_i, τ_{i−1}`; on a uniform grid `h·(3/2·u_i − 1/2·u_{i−1})`.
/// The first step has one velocity and is Euler (AB1), which keeps global order 2.
pub fn ab2(grid: &[f64]) -> NsTable {
    let mut rows = Rows::new();
    for (i, w) in grid.windows(2).enumerate() {
        let first = i.saturating_sub(1);
        let nodes: Vec<f64> = (first..=i).rev().map(|j| grid[j]).collect();
        let weights = lagrange_integrals(&nodes, w[0], w[1]);
        let b: Vec<(usize, f64)> = (first..=i).rev().zip(weights).collect();
        rows.row(w[0], &[(i, 1.0)], &b);
    }
    rows.finish(grid)
}

/// Variable-step Adams–Bashforth of order 3 (Hairer, Nørsett & Wanner, *Solving ODEs I*,
/// §III.1 and §III.5): for i ≥ 2, `x_{i+1} = x_i + ∫_{τ_i}^{τ_{i+1}} p(s) ds` with `p` the
/// Lagrange interpolant of `u_i, u_{i−1}, u_{i−2}`; on a uniform grid
/// `h·(23·u_i − 16·u_{i−1} + 5·u_{i−2})/12`.
///
/// Start-up with lower order: step 0 is Euler (AB1), and step 1 is the two-node Adams formula
/// anchored at `x_0`, `x_2 = x_0 + ∫_{τ_0}^{τ_2} p(s) ds` with `p` interpolating `u_0, u_1`
/// (on a uniform grid `x_2 = x_0 + 2h·u_1`, the leapfrog rule). An NS table may use `x_0` here,
/// and it matters: the Euler state `x_1` is only O(h²) accurate, so continuing from it (the
/// usual AB1 → AB2 → AB3 start) would leave an O(h²) global error; from `x_0`, `x_2` is O(h³)
/// accurate and the method keeps global order 3.
pub fn ab3(grid: &[f64]) -> NsTable {
    let mut rows = Rows::new();
    for (i, w) in grid.windows(2).enumerate() {
        let (anchor, from) = if i == 1 { (0, grid[0]) } else { (i, w[0]) };
        let first = i.saturating_sub(2);
        let nodes: Vec<f64> = (first..=i).rev().map(|j| grid[j]).collect();
        let weights = lagrange_integrals(&nodes, from, w[1]);
        let b: Vec<(usize, f64)> = (first..=i).rev().zip(weights).collect();
        rows.row(w[0], &[(anchor, 1.0)], &b);
    }
    rows.finish(grid)
}

/// DPM-Solver++(2M) (Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
/// Probabilistic Models", 2022, Algorithm 2) in data-prediction form on the conditional-OT path
/// (`α = t`, `σ = 1 − t`, `λ = log(α/σ)`; `docs/MATH.md` §1, §5.2):
/// `h_i = λ_{i+1} − λ_i`, `r_i = h_{i−1}/h_i`,
/// `D_i = (1 + 1/(2r_i))·x̂1_i − (1/(2r_i))·x̂1_{i−1}` (first step `D_0 = x̂1_0`),
/// `x_{i+1} = (σ_{i+1}/σ_i)·x_i − α_{i+1}·(e^{−h_i} − 1)·D_i`, with the data prediction
/// `x̂1 = x + (1−t)·u` substituted, which makes every step linear in the states and velocities.
///
/// The endpoints are limits. `α_{i+1}(1 − e^{−h_i}) = α_{i+1} − σ_{i+1}·α_i/σ_i` is finite for
/// every step, so from `t_0 = 0` (λ = −∞) the first step is `σ_1·x_0 + α_1·D_0` (= Euler), and at
/// the second step `h_0 = ∞`, so `1/(2r_1) = 0` and `D_1 = x̂1_1`. The step ending at `t = 1`
/// (λ = +∞, `σ = 0`) gives `x_n = D_{n−1}`; since `r → 0` there, the extrapolation would blow
/// up, so that step uses `D_{n−1} = x̂1_{n−1}` (first order, as k-diffusion's
/// `sample_dpmpp_2m` does when the next σ is 0), which keeps global order 2. `u_i` is evaluated
/// at `τ_i`.
pub fn dpmpp2m(grid: &[f64]) -> NsTable {
    let mut rows = Rows::new();
    for (i, w) in grid.windows(2).enumerate() {
        let (t, t_next) = (w[0], w[1]);
        let (sigma, sigma_next) = (path::sigma(t), path::sigma(t_next));
        let (alpha, alpha_next) = (path::alpha(t), path::alpha(t_next));
        // x_{i+1} = ratio·x_i + g·D_i with g = −α_{i+1}(e^{−h_i} − 1).
        let ratio = sigma_next / sigma;
        let g = alpha_next - sigma_next * alpha / sigma;
        // c = 1/(2r_i) = h_i / (2 h_{i−1}); 0 for a first-order step.
        let c = if i == 0 || sigma_next <= 0.0 {
            0.0
        } else {
            let h = path::lambda(t_next) - path::lambda(t);
            let h_last = path::lambda(t) - path::lambda(grid[i - 1]);
            h / (2.0 * h_last)
        };
        let mut a = vec![(i, ratio + g * (1.0 + c))];
        let mut b = vec![(i, g * (1.0 + c) * sigma)];
        if c != 0.0 {
            a.push((i - 1, -g * c));
            b.push((i - 1, -g * c * path::sigma(grid[i - 1])));
        }
        rows.row(t, &a, &b);
    }
    rows.finish(grid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    // ------------------------------------------------------------------ test fields

    /// dx/dt = λx; exact x(1) = e^λ·x(0).
    const LAMBDA: f64 = -1.3;
    fn linear(x: &[f64], _t: f64) -> Vec<f64> {
        x.iter().map(|v| LAMBDA * v).collect()
    }
    fn linear_exact(x0: &[f64]) -> Vec<f64> {
        x0.iter().map(|v| LAMBDA.exp() * v).collect()
    }

    /// dx/dt = ω·J·x with J = [[0, −1], [1, 0]]; exact x(1) = R(ω)·x(0), a rotation by ω.
    const OMEGA: f64 = 3.0;
    fn rotation(x: &[f64], _t: f64) -> Vec<f64> {
        vec![-OMEGA * x[1], OMEGA * x[0]]
    }
    fn rotation_exact(x0: &[f64]) -> Vec<f64> {
        let (c, s) = (OMEGA.cos(), OMEGA.sin());
        vec![c * x0[0] - s * x0[1], s * x0[0] + c * x0[1]]
    }

    /// The exact OT-path velocity for data N(μ, s²I): with `v_t = (1−t)² + t²s²` (the variance
    /// of x_t per coordinate), `u_t(x) = μ + (v_t'/(2v_t))·(x − tμ)`. Its flow is
    /// `x_t = tμ + √v_t·x_0`, so the exact endpoint is `x(1) = μ + s·x_0`.
    const MU: [f64; 2] = [1.0, -2.0];
    const S: f64 = 0.5;
    fn gaussian(x: &[f64], t: f64) -> Vec<f64> {
        let v = (1.0 - t).powi(2) + t * t * S * S;
        let dv = -2.0 * (1.0 - t) + 2.0 * t * S * S;
        x.iter()
            .zip(MU)
            .map(|(&x, mu)| mu + dv / (2.0 * v) * (x - t * mu))
            .collect()
    }
    fn gaussian_exact(x0: &[f64]) -> Vec<f64> {
        x0.iter().zip(MU).map(|(&x, mu)| mu + S * x).collect()
    }

    type Field = fn(&[f64], f64) -> Vec<f64>;
    type Exact = fn(&[f64]) -> Vec<f64>;
    const LINEAR: (&str, Field, Exact, [f64; 2]) = ("linear", linear, linear_exact, [1.0, -0.5]);
    const ROTATION: (&str, Field, Exact, [f64; 2]) =
        ("rotation", rotation, rotation_exact, [1.0, 0.5]);
    const GAUSSIAN: (&str, Field, Exact, [f64; 2]) =
        ("gaussian", gaussian, gaussian_exact, [0.7, -1.1]);

    fn dist(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    }

    fn order(method: Method) -> i32 {
        match method {
            Method::Euler => 1,
            Method::Midpoint | Method::Heun | Method::Ab2 | Method::DpmPp2m => 2,
            Method::Ab3 => 3,
            Method::Rk4 => 4,
        }
    }

    /// `τ_i = (1 − cos(πi/k))/2`: a smooth non-uniform grid whose steps shrink like h² at both
    /// ends (exercises the variable-step formulas).
    fn cosine_grid(k: usize) -> Vec<f64> {
        (0..=k)
            .map(|i| (1.0 - (PI * i as f64 / k as f64).cos()) / 2.0)
            .collect()
    }

    /// e(k)/e(2k) for `method` on the grid family `grid`, and the two errors.
    fn ratio(
        method: Method,
        grid: fn(usize) -> Vec<f64>,
        k: usize,
        (_, field, exact, x0): (&str, Field, Exact, [f64; 2]),
    ) -> (f64, f64, f64) {
        let err = |k: usize| {
            let table = method.table(&grid(k));
            table.validate().unwrap();
            dist(&table.solve(&x0, field), &exact(&x0))
        };
        let (e1, e2) = (err(k), err(2 * k));
        (e1 / e2, e1, e2)
    }

    fn check_order(
        method: Method,
        grid: (&str, fn(usize) -> Vec<f64>),
        k: usize,
        case: (&str, Field, Exact, [f64; 2]),
    ) {
        let p = order(method);
        let expected = 2f64.powi(p);
        let (r, e1, e2) = ratio(method, grid.1, k, case);
        println!(
            "{:9} {:8} grid {:8} k {k:3} -> {:3}: error {e1:.3e} -> {e2:.3e}, ratio {r:6.3} (2^{p} = {expected})",
            method.name(),
            grid.0,
            case.0,
            2 * k
        );
        assert!(
            (0.8 * expected..=1.2 * expected).contains(&r),
            "{} on {} ({} grid, k = {k}): error ratio {r} is not within 20% of 2^{p}",
            method.name(),
            case.0,
            grid.0
        );
    }

    fn uniform(k: usize) -> Vec<f64> {
        Grid::Uniform.points(k)
    }

    /// Halving the step on the uniform grid divides the error by ≈ 2^p.
    #[test]
    fn convergence_order_on_the_uniform_grid() {
        for method in Method::ALL {
            // AB2's Euler start and its own error nearly cancel on λx around k = 16 (measured
            // ratios 3.14 at 16→32, 3.62 at 32→64, 3.91 at 128→256), so it is checked from 32.
            // DPM-Solver++(2M) converges like h²·log(1/h) on this grid (see below), so it
            // is checked from 128, where the log factor is within the tolerance.
            let k = match method {
                Method::Ab2 => 32,
                Method::DpmPp2m => 128,
                _ => 16,
            };
            for case in [LINEAR, ROTATION] {
                check_order(method, ("uniform", uniform), k, case);
            }
        }
        // On a grid uniform in t the λ-steps of DPM-Solver++ are h/t near t = 0 and h/(1−t)
        // near t = 1, and its local error there is ~h³/t (resp. h³/(1−t)), which sums to
        // h²·log(1/h): e(k)/e(2k) → 4 only slowly, from below (λx: 0.50, 2.44, 3.03, 3.30 for
        // k = 16, 32, 64, 128). The cosine grid below has no such term and shows order 2 cleanly.
        check_order(Method::DpmPp2m, ("uniform", uniform), 128, GAUSSIAN);
    }

    /// The same on the non-uniform cosine grid (variable steps), with the Gaussian-data field
    /// too. Midpoint's leading error term vanishes for the Gaussian field (its measured ratio
    /// goes to 8, not 4), so that one case only checks "at least order 2".
    #[test]
    fn convergence_order_on_a_non_uniform_grid() {
        for method in Method::ALL {
            for case in [LINEAR, ROTATION, GAUSSIAN] {
                if method == Method::Midpoint && case.0 == "gaussian" {
                    let (r, _, _) = ratio(method, cosine_grid, 64, case);
                    println!("midpoint  cosine   grid gaussian k 64 -> 128: ratio {r:6.3} (superconvergent)");
                    assert!(r > 0.8 * 4.0, "midpoint on gaussian: ratio {r}");
                    continue;
                }
                check_order(method, ("cosine", cosine_grid), 64, case);
            }
        }
    }

    /// AB3 with the usual AB1 → AB2 → AB3 start (continuing from the Euler state `x_1`) is
    /// only second order on the uniform grid; the start from `x_0` restores order 3.
    #[test]
    fn ab3_start_from_x0_keeps_order_3() {
        let plain = |grid: &[f64]| {
            let mut rows = Rows::new();
            for (i, w) in grid.windows(2).enumerate() {
                let first = i.saturating_sub(2);
                let nodes: Vec<f64> = (first..=i).rev().map(|j| grid[j]).collect();
                let weights = lagrange_integrals(&nodes, w[0], w[1]);
                let b: Vec<(usize, f64)> = (first..=i).rev().zip(weights).collect();
                rows.row(w[0], &[(i, 1.0)], &b);
            }
            rows.finish(grid)
        };
        let (_, field, exact, x0) = LINEAR;
        let err = |k| dist(&plain(&uniform(k)).solve(&x0, field), &exact(&x0));
        let r = err(64) / err(128);
        assert!((r - 4.0).abs() < 0.3, "plain start: ratio {r}");
        check_order(Method::Ab3, ("uniform", uniform), 64, LINEAR);
    }

    // ------------------------------------------------- independent direct implementations

    /// A tiny MLP velocity field: (x ∈ R³, t) → 16 tanh → 16 tanh → R³, weights from an LCG.
    struct Mlp {
        layers: Vec<(Vec<Vec<f64>>, Vec<f64>)>,
    }

    impl Mlp {
        fn new(seed: u64) -> Mlp {
            let mut state = seed;
            let mut next = move || {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            };
            let mut layers = Vec::new();
            for (fan_in, fan_out) in [(4, 16), (16, 16), (16, 3)] {
                let scale = 1.5 / (fan_in as f64).sqrt();
                let w = (0..fan_out)
                    .map(|_| (0..fan_in).map(|_| scale * next()).collect())
                    .collect();
                let b = (0..fan_out).map(|_| 0.3 * next()).collect();
                layers.push((w, b));
            }
            Mlp { layers }
        }

        fn velocity(&self, x: &[f64], t: f64) -> Vec<f64> {
            let mut h: Vec<f64> = x.iter().copied().chain([t]).collect();
            for (l, (w, b)) in self.layers.iter().enumerate() {
                h = w
                    .iter()
                    .zip(b)
                    .map(|(row, &bias)| row.iter().zip(&h).map(|(a, v)| a * v).sum::<f64>() + bias)
                    .collect();
                if l + 1 < self.layers.len() {
                    h.iter_mut().for_each(|v| *v = v.tanh());
                }
            }
            h
        }
    }

    /// `x + Σ c_k·v_k`.
    fn comb(x: &[f64], terms: &[(f64, &[f64])]) -> Vec<f64> {
        let mut out = x.to_vec();
        for &(c, v) in terms {
            for (o, &e) in out.iter_mut().zip(v) {
                *o += c * e;
            }
        }
        out
    }

    /// `∫_{from}^{to} p(s) ds` for the polynomial `p` interpolating `(nodes[j], values[j])`,
    /// by 3-point Gauss–Legendre quadrature (exact up to degree 5) of Lagrange's formula.
    fn integrate_interpolant(nodes: &[f64], values: &[&[f64]], from: f64, to: f64) -> Vec<f64> {
        let gauss = [
            (-(0.6f64).sqrt(), 5.0 / 9.0),
            (0.0, 8.0 / 9.0),
            ((0.6f64).sqrt(), 5.0 / 9.0),
        ];
        let (mid, half) = ((from + to) / 2.0, (to - from) / 2.0);
        let mut out = vec![0.0; values[0].len()];
        for (g, w) in gauss {
            let s = mid + half * g;
            for j in 0..nodes.len() {
                let l: f64 = (0..nodes.len())
                    .filter(|&m| m != j)
                    .map(|m| (s - nodes[m]) / (nodes[j] - nodes[m]))
                    .product();
                for (o, &v) in out.iter_mut().zip(values[j]) {
                    *o += half * w * l * v;
                }
            }
        }
        out
    }

    /// The textbook loop of each method, written without NS tables.
    fn direct(
        method: Method,
        grid: &[f64],
        f: &dyn Fn(&[f64], f64) -> Vec<f64>,
        x0: &[f64],
    ) -> Vec<f64> {
        let mut x = x0.to_vec();
        let mut us: Vec<Vec<f64>> = Vec::new(); // velocities at grid points (multistep)
        let mut old_denoised: Option<Vec<f64>> = None;
        for (i, w) in grid.windows(2).enumerate() {
            let (t, t_next) = (w[0], w[1]);
            let h = t_next - t;
            x = match method {
                Method::Euler => comb(&x, &[(h, &f(&x, t))]),
                Method::Midpoint => {
                    let k1 = f(&x, t);
                    let k2 = f(&comb(&x, &[(h / 2.0, &k1)]), t + h / 2.0);
                    comb(&x, &[(h, &k2)])
                }
                Method::Heun => {
                    let k1 = f(&x, t);
                    let k2 = f(&comb(&x, &[(h, &k1)]), t_next);
                    comb(&x, &[(h / 2.0, &k1), (h / 2.0, &k2)])
                }
                Method::Rk4 => {
                    let k1 = f(&x, t);
                    let k2 = f(&comb(&x, &[(h / 2.0, &k1)]), t + h / 2.0);
                    let k3 = f(&comb(&x, &[(h / 2.0, &k2)]), t + h / 2.0);
                    let k4 = f(&comb(&x, &[(h, &k3)]), t_next);
                    comb(
                        &x,
                        &[
                            (h / 6.0, &k1),
                            (h / 3.0, &k2),
                            (h / 3.0, &k3),
                            (h / 6.0, &k4),
                        ],
                    )
                }
                Method::Ab2 => {
                    us.push(f(&x, t));
                    if i == 0 {
                        comb(&x, &[(h, &us[0])])
                    } else {
                        // Variable-step AB2: x + h(1 + h/(2h'))u_i − (h²/(2h'))u_{i−1}.
                        let hp = t - grid[i - 1];
                        comb(
                            &x,
                            &[
                                (h * (1.0 + h / (2.0 * hp)), &us[i]),
                                (-h * h / (2.0 * hp), &us[i - 1]),
                            ],
                        )
                    }
                }
                Method::Ab3 => {
                    us.push(f(&x, t));
                    match i {
                        0 => comb(&x, &[(h, &us[0])]),
                        // From x_0: x_2 = x_0 + ∫_{τ0}^{τ2} of the line through u_0, u_1.
                        1 => comb(
                            x0,
                            &[(
                                1.0,
                                &integrate_interpolant(
                                    &grid[..2],
                                    &[&us[0], &us[1]],
                                    grid[0],
                                    t_next,
                                ),
                            )],
                        ),
                        _ => {
                            let nodes = [grid[i - 2], grid[i - 1], grid[i]];
                            let vals = [&us[i - 2][..], &us[i - 1][..], &us[i][..]];
                            comb(
                                &x,
                                &[(1.0, &integrate_interpolant(&nodes, &vals, t, t_next))],
                            )
                        }
                    }
                }
                Method::DpmPp2m => {
                    // k-diffusion's sample_dpmpp_2m with σ → σ_t = 1 − t, α_t = t and
                    // λ = log(α/σ) (±∞ at the ends, handled by IEEE arithmetic).
                    let u = f(&x, t);
                    let denoised = comb(&x, &[(1.0 - t, &u)]);
                    let lam = |t: f64| (t / (1.0 - t)).ln();
                    let hl = lam(t_next) - lam(t);
                    let d = match &old_denoised {
                        Some(old) if t_next < 1.0 => {
                            let r = (lam(t) - lam(grid[i - 1])) / hl;
                            let c = 1.0 / (2.0 * r);
                            comb(&vec![0.0; x.len()], &[(1.0 + c, &denoised), (-c, old)])
                        }
                        _ => denoised.clone(),
                    };
                    old_denoised = Some(denoised);
                    let ratio = (1.0 - t_next) / (1.0 - t);
                    let scaled: Vec<f64> = x.iter().map(|v| ratio * v).collect();
                    comb(&scaled, &[(-t_next * (-hl).exp_m1(), &d)])
                }
            };
        }
        x
    }

    #[test]
    fn tables_equal_direct_implementations_on_an_mlp_field() {
        let mlp = Mlp::new(12345);
        let f = |x: &[f64], t: f64| mlp.velocity(x, t);
        let x0 = [0.8, -1.2, 0.35];
        let mut worst: f64 = 0.0;
        for method in Method::ALL {
            for grid in Grid::ALL {
                for steps in [1usize, 2, 3, 4, 7, 12] {
                    let points = grid.points(steps);
                    let table = method.table(&points);
                    table.validate().unwrap();
                    assert_eq!(table.steps(), steps * method.stages());
                    let via_table = table.solve::<f64>(&x0, f);
                    let via_loop = direct(method, &points, &f, &x0);
                    let rel = dist(&via_table, &via_loop) / dist(&via_loop, &[0.0; 3]);
                    worst = worst.max(rel);
                    assert!(
                        rel < 1e-5,
                        "{method} on {grid} with {steps} steps: relative difference {rel}"
                    );
                    // The reduced form runs the same solver.
                    let reduced = table.reduced().solve::<f64>(&x0, f);
                    assert!(dist(&reduced, &via_loop) / dist(&via_loop, &[0.0; 3]) < 1e-9);
                }
            }
        }
        println!("largest relative difference table vs direct: {worst:.2e}");
        assert!(worst < 1e-12, "{worst}");
    }

    // ---------------------------------------------------------------- coefficients

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12 * (1.0 + b.abs())
    }

    #[test]
    fn multistep_weights_on_a_uniform_grid_are_the_textbook_ones() {
        let k = 8;
        let h = 1.0 / k as f64;
        let t2 = ab2(&uniform(k));
        assert!(close(t2.b[0][0], h));
        for i in 1..k {
            assert!(
                close(t2.b[i][i], 1.5 * h) && close(t2.b[i][i - 1], -0.5 * h),
                "ab2 row {i}"
            );
            assert_eq!(t2.a[i][i], 1.0);
        }
        let t3 = ab3(&uniform(k));
        assert!(close(t3.b[0][0], h));
        // Step 1 from x_0: x_2 = x_0 + 2h·u_1.
        assert_eq!(t3.a[1], vec![1.0, 0.0]);
        assert!(
            close(t3.b[1][0], 0.0) && close(t3.b[1][1], 2.0 * h),
            "{:?}",
            t3.b[1]
        );
        for i in 2..k {
            let b = &t3.b[i];
            assert!(close(b[i], 23.0 / 12.0 * h), "ab3 row {i}: {b:?}");
            assert!(close(b[i - 1], -16.0 / 12.0 * h) && close(b[i - 2], 5.0 / 12.0 * h));
        }
    }

    #[test]
    fn runge_kutta_tables_have_the_stated_rows() {
        let g = [0.0, 0.4, 1.0];
        let m = midpoint(&g);
        assert_eq!(m.times, vec![0.0, 0.2, 0.4, 0.7, 1.0]);
        assert_eq!(m.a[1], vec![1.0, 0.0]);
        assert_eq!(m.b[1], vec![0.0, 0.4]);
        let hn = heun(&g);
        assert_eq!(hn.times, vec![0.0, 0.4, 0.4, 1.0, 1.0]);
        assert_eq!(hn.b[3], vec![0.0, 0.0, 0.3, 0.3]);
        let r = rk4(&[0.0, 1.0]);
        assert_eq!(r.times, vec![0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_eq!(r.a[3], vec![1.0, 0.0, 0.0, 0.0]);
        let expected = [1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0];
        assert!(r.b[3].iter().zip(expected).all(|(a, b)| close(*a, b)));
    }

    #[test]
    fn dpm_solver_endpoints_are_the_stated_limits() {
        let g = uniform(4);
        let t = dpmpp2m(&g);
        // First step: σ_1·x_0 + α_1·x̂1_0 = x_0 + t_1·u_0 (Euler).
        assert!(close(t.a[0][0], 1.0) && close(t.b[0][0], 0.25));
        // Second step: h_0 = ∞, so D_1 = x̂1_1 and nothing of step 0 is used.
        assert_eq!((t.a[1][0], t.b[1][0]), (0.0, 0.0));
        // Last step: x_4 = x̂1_3 = x_3 + (1 − t_3)·u_3.
        assert_eq!(t.a[3], vec![0.0, 0.0, 0.0, 1.0]);
        assert!(close(t.b[3][3], 0.25) && t.b[3][..3].iter().all(|&b| b == 0.0));
        // A middle step uses the previous state and velocity.
        assert!(t.a[2][1] != 0.0 && t.b[2][1] != 0.0);
        assert!(t.validate().is_ok());
    }

    #[test]
    fn every_built_table_is_valid() {
        for method in Method::ALL {
            for grid in Grid::ALL {
                for steps in 1..=40 {
                    let nfe = steps * method.stages();
                    let table = method.build(nfe, grid).unwrap();
                    assert_eq!(table.steps(), nfe);
                    assert_eq!(table.validate(), Ok(()), "{method} {grid} {nfe}");
                }
                let big = method
                    .build(1000 / method.stages() * method.stages(), grid)
                    .unwrap();
                assert_eq!(big.validate(), Ok(()), "{method} {grid} large");
            }
        }
    }

    #[test]
    fn build_refuses_bad_nfe() {
        assert_eq!(
            Method::Rk4.build(6, Grid::Uniform).unwrap_err(),
            "rk4 needs an NFE that is a multiple of 4, got 6"
        );
        assert_eq!(
            Method::Midpoint.build(3, Grid::Edm).unwrap_err(),
            "midpoint needs an NFE that is a multiple of 2, got 3"
        );
        assert!(Method::Euler
            .build(0, Grid::Uniform)
            .unwrap_err()
            .contains("positive NFE"));
        assert!(Method::Euler
            .build(1001, Grid::Uniform)
            .unwrap_err()
            .contains("limit of 1000"));
        // Degenerate grids give invalid tables, not panics.
        for method in Method::ALL {
            assert!(method.table(&[]).validate().is_err());
            assert!(method.table(&[1.0]).validate().is_err());
        }
    }

    #[test]
    fn names_round_trip_and_errors_list_valid_names() {
        let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(
            names,
            ["euler", "midpoint", "heun", "rk4", "ab2", "ab3", "dpmpp2m"]
        );
        let stages: Vec<usize> = Method::ALL.iter().map(|m| m.stages()).collect();
        assert_eq!(stages, [1, 2, 2, 4, 1, 1, 1]);
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
        }
        let err = "rk5".parse::<Method>().unwrap_err();
        assert!(
            err.contains("\"rk5\"") && names.iter().all(|n| err.contains(n)),
            "{err}"
        );
    }
}
