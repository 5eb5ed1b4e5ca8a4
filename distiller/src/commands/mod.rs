//! One module per `bns` subcommand.

pub mod model;
pub mod sample;
pub mod solver;
