//! `bns solver new|show|measure`: build a classical solver as an NS table; print a solver file
//! readably; measure distilled solvers again on the test split of their pairs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use web_sampler::grid::Grid;
use web_sampler::model::Model;
use web_sampler::solver::{Method, SolverFile};

use super::eval::solvers::collect_distilled;
use super::printable;
use crate::files::file_sha256;
use crate::metrics::{
    check_time_only_baseline, mean_std, solver_psnr, TestFigures, TIME_ONLY_KIND,
};
use crate::pairs::Pairs;
use crate::psnr_cache::PsnrCache;

#[derive(Subcommand)]
pub enum SolverCommand {
    /// Write a classical solver (Euler, midpoint, Heun, RK4, AB2/3, DPM-Solver++(2M)) as a solver file
    New(NewArgs),
    /// Print a solver file: its metadata and a table of times and coefficients
    Show {
        /// The solver file (JSON)
        file: PathBuf,
    },
    /// Measure distilled solvers on the test split of their pairs and record the figures in
    /// their files: test PSNR (mean, std, standard error), and the same NFE's init, best
    /// classical solver and time-only baseline (a bns-time-only file among those given)
    Measure(MeasureArgs),
}

#[derive(Args)]
pub struct MeasureArgs {
    /// The model file the solvers were distilled for
    #[arg(long)]
    model: PathBuf,
    /// Ground-truth pairs from `bns truth` for this model, with a test split. Their validation
    /// split must be the one the solvers were chosen on: each solver's recorded validation PSNR
    /// is checked on it
    #[arg(long)]
    pairs: PathBuf,
    /// Solver files, or folders to take every distilled solver of this model and the pairs'
    /// guidance from; each is rewritten in place with its new figures
    #[arg(required = true, num_args = 1..)]
    solvers: Vec<PathBuf>,
}

