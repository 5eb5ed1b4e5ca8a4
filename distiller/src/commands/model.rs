//! `bns model init|show|convert`: create a model file with random weights; print a model's
//! architecture; store a model's weights in half (or single) precision.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use web_sampler::model::{Model, WeightDtype};

use super::printable;
use crate::network_args::{NetworkArgs, NetworkFlags};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Write an untrained model (random weights) with the given architecture, for tests and demos
    Init(InitArgs),
    /// Print a model file's id, architecture and size
    Show {
        /// The model file (.safetensors)
        file: PathBuf,
    },
    /// Write the model with its weights stored as f16 (half the bytes; each weight rounded to
    /// the nearest f16) or as f32. Solvers distilled for the original fit the result
    Convert(ConvertArgs),
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The model file (.safetensors)
    file: PathBuf,
    /// How to store the weights
    #[arg(long, value_enum)]
    dtype: DtypeArg,
    /// Output file
    #[arg(short, long)]
    output: PathBuf,
}

/// `--dtype`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DtypeArg {
    F16,
    F32,
}

impl From<DtypeArg> for WeightDtype {
    fn from(dtype: DtypeArg) -> WeightDtype {
        match dtype {
            DtypeArg::F16 => WeightDtype::F16,
            DtypeArg::F32 => WeightDtype::F32,
        }
    }
}

#[derive(Args)]
#[command(mut_args(init_defaults().defaults_in_help(Vec::new())))]
pub struct InitArgs {
    /// Data shape C,H,W: 1,28,28 for 28×28 grey images, 2,1,1 for 2-D points
    #[arg(long, value_delimiter = ',', default_value = "1,28,28")]
    shape: Vec<usize>,
    /// Number of classes (0 = unconditional); a null class is added for guidance
    #[arg(long, default_value_t = 10)]
    classes: usize,
    #[command(flatten)]
    network: NetworkFlags,
    /// Seed of the random weights
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(command: ModelCommand) -> Result<()> {
    match command {
        ModelCommand::Init(args) => init(args),
        ModelCommand::Show { file } => show(&file),
        ModelCommand::Convert(args) => convert(&args),
    }
}

fn convert(args: &ConvertArgs) -> Result<()> {
    let model = Model::load(&args.file)?;
    let converted = model.with_dtype(args.dtype.into())?;
    converted.save(&args.output)?;
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
    println!(
        "wrote {} ({} weights, {} bytes, from {} bytes; id {})",
        args.output.display(),
        converted.dtype().name(),
        size(&args.output),
        size(&args.file),
        converted.id()
    );
    if let Some(original) = &converted.spec().rounded_from {
        println!("solvers and pairs of model {original} fit it");
    }
    Ok(())
}

/// `bns train`'s network, narrower by default: untrained models are for tests and demos.
fn init_defaults() -> NetworkArgs {
    NetworkArgs {
        width: 256,
        ..NetworkArgs::default()
    }
}

fn init(args: InitArgs) -> Result<()> {
    if args.shape.len() != 3 {
        bail!(
            "--shape needs three numbers C,H,W, got {} ({:?})",
            args.shape.len(),
            args.shape
        );
    }
    let network = args
        .network
        .resolve(&init_defaults())
        .map_err(anyhow::Error::msg)?;
    let spec = network.spec(&args.shape, args.classes, "none (random weights)", &[])?;
    let model = Model::random(spec, args.seed)?;
    model.save(&args.output)?;
    println!(
        "wrote {} (untrained, random weights; id {})",
        args.output.display(),
        model.id()
    );
    Ok(())
}

fn show(path: &Path) -> Result<()> {
    let model = Model::load(path)?;
    let spec = model.spec();
    let parameters: usize = spec
        .tensor_shapes()
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    println!("file        {}", path.display());
    println!("id          {}", model.id());
    println!(
        "architecture {} ({})",
        spec.architecture,
        spec.architecture.summary()
    );
    println!("data shape  {:?}", spec.data_shape);
    println!(
        "classes     {}",
        if spec.is_conditional() {
            format!("{} + null class", spec.num_classes)
        } else {
            "unconditional".into()
        }
    );
    println!(
        "embeddings  time {}, class {}",
        spec.time_embedding, spec.class_embedding
    );
    println!(
        "time        embedding scale {}, the network predicts the {}",
        spec.time_scale,
        spec.prediction.name()
    );
    println!("path        {}", spec.path.name());
    println!(
        "dataset     {} ({} training steps)",
        printable(&spec.dataset),
        spec.training_steps
    );
    println!(
        "parameters  {parameters} (stored as {}: {:.2} MB)",
        model.dtype().name(),
        (parameters * model.dtype().bytes()) as f64 / 1e6
    );
    if let Some(original) = &spec.rounded_from {
        println!("rounded from {original} (its solvers and pairs fit this model)");
    }
    Ok(())
}
