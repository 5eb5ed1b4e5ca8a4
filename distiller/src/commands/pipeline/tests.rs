//! `bns pipeline` end to end on a tiny 2-D set.
use super::*;
use crate::commands::distill::{self, DistillArgs};
use std::time::SystemTime;
use web_sampler::scratch::ScratchDir;
use web_sampler::solver::SolverFile;

/// `bns pipeline` with tiny settings on moons, working in `dir/runs` and publishing to
/// `dir/www`, with `extra` flags.
fn tiny_args(dir: &Path, extra: &[&str]) -> PipelineArgs {
    let runs = dir.join("runs");
    let site = dir.join("www");
    let mut argv: Vec<String> = [
        "--dataset",
        "moons",
        "--name",
        "tiny-moons",
        "--steps",
        "30",
        "--batch",
        "64",
        "--width",
        "16",
        "--depth",
        "2",
        "--truth-count",
        "128",
        "--truth-validation",
        "32",
        "--truth-test",
        "32",
        "--nfe",
        "2,4",
        "--iterations",
        "130",
        "--fd-samples",
        "50",
        "--threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(["--out".into(), path_argument(&runs)]);
    argv.extend(["--site".into(), path_argument(&site)]);
    argv.extend(extra.iter().map(|s| s.to_string()));
    parse_stage::<PipelineArgs>("pipeline", &argv).unwrap()
}

fn site(dir: &Path) {
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "<!doctype html>").unwrap();
}

