//! How close a solver gets to the ground truth: PSNR per sample (`docs/MATH.md` §8), run on
//! the runtime's CPU path so that the figures are those of the solver as the browser runs it.

use anyhow::{bail, Result};
use serde_json::json;
use web_sampler::grid::Grid;
use web_sampler::model::Model;
use web_sampler::sample::integrate;
use web_sampler::solver::{Method, NsTable, SolverFile};

use crate::pairs::PairsView;
use crate::psnr_cache::PsnrCache;

/// Rows per runtime call when evaluating a solver on pairs.
const EVAL_BATCH: usize = 128;

pub use web_sampler::metrics::psnr;

/// Mean and (population) standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// PSNR of `table` (guidance `w`) on each pair of `pairs`, run by the runtime's CPU sampler.
pub fn solver_psnr(model: &Model, table: &NsTable, pairs: &PairsView, w: f64) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(pairs.len);
    let dim = pairs.dim;
    for start in (0..pairs.len).step_by(EVAL_BATCH) {
        let rows = EVAL_BATCH.min(pairs.len - start);
        let x0 = pairs.noise[start * dim..(start + rows) * dim].to_vec();
        let labels = &pairs.labels[start..start + rows];
        let x = integrate(model, table, x0, labels, w)?;
        out.extend(psnr(
            &x,
            &pairs.truth[start * dim..(start + rows) * dim],
            dim,
        ));
    }
    Ok(out)
}

/// Mean, standard deviation and standard error of the mean of per-pair PSNRs (dB).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PsnrSummary {
    pub mean: f64,
    pub std: f64,
    /// `std / √n`: how far the mean may be from the mean over infinitely many pairs.
    pub sem: f64,
}

impl PsnrSummary {
    pub fn of(values: &[f64]) -> PsnrSummary {
        Self::kept(mean_std(values), values.len())
    }

    /// The summary of `n` PSNRs of mean and standard deviation `(mean, std)`: what
    /// [`of`](Self::of) gives for them.
    pub fn kept((mean, std): (f64, f64), n: usize) -> PsnrSummary {
        PsnrSummary {
            mean,
            std,
            sem: std / (n.max(1) as f64).sqrt(),
        }
    }
}

/// The name of a classical method on a grid, as tables and files show it: `euler-uniform`,
/// `dpmpp2m-edm`, ….
pub fn classical_label(method: Method, grid: Grid) -> String {
    format!("{}-{}", method.name(), grid.name())
}

/// A distilled solver's figures on the test split of its pairs, with its baselines' at the same
/// NFE and guidance on the same pairs (`FORMATS.md` §2): the classical solver it started from,
/// the best classical solver (every method on every grid that has a table at this NFE) and, when
/// given, the time-only baseline. What [`record`](Self::record) writes into the solver file.
#[derive(Clone, Debug, PartialEq)]
pub struct TestFigures {
    /// Test pairs measured on.
    pub pairs: usize,
    /// The SHA-256 of the pairs file whose test split they are ([`file_sha256`]).
    pub pairs_id: String,
    pub solver: PsnrSummary,
    /// The init's mean PSNR, when the solver file says what it started from.
    pub init: Option<f64>,
    /// The best classical solver's label and mean PSNR.
    pub best_classical: (String, f64),
    /// The time-only baseline's mean PSNR, when one was given.
    pub time_only: Option<f64>,
}

/// The metrics key of a solver's own test PSNR (the figure `bns publish` verifies).
pub const TEST_PSNR: &str = "test_psnr";

impl TestFigures {
    /// Measures `solver` (distilled for `model`, at its NFE and guidance) on `test` (the test
    /// split of the pairs file `pairs_id` names) with the runtime, its init (from its
    /// provenance's `init` and `grid`, if there), every classical solver at its NFE, and
    /// `time_only` (refused unless a time-only solver of the same model, NFE and guidance).
    /// Each table is run once: `cache` keeps its figures (in memory at least), so the init,
    /// one of the classical solvers, is not run again.
    pub fn measure(
        model: &Model,
        solver: &SolverFile,
        test: &PairsView,
        pairs_id: &str,
        time_only: Option<&SolverFile>,
        cache: &PsnrCache,
    ) -> Result<TestFigures> {
        Self::measure_taking(model, solver, test, pairs_id, time_only, cache, None)
    }

    /// [`measure`](Self::measure), except that where the time-only baseline's file records its
    /// own test figures for the same test pairs (`pairs_id` and as many pairs: it was distilled
    /// on the same pairs file), the best classical solver's figure and its own are taken from
    /// it: the same code measured them on the same pairs with the same model, so they are the
    /// figures `measure` would find again, bit for bit. Only the solver and its init are run
    /// then — on a U-Net at NFE 16 that saves ~15 sweeps of the test split.
    pub fn measure_beside(
        model: &Model,
        solver: &SolverFile,
        test: &PairsView,
        pairs_id: &str,
        time_only: Option<&SolverFile>,
        cache: &PsnrCache,
    ) -> Result<TestFigures> {
        let recorded = time_only.and_then(|b| RecordedFigures::of(b, pairs_id, test.len));
        Self::measure_taking(model, solver, test, pairs_id, time_only, cache, recorded)
    }