#[derive(Args)]
pub struct NewArgs {
    /// Method: euler, midpoint, heun, rk4, ab2, ab3, dpmpp2m
    #[arg(long)]
    method: Method,
    /// Time grid: uniform, or edm (Karras et al., ρ = 7, mapped to flow time t = 1/(1+σ))
    #[arg(long, default_value = "uniform")]
    grid: Grid,
    /// Number of function evaluations (a multiple of the method's stages: 2 for midpoint/heun, 4 for rk4)
    #[arg(long)]
    nfe: usize,
    /// Guidance scale w recorded in the file (classical solvers work for any w)
    #[arg(long, default_value_t = 0.0)]
    guidance: f64,
    /// Bind the solver to this model file (its id is written into the solver)
    #[arg(long)]
    model: Option<PathBuf>,
    /// Output file
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(command: SolverCommand) -> Result<()> {
    match command {
        SolverCommand::New(args) => new(args),
        SolverCommand::Show { file } => show(&file),
        SolverCommand::Measure(args) => measure(args),
    }
}

fn new(args: NewArgs) -> Result<()> {
    let table = args
        .method
        .build(args.nfe, args.grid)
        .map_err(anyhow::Error::msg)?;
    let name = format!("{}-{}-{}", args.method.name(), args.grid.name(), args.nfe);
    let mut file = SolverFile::new(name, args.method.name(), args.guidance, table);
    file.provenance
        .insert("grid".into(), serde_json::json!(args.grid.name()));
    if let Some(path) = &args.model {
        let model = Model::load(path)?;
        file.model_id = Some(model.id().to_string());
    }
    file.validate(&args.output.display().to_string())?;
    file.save(&args.output)?;
    println!(
        "wrote {} ({}, {} grid, NFE {})",
        args.output.display(),
        args.method.name(),
        args.grid.name(),
        args.nfe
    );
    Ok(())
}

fn measure(args: MeasureArgs) -> Result<()> {
    let model = Model::load(&args.model)?;
    let pairs = Pairs::load(&args.pairs)?;
    pairs.check_for(&model, &args.pairs)?;
    let test = pairs.test_split(&args.pairs)?;
    let pairs_id = file_sha256(&args.pairs)?;
    let guidance = pairs.meta.guidance;
    let files = collect_distilled(&args.solvers, &model, guidance, &mut |note| {
        println!("note: {note}")
    })?;
    if files.is_empty() {
        bail!(
            "no solver distilled for model {} at guidance {guidance} among {}",
            model.id(),
            args.solvers
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Every file is measured before any is rewritten, so a refusal leaves them all as they were.
    let mut measured = Vec::new();
    for (path, file) in &files {
        let origin = path.display();
        if let Some(&recorded) = file.metrics.get("validation_psnr") {
            let (again, _) = mean_std(&solver_psnr(
                &model,
                &file.table(),
                &pairs.validation(),
                guidance,
            )?);
            if (again - recorded).abs() > MEASURE_TOLERANCE_DB {
                bail!(
                    "{origin}: records a validation PSNR of {recorded:.3} dB but measures \
                     {again:.3} dB on the validation split of {}: these are not the pairs it was \
                     distilled with (compute them with the same `bns truth` arguments, changing \
                     only --count and --test)",
                    args.pairs.display()
                );
            }
        }
        let time_only = (file.kind != TIME_ONLY_KIND)
            .then(|| {
                files.iter().map(|(_, f)| f).find(|f| {
                    check_time_only_baseline(f, file.nfe, guidance, Some(model.id())).is_ok()
                })
            })
            .flatten();
        let figures = TestFigures::measure(
            &model,
            file,
            &test,
            &pairs_id,
            time_only,
            &PsnrCache::none(),
        )
        .with_context(|| format!("{origin}: cannot measure it"))?;
        let mut updated = file.clone();
        // Figures of the init from before the test split (on the validation pairs).
        updated
            .metrics
            .retain(|key, _| !key.starts_with("init_") || key == "init_test_psnr");
        figures.record(&mut updated);
        measured.push((path, updated, figures));
    }
    for (path, updated, figures) in measured {
        updated.save(path)?;
        let time_only = figures
            .time_only
            .map_or_else(String::new, |p| format!(", time-only {p:.2}"));
        println!(
            "{}: test PSNR {:.2} ± {:.2} dB on {} pairs (NFE {}; best classical {} {:.2}{time_only})",
            path.display(),
            figures.solver.mean,
            figures.solver.sem,
            figures.pairs,
            updated.nfe,
            figures.best_classical.0,
            figures.best_classical.1
        );
    }
    Ok(())
}

/// Largest accepted difference between a solver's recorded and re-measured validation PSNR.
const MEASURE_TOLERANCE_DB: f64 = 0.1;

fn show(path: &Path) -> Result<()> {
    let file = SolverFile::load(path)?;
    print!("{}", describe(&file));
    Ok(())
}

/// A readable description of a solver file: metadata, then one row per step with its time and
/// the coefficients a_ij (on states) and b_ij (on velocities).
pub fn describe(file: &SolverFile) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "name      {}", printable(&file.name));
    let _ = writeln!(out, "kind      {}", printable(&file.kind));
    let _ = writeln!(out, "NFE       {}", file.nfe);
    let _ = writeln!(out, "guidance  {}", file.guidance);
    let _ = writeln!(
        out,
        "model     {}",
        printable(
            file.model_id
                .as_deref()
                .unwrap_or("any (not bound to a model)")
        )
    );
    // JSON values print with their strings escaped; keys are plain text.
    for (k, v) in &file.metrics {
        let _ = writeln!(out, "metric    {} = {v:.4}", printable(k));
    }
    for (k, v) in &file.provenance {
        let _ = writeln!(out, "origin    {} = {v}", printable(k));
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  i     t_i       a_i0 … a_ii (states)          b_i0 … b_ii (velocities)"
    );
    for i in 0..file.nfe {
        let row = |v: &[f64]| {
            v.iter()
                .map(|c| format!("{c:>8.4}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            out,
            "{i:>3}  {:>8.5}   a: {}",
            file.times[i],
            row(&file.a[i])
        );
        let _ = writeln!(out, "                 b: {}", row(&file.b[i]));
    }
    let _ = writeln!(
        out,
        "{:>3}  {:>8.5}   (output x_n)",
        file.nfe, file.times[file.nfe]
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::distill::distill;
    use crate::commands::distill::tests::{args as distill_args, tiny_model_and_pairs};
    use candle_core::Device;
    use web_sampler::scratch::ScratchDir;

    #[test]
    fn measure_records_the_test_figures_and_baselines_in_place() {
        let scratch = ScratchDir::new("solver-measure");
        let dir = scratch.path();
        let (model_path, pairs_path) = tiny_model_and_pairs(dir);
        let mut time_only = distill_args(&model_path, &pairs_path, &dir.join("t-4.json"));
        (time_only.time_only, time_only.iterations) = (true, 20);
        distill(&time_only, &Device::Cpu, false).unwrap();
        let bns_path = dir.join("bns-4.json");
        let mut bns = distill_args(&model_path, &pairs_path, &bns_path);
        bns.iterations = 20;
        let distilled = distill(&bns, &Device::Cpu, false).unwrap().solver;

        // As a file from before the test split: validation figures and the init's only.
        let mut old = distilled.clone();
        old.metrics.retain(|key, _| key.starts_with("validation"));
        old.metrics.insert("init_euler_uniform_psnr".into(), 20.0);
        old.provenance.remove("test_pairs");
        old.save(&bns_path).unwrap();
        measure(MeasureArgs {
            model: model_path.clone(),
            pairs: pairs_path.clone(),
            solvers: vec![dir.to_path_buf()],
        })
        .unwrap();
        let remeasured = SolverFile::load(&bns_path).unwrap();
        let model = Model::load(&model_path).unwrap();
        let pairs = Pairs::load(&pairs_path).unwrap();
        let baseline = SolverFile::load(&dir.join("t-4.json")).unwrap();
        let mut expected = old.clone();
        expected.metrics.remove("init_euler_uniform_psnr");
        let pairs_id = file_sha256(&pairs_path).unwrap();
        TestFigures::measure(
            &model,
            &old,
            &pairs.test(),
            &pairs_id,
            Some(&baseline),
            &PsnrCache::none(),
        )
        .unwrap()
        .record(&mut expected);
        assert_eq!(remeasured, expected);
        assert!(remeasured.metrics.contains_key("time_only_test_psnr"));
        // The same figures distillation recorded (which had no time-only baseline given).
        let mut without_baseline = remeasured.metrics.clone();
        without_baseline.remove("time_only_test_psnr");
        assert_eq!(without_baseline, distilled.metrics);

        // Pairs whose validation split is not the one the solver was chosen on: refused, and
        // no file is touched.
        let mut tampered = remeasured.clone();
        *tampered.metrics.get_mut("validation_psnr").unwrap() += 1.0;
        tampered.save(&bns_path).unwrap();
        let before = std::fs::read(dir.join("t-4.json")).unwrap();
        let shown = format!(
            "{:#}",
            measure(MeasureArgs {
                model: model_path,
                pairs: pairs_path,
                solvers: vec![dir.to_path_buf()],
            })
            .unwrap_err()
        );
        assert!(
            shown.contains("bns-4.json") && shown.contains("not the pairs"),
            "{shown}"
        );
        assert_eq!(SolverFile::load(&bns_path).unwrap(), tampered);
        assert_eq!(std::fs::read(dir.join("t-4.json")).unwrap(), before);
    }
}
