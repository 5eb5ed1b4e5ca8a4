//! Non-stationary (NS) solvers (`docs/MATH.md` §4): the general table
//! `x_{i+1} = Σ_{j≤i} a_ij·x_j + Σ_{j≤i} b_ij·u_j`, its reduced form
//! `x_{i+1} = α_i·x_0 + Σ_{j≤i} β_ij·u_j`, the solver file (`FORMATS.md` §2, [`SolverFile`]) and
//! the classical solvers written as NS tables ([`classical`]).

pub mod classical;
pub mod file;

pub use classical::{ab2, ab3, dpmpp2m, euler, heun, midpoint, rk4, Method};
pub use file::{SolverFile, MAX_SOLVER_FILE_BYTES, SOLVER_FORMAT_VERSION};

use serde::{Deserialize, Serialize};

/// Most steps (NFE) a table may have; bounds memory for tables read from files.
pub const MAX_STEPS: usize = 1000;

/// Scalar the tables can run in (f32 for the runtime, f64 for references).
pub trait Real:
    Copy + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> + Default + std::fmt::Debug
{
    fn from_f64(v: f64) -> Self;
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// General form of an NS solver: n steps, times `t_0..t_n` (n+1 entries, `t_n = 1`; `t_i` for
/// i < n is where `u_i` is evaluated), `x_{i+1} = Σ_{j≤i} a[i][j]·x_j + Σ_{j≤i} b[i][j]·u_j`;
/// `a[i]` and `b[i]` have i+1 entries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NsTable {
    pub times: Vec<f64>,
    pub a: Vec<Vec<f64>>,
    pub b: Vec<Vec<f64>>,
}

impl NsTable {
    /// Number of steps n (= NFE), the number of rows of `a`.
    pub fn steps(&self) -> usize {
        self.a.len()
    }

