//! `bns pairs`: work with ground-truth pairs files; `merge` joins the shards of a
//! `bns truth --shard K/N` run ([`crate::shard`]).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::pairs::Pairs;
use crate::shard::merge;

#[derive(Subcommand)]
pub enum PairsCommand {
    /// Join the shards of one `bns truth --shard K/N` run into the pairs file one run makes
    Merge(MergeArgs),
}

#[derive(Args)]
pub struct MergeArgs {
    /// The shard files, every K of 1..N once, in any order
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// The merged pairs file (.safetensors)
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(command: PairsCommand) -> Result<()> {
    match command {
        PairsCommand::Merge(args) => run_merge(args),
    }
}

fn run_merge(args: MergeArgs) -> Result<()> {
    if args.shards.contains(&args.output) {
        bail!(
            "{}: is one of the shards; write the merged pairs to another file",
            args.output.display()
        );
    }
    let shards = args
        .shards
        .iter()
        .map(|path| Ok((path.clone(), Pairs::load_shard(path)?)))
        .collect::<Result<Vec<_>>>()?;
    let pairs = merge(&shards)?;
    pairs.save(&args.output)?;
    println!(
        "merged {} shards into {} pairs ({} training, {} validation, {} test) in {}: mean NFE \
         {:.1}",
        shards.len(),
        pairs.len(),
        pairs.meta.train,
        pairs.meta.validation,
        pairs.meta.test,
        args.output.display(),
        pairs.meta.mean_nfe
    );
    Ok(())
}
