//! The command-line flags that describe a velocity network, and the one place a [`ModelSpec`]
//! is built from flags.
//!
//! [`NetworkFlags`] are the flags as given (`None`: not given), each architecture's under its own
//! heading; [`NetworkFlags::resolve`] refuses a flag of the other architecture and fills in a
//! command's defaults, giving the [`NetworkArgs`] a spec is built from. `bns train` flattens
//! [`NetworkArgs`] (the flags resolved with [`NetworkArgs::default`]); `bns model init` and
//! `bns pipeline` flatten [`NetworkFlags`] and resolve them with their own defaults (the
//! pipeline's by the data's kind). [`NetworkArgs::command_line`] writes a network back as the
//! flags that give it, for the command lines the pipeline runs and prints.

use anyhow::{anyhow, Result};
use clap::builder::StyledStr;
use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches, ValueEnum};
use web_sampler::model::{Architecture, ModelSpec, Prediction};

/// The architectures the flags can build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ArchitectureName {
    /// Dense layers on concat(x, time embedding, class embedding) (--width, --depth,
    /// --class-embedding)
    #[default]
    Mlp,
    /// A convolutional U-Net (the --base-channels … --embedding-width flags)
    Unet,
}

impl ArchitectureName {
    /// The value of `--arch`.
    pub fn name(self) -> &'static str {
        match self {
            ArchitectureName::Mlp => "mlp",
            ArchitectureName::Unet => "unet",
        }
    }
}

/// The heading of the MLP's flags in `--help`.
const MLP_HEADING: &str = "MLP (--arch mlp)";
/// The heading of the U-Net's flags in `--help`.
const UNET_HEADING: &str = "U-Net (--arch unet)";

/// The network flags as given on the command line: `None` where a flag was not given.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct NetworkFlags {
    /// The network: mlp or unet (a convolutional U-Net, for images)
    #[arg(long = "arch", value_enum)]
    pub architecture: Option<ArchitectureName>,
    /// Size of the sinusoidal time embedding
    #[arg(long)]
    pub time_embedding: Option<usize>,
    /// Scale s of the time in the embedding sin(s·t·f_k), cos(s·t·f_k), f_k ∈ [1e-4, 1]
    #[arg(long)]
    pub time_scale: Option<f64>,
    /// What the network outputs: data (x̂1, the velocity derived from it) or velocity
    #[arg(long)]
    pub prediction: Option<Prediction>,
    #[command(flatten)]
    pub mlp: MlpFlags,
    #[command(flatten)]
    pub unet: UnetFlags,
}

/// The MLP's flags as given.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct MlpFlags {
    /// Width of the hidden layers
    #[arg(long, help_heading = MLP_HEADING)]
    pub width: Option<usize>,
    /// Number of hidden layers
    #[arg(long, help_heading = MLP_HEADING)]
    pub depth: Option<usize>,
    /// Size of the learned class embedding (ignored when unconditional)
    #[arg(long, help_heading = MLP_HEADING)]
    pub class_embedding: Option<usize>,
}

/// The U-Net's flags as given.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct UnetFlags {
    /// Channels of the first level
    #[arg(long, help_heading = UNET_HEADING)]
    pub base_channels: Option<usize>,
    /// Channels of each level as multiples of --base-channels, comma-separated; each level after
    /// the first halves the resolution
    #[arg(long, help_heading = UNET_HEADING, value_delimiter = ',')]
    pub channel_multipliers: Option<Vec<usize>>,
    /// Residual blocks per level
    #[arg(long, help_heading = UNET_HEADING)]
    pub residual_blocks: Option<usize>,
    /// GroupNorm groups (divides every channel count)
    #[arg(long, help_heading = UNET_HEADING)]
    pub groups: Option<usize>,
    /// Self-attention at the lowest resolution: true or false
    #[arg(long, help_heading = UNET_HEADING, action = ArgAction::Set)]
    pub attention: Option<bool>,
    /// Width of the time-embedding MLP (and of the class embedding)
    #[arg(long, help_heading = UNET_HEADING)]
    pub embedding_width: Option<usize>,
}

