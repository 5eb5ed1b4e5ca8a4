//! The command-line flags that describe a velocity network, and the one place a [`ModelSpec`]
//! is built from flags: `bns train` and `bns model init` both flatten [`NetworkArgs`].

use anyhow::{anyhow, Result};
use clap::Args;
use web_sampler::model::{Architecture, ModelSpec, Prediction};

/// The network's architecture and sizes.
#[derive(Args, Clone, Debug)]
pub struct NetworkArgs {
    /// Width of the hidden layers
    #[arg(long, default_value_t = 512)]
    pub width: usize,
    /// Number of hidden layers
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Size of the sinusoidal time embedding
    #[arg(long, default_value_t = 64)]
    pub time_embedding: usize,
    /// Scale s of the time in the embedding sin(s·t·f_k), cos(s·t·f_k), f_k ∈ [1e-4, 1]
    #[arg(long, default_value_t = 10.0)]
    pub time_scale: f64,
    /// What the network outputs: data (x̂1, the velocity derived from it) or velocity
    #[arg(long, default_value = "data")]
    pub prediction: Prediction,
    /// Size of the learned class embedding (ignored when unconditional)
    #[arg(long, default_value_t = 32)]
    pub class_embedding: usize,
}

impl NetworkArgs {
    /// The validated spec of this network for data of `data_shape` from `dataset`, with
    /// `num_classes` real classes (0 = unconditional) named `class_names` (or none), not yet
    /// trained.
    pub fn spec(
        &self,
        data_shape: &[usize],
        num_classes: usize,
        dataset: &str,
        class_names: &[String],
    ) -> Result<ModelSpec> {
        let spec = ModelSpec {
            time_scale: self.time_scale,
            prediction: self.prediction,
            dataset: dataset.into(),
            class_names: class_names.to_vec(),
            ..ModelSpec::new(
                Architecture::mlp(self.width, self.depth),
                data_shape,
                self.time_embedding,
                num_classes,
                self.class_embedding,
            )
        };
        spec.validate()
            .map_err(|e| anyhow!("model architecture: {e}"))?;
        Ok(spec)
    }
}
