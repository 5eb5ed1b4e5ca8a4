//! Each stage's command line: the `bns` arguments the pipeline gives `train`, `truth`,
//! `distill`, `eval` and `publish`, parsed by the stage's own flags (so the stage keeps its
//! command's defaults) and printed as the command that reruns it.

use std::path::{Path, PathBuf};

use crate::checkpoint::checkpoint_path;
use crate::compute::{ComputeArgs, DeviceKind};
use crate::data::{DatasetSource, ImageFolderOptions};

use super::{default_title, PipelineArgs, Settings, TRAIN_SEED, TRUTH_SEED, TRUTH_TOLERANCE};

/// `bns train`'s arguments: the model, resuming from its checkpoint when there is one.
pub(super) fn train_command(args: &PipelineArgs, settings: &Settings, model: &Path) -> Vec<String> {
    let mut argv = vec![
        "--dataset".into(),
        dataset_argument(&args.dataset),
        "--steps".into(),
        args.steps.unwrap_or(settings.defaults.steps).to_string(),
        "--batch".into(),
        args.batch.unwrap_or(settings.defaults.batch).to_string(),
    ];
    if let Some(lr) = args.train_lr {
        argv.extend(["--lr".into(), lr.to_string()]);
    }
    argv.extend(settings.network.command_line());
    argv.extend(["--seed".into(), TRAIN_SEED.to_string()]);
    argv.extend(image_folder_arguments(&args.images, true));
    if checkpoint_path(model).exists() {
        argv.push("--resume".into());
    }
    argv.extend(output_argument(model));
    argv.extend(compute_arguments(&args.compute));
    argv
}

/// `bns truth`'s arguments: the ground truth of guidance scale `w` (continuing a partial file).
pub(super) fn truth_command(
    args: &PipelineArgs,
    settings: &Settings,
    model: &Path,
    w: f64,
) -> Vec<String> {
    let defaults = &settings.defaults;
    let mut argv = vec![
        "--model".into(),
        path_argument(model),
        "--count".into(),
        args.truth_count.unwrap_or(defaults.truth_count).to_string(),
        "--validation".into(),
        args.truth_validation
            .unwrap_or(defaults.truth_validation)
            .to_string(),
        "--test".into(),
        args.truth_test.unwrap_or(defaults.truth_test).to_string(),
        "--seed".into(),
        TRUTH_SEED.to_string(),
        "--guidance".into(),
        w.to_string(),
        "--rtol".into(),
        TRUTH_TOLERANCE.into(),
        "--atol".into(),
        TRUTH_TOLERANCE.into(),
    ];
    argv.extend(output_argument(&pairs_path(&settings.out, w)));
    argv.extend(compute_arguments(&args.compute));
    argv
}

/// One solver the pipeline distills: a BNS solver (`prefix` "bns", published) or a time-only
/// baseline ("timeonly").
pub(super) struct DistilledSolver {
    pub(super) prefix: &'static str,
    pub(super) nfe: usize,
    pub(super) guidance: f64,
    pub(super) output: PathBuf,
}

/// The solvers of guidance `w`, in the order they are distilled: at each NFE the time-only
/// baseline first (unless `--no-time-only`), then the BNS solver measured against it.
pub(super) fn distilled_solvers(
    args: &PipelineArgs,
    settings: &Settings,
    w: f64,
) -> Vec<DistilledSolver> {
    let mut solvers = Vec::new();
    for &nfe in &args.nfe {
        let prefixes: &[&'static str] = if args.no_time_only {
            &["bns"]
        } else {
            &["timeonly", "bns"]
        };
        for &prefix in prefixes {
            solvers.push(DistilledSolver {
                prefix,
                nfe,
                guidance: w,
                output: settings.out.join(format!("{prefix}-{nfe}-w{w}.json")),
            });
        }
    }
    solvers
}

/// The `--distill-lr` of the BNS solver at `nfe`: the one given, or the one at its NFE's place.
pub(super) fn distill_lr(args: &PipelineArgs, nfe: usize) -> Option<f64> {
    let lr = args.distill_lr.as_ref()?;
    match lr[..] {
        [one] => Some(one),
        _ => args.nfe.iter().position(|&n| n == nfe).map(|i| lr[i]),
    }
}

/// `bns distill`'s arguments for `solver` (resuming from its checkpoint when there is one).
pub(super) fn distill_command(
    args: &PipelineArgs,
    settings: &Settings,
    model: &Path,
    solver: &DistilledSolver,
) -> Vec<String> {
    let iterations = args.iterations.unwrap_or(settings.defaults.iterations);
    let w = solver.guidance;
    let mut argv = vec![
        "--model".into(),
        path_argument(model),
        "--pairs".into(),
        path_argument(&pairs_path(&settings.out, w)),
        "--nfe".into(),
        solver.nfe.to_string(),
        "--grid".into(),
        "uniform".into(),
    ];
    if solver.prefix == "timeonly" {
        argv.extend([
            "--init".into(),
            "euler".into(),
            "--time-only".into(),
            "--iterations".into(),
            (iterations / 2).max(1).to_string(),
        ]);
    } else {
        argv.extend([
            "--init".into(),
            args.init.name().into(),
            "--iterations".into(),
            iterations.to_string(),
        ]);
        if let Some(lr) = distill_lr(args, solver.nfe) {
            argv.extend(["--lr".into(), lr.to_string()]);
        }
        if !args.no_time_only {
            let time_only = settings
                .out
                .join(format!("timeonly-{}-w{w}.json", solver.nfe));
            argv.extend(["--time-only-baseline".into(), path_argument(&time_only)]);
        }
    }
    if let Some(batch) = args.distill_batch {
        argv.extend(["--batch".into(), batch.to_string()]);
    }
    if args.distill_low_memory {
        argv.push("--low-memory".into());
    }
    argv.extend([
        "--psnr-cache".into(),
        path_argument(&psnr_cache_path(&settings.out)),
    ]);
    if checkpoint_path(&solver.output).exists() {
        argv.push("--resume".into());
    }
    argv.extend(output_argument(&solver.output));
    argv.extend(compute_arguments(&args.compute));
    argv
}

