//! The distillation procedure, one iteration at a time (so the page's worker can report each
//! and stop between them): Adam on the training pairs with a cosine learning-rate decay, the
//! validation PSNR every few iterations measured by the runtime's own sampling
//! ([`crate::sample::integrate`] and [`crate::metrics::psnr`], the measurement `bns solver
//! measure` makes), and the parameters with the best validation PSNR kept, the init being the
//! first candidate. The same schedule and batch order as `bns distill`.

use crate::grid::Grid;
use crate::metrics::psnr;
use crate::model::Model;
use crate::noise::Noise;
use crate::sample::integrate;
use crate::solver::{Method, NsTable};
use crate::{Error, Result};

use super::{gradient::loss_and_gradient, Adam, BnsParameters};

/// Rows solved together when measuring a PSNR.
const MEASURE_BATCH: usize = 128;
/// Where errors of a distillation come from.
const ORIGIN: &str = "distillation";

/// Noise, ground truth and labels of some pairs: `noise` and `truth` `[len, dim]`, `labels`
/// `[len]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TruthPairs {
    pub dim: usize,
    pub noise: Vec<f32>,
    pub truth: Vec<f32>,
    pub labels: Vec<u32>,
}

impl TruthPairs {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pairs `start..end` as their own set.
    pub fn slice(&self, start: usize, end: usize) -> TruthPairs {
        let d = self.dim;
        TruthPairs {
            dim: d,
            noise: self.noise[start * d..end * d].to_vec(),
            truth: self.truth[start * d..end * d].to_vec(),
            labels: self.labels[start..end].to_vec(),
        }
    }

    /// The noise, truth and labels of `rows`.
    fn gather(&self, rows: &[usize]) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
        let d = self.dim;
        let mut noise = Vec::with_capacity(rows.len() * d);
        let mut truth = Vec::with_capacity(rows.len() * d);
        for &r in rows {
            noise.extend_from_slice(&self.noise[r * d..(r + 1) * d]);
            truth.extend_from_slice(&self.truth[r * d..(r + 1) * d]);
        }
        (noise, truth, rows.iter().map(|&r| self.labels[r]).collect())
    }
}

/// Mean PSNR (dB) of `table` on `pairs`, as the runtime samples it.
pub fn mean_psnr(model: &Model, table: &NsTable, pairs: &TruthPairs, guidance: f64) -> Result<f64> {
    let d = pairs.dim;
    let mut total = 0.0;
    for start in (0..pairs.len()).step_by(MEASURE_BATCH) {
        let end = (start + MEASURE_BATCH).min(pairs.len());
        let x0 = pairs.noise[start * d..end * d].to_vec();
        let x = integrate(model, table, x0, &pairs.labels[start..end], guidance)?;
        total += psnr(&x, &pairs.truth[start * d..end * d], d)
            .iter()
            .sum::<f64>();
    }
    Ok(total / pairs.len().max(1) as f64)
}

/// Multiplier from `loss = mean log MSE` (MSE on [−1, 1]) to PSNR on [0, 1]:
/// `PSNR = −10/ln 10 · loss + 10·log10 4`.
pub fn loss_to_psnr(loss: f64) -> f64 {
    -10.0 / std::f64::consts::LN_10 * loss + 10.0 * libm::log10(4.0)
}

/// What a distillation learns and how.
#[derive(Clone, Debug, PartialEq)]
pub struct DistillationSettings {
    pub nfe: usize,
    /// Guidance scale `w` (that of the pairs).
    pub guidance: f64,
    /// The classical solver the parameters start from, on `grid`.
    pub init: Method,
    pub grid: Grid,
    /// Learn only the times of Euler (the time-only baseline; `init` must be Euler).
    pub time_only: bool,
    pub iterations: usize,
    /// Training pairs per iteration.
    pub batch: usize,
    /// Peak learning rate (cosine decay to 1% of it).
    pub lr: f64,
    /// Measure the validation PSNR every this many iterations (and after the last).
    pub validate_every: usize,
    /// Seed of the batch order.
    pub seed: u64,
}

impl DistillationSettings {
    /// `bns distill`'s defaults for `nfe` steps at guidance `w`.
    pub fn new(nfe: usize, guidance: f64) -> DistillationSettings {
        DistillationSettings {
            nfe,
            guidance,
            init: Method::Midpoint,
            grid: Grid::Uniform,
            time_only: false,
            iterations: 1000,
            batch: 40,
            lr: 5e-3,
            validate_every: 50,
            seed: 0,
        }
    }

    /// The learning rate of iteration `k` of `iterations` (1-based): cosine from `lr` to 1% of it.
    pub fn learning_rate(&self, k: usize) -> f64 {
        let fraction = k as f64 / self.iterations as f64;
        self.lr * (0.01 + 0.99 * 0.5 * (1.0 + libm::cos(std::f64::consts::PI * fraction)))
    }
}