/// Every file under `dir` with its modification time.
fn files(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
                out.push((path, modified));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_tiny_moons_pipeline_resumes_an_interrupted_distillation_then_skips_every_stage() {
    let scratch = ScratchDir::new("pipeline");
    let dir = scratch.path();
    site(dir);
    let runs = dir.join("runs");

    // Interrupted in the first distillation, after its checkpoint at iteration 100.
    distill::STOP_AFTER.with(|s| s.set(Some(110)));
    let error = run(tiny_args(dir, &[])).unwrap_err();
    distill::STOP_AFTER.with(|s| s.set(None));
    assert!(
        format!("{error:#}").contains("interrupted after iteration 110"),
        "{error:#}"
    );
    assert!(runs.join("model.safetensors").is_file());
    assert!(runs.join("pairs-w0.safetensors").is_file());
    assert!(runs.join("bns-2-w0.json.ckpt").is_file());
    assert!(!runs.join("bns-2-w0.json").exists());

    // The rerun resumes it and finishes; the solver is the one an uninterrupted run writes.
    run(tiny_args(dir, &[])).unwrap();
    assert!(!runs.join("bns-2-w0.json.ckpt").exists());
    let resumed = SolverFile::load(&runs.join("bns-2-w0.json")).unwrap();
    let fresh_output = dir.join("fresh-bns-2.json");
    let argv: Vec<String> = [
        "--model",
        &path_argument(&runs.join("model.safetensors")),
        "--pairs",
        &path_argument(&runs.join("pairs-w0.safetensors")),
        "--nfe",
        "2",
        "--iterations",
        "130",
        "--time-only-baseline",
        &path_argument(&runs.join("timeonly-2-w0.json")),
        "--threads",
        "1",
        "-o",
        &path_argument(&fresh_output),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    distill::run(parse_stage::<DistillArgs>("distill", &argv).unwrap()).unwrap();
    let fresh = SolverFile::load(&fresh_output).unwrap();
    assert_eq!(
        (&resumed.times, &resumed.a, &resumed.b),
        (&fresh.times, &fresh.a, &fresh.b)
    );
    assert_eq!(resumed.metrics, fresh.metrics);
    std::fs::remove_file(&fresh_output).unwrap();

    for file in [
        "bns-4-w0.json",
        "timeonly-4-w0.json",
        "eval-w0/results.md",
        "times.log",
    ] {
        assert!(runs.join(file).is_file(), "{file}");
    }
    // Each BNS solver records its time-only baseline at the same NFE.
    assert!(resumed.metrics.contains_key("time_only_test_psnr"));
    let manifest_path = dir.join("www/models/tiny-moons/manifest.json");
    let manifest =
        Manifest::from_json(&std::fs::read_to_string(&manifest_path).unwrap(), "test").unwrap();
    let model = Model::load(&runs.join("model.safetensors")).unwrap();
    assert_eq!(manifest.model_id, model.id());
    let mut names: Vec<&str> = manifest.solvers.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["bns-2-w0", "bns-4-w0"]);
    let index = std::fs::read_to_string(dir.join("www/models/index.json")).unwrap();
    assert!(index.contains("\"tiny-moons\""), "{index}");
    let spec = model.spec();
    assert_eq!(spec.prediction, Prediction::Velocity, "the 2-D default");
    assert_eq!(spec.training_steps, 30);

    // A third run finds every stage done and writes nothing.
    let before = files(dir);
    run(tiny_args(dir, &[])).unwrap();
    assert_eq!(files(dir), before);
}

/// The settings [`settings`] resolves for `args` on data of `kind` with `classes` classes,
/// without reading the data.
fn settings_of(args: &PipelineArgs, out: &Path, kind: DataKind, classes: usize) -> Settings {
    let defaults = KindDefaults::of(kind);
    Settings {
        out: out.to_path_buf(),
        kind,
        classes,
        network: args.network.resolve(&defaults.network).unwrap(),
        defaults,
        guidance: args.guidance.clone().unwrap_or(vec![0.0]),
    }
}

/// Every command line a pipeline builds is parsed by its stage's own flags (so a misspelt or
/// renamed flag fails here), and gives the stage the values the pipeline meant.
#[test]
fn every_stage_command_line_parses_with_the_stage_s_own_flags() {
    use crate::commands::eval::EvalArgs;
    use crate::commands::publish::PublishArgs;
    use crate::commands::train::TrainArgs;
    use crate::commands::truth::TruthArgs;

    let dir = Path::new("/nonexistent/pipeline");
    let every_flag = [
        "--dataset",
        "images:/data/faces",
        "--size",
        "16",
        "--channels",
        "3",
        "--skip-bad-images",
        "--name",
        "faces",
        "--title",
        "Faces, a U-Net",
        "--nfe",
        "4,8",
        "--guidance",
        "0,2",
        "--out",
        "/nonexistent/pipeline",
        "--steps",
        "7",
        "--batch",
        "5",
        "--arch",
        "unet",
        "--base-channels",
        "8",
        "--channel-multipliers",
        "1,2",
        "--residual-blocks",
        "2",
        "--groups",
        "4",
        "--attention",
        "false",
        "--embedding-width",
        "16",
        "--time-embedding",
        "8",
        "--time-scale",
        "2.5",
        "--prediction",
        "velocity",
        "--truth-count",
        "64",
        "--truth-validation",
        "8",
        "--truth-test",
        "16",
        "--iterations",
        "11",
        "--init",
        "rk4",
        "--distill-lr",
        "0.001,0.002",
        "--distill-batch",
        "12",
        "--distill-low-memory",
        "--train-lr",
        "0.0005",
        "--fd-samples",
        "10",
        "--fd-nfe",
        "4,8",
        "--site",
        "/nonexistent/www",
        "--default",
        "--device",
        "cuda",
        "--threads",
        "1",
    ];
    let cases: [(&[&str], DataKind, usize); 3] = [
        (&every_flag, DataKind::Images, 3),
        (
            &["--dataset", "moons", "--name", "moons"],
            DataKind::Points,
            0,
        ),
        (
            &[
                "--dataset",
                "fashion-mnist",
                "--name",
                "f",
                "--no-time-only",
                "--width",
                "64",
            ],
            DataKind::Images,
            10,
        ),
    ];
    for (flags, kind, classes) in cases {
        let argv: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        let args = parse_stage::<PipelineArgs>("pipeline", &argv).unwrap();
        let settings = settings_of(&args, dir, kind, classes);
        let model = dir.join("model.safetensors");

        let train = parse_stage::<TrainArgs>("train", &train_command(&args, &settings, &model))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(train.network, settings.network);
        assert_eq!(train.steps, args.steps.unwrap_or(settings.defaults.steps));
        assert_eq!(train.batch, args.batch.unwrap_or(settings.defaults.batch));
        assert_eq!(train.images, args.images);
        assert_eq!(train.dataset.to_string(), args.dataset.to_string());
        assert_eq!(train.compute.device, args.compute.device);
        assert_eq!(train.compute.threads, args.compute.threads);
        assert_eq!((train.seed, &train.output), (TRAIN_SEED, &model));
        if let Some(lr) = args.train_lr {
            assert_eq!(train.lr, lr);
        }

        for &w in &settings.guidance {
            // (`bns truth`'s flags are private to it: its command line is checked by parsing.)
            parse_stage::<TruthArgs>("truth", &truth_command(&args, &settings, &model, w))
                .unwrap_or_else(|e| panic!("{e:#}"));
            let solvers = distilled_solvers(&args, &settings, w);
            assert_eq!(
                solvers.len(),
                args.nfe.len() * if args.no_time_only { 1 } else { 2 }
            );
            for solver in &solvers {
                let argv = distill_command(&args, &settings, &model, solver);
                let distill = parse_stage::<DistillArgs>("distill", &argv)
                    .unwrap_or_else(|e| panic!("{e:#}"));
                let iterations = args.iterations.unwrap_or(settings.defaults.iterations);
                assert_eq!(distill.nfe, solver.nfe);
                assert_eq!(distill.pairs, pairs_path(dir, w));
                assert_eq!(distill.output, solver.output);
                assert_eq!(distill.time_only, solver.prefix == "timeonly");
                assert_eq!(distill.psnr_cache, Some(psnr_cache_path(dir)));
                if let Some(batch) = args.distill_batch {
                    assert_eq!(distill.batch, batch);
                }
                assert_eq!(distill.low_memory, args.distill_low_memory);
                if distill.time_only {
                    assert_eq!(distill.iterations, (iterations / 2).max(1));
                } else {
                    assert_eq!(distill.iterations, iterations);
                    assert_eq!(distill.init, args.init);
                    if let Some(lr) = distill_lr(&args, solver.nfe) {
                        assert_eq!(distill.lr, lr);
                    }
                    assert_eq!(distill.time_only_baseline.is_some(), !args.no_time_only);
                }
            }
            let eval = parse_stage::<EvalArgs>("eval", &eval_command(&args, &settings, &model, w))
                .unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(eval.output, eval_folder(dir, w));
            assert_eq!(eval.psnr_cache, Some(psnr_cache_path(dir)));
            assert_eq!(eval.skip_bad_images, args.images.skip_bad);
            if let Some(samples) = args.fd_samples {
                assert_eq!(eval.fd_samples, samples);
            }
            if let Some(nfe) = &args.fd_nfe {
                assert_eq!(&eval.fd_nfe, nfe);
            }
            let folder = matches!(args.dataset, DatasetSource::Images(_));
            assert_eq!(eval.dataset.is_some(), folder);
        }
        let published = vec![dir.join("bns-4-w0.json"), dir.join("bns-8-w0.json")];
        let publish = parse_stage::<PublishArgs>(
            "publish",
            &publish_command(&args, &settings, &model, &published),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(publish.name, args.name);
        assert_eq!(publish.solvers, published);
        assert_eq!(publish.pairs.len(), settings.guidance.len());
        assert_eq!(publish.default, args.default);
        if let Some(title) = &args.title {
            assert_eq!(&publish.title, title);
        }
    }
}

#[test]
fn a_flag_of_the_other_architecture_is_refused_before_any_work() {
    let scratch = ScratchDir::new("pipeline-refused");
    let dir = scratch.path();
    site(dir);
    let error = run(tiny_args(dir, &["--arch", "unet"])).unwrap_err();
    assert!(
        format!("{error:#}")
            .contains("--width and --depth are flags of --arch mlp, not of --arch unet"),
        "{error:#}"
    );
    let error = run(tiny_args(dir, &["--groups", "4"])).unwrap_err();
    assert!(
        format!("{error:#}").contains("--groups is a flag of --arch unet, not of --arch mlp"),
        "{error:#}"
    );
    assert!(!dir.join("runs").exists());
}

#[test]
fn a_learning_rate_per_nfe_goes_to_its_solver_and_a_wrong_count_is_refused() {
    let scratch = ScratchDir::new("pipeline-lr");
    let dir = scratch.path();
    site(dir);
    let args = tiny_args(dir, &["--distill-lr", "0.001,0.002,0.003"]);
    let error = run(args).unwrap_err();
    assert!(
        format!("{error:#}").contains("--distill-lr: give one learning rate, or one per NFE"),
        "{error:#}"
    );
    assert!(!dir.join("runs").exists());
    let mut args = tiny_args(dir, &["--distill-lr", "0.001"]);
    args.nfe = vec![4, 8];
    assert_eq!(
        (distill_lr(&args, 4), distill_lr(&args, 8)),
        (Some(0.001), Some(0.001))
    );
    args.distill_lr = Some(vec![0.001, 0.002]);
    assert_eq!(
        (distill_lr(&args, 4), distill_lr(&args, 8)),
        (Some(0.001), Some(0.002))
    );
}

#[test]
fn help_gives_the_defaults_of_each_kind() {
    use clap::CommandFactory;
    #[derive(clap::Parser)]
    struct Bns {
        #[command(flatten)]
        pipeline: PipelineArgs,
    }
    let help = Bns::command().render_help().to_string();
    for (kind, name) in KINDS {
        let d = KindDefaults::of(kind);
        let line = format!(
            "{name}:{}--prediction {} (MLP: --width {} --depth {}) --batch {} --steps {},",
            " ".repeat(12 - name.len() - 1),
            d.network.prediction.name(),
            d.network.width,
            d.network.depth,
            d.batch,
            d.steps
        );
        assert!(help.contains(&line), "{line:?} not in\n{help}");
    }
    // The kinds differ in the MLP's width and the prediction, not its depth.
    assert_eq!(network_flags_by_kind(), ["--prediction", "--width"]);
    let flag_help = |flag: &str| -> String {
        let start = help
            .find(&format!("      {flag} "))
            .unwrap_or_else(|| panic!("{flag}"));
        help[start..].lines().take(3).collect::<Vec<_>>().join(" ")
    };
    assert!(flag_help("--width").contains("[default: by the data's kind, below]"));
    assert!(flag_help("--depth").contains("[default: 3]"));
    assert!(flag_help("--base-channels").contains("[default: 32]"));
    assert!(flag_help("--batch").contains("(default: 512 for 2-D points, 128 for images)"));
    assert!(flag_help("--steps").contains("(default: 10000)"));
}