    /// Checks shapes (`times` has n+1 entries, row i of `a` and `b` has i+1 entries,
    /// 1 ≤ n ≤ [`MAX_STEPS`]), that every number is finite, that the times lie in [0, 1] and are
    /// non-decreasing, and that `t_n = 1` within 1e-9 (`t_0` may be anywhere in [0, 1]).
    /// The error names the field and index, e.g.
    /// `"times[3] = 0.2 is less than times[2] = 0.5 (times must be non-decreasing)"`.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.a.len();
        if n == 0 {
            return Err("a is empty: a solver needs at least 1 step".into());
        }
        if n > MAX_STEPS {
            return Err(format!(
                "a has {n} rows: more than the limit of {MAX_STEPS} steps"
            ));
        }
        if self.b.len() != n {
            return Err(format!(
                "b has {} rows, expected {n} (one per row of a)",
                self.b.len()
            ));
        }
        if self.times.len() != n + 1 {
            return Err(format!(
                "times has {} entries, expected {} (steps + 1)",
                self.times.len(),
                n + 1
            ));
        }
        for (name, rows) in [("a", &self.a), ("b", &self.b)] {
            for (i, row) in rows.iter().enumerate() {
                if row.len() != i + 1 {
                    return Err(format!(
                        "{name}[{i}] has {} entries, expected {}",
                        row.len(),
                        i + 1
                    ));
                }
            }
        }
        for (i, &t) in self.times.iter().enumerate() {
            if !t.is_finite() {
                return Err(format!("times[{i}] is not finite ({t})"));
            }
        }
        for (name, rows) in [("a", &self.a), ("b", &self.b)] {
            for (i, row) in rows.iter().enumerate() {
                if let Some((j, v)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(format!("{name}[{i}][{j}] is not finite ({v})"));
                }
            }
        }
        for (i, &t) in self.times.iter().enumerate() {
            if !(0.0..=1.0).contains(&t) {
                return Err(format!("times[{i}] = {t} is outside [0, 1]"));
            }
            if i > 0 && t < self.times[i - 1] {
                return Err(format!(
                    "times[{i}] = {t} is less than times[{}] = {} (times must be non-decreasing)",
                    i - 1,
                    self.times[i - 1]
                ));
            }
        }
        let last = self.times[n];
        if (last - 1.0).abs() > 1e-9 {
            return Err(format!(
                "times[{n}] = {last} must be 1 (every solver ends at t = 1)"
            ));
        }
        Ok(())
    }

    /// The equivalent reduced form. Each state is linear in `x_0` and the velocities,
    /// `x_j = c_j·x_0 + Σ_{k<j} d_jk·u_k` with `c_0 = 1`; substituting into a row gives
    /// `α_i = Σ_j a_ij·c_j` and `β_ik = b_ik + Σ_{j>k} a_ij·d_jk`.
    pub fn reduced(&self) -> ReducedTable {
        // coeff[j] = (c_j, d_j) for the states computed so far.
        let mut coeff: Vec<(f64, Vec<f64>)> = vec![(1.0, Vec::new())];
        let mut alpha = Vec::with_capacity(self.steps());
        let mut beta = Vec::with_capacity(self.steps());
        for (a_row, b_row) in self.a.iter().zip(&self.b) {
            let mut c = 0.0;
            let mut d = b_row.clone();
            for (&a_ij, (c_j, d_j)) in a_row.iter().zip(&coeff) {
                c += a_ij * c_j;
                for (d_k, &d_jk) in d.iter_mut().zip(d_j) {
                    *d_k += a_ij * d_jk;
                }
            }
            alpha.push(c);
            beta.push(d.clone());
            coeff.push((c, d));
        }
        ReducedTable {
            times: self.times.clone(),
            alpha,
            beta,
        }
    }

    /// Runs the solver from `x0`; `velocity(x, t)` returns `u_t(x)` (same length as `x`).
    /// Returns `x_n`. The table should be [valid](Self::validate): extra coefficients of a
    /// malformed table are ignored rather than indexed out of bounds.
    ///
    /// # Panics
    /// If `velocity` returns a vector of another length than `x0` (a bug in the caller).
    pub fn solve<T: Real>(
        &self,
        x0: &[T],
        mut velocity: impl FnMut(&[T], f64) -> Vec<T>,
    ) -> Vec<T> {
        let mut xs: Vec<Vec<T>> = vec![x0.to_vec()];
        let mut us: Vec<Vec<T>> = Vec::with_capacity(self.steps());
        for ((a_row, b_row), &t) in self.a.iter().zip(&self.b).zip(&self.times) {
            let Some(x_i) = xs.last() else { break };
            let u = velocity(x_i, t);
            assert_eq!(
                u.len(),
                x0.len(),
                "velocity returned {} values for a state of {}",
                u.len(),
                x0.len()
            );
            us.push(u);
            let mut next = vec![T::default(); x0.len()];
            axpy_rows(&mut next, a_row, &xs);
            axpy_rows(&mut next, b_row, &us);
            xs.push(next);
        }
        xs.pop().unwrap_or_default()
    }
}

/// `out += Σ_j coef[j]·vectors[j]`, skipping zero coefficients (classical tables are sparse, and
/// a skipped term cannot turn an infinite velocity into NaN).
fn axpy_rows<T: Real>(out: &mut [T], coef: &[f64], vectors: &[Vec<T>]) {
    for (&c, v) in coef.iter().zip(vectors) {
        if c == 0.0 {
            continue;
        }
        let c = T::from_f64(c);
        for (o, &x) in out.iter_mut().zip(v) {
            *o = *o + c * x;
        }
    }
}

/// Reduced form of an NS solver, `x_{i+1} = alpha[i]·x_0 + Σ_{j≤i} beta[i][j]·u_j`: it needs
/// only `x_0` and the velocities in memory. Made by [`NsTable::reduced`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReducedTable {
    pub times: Vec<f64>,
    pub alpha: Vec<f64>,
    pub beta: Vec<Vec<f64>>,
}