impl MlpFlags {
    /// The MLP's flags.
    const FLAGS: [&'static str; 3] = ["--width", "--depth", "--class-embedding"];

    /// The MLP's flags that were given.
    fn given(&self) -> Vec<&'static str> {
        let given = [
            self.width.is_some(),
            self.depth.is_some(),
            self.class_embedding.is_some(),
        ];
        given_flags(&Self::FLAGS, &given)
    }
}

impl UnetFlags {
    /// The U-Net's flags.
    const FLAGS: [&'static str; 6] = [
        "--base-channels",
        "--channel-multipliers",
        "--residual-blocks",
        "--groups",
        "--attention",
        "--embedding-width",
    ];

    /// The U-Net's flags that were given.
    fn given(&self) -> Vec<&'static str> {
        let given = [
            self.base_channels.is_some(),
            self.channel_multipliers.is_some(),
            self.residual_blocks.is_some(),
            self.groups.is_some(),
            self.attention.is_some(),
            self.embedding_width.is_some(),
        ];
        given_flags(&Self::FLAGS, &given)
    }
}

/// The `flags` whose `given` is true.
fn given_flags(flags: &[&'static str], given: &[bool]) -> Vec<&'static str> {
    flags
        .iter()
        .zip(given)
        .filter_map(|(&flag, &given)| given.then_some(flag))
        .collect()
}

/// "a, b and c".
fn in_words(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

impl NetworkFlags {
    /// The network these flags describe, each flag not given taken from `defaults`. A flag of
    /// the other architecture is refused (it would otherwise be silently ignored).
    pub fn resolve(&self, defaults: &NetworkArgs) -> Result<NetworkArgs, String> {
        let architecture = self.architecture.unwrap_or(defaults.architecture);
        let (others, owner, own): (_, _, &[&str]) = match architecture {
            ArchitectureName::Mlp => (self.unet.given(), ArchitectureName::Unet, &MlpFlags::FLAGS),
            ArchitectureName::Unet => (self.mlp.given(), ArchitectureName::Mlp, &UnetFlags::FLAGS),
        };
        if !others.is_empty() {
            return Err(format!(
                "{} {} of --arch {}, not of --arch {} (which takes {})",
                in_words(&others),
                if others.len() == 1 {
                    "is a flag"
                } else {
                    "are flags"
                },
                owner.name(),
                architecture.name(),
                in_words(own),
            ));
        }
        let (mlp, unet) = (&self.mlp, &self.unet);
        let d = &defaults.unet;
        Ok(NetworkArgs {
            architecture,
            width: mlp.width.unwrap_or(defaults.width),
            depth: mlp.depth.unwrap_or(defaults.depth),
            time_embedding: self.time_embedding.unwrap_or(defaults.time_embedding),
            time_scale: self.time_scale.unwrap_or(defaults.time_scale),
            prediction: self.prediction.unwrap_or(defaults.prediction),
            class_embedding: mlp.class_embedding.unwrap_or(defaults.class_embedding),
            unet: UnetArgs {
                base_channels: unet.base_channels.unwrap_or(d.base_channels),
                channel_multipliers: unet
                    .channel_multipliers
                    .clone()
                    .unwrap_or_else(|| d.channel_multipliers.clone()),
                residual_blocks: unet.residual_blocks.unwrap_or(d.residual_blocks),
                groups: unet.groups.unwrap_or(d.groups),
                attention: unet.attention.unwrap_or(d.attention),
                embedding_width: unet.embedding_width.unwrap_or(d.embedding_width),
            },
        })
    }
}

/// A network's architecture and sizes: the network flags resolved with a command's defaults.
/// Flattened into a command it is [`NetworkFlags`] resolved with [`NetworkArgs::default`] (the
/// defaults shown in `--help`), and a flag of the other architecture is a parse error.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkArgs {
    pub architecture: ArchitectureName,
    /// The MLP's hidden width, number of hidden layers and class embedding size.
    pub width: usize,
    pub depth: usize,
    pub time_embedding: usize,
    pub time_scale: f64,
    pub prediction: Prediction,
    pub class_embedding: usize,
    /// The U-Net's sizes.
    pub unet: UnetArgs,
}

/// `bns train`'s defaults.
impl Default for NetworkArgs {
    fn default() -> Self {
        NetworkArgs {
            architecture: ArchitectureName::Mlp,
            width: 512,
            depth: 3,
            time_embedding: 64,
            time_scale: 10.0,
            prediction: Prediction::Data,
            class_embedding: 32,
            unet: UnetArgs::default(),
        }
    }
}

/// The U-Net's sizes. The defaults suit 28×28 (28 → 14 → 7) and 32×32 images for the browser:
/// 0.8 M parameters; 0.28 GFLOP per sample and evaluation on 1×28×28, 0.36 on 32×32.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnetArgs {
    pub base_channels: usize,
    pub channel_multipliers: Vec<usize>,
    pub residual_blocks: usize,
    pub groups: usize,
    pub attention: bool,
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

impl FromArgMatches for NetworkArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut matches.clone())
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        NetworkFlags::from_arg_matches_mut(matches)?
            .resolve(&NetworkArgs::default())
            .map_err(|problem| clap::Error::raw(ErrorKind::ArgumentConflict, problem))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for NetworkArgs {
    fn augment_args(command: Command) -> Command {
        NetworkFlags::augment_args(command)
            .mut_args(NetworkArgs::default().defaults_in_help(Vec::new()))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

impl NetworkArgs {
    /// Every network flag with its value, both architectures', in `--help`'s order.
    fn flags(&self) -> Vec<(&'static str, String)> {
        let u = &self.unet;
        let list = |values: &[usize]| {
            values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        vec![
            ("--arch", self.architecture.name().into()),
            ("--time-embedding", self.time_embedding.to_string()),
            ("--time-scale", self.time_scale.to_string()),
            ("--prediction", self.prediction.name().into()),
            ("--width", self.width.to_string()),
            ("--depth", self.depth.to_string()),
            ("--class-embedding", self.class_embedding.to_string()),
            ("--base-channels", u.base_channels.to_string()),
            ("--channel-multipliers", list(&u.channel_multipliers)),
            ("--residual-blocks", u.residual_blocks.to_string()),
            ("--groups", u.groups.to_string()),
            ("--attention", u.attention.to_string()),
            ("--embedding-width", u.embedding_width.to_string()),
        ]
    }

    /// The flags that give this network, its architecture's and the shared ones (those of the
    /// other architecture would be refused).
    pub fn command_line(&self) -> Vec<String> {
        let other: &[&str] = match self.architecture {
            ArchitectureName::Mlp => &UnetFlags::FLAGS,
            ArchitectureName::Unet => &MlpFlags::FLAGS,
        };
        self.flags()
            .into_iter()
            .filter(|(flag, _)| !other.contains(flag))
            .flat_map(|(flag, value)| [flag.to_string(), value])
            .collect()
    }

    /// The flags whose values differ between this network and `other`.
    pub fn differing_flags(&self, other: &NetworkArgs) -> Vec<&'static str> {
        self.flags()
            .into_iter()
            .zip(other.flags())
            .filter(|((_, mine), (_, theirs))| mine != theirs)
            .map(|((flag, _), _)| flag)
            .collect()
    }

    /// For `Command::mut_args`: appends "[default: …]" to the help of every network flag, with
    /// this network's values, or "[default: by the data's kind, below]" to those in `by_kind`.
    pub fn defaults_in_help(&self, by_kind: Vec<&'static str>) -> impl FnMut(Arg) -> Arg {
        let flags = self.flags();
        move |arg: Arg| {
            let Some(long) = arg.get_long() else {
                return arg;
            };
            let flag = format!("--{long}");
            let Some((_, value)) = flags.iter().find(|(f, _)| *f == flag) else {
                return arg;
            };
            let default = if by_kind.contains(&flag.as_str()) {
                "by the data's kind, below".to_string()
            } else {
                value.clone()
            };
            // As clap writes a default: on the same line in `-h`, a paragraph of its own in
            // `--help`.
            let help = arg.get_help().map(StyledStr::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {default}]"))
                .long_help(format!("{help}\n\n[default: {default}]"))
        }
    }

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
    #[command(name = "bns")]
    struct Command {
        #[command(flatten)]
        network: NetworkArgs,
    }

    fn try_parse(args: &[&str]) -> Result<NetworkArgs, clap::Error> {
        Command::try_parse_from(std::iter::once("bns").chain(args.iter().copied()))
            .map(|command| command.network)
    }

    fn parse(args: &[&str]) -> NetworkArgs {
        try_parse(args).unwrap()
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

#[cfg(test)]
mod flag_tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    #[command(name = "bns")]
    struct Train {
        #[command(flatten)]
        network: NetworkArgs,
    }

    fn parse(args: &[&str]) -> Result<NetworkArgs, String> {
        Train::try_parse_from(std::iter::once("bns").chain(args.iter().copied()))
            .map(|train| train.network)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_flag_of_the_other_architecture_is_refused_by_name() {
        let error = parse(&["--arch", "unet", "--width", "64"]).unwrap_err();
        assert!(
            error.contains(
                "--width is a flag of --arch mlp, not of --arch unet (which takes \
                 --base-channels, --channel-multipliers, --residual-blocks, --groups, \
                 --attention and --embedding-width)"
            ),
            "{error}"
        );
        let error =
            parse(&["--arch", "unet", "--depth", "2", "--class-embedding", "8"]).unwrap_err();
        assert!(
            error.contains(
                "--depth and --class-embedding are flags of --arch mlp, not of --arch unet"
            ),
            "{error}"
        );
        // The MLP is the default architecture: a U-Net flag without --arch unet is refused too.
        for args in [&["--groups", "4"][..], &["--arch", "mlp", "--groups", "4"]] {
            let error = parse(args).unwrap_err();
            assert!(
                error.contains(
                    "--groups is a flag of --arch unet, not of --arch mlp (which takes --width, \
                     --depth and --class-embedding)"
                ),
                "{error}"
            );
        }
        // The shared flags go with either.
        for arch in ["mlp", "unet"] {
            let network = parse(&[
                "--arch",
                arch,
                "--time-embedding",
                "16",
                "--prediction",
                "velocity",
            ])
            .unwrap();
            assert_eq!(network.time_embedding, 16);
            assert_eq!(network.prediction, Prediction::Velocity);
        }
    }

    #[test]
    fn the_command_line_of_a_network_parses_back_to_it() {
        let unet = NetworkArgs {
            architecture: ArchitectureName::Unet,
            time_embedding: 16,
            time_scale: 2.5,
            prediction: Prediction::Velocity,
            unet: UnetArgs {
                base_channels: 8,
                channel_multipliers: vec![1, 2],
                residual_blocks: 2,
                groups: 4,
                attention: false,
                embedding_width: 16,
            },
            ..NetworkArgs::default()
        };
        let mlp = NetworkArgs {
            width: 48,
            depth: 2,
            class_embedding: 4,
            time_scale: 1000.0,
            ..NetworkArgs::default()
        };
        for network in [NetworkArgs::default(), unet, mlp] {
            let argv = network.command_line();
            let words: Vec<&str> = argv.iter().map(String::as_str).collect();
            let parsed = parse(&words).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert_eq!(
                parsed.spec(&[1, 8, 8], 3, "test", &[]).unwrap(),
                network.spec(&[1, 8, 8], 3, "test", &[]).unwrap()
            );
            // Only its own architecture's flags are written (the others' would be refused), so
            // the other architecture's sizes come back as the defaults.
            let expected = match network.architecture {
                ArchitectureName::Mlp => NetworkArgs {
                    unet: UnetArgs::default(),
                    ..network
                },
                ArchitectureName::Unet => NetworkArgs {
                    width: 512,
                    depth: 3,
                    class_embedding: 32,
                    ..network
                },
            };
            assert_eq!(parsed, expected, "{argv:?}");
        }
    }

    #[test]
    fn help_shows_every_network_flags_default() {
        let help = Train::command().render_help().to_string();
        for (flag, value) in NetworkArgs::default().flags() {
            let line = help
                .lines()
                .position(|l| l.trim_start().starts_with(flag))
                .unwrap_or_else(|| panic!("{flag} is not in\n{help}"));
            // The help of a flag may wrap; its default ends it.
            let rest: String = help
                .lines()
                .skip(line)
                .take(4)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                rest.contains(&format!("[default: {value}]")),
                "{flag}: {rest}"
            );
        }
        assert!(
            help.contains("MLP (--arch mlp):") && help.contains("U-Net (--arch unet):"),
            "{help}"
        );
    }
}
