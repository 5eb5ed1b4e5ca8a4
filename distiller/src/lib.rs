//! The distiller behind the `bns` command: training flow models, ground truth by an adaptive
//! solver, BNS distillation, evaluation and publishing. `main.rs` is only the command line;
//! everything it runs is here, one module per concept and one per subcommand (`commands`).
//!
//! It reads and writes models and solvers only through `web_sampler`'s types, so a file the
//! CLI writes is a file the page reads.

pub mod bns;
pub mod checkpoint;
pub mod classifier;
pub mod commands;
pub mod compute;
pub mod data;
pub mod dopri5;
pub mod files;
pub mod frechet;
pub mod metrics;
pub mod network;
pub mod network_args;
pub mod optim;
pub mod pairs;
pub mod picture;
pub mod plot;
pub mod progress;
pub mod shard;

// glibc's malloc costs up to 2× in candle's many small allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