impl ReducedTable {
    /// Number of steps n (= NFE).
    pub fn steps(&self) -> usize {
        self.alpha.len()
    }

    /// Runs the solver from `x0` (see [`NsTable::solve`]); returns `x_n`.
    ///
    /// # Panics
    /// If `velocity` returns a vector of another length than `x0` (a bug in the caller).
    pub fn solve<T: Real>(
        &self,
        x0: &[T],
        mut velocity: impl FnMut(&[T], f64) -> Vec<T>,
    ) -> Vec<T> {
        let mut x = x0.to_vec();
        let mut us: Vec<Vec<T>> = Vec::with_capacity(self.steps());
        for ((&alpha, beta_row), &t) in self.alpha.iter().zip(&self.beta).zip(&self.times) {
            let u = velocity(&x, t);
            assert_eq!(
                u.len(),
                x0.len(),
                "velocity returned {} values for a state of {}",
                u.len(),
                x0.len()
            );
            us.push(u);
            let alpha = T::from_f64(alpha);
            x = x0.iter().map(|&v| alpha * v).collect();
            axpy_rows(&mut x, beta_row, &us);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic uniform numbers in [0, 1) (64-bit LCG, Knuth's MMIX constants).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn sym(&mut self) -> f64 {
            2.0 * self.next() - 1.0
        }
    }

    fn random_table(rng: &mut Lcg, n: usize) -> NsTable {
        let mut times: Vec<f64> = (0..n).map(|_| rng.next()).collect();
        times.sort_by(f64::total_cmp);
        times.push(1.0);
        let a = (0..n)
            .map(|i| (0..=i).map(|_| rng.sym()).collect())
            .collect();
        let b = (0..n)
            .map(|i| (0..=i).map(|_| rng.sym() / n as f64).collect())
            .collect();
        NsTable { times, a, b }
    }

    /// A smooth nonlinear field that also depends on t.
    fn field(x: &[f64], t: f64) -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(k, &v)| (v * (1.0 + k as f64) + t).sin() - 0.3 * v + t * t)
            .collect()
    }

    fn rel_err(a: &[f64], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    }

    #[test]
    fn reduced_form_equals_general_form_on_random_tables() {
        let mut rng = Lcg(7);
        for n in [1usize, 2, 3, 5, 8, 16] {
            for _ in 0..5 {
                let table = random_table(&mut rng, n);
                table.validate().unwrap();
                let reduced = table.reduced();
                assert_eq!(reduced.steps(), n);
                assert_eq!(reduced.times, table.times);
                let x0: Vec<f64> = (0..4).map(|_| rng.sym()).collect();
                // Both forms must evaluate the velocity at the same states and times.
                let mut seen_general = Vec::new();
                let general = table.solve(&x0, |x, t| {
                    seen_general.push((x.to_vec(), t));
                    field(x, t)
                });
                let mut seen_reduced = Vec::new();
                let red = reduced.solve(&x0, |x, t| {
                    seen_reduced.push((x.to_vec(), t));
                    field(x, t)
                });
                assert_eq!(seen_general.len(), n);
                assert_eq!(seen_reduced.len(), n);
                for ((xg, tg), (xr, tr)) in seen_general.iter().zip(&seen_reduced) {
                    assert_eq!(tg, tr);
                    assert!(rel_err(xr, xg) < 1e-9);
                }
                let e = rel_err(&red, &general);
                assert!(e < 1e-9, "n={n}: relative difference {e}");
            }
        }
    }

    #[test]
    fn reduced_form_of_euler_is_a_running_sum() {
        let table = NsTable {
            times: vec![0.0, 0.25, 1.0],
            a: vec![vec![1.0], vec![0.0, 1.0]],
            b: vec![vec![0.25], vec![0.0, 0.75]],
        };
        let r = table.reduced();
        assert_eq!(r.alpha, vec![1.0, 1.0]);
        assert_eq!(r.beta, vec![vec![0.25], vec![0.25, 0.75]]);
    }

    #[test]
    fn solve_runs_in_f32_and_f64() {
        let table = classical::rk4(&crate::grid::Grid::Uniform.points(8));
        let x0 = [1.0f32, -2.0];
        let out32 = table.solve(&x0, |x, _| x.iter().map(|v| -v).collect());
        let out64 = table.solve(&[1.0f64, -2.0], |x, _| x.iter().map(|v| -v).collect());
        for (a, b) in out32.iter().zip(&out64) {
            assert!((*a as f64 - b).abs() < 1e-5);
        }
        assert!((out64[0] - (-1.0f64).exp()).abs() < 1e-6);
    }

    fn valid() -> NsTable {
        NsTable {
            times: vec![0.0, 0.5, 1.0],
            a: vec![vec![1.0], vec![0.0, 1.0]],
            b: vec![vec![0.5], vec![0.0, 0.5]],
        }
    }

    #[test]
    fn validate_names_the_field_and_index() {
        assert_eq!(valid().validate(), Ok(()));
        let check = |edit: &dyn Fn(&mut NsTable), expected: &str| {
            let mut t = valid();
            edit(&mut t);
            let err = t.validate().unwrap_err();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        };
        check(
            &|t| t.times = vec![0.0, 0.5, 0.2, 1.0],
            "times has 4 entries",
        );
        check(
            &|t| {
                t.times = vec![0.0, 0.5, 0.2, 1.0];
                t.a.push(vec![0.0, 0.0, 1.0]);
                t.b.push(vec![0.0, 0.0, 1.0]);
            },
            "times[2] = 0.2 is less than times[1] = 0.5 (times must be non-decreasing)",
        );
        check(&|t| t.times[1] = 1.5, "times[1] = 1.5 is outside [0, 1]");
        check(&|t| t.times[0] = -0.1, "times[0] = -0.1 is outside [0, 1]");
        check(&|t| t.times[2] = 0.9, "times[2] = 0.9 must be 1");
        check(&|t| t.times[1] = f64::NAN, "times[1] is not finite");
        check(&|t| t.a[1] = vec![1.0], "a[1] has 1 entries, expected 2");
        check(
            &|t| t.b[0] = vec![1.0, 2.0],
            "b[0] has 2 entries, expected 1",
        );
        check(
            &|t| {
                t.b.pop();
            },
            "b has 1 rows, expected 2",
        );
        check(
            &|t| t.a[1][0] = f64::INFINITY,
            "a[1][0] is not finite (inf)",
        );
        check(&|t| t.b[1][1] = f64::NAN, "b[1][1] is not finite (NaN)");
        check(
            &|t| {
                t.a.clear();
                t.b.clear();
                t.times = vec![1.0];
            },
            "a is empty",
        );
        let big = NsTable {
            times: vec![1.0; MAX_STEPS + 2],
            a: (0..=MAX_STEPS).map(|i| vec![0.0; i + 1]).collect(),
            b: (0..=MAX_STEPS).map(|i| vec![0.0; i + 1]).collect(),
        };
        assert!(big.validate().unwrap_err().contains("limit of 1000 steps"));
        // t_0 may be anywhere in [0, 1], and repeated times are allowed.
        let mut t = valid();
        t.times = vec![0.3, 0.3, 1.0];
        assert_eq!(t.validate(), Ok(()));
    }

    #[test]
    fn solve_does_not_panic_on_malformed_tables() {
        let t = NsTable {
            times: vec![0.0],
            a: vec![vec![1.0, 5.0, 6.0], vec![1.0]],
            b: vec![vec![0.5]],
        };
        let out = t.solve(&[1.0f64], |x, _| x.to_vec());
        assert_eq!(out, vec![1.5]);
        let _ = t.reduced().solve(&[1.0f64], |x, _| x.to_vec());
    }
}