    /// [`measure`](Self::measure), the best classical solver's and the baseline's figures taken
    /// from `recorded` when given.
    fn measure_taking(
        model: &Model,
        solver: &SolverFile,
        test: &PairsView,
        pairs_id: &str,
        time_only: Option<&SolverFile>,
        cache: &PsnrCache,
        recorded: Option<RecordedFigures>,
    ) -> Result<TestFigures> {
        let w = solver.guidance;
        if let Some(baseline) = time_only {
            check_time_only_baseline(baseline, solver.nfe, w, solver.model_id.as_deref())
                .map_err(anyhow::Error::msg)?;
        }
        let mean = |table: &NsTable| -> Result<f64> { Ok(cache.psnr(model, table, test, w)?.0) };
        let summary = PsnrSummary::kept(cache.psnr(model, &solver.table(), test, w)?, test.len);
        let (best_classical, time_only) = match recorded {
            Some(recorded) => (recorded.best_classical, Some(recorded.test_psnr)),
            None => {
                let mut best: Option<(String, f64)> = None;
                for method in Method::ALL {
                    for grid in Grid::ALL {
                        if let Ok(table) = method.build(solver.nfe, grid) {
                            let psnr = mean(&table)?;
                            if best.as_ref().is_none_or(|(_, b)| psnr > *b) {
                                best = Some((classical_label(method, grid), psnr));
                            }
                        }
                    }
                }
                let Some(best) = best else {
                    bail!("no classical solver has a table at NFE {}", solver.nfe);
                };
                let time_only = match time_only {
                    Some(baseline) => Some(mean(&baseline.table())?),
                    None => None,
                };
                (best, time_only)
            }
        };
        let init = match init_of(solver) {
            Some(table) => Some(mean(&table)?),
            None => None,
        };
        Ok(TestFigures {
            pairs: test.len,
            pairs_id: pairs_id.to_string(),
            solver: summary,
            init,
            best_classical,
            time_only,
        })
    }

    /// Writes the figures into `file`: metrics `test_psnr`, `test_psnr_std`, `test_psnr_sem`,
    /// `init_test_psnr`, `best_classical_test_psnr`, `time_only_test_psnr` (the last two and the
    /// init when known), provenance `test_pairs`, `pairs_id` and `best_classical` (its label).
    /// Figures of an earlier measurement that this one lacks are removed.
    pub fn record(&self, file: &mut SolverFile) {
        for key in [INIT_TEST_PSNR, TIME_ONLY_TEST_PSNR] {
            file.metrics.remove(key);
        }
        let metrics = [
            (TEST_PSNR, Some(self.solver.mean)),
            ("test_psnr_std", Some(self.solver.std)),
            ("test_psnr_sem", Some(self.solver.sem)),
            (INIT_TEST_PSNR, self.init),
            ("best_classical_test_psnr", Some(self.best_classical.1)),
            (TIME_ONLY_TEST_PSNR, self.time_only),
        ];
        for (key, value) in metrics {
            if let Some(value) = value {
                file.metrics.insert(key.to_string(), value);
            }
        }
        file.provenance
            .insert("test_pairs".to_string(), json!(self.pairs));
        file.provenance
            .insert(PAIRS_ID.to_string(), json!(self.pairs_id));
        file.provenance
            .insert("best_classical".to_string(), json!(self.best_classical.0));
    }
}

const INIT_TEST_PSNR: &str = "init_test_psnr";
const TIME_ONLY_TEST_PSNR: &str = "time_only_test_psnr";

/// The provenance key of the pairs file's SHA-256 ([`TestFigures::pairs_id`]).
pub const PAIRS_ID: &str = "pairs_id";

/// A solver file's own test figures and its best classical solver's, as [`TestFigures::record`]
/// wrote them, when they were measured on the test split of the pairs file `pairs_id` names
/// (`test_pairs` pairs).
struct RecordedFigures {
    test_psnr: f64,
    best_classical: (String, f64),
}

impl RecordedFigures {
    fn of(file: &SolverFile, pairs_id: &str, test_pairs: usize) -> Option<RecordedFigures> {
        let provenance = |key: &str| file.provenance.get(key);
        if provenance(PAIRS_ID)?.as_str()? != pairs_id
            || provenance("test_pairs")?.as_u64()? != test_pairs as u64
        {
            return None;
        }
        Some(RecordedFigures {
            test_psnr: *file.metrics.get(TEST_PSNR)?,
            best_classical: (
                provenance("best_classical")?.as_str()?.to_string(),
                *file.metrics.get("best_classical_test_psnr")?,
            ),
        })
    }
}

/// The kind of a distilled time-only solver (Euler's times learned).
pub const TIME_ONLY_KIND: &str = "bns-time-only";

/// Refuses `baseline` unless it is a time-only solver at `nfe` and guidance `w` for the model
/// `model_id`.
pub fn check_time_only_baseline(
    baseline: &SolverFile,
    nfe: usize,
    w: f64,
    model_id: Option<&str>,
) -> std::result::Result<(), String> {
    if baseline.kind == TIME_ONLY_KIND
        && baseline.nfe == nfe
        && baseline.guidance == w
        && baseline.model_id.as_deref() == model_id
    {
        return Ok(());
    }
    Err(format!(
        "the time-only baseline {:?} is a {} solver at NFE {} and guidance {} for model {}, not a \
         {TIME_ONLY_KIND} solver at NFE {nfe} and guidance {w} for model {}",
        baseline.name,
        baseline.kind,
        baseline.nfe,
        baseline.guidance,
        baseline.model_id.as_deref().unwrap_or("(any)"),
        model_id.unwrap_or("(any)")
    ))
}

/// The classical table a distilled solver started from, from its provenance's `init` and `grid`
/// (`None` when it does not say, or names something this build does not have).
fn init_of(solver: &SolverFile) -> Option<NsTable> {
    let text = |key: &str| solver.provenance.get(key)?.as_str().map(str::to_owned);
    let method: Method = text("init")?.parse().ok()?;
    let grid: Grid = text("grid")?.parse().ok()?;
    method.build(solver.nfe, grid).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_std() {
        let (mean, std) = mean_std(&[10.0, 20.0]);
        assert_eq!((mean, std), (15.0, 5.0));
    }
}
