//! `bns sample`: run a model with a solver from a seed and save the samples as a PNG grid.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use web_sampler::gpu::{block_on, Gpu};
use web_sampler::model::Model;
use web_sampler::sample::{is_image, SampleRequest};
use web_sampler::sampler::{default_columns, BackendChoice, Sampler};
use web_sampler::solver::SolverFile;

use crate::picture::{save_png, scatter_picture, upscale};

#[derive(Args)]
pub struct SampleArgs {
    /// The model file (.safetensors)
    #[arg(long)]
    model: PathBuf,
    /// The solver file (JSON)
    #[arg(long)]
    solver: PathBuf,
    /// Seed of the initial noise (the same seed gives the same samples in the browser)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of samples
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Class of every sample (default: cycle through the classes)
    #[arg(long)]
    class: Option<u32>,
    /// Guidance scale w (default: the solver's)
    #[arg(long)]
    guidance: Option<f64>,
    /// Output PNG (a grid of images, or a scatter plot for 2-D models)
    #[arg(short, long)]
    output: PathBuf,
    /// Enlarge image grids this many times (nearest neighbour)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
    scale: u8,
    /// Also write the samples' values [B, C, H, W] as JSON (shape and values): an image model's
    /// are clamped to [-1, 1], as drawn in the PNG (FORMATS.md §6)
    #[arg(long)]
    values: Option<PathBuf>,
    /// Where to run: the CPU path (bit-identical to the browser's CPU path) or the WGSL kernels
    /// on a Vulkan GPU (the browser's WebGPU path)
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// CPU threads the CPU path splits the batch across (default: all cores; the samples are
    /// the same bits for any count)
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Cpu,
    Gpu,
}

pub fn run(args: SampleArgs) -> Result<()> {
    let mut model = Model::load(&args.model)?;
    let threads = match args.threads {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    model.set_threads(threads);
    let solver = SolverFile::load(&args.solver)?;
    let request = SampleRequest {
        seed: args.seed,
        batch: args.batch,
        class: args.class,
        guidance: args.guidance.unwrap_or(solver.guidance),
        first_row: 0,
    };
    let (nfe, data_shape) = (solver.nfe, model.spec().data_shape.clone());
    let (sampler, choice) = match args.backend {
        Backend::Cpu => (Sampler::new(), BackendChoice::Cpu),
        Backend::Gpu => {
            ensure_runtime_dir();
            let gpu = block_on(Gpu::new())
                .context("--backend gpu needs a Vulkan driver (on a machine without a GPU: apt-get install mesa-vulkan-drivers)")?;
            (Sampler::with_gpu(gpu), BackendChoice::Gpu)
        }
    };
    sampler.set_model(model);
    sampler.load_solver(solver, &args.solver.display().to_string())?;
    let columns = default_columns(args.batch);
    let started = std::time::Instant::now();
    let generated = block_on(sampler.generate(&request, columns, choice))?;
    let samples = &generated.samples;
    let seconds = started.elapsed().as_secs_f64();
    let path = sampler
        .adapter()
        .unwrap_or_else(|| "the CPU path".to_string());
    let picture = if is_image(&data_shape) {
        upscale(&generated.picture(columns)?, usize::from(args.scale))
    } else if samples.shape[1] == 2 {
        scatter_picture(&samples.values, 512)
    } else {
        bail!("cannot draw samples of shape {data_shape:?}: neither an image nor 2-D points");
    };
    save_png(&args.output, &picture)?;
    if let Some(path) = &args.values {
        let doc = serde_json::json!({ "shape": samples.shape, "values": samples.values });
        std::fs::write(path, doc.to_string())
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    println!(
        "wrote {} ({} samples, {} NFE, {:.1} ms on {path}, {:.2} ms per sample)",
        args.output.display(),
        args.batch,
        nfe,
        seconds * 1e3,
        seconds * 1e3 / args.batch as f64
    );
    Ok(())
}

/// Gives the process a private `XDG_RUNTIME_DIR` when it has no usable one (a server, a container,
/// `sudo`), before Vulkan starts: Mesa's Wayland window-system code (libwayland) otherwise prints
/// "XDG_RUNTIME_DIR is invalid or not set in the environment" on every GPU run, though no window
/// is ever opened. The directory is `<temp>/bns-runtime-<uid>`, mode 0700; one that is not ours or
/// is open to others is not used (then the variable stays unset and the message may appear).
fn ensure_runtime_dir() {
    let usable = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| {
        let dir = Path::new(&dir);
        dir.is_absolute() && dir.is_dir()
    });
    if usable {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("bns-runtime-{uid}"));
        // An existing directory is checked below.
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            return;
        };
        if meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o077 == 0 {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
}
