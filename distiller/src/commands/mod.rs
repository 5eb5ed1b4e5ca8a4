//! One module per `bns` subcommand.

pub mod distill;
pub mod eval;
pub mod model;
pub mod pairs;
pub mod publish;
pub mod sample;
pub mod solver;
pub mod train;
pub mod truth;
