//! How close a solver gets to the ground truth: PSNR per sample (DESIGN §2, "Metrics"), run on
//! the runtime's CPU path so that the figures are those of the solver as the browser runs it.

use anyhow::Result;
use web_sampler::model::Model;
use web_sampler::sample::integrate;
use web_sampler::solver::NsTable;

use crate::pairs::PairsView;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_std() {
        let (mean, std) = mean_std(&[10.0, 20.0]);
        assert_eq!((mean, std), (15.0, 5.0));
    }
}