/// What one iteration did.
#[derive(Clone, Debug, PartialEq)]
pub struct Iteration {
    /// 1-based.
    pub iteration: usize,
    /// The batch's PSNR from its loss, before the step.
    pub train_psnr: f64,
    /// The validation PSNR after the step, when measured this iteration.
    pub validation_psnr: Option<f64>,
    /// The best validation PSNR so far (the init's at first).
    pub best_validation_psnr: f64,
}

/// A distillation in progress.
#[derive(Clone, Debug)]
pub struct Distillation {
    model: Model,
    settings: DistillationSettings,
    train: TruthPairs,
    validation: TruthPairs,
    params: BnsParameters,
    adam: Adam,
    order: BatchOrder,
    iteration: usize,
    init_table: NsTable,
    init_validation_psnr: f64,
    /// The best validation PSNR, the iteration it was measured after (0: the init), and those
    /// parameters.
    best: (f64, usize, BnsParameters),
}

impl Distillation {
    /// Checks the settings against the model and the pairs, builds the initial solver and
    /// measures it on the validation pairs.
    pub fn new(
        model: &Model,
        settings: DistillationSettings,
        train: TruthPairs,
        validation: TruthPairs,
    ) -> Result<Distillation> {
        let fail = |problem: String| Err(Error::new(ORIGIN, problem));
        let dim = model.spec().data_dim();
        if settings.nfe == 0 || settings.nfe > crate::solver::MAX_STEPS {
            return fail(format!(
                "the NFE must be in 1..={}, got {}",
                crate::solver::MAX_STEPS,
                settings.nfe
            ));
        }
        if settings.iterations == 0 || settings.batch == 0 || settings.validate_every == 0 {
            return fail("iterations, batch and validate_every must be at least 1".into());
        }
        if !(settings.lr.is_finite() && settings.lr > 0.0) {
            return fail(format!(
                "the learning rate must be positive, got {}",
                settings.lr
            ));
        }
        if settings.time_only && settings.init != Method::Euler {
            return fail("a time-only solver learns the times of Euler: use the Euler init".into());
        }
        for (name, pairs) in [("training", &train), ("validation", &validation)] {
            if pairs.is_empty() {
                return fail(format!("there are no {name} pairs"));
            }
            if pairs.dim != dim
                || pairs.noise.len() != pairs.len() * dim
                || pairs.truth.len() != pairs.len() * dim
            {
                return fail(format!(
                    "the {name} pairs are not [{} × {dim}] (the model's data size)",
                    pairs.len()
                ));
            }
        }
        let init_table = settings
            .init
            .build(settings.nfe, settings.grid)
            .map_err(|e| Error::new(ORIGIN, format!("init {}: {e}", settings.init.name())))?;
        let params = BnsParameters::from_table(&init_table, settings.time_only)
            .map_err(|e| Error::new(ORIGIN, e))?;
        let init_validation_psnr = mean_psnr(model, &init_table, &validation, settings.guidance)?;
        let adam = Adam::new(params.values().len());
        let order = BatchOrder::new(train.len(), settings.seed);
        Ok(Distillation {
            model: model.clone(),
            train,
            validation,
            adam,
            order,
            iteration: 0,
            init_table,
            init_validation_psnr,
            best: (init_validation_psnr, 0, params.clone()),
            params,
            settings,
        })
    }

    /// Whether every iteration is done.
    pub fn finished(&self) -> bool {
        self.iteration >= self.settings.iterations
    }

