//! `bns solver new|show`: build a classical solver as an NS table; print a solver file readably.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};
use web_sampler::grid::Grid;
use web_sampler::model::Model;
use web_sampler::solver::{Method, SolverFile};

use super::printable;

#[derive(Subcommand)]
pub enum SolverCommand {
    /// Write a classical solver (Euler, midpoint, Heun, RK4, AB2/3, DPM-Solver++(2M)) as a solver file
    New(NewArgs),
    /// Print a solver file: its metadata and a table of times and coefficients
    Show {
        /// The solver file (JSON)
        file: PathBuf,
    },
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
