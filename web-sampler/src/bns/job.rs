//! A whole distillation from a model alone, in small pieces (the page's worker runs one piece
//! per turn, so that it can report progress and hear a Cancel between them): the ground-truth
//! pairs by DOPRI5 ([`crate::truth`]) one batch at a time, the classical solvers at the same NFE
//! measured on the validation pairs (the baselines), then [`Distillation`] one iteration at a
//! time, and finally the best solver as an ordinary solver file bound to the model's id.
//!
//! The pairs are exactly the first `train + validation` pairs of
//! `bns truth --seed S --batch 64 --validation V` ([`JobSettings::truth_command`]): the same
//! noise rows, labels and batches of [`TRUTH_BATCH`] rows stepped together, so `bns solver
//! measure` with such a pairs file finds the recorded validation PSNR again and measures the
//! solver on that file's test pairs, which the page never saw.

use std::collections::BTreeMap;

use serde_json::json;

use crate::grid::Grid;
use crate::model::{Architecture, Model};
use crate::solver::{Method, NsTable, SolverFile};
use crate::truth::{pair_inputs, solve_rows, DEFAULT_TOLERANCE};
use crate::{Error, Result};

use super::distillation::mean_psnr;
use super::{Distillation, DistillationSettings, Iteration, TruthPairs};

/// Rows solved together by DOPRI5: `bns truth`'s default `--batch`.
pub const TRUTH_BATCH: usize = 64;
/// Most pairs a job may ask for (bounds memory and time in a browser).
pub const MAX_PAIRS: usize = 8192;
/// Most iterations a job may ask for.
pub const MAX_ITERATIONS: usize = 100_000;
/// Where errors of a job come from.
const ORIGIN: &str = "distillation settings";

/// What to distil.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSettings {
    pub nfe: usize,
    pub guidance: f64,
    /// Training pairs (with `validation`, a multiple of [`TRUTH_BATCH`]).
    pub train: usize,
    pub validation: usize,
    pub iterations: usize,
    /// Training pairs per iteration.
    pub batch: usize,
    pub lr: f64,
    pub validate_every: usize,
    /// Seed of the noise (and of the batch order).
    pub seed: u64,
}

impl JobSettings {
    /// The `bns truth` command whose pairs begin with this job's (run it with `--test N` for
    /// test pairs the job never saw; `--count` includes them).
    pub fn truth_command(&self, test: usize) -> String {
        format!(
            "bns truth --seed {} --count {} --validation {} --test {test} --guidance {} --batch \
             {TRUTH_BATCH} --rtol {:e} --atol {:e}",
            self.seed,
            self.train + self.validation + test,
            self.validation,
            self.guidance,
            DEFAULT_TOLERANCE.rtol,
            DEFAULT_TOLERANCE.atol
        )
    }

    fn check(&self, model: &Model) -> Result<()> {
        let fail = |problem: String| Err(Error::new(ORIGIN, problem));
        if !matches!(model.spec().architecture, Architecture::Mlp(_)) {
            return fail(format!(
                "this page distils solvers for MLP models only (the {} network has no \
                 vector–Jacobian product in the runtime); use `bns distill`",
                model.spec().architecture.name()
            ));
        }
        if !(1..=crate::solver::MAX_STEPS).contains(&self.nfe) {
            return fail(format!(
                "NFE must be in 1..={}, got {}",
                crate::solver::MAX_STEPS,
                self.nfe
            ));
        }
        if !self.guidance.is_finite() || self.guidance < 0.0 {
            return fail(format!(
                "guidance must be a number ≥ 0, got {}",
                self.guidance
            ));
        }
        if self.guidance != 0.0 && !model.spec().is_conditional() {
            return fail(
                "guidance needs a class-conditional model; this one is unconditional".into(),
            );
        }
        let pairs = self.train + self.validation;
        if self.train == 0 || self.validation == 0 || pairs > MAX_PAIRS {
            return fail(format!(
                "training and validation pairs must be at least 1 each and {MAX_PAIRS} together, \
                 got {} and {}",
                self.train, self.validation
            ));
        }
        if !pairs.is_multiple_of(TRUTH_BATCH) {
            return fail(format!(
                "training + validation pairs must be a multiple of {TRUTH_BATCH} (the batches \
                 of `bns truth`), got {pairs}"
            ));
        }
        if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return fail(format!(
                "iterations must be in 1..={MAX_ITERATIONS}, got {}",
                self.iterations
            ));
        }
        Ok(())
    }
}

