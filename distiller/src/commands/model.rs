//! `bns model init|show`: create a model file with random weights; print a model's architecture.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use web_sampler::model::{Model, ModelSpec, Prediction, MODEL_FORMAT_VERSION};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Write an untrained model (random weights) with the given architecture, for tests and demos
    Init(InitArgs),
    /// Print a model file's id, architecture and size
    Show {
        /// The model file (.safetensors)
        file: PathBuf,
    },
}

#[derive(Args)]
pub struct InitArgs {
    /// Data shape C,H,W: 1,28,28 for 28×28 grey images, 2,1,1 for 2-D points
    #[arg(long, value_delimiter = ',', default_value = "1,28,28")]
    shape: Vec<usize>,
    /// Number of classes (0 = unconditional); a null class is added for guidance
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Width of the hidden layers
    #[arg(long, default_value_t = 256)]
    width: usize,
    /// Number of hidden layers
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Size of the sinusoidal time embedding
    #[arg(long, default_value_t = 64)]
    time_embedding: usize,
    /// Scale s of the time in the embedding sin(s·t·f_k), cos(s·t·f_k), f_k ∈ [1e-4, 1]
    #[arg(long, default_value_t = 10.0)]
    time_scale: f64,
    /// What the network outputs: data (x̂1, the velocity derived from it) or velocity
    #[arg(long, default_value = "data")]
    prediction: Prediction,
    /// Size of the learned class embedding (ignored when unconditional)
    #[arg(long, default_value_t = 32)]
    class_embedding: usize,
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
    let spec = ModelSpec {
        format_version: MODEL_FORMAT_VERSION,
        architecture: "mlp".into(),
        data_shape: args.shape,
        hidden_width: args.width,
        depth: args.depth,
        time_embedding: args.time_embedding,
        time_scale: args.time_scale,
        prediction: args.prediction,
        class_embedding: if args.classes > 0 {
            args.class_embedding
        } else {
            0
        },
        num_classes: args.classes,
        activation: "silu".into(),
        path: "cond-ot".into(),
        dataset: "none (random weights)".into(),
        training_steps: 0,
        class_names: Vec::new(),
    };
    spec.validate().map_err(anyhow::Error::msg)?;
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
        "architecture {} (depth {}, width {}, {})",
        spec.architecture, spec.depth, spec.hidden_width, spec.activation
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
    println!("path        {}", spec.path);
    println!(
        "dataset     {} ({} training steps)",
        spec.dataset, spec.training_steps
    );
    println!(
        "parameters  {parameters} ({:.2} MB as f32)",
        parameters as f64 * 4.0 / 1e6
    );
    Ok(())
}
