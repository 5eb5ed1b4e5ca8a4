//! The command-line flags that describe a velocity network, and the one place a [`ModelSpec`]
//! is built from flags: `bns train` and `bns model init` both flatten [`NetworkArgs`].

use anyhow::{anyhow, Result};
use clap::{ArgAction, Args, ValueEnum};
use web_sampler::model::{Architecture, ModelSpec, Prediction};

/// The architectures the flags can build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ArchitectureName {
    /// Dense layers on concat(x, time embedding, class embedding) (--width, --depth)
    #[default]
    Mlp,
    /// A convolutional U-Net (the --base-channels … --embedding-width flags)
    Unet,
}

/// The network's architecture and sizes.
#[derive(Args, Clone, Debug)]
pub struct NetworkArgs {
    /// The network: mlp or unet (a convolutional U-Net, for images)
    #[arg(long = "arch", value_enum, default_value_t = ArchitectureName::Mlp)]
    pub architecture: ArchitectureName,
    /// Width of the hidden layers (mlp)
    #[arg(long, default_value_t = 512)]
    pub width: usize,
    /// Number of hidden layers (mlp)
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
    /// Size of the learned class embedding (mlp; a U-Net's is its --embedding-width; ignored
    /// when unconditional)
    #[arg(long, default_value_t = 32)]
    pub class_embedding: usize,
    #[command(flatten)]
    pub unet: UnetArgs,
}

/// The heading of the U-Net's flags in `--help`.
const UNET_HEADING: &str = "U-Net (--arch unet)";

/// The U-Net's sizes. The defaults suit 28×28 (28 → 14 → 7) and 32×32 images for the browser:
/// 0.8 M parameters; 0.28 GFLOP per sample and evaluation on 1×28×28, 0.36 on 32×32.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct UnetArgs {
    /// Channels of the first level
    #[arg(long, help_heading = UNET_HEADING, default_value_t = UnetArgs::default().base_channels)]
    pub base_channels: usize,
    /// Channels of each level as multiples of --base-channels, comma-separated; each level after
    /// the first halves the resolution
    #[arg(long, help_heading = UNET_HEADING, value_delimiter = ',', default_value = "1,2,2")]
    pub channel_multipliers: Vec<usize>,
    /// Residual blocks per level
    #[arg(long, help_heading = UNET_HEADING, default_value_t = UnetArgs::default().residual_blocks)]
    pub residual_blocks: usize,
    /// GroupNorm groups (divides every channel count)
    #[arg(long, help_heading = UNET_HEADING, default_value_t = UnetArgs::default().groups)]
    pub groups: usize,
    /// Self-attention at the lowest resolution: true or false
    #[arg(long, help_heading = UNET_HEADING, default_value_t = UnetArgs::default().attention, action = ArgAction::Set)]
    pub attention: bool,
    /// Width of the time-embedding MLP (and of the class embedding)
    #[arg(long, help_heading = UNET_HEADING, default_value_t = UnetArgs::default().embedding_width)]
    pub embedding_width: usize,
}

impl Default for UnetArgs {
    fn default() -> Self {
        UnetArgs {
            base_channels: 32,
            channel_multipliers: vec![1, 2, 2],
            residual_blocks: 1,
            groups: 8,
            attention: true,
            embedding_width: 128,
        }
    }
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
        let (architecture, class_embedding) = match self.architecture {
            ArchitectureName::Mlp => (
                Architecture::mlp(self.width, self.depth),
                self.class_embedding,
            ),
            ArchitectureName::Unet => {
                let u = &self.unet;
                (
                    Architecture::unet(
                        u.base_channels,
                        &u.channel_multipliers,
                        u.residual_blocks,
                        u.groups,
                        u.attention,
                        u.embedding_width,
                    ),
                    u.embedding_width,
                )
            }
        };
        let spec = ModelSpec {
            time_scale: self.time_scale,
            prediction: self.prediction,
            dataset: dataset.into(),
            class_names: class_names.to_vec(),
            ..ModelSpec::new(
                architecture,
                data_shape,
                self.time_embedding,
                num_classes,
                class_embedding,
            )
        };
        spec.validate()
            .map_err(|e| anyhow!("model architecture: {e}"))?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use web_sampler::model::UnetSpec;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        network: NetworkArgs,
    }

    fn parse(args: &[&str]) -> NetworkArgs {
        Command::try_parse_from(std::iter::once("bns").chain(args.iter().copied()))
            .unwrap()
            .network
    }

    #[test]
    fn default_unet_suits_28_and_32_pixel_images_in_the_browser() {
        let network = parse(&["--arch", "unet"]);
        assert_eq!(network.unet, UnetArgs::default());
        for (shape, classes) in [([1, 28, 28], 10), ([1, 32, 32], 10), ([3, 32, 32], 0)] {
            let spec = network.spec(&shape, classes, "test", &[]).unwrap();
            let Architecture::Unet(unet) = &spec.architecture else {
                panic!("a unet spec")
            };
            let flops = 2 * unet.layout(&spec).multiply_adds();
            let parameters = spec.parameter_count();
            eprintln!("{shape:?}: {parameters} parameters, {flops} FLOP per evaluation");
            assert!((500_000..=8_000_000).contains(&parameters), "{parameters}");
            if shape == [1, 28, 28] {
                assert!(flops <= 300_000_000, "{flops}");
            }
            assert_eq!(spec.class_embedding, if classes > 0 { 128 } else { 0 });
        }
    }

    #[test]
    fn unet_flags_build_the_spec() {
        let network = parse(&[
            "--arch",
            "unet",
            "--base-channels",
            "8",
            "--channel-multipliers",
            "1,2",
            "--residual-blocks",
            "1",
            "--groups",
            "4",
            "--attention",
            "false",
            "--embedding-width",
            "16",
        ]);
        let spec = network.spec(&[1, 8, 8], 3, "test", &[]).unwrap();
        assert_eq!(
            spec.architecture,
            Architecture::Unet(UnetSpec {
                base_channels: 8,
                channel_multipliers: vec![1, 2],
                residual_blocks: 1,
                groups: 4,
                attention: false,
                embedding_width: 16,
            })
        );
        assert_eq!(spec.class_embedding, 16);
        let error = parse(&["--arch", "unet", "--groups", "5"])
            .spec(&[1, 28, 28], 10, "test", &[])
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unet.groups = 5 does not divide"),
            "{error}"
        );
        // The MLP's flags still build an MLP.
        let mlp = parse(&["--width", "16"])
            .spec(&[2, 1, 1], 0, "test", &[])
            .unwrap();
        assert_eq!(mlp.architecture, Architecture::mlp(16, 3));
    }
}