/// What [`DistillJob::advance`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Advance {
    /// A batch of ground truth: `done` of `total` pairs, the batch took `nfe` evaluations.
    Truth {
        done: usize,
        total: usize,
        nfe: usize,
    },
    /// The pairs are done and the baselines measured; training starts next.
    Baselines,
    /// One iteration of training.
    Iteration(Iteration),
}

enum Stage {
    Truth {
        noise: Vec<f32>,
        labels: Vec<u32>,
        truth: Vec<f32>,
        evaluations: usize,
    },
    Training(Box<Distillation>),
}

/// A distillation from a model alone (see the module).
pub struct DistillJob {
    model: Model,
    settings: JobSettings,
    stage: Stage,
    /// Mean DOPRI5 evaluations per pair (weighted by the batches' rows).
    truth_nfe: f64,
    /// Every classical solver at the NFE (label, validation PSNR), the best first.
    baselines: Vec<(String, f64)>,
}

impl DistillJob {
    /// Checks the settings against the model (an MLP; NFE, guidance, pair counts).
    pub fn new(model: &Model, settings: JobSettings) -> Result<DistillJob> {
        settings.check(model)?;
        let count = settings.train + settings.validation;
        let (noise, labels) = pair_inputs(model, settings.seed, count);
        Ok(DistillJob {
            model: model.clone(),
            stage: Stage::Truth {
                noise,
                labels,
                truth: Vec::new(),
                evaluations: 0,
            },
            settings,
            truth_nfe: 0.0,
            baselines: Vec::new(),
        })
    }

    pub fn settings(&self) -> &JobSettings {
        &self.settings
    }

    /// Whether every iteration is done.
    pub fn finished(&self) -> bool {
        matches!(&self.stage, Stage::Training(d) if d.finished())
    }

    /// The next piece of work: a batch of ground truth, the baselines, or an iteration.
    pub fn advance(&mut self) -> Result<Advance> {
        let dim = self.model.spec().data_dim();
        let w = self.settings.guidance;
        match &mut self.stage {
            Stage::Truth {
                noise,
                labels,
                truth,
                evaluations,
            } => {
                let total = labels.len();
                let start = truth.len() / dim;
                if start < total {
                    let end = (start + TRUTH_BATCH).min(total);
                    let (batch, nfe) = solve_rows(
                        &self.model,
                        &noise[start * dim..end * dim],
                        &labels[start..end],
                        w,
                        DEFAULT_TOLERANCE,
                    )?;
                    truth.extend(batch);
                    *evaluations += nfe * (end - start);
                    return Ok(Advance::Truth {
                        done: end,
                        total,
                        nfe,
                    });
                }
                self.truth_nfe = *evaluations as f64 / total as f64;
                let all = TruthPairs {
                    dim,
                    noise: std::mem::take(noise),
                    truth: std::mem::take(truth),
                    labels: std::mem::take(labels),
                };
                let train = all.slice(0, self.settings.train);
                let validation = all.slice(self.settings.train, total);
                let mut baselines = Vec::new();
                for method in Method::ALL {
                    for grid in Grid::ALL {
                        if let Ok(table) = method.build(self.settings.nfe, grid) {
                            let psnr = mean_psnr(&self.model, &table, &validation, w)?;
                            baselines.push((format!("{}-{}", method.name(), grid.name()), psnr));
                        }
                    }
                }
                baselines.sort_by(|a, b| b.1.total_cmp(&a.1));
                self.baselines = baselines;
                let settings = DistillationSettings {
                    iterations: self.settings.iterations,
                    batch: self.settings.batch,
                    lr: self.settings.lr,
                    validate_every: self.settings.validate_every,
                    seed: self.settings.seed,
                    ..DistillationSettings::new(self.settings.nfe, w)
                };
                let distillation = Distillation::new(&self.model, settings, train, validation)?;
                self.stage = Stage::Training(Box::new(distillation));
                Ok(Advance::Baselines)
            }
            Stage::Training(distillation) => Ok(Advance::Iteration(distillation.step()?)),
        }
    }