    /// Iterations done.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    pub fn settings(&self) -> &DistillationSettings {
        &self.settings
    }

    /// One Adam step on the next batch; measures the validation PSNR when it is due. Errors if
    /// the loss is not finite (the step would diverge) or every iteration is done.
    pub fn step(&mut self) -> Result<Iteration> {
        if self.finished() {
            return Err(Error::new(ORIGIN, "every iteration is done"));
        }
        let k = self.iteration + 1;
        let batch = self.settings.batch.min(self.train.len());
        let rows = self.order.next_rows(batch);
        let (x0, truth, labels) = self.train.gather(&rows);
        let step = loss_and_gradient(
            &self.model,
            &self.params,
            &x0,
            &truth,
            &labels,
            self.settings.guidance,
        )?;
        if !step.loss.is_finite() || step.gradient.iter().any(|g| !g.is_finite()) {
            return Err(Error::new(
                ORIGIN,
                format!("diverged at iteration {k}; try a lower learning rate"),
            ));
        }
        let mut values = self.params.values();
        let lr = self.settings.learning_rate(k);
        self.adam.step(&mut values, &step.gradient, lr);
        self.params.set_values(&values);
        self.iteration = k;
        let mut validation_psnr = None;
        if k.is_multiple_of(self.settings.validate_every) || k == self.settings.iterations {
            let table = self.params.table();
            let measured = mean_psnr(
                &self.model,
                &table,
                &self.validation,
                self.settings.guidance,
            )?;
            if measured > self.best.0 {
                self.best = (measured, k, self.params.clone());
            }
            validation_psnr = Some(measured);
        }
        Ok(Iteration {
            iteration: k,
            train_psnr: loss_to_psnr(step.loss),
            validation_psnr,
            best_validation_psnr: self.best.0,
        })
    }

    /// The solver with the best validation PSNR so far, as a general NS table.
    pub fn best_table(&self) -> NsTable {
        self.best.2.table()
    }

    /// The best validation PSNR so far and the iteration it was measured after (0: the init).
    pub fn best(&self) -> (f64, usize) {
        (self.best.0, self.best.1)
    }

    /// The initial (classical) solver and its validation PSNR.
    pub fn init(&self) -> (&NsTable, f64) {
        (&self.init_table, self.init_validation_psnr)
    }

    /// The validation pairs.
    pub fn validation(&self) -> &TruthPairs {
        &self.validation
    }
}

/// The training rows of each iteration: epochs of fresh shuffles of `0..len` from one seeded
/// stream, so iteration `i`'s rows depend only on the seed and `i`.
#[derive(Clone, Debug)]
pub struct BatchOrder {
    noise: Noise,
    order: Vec<usize>,
    cursor: usize,
}

impl BatchOrder {
    pub fn new(len: usize, seed: u64) -> BatchOrder {
        BatchOrder {
            noise: Noise::new(seed),
            order: (0..len).collect(),
            cursor: len,
        }
    }

    /// The next `batch` rows.
    pub fn next_rows(&mut self, batch: usize) -> Vec<usize> {
        let mut rows = Vec::with_capacity(batch);
        while rows.len() < batch && !self.order.is_empty() {
            if self.cursor == self.order.len() {
                shuffle(&mut self.order, &mut self.noise);
                self.cursor = 0;
            }
            rows.push(self.order[self.cursor]);
            self.cursor += 1;
        }
        rows
    }
}

/// Fisher–Yates shuffle.
fn shuffle(order: &mut [usize], noise: &mut Noise) {
    for i in (1..order.len()).rev() {
        let j = ((noise.uniform() * (i + 1) as f64) as usize).min(i);
        order.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truth::{pair_inputs, solve_rows, DEFAULT_TOLERANCE};

    /// The published checkerboard model (an unconditional 2-D velocity MLP).
    fn checkerboard() -> Model {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../www/models/checkerboard/model.safetensors");
        Model::load(&path).unwrap()
    }

    fn pairs(model: &Model, seed: u64, count: usize) -> TruthPairs {
        let (noise, labels) = pair_inputs(model, seed, count);
        let (truth, _) = solve_rows(model, &noise, &labels, 0.0, DEFAULT_TOLERANCE).unwrap();
        TruthPairs {
            dim: model.spec().data_dim(),
            noise,
            truth,
            labels,
        }
    }

    #[test]
    fn distillation_beats_its_init_on_checkerboard_pairs() {
        let model = checkerboard();
        let all = pairs(&model, 1, 256);
        let (train, validation) = (all.slice(0, 192), all.slice(192, 256));
        let test = pairs(&model, 2, 128);
        let settings = DistillationSettings {
            iterations: 80,
            batch: 32,
            lr: 1e-2,
            validate_every: 10,
            ..DistillationSettings::new(4, 0.0)
        };
        let mut run = Distillation::new(&model, settings, train, validation).unwrap();
        let (init_table, init_validation) = {
            let (table, psnr) = run.init();
            (table.clone(), psnr)
        };
        let mut last = None;
        while !run.finished() {
            last = Some(run.step().unwrap());
        }
        let last = last.unwrap();
        assert_eq!(last.iteration, 80);
        let (best, best_iteration) = run.best();
        assert!(best_iteration > 0, "no iteration beat the init");
        assert!(
            best > init_validation + 5.0,
            "validation: {best:.2} dB vs the init's {init_validation:.2} dB"
        );
        // The kept solver, measured again by the runtime on pairs that chose nothing.
        let table = run.best_table();
        table.validate().unwrap();
        assert!((mean_psnr(&model, &table, run.validation(), 0.0).unwrap() - best).abs() < 1e-9);
        let (solver, init) = (
            mean_psnr(&model, &table, &test, 0.0).unwrap(),
            mean_psnr(&model, &init_table, &test, 0.0).unwrap(),
        );
        assert!(
            solver > init + 5.0,
            "test: {solver:.2} dB vs the init's {init:.2} dB"
        );
    }
}
