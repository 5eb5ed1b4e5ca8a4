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