    /// Every classical solver at the NFE with its validation PSNR, the best first (empty until
    /// the pairs are done).
    pub fn baselines(&self) -> &[(String, f64)] {
        &self.baselines
    }

    /// The init's label and validation PSNR, once training started.
    pub fn init(&self) -> Option<(String, f64)> {
        match &self.stage {
            Stage::Training(d) => {
                let s = d.settings();
                Some((format!("{}-{}", s.init.name(), s.grid.name()), d.init().1))
            }
            Stage::Truth { .. } => None,
        }
    }

    /// The best solver so far as a solver file bound to the model (`None` before training):
    /// kind `bns`, its validation PSNR in `metrics` (the runtime's measurement, the figure
    /// `bns solver measure` checks), how it was made in `provenance` (FORMATS.md §2).
    pub fn solver_file(&self, seconds: f64) -> Option<SolverFile> {
        let Stage::Training(d) = &self.stage else {
            return None;
        };
        let s = &self.settings;
        let table: NsTable = d.best_table();
        let (psnr, best_iteration) = d.best();
        let name = format!("bns-{}-w{}", s.nfe, s.guidance);
        let mut file = SolverFile::new(name, "bns", s.guidance, table);
        file.model_id = Some(self.model.id().to_string());
        file.metrics = BTreeMap::from([("validation_psnr".to_string(), psnr)]);
        let settings = d.settings();
        file.provenance = BTreeMap::from([
            ("init".to_string(), json!(settings.init.name())),
            ("grid".to_string(), json!(settings.grid.name())),
            ("iterations".to_string(), json!(d.iteration())),
            ("best_iteration".to_string(), json!(best_iteration)),
            ("batch".to_string(), json!(settings.batch)),
            ("lr".to_string(), json!(settings.lr)),
            ("train_pairs".to_string(), json!(s.train)),
            ("validation_pairs".to_string(), json!(s.validation)),
            ("pairs_rtol".to_string(), json!(DEFAULT_TOLERANCE.rtol)),
            ("pairs".to_string(), json!(s.truth_command(512))),
            (
                "truth_nfe".to_string(),
                json!((self.truth_nfe * 10.0).round() / 10.0),
            ),
            (
                "seconds".to_string(),
                json!((seconds * 10.0).round() / 10.0),
            ),
            (
                "distilled_in".to_string(),
                json!("the page's worker (wasm CPU path)"),
            ),
        ]);
        Some(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_settings_it_cannot_run_naming_the_field() {
        let spec = crate::model::unet_spec_for_tests();
        let unet = Model::random(spec, 1).unwrap();
        let settings = JobSettings {
            nfe: 4,
            guidance: 0.0,
            train: 48,
            validation: 16,
            iterations: 10,
            batch: 16,
            lr: 1e-2,
            validate_every: 5,
            seed: 0,
        };
        let error = DistillJob::new(&unet, settings.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("MLP models only"), "{error}");
        let mlp = crate::bns::gradient::tests::tiny_model(crate::model::Prediction::Velocity, 1);
        let uneven = JobSettings {
            train: 50,
            ..settings.clone()
        };
        let error = DistillJob::new(&mlp, uneven).err().unwrap().to_string();
        assert!(error.contains("multiple of 64"), "{error}");
        let negative = JobSettings {
            guidance: -1.0,
            ..settings
        };
        let error = DistillJob::new(&mlp, negative).err().unwrap().to_string();
        assert!(error.contains("guidance"), "{error}");
    }
}
