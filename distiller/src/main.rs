//! `bns`: build, inspect and run non-stationary solvers for flow models.
//!
//! The command tree is defined here with clap; each subcommand lives in its own module under
//! the library's `commands/`. Every failure is printed as one `error:` line naming the file and
//! the problem.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use distiller::commands;

#[derive(Parser)]
#[command(
    name = "bns",
    version,
    about = "Bespoke Non-Stationary solvers: build, inspect and run ODE solvers for flow models",
    long_about = "Bespoke Non-Stationary solvers: build, inspect and run ODE solvers for flow models.\n\n\
A solver is a small JSON table (times and coefficients a, b) that runs a flow model's velocity\n\
network for a fixed number of function evaluations (NFE). Classical solvers (Euler, midpoint, RK4,\n\
DPM-Solver++, ...) are such tables too, so every solver runs through the same code.",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a flow-matching velocity network on a dataset and write the model file
    Train(commands::train::TrainArgs),
    /// Ground truth: solve the model's ODE from seeded noise with adaptive Dormand–Prince 5(4)
    Truth(commands::truth::TruthArgs),
    /// Ground-truth pairs files: merge the shards of `bns truth --shard K/N`
    #[command(subcommand)]
    Pairs(commands::pairs::PairsCommand),
    /// Distill a BNS solver for a model from ground-truth pairs
    Distill(commands::distill::DistillArgs),
    /// Evaluate every classical and distilled solver against the ground truth: tables, plots and sample grids
    Eval(commands::eval::EvalArgs),
    /// From a dataset to a published model in one command: train, truth, distill, eval, publish
    /// (resumable; the settings suit the data's kind)
    Pipeline(Box<commands::pipeline::PipelineArgs>),
    /// Publish a model and its distilled solvers on the site, after verifying them on the runtime
    Publish(commands::publish::PublishArgs),
    /// Generate samples with a model and a solver and save them as a PNG grid
    Sample(commands::sample::SampleArgs),
    /// Build and inspect solver files
    #[command(subcommand)]
    Solver(commands::solver::SolverCommand),
    /// Create and inspect model files
    #[command(subcommand)]
    Model(commands::model::ModelCommand),
}

fn main() -> ExitCode {
    distiller::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Solver(c) => commands::solver::run(c),
        Command::Model(c) => commands::model::run(c),
        Command::Sample(a) => commands::sample::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Truth(a) => commands::truth::run(a),
        Command::Pairs(c) => commands::pairs::run(c),
        Command::Distill(a) => commands::distill::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Publish(a) => commands::publish::run(a),
        Command::Pipeline(a) => commands::pipeline::run(*a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
