//! What the benchmarks share: reading their flags, and the published model and solver they time
//! (`--models DIR --model NAME --solver FILE --batch B`; seed 1, every class in turn, the
//! solver's guidance).

use std::path::PathBuf;

use web_sampler::model::Model;
use web_sampler::sample::SampleRequest;
use web_sampler::solver::{NsTable, SolverFile};

/// The value after the flag `name` in `args`, or `default`.
pub fn option(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// A published model, one of its solvers and the request both benchmarks time.
pub struct Workload {
    /// The model's folder name and the solver's file name, as given.
    pub name: String,
    pub solver: String,
    pub model_path: PathBuf,
    pub model: Model,
    pub file: SolverFile,
    pub table: NsTable,
    pub request: SampleRequest,
}

impl Workload {
    /// The workload the flags name (default: Fashion-MNIST's `bns-8-w0.json`, batch 64).
    pub fn from_args(args: &[String]) -> Result<Workload, Box<dyn std::error::Error>> {
        let batch: usize = option(args, "--batch", "64").parse()?;
        let name = option(args, "--model", "fashion-mnist");
        let solver = option(args, "--solver", "bns-8-w0.json");
        let models = option(
            args,
            "--models",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../www/models"),
        );
        let folder = PathBuf::from(models).join(&name);
        let model_path = folder.join("model.safetensors");
        let model = Model::load(&model_path)?;
        let file = SolverFile::load(&folder.join(&solver))?;
        let table = file.table();
        let request = SampleRequest {
            seed: 1,
            batch,
            class: None,
            guidance: file.guidance,
            first_row: 0,
        };
        Ok(Workload {
            name,
            solver,
            model_path,
            model,
            file,
            table,
            request,
        })
    }
}