/// The test figures distillation and evaluation share (`--psnr-cache`): the evaluation's
/// classical solvers at the distilled NFEs are the ones each distillation measured.
pub(super) fn psnr_cache_path(out: &Path) -> PathBuf {
    out.join("psnr-cache.json")
}

/// The evaluation's folder for guidance `w`.
pub(super) fn eval_folder(out: &Path, w: f64) -> PathBuf {
    out.join(format!("eval-w{w}"))
}

/// `bns eval`'s arguments for guidance `w`.
pub(super) fn eval_command(
    args: &PipelineArgs,
    settings: &Settings,
    model: &Path,
    w: f64,
) -> Vec<String> {
    // The feature classifier of an image model is trained once (by the w = 0 evaluation, the
    // first) and reused.
    let classifier = eval_folder(&settings.out, 0.0).join("classifier.safetensors");
    let mut argv = vec![
        "--model".into(),
        path_argument(model),
        "--pairs".into(),
        path_argument(&pairs_path(&settings.out, w)),
        "--solvers".into(),
        path_argument(&settings.out),
    ];
    if w != 0.0 && classifier.exists() {
        argv.extend(["--classifier".into(), path_argument(&classifier)]);
    }
    // A folder model records only the folder's name: eval is told where its test images are
    // (it reads them at the model's size and channels).
    if matches!(args.dataset, DatasetSource::Images(_)) {
        argv.extend(["--dataset".into(), dataset_argument(&args.dataset)]);
        argv.extend(image_folder_arguments(&args.images, false));
    }
    if let Some(samples) = args.fd_samples {
        argv.extend(["--fd-samples".into(), samples.to_string()]);
    }
    argv.extend([
        "--psnr-cache".into(),
        path_argument(&psnr_cache_path(&settings.out)),
    ]);
    if let Some(nfe) = &args.fd_nfe {
        let list: Vec<String> = nfe.iter().map(|n| n.to_string()).collect();
        argv.extend(["--fd-nfe".into(), list.join(",")]);
    }
    argv.extend(output_argument(&eval_folder(&settings.out, w)));
    argv.extend(compute_arguments(&args.compute));
    argv
}

/// `bns publish`'s arguments: the model and its BNS solvers.
pub(super) fn publish_command(
    args: &PipelineArgs,
    settings: &Settings,
    model: &Path,
    published: &[PathBuf],
) -> Vec<String> {
    let title = match &args.title {
        Some(title) => title.clone(),
        None => default_title(
            &args.dataset,
            settings.classes,
            settings.network.architecture,
        ),
    };
    let mut argv = vec![
        "--name".into(),
        args.name.clone(),
        "--title".into(),
        title,
        "--model".into(),
        path_argument(model),
        "--solvers".into(),
    ];
    argv.extend(published.iter().map(|p| path_argument(p)));
    argv.push("--pairs".into());
    argv.extend(
        settings
            .guidance
            .iter()
            .map(|&w| path_argument(&pairs_path(&settings.out, w))),
    );
    argv.extend(["--site".into(), path_argument(&args.site)]);
    if args.default {
        argv.push("--default".into());
    }
    argv
}

/// The dataset as `bns train --dataset` spells it.
pub(super) fn dataset_argument(dataset: &DatasetSource) -> String {
    dataset.to_string()
}

/// The image-folder flags of `bns train` that were given (none for a named dataset).
pub(super) fn image_folder_arguments(
    options: &ImageFolderOptions,
    with_shape: bool,
) -> Vec<String> {
    let mut argv = Vec::new();
    if with_shape {
        if let Some(size) = options.size {
            argv.extend(["--size".into(), size.to_string()]);
        }
        if let Some(channels) = options.channels {
            argv.extend(["--channels".into(), channels.to_string()]);
        }
    }
    if options.skip_bad {
        argv.push("--skip-bad-images".into());
    }
    argv
}

/// `-o PATH`.
pub(super) fn output_argument(path: &Path) -> [String; 2] {
    ["-o".into(), path_argument(path)]
}

pub(super) fn path_argument(path: &Path) -> String {
    path.display().to_string()
}

/// `--device` and `--threads` as given to the pipeline, for every stage.
pub(super) fn compute_arguments(compute: &ComputeArgs) -> Vec<String> {
    let mut argv = Vec::new();
    if compute.device != DeviceKind::Cpu {
        argv.extend(["--device".into(), compute.device.name().into()]);
    }
    if let Some(threads) = compute.threads {
        argv.extend(["--threads".into(), threads.to_string()]);
    }
    argv
}

pub(super) fn pairs_path(out: &Path, guidance: f64) -> PathBuf {
    out.join(format!("pairs-w{guidance}.safetensors"))
}
