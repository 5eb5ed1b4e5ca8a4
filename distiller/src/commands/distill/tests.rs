//! `bns distill`'s tests: tiny models and pairs, distilled and resumed.

use super::*;
use crate::commands::train::{train, TrainArgs};
use crate::commands::truth::{compute_pairs, TruthOptions};
use crate::compute::{ComputeArgs, DeviceKind};
use crate::data::{self, DataSources, DatasetName, DatasetSource};
use std::path::Path;
use web_sampler::scratch::ScratchDir;

fn compute() -> ComputeArgs {
    ComputeArgs {
        device: DeviceKind::Cpu,
        threads: None,
    }
}

/// A tiny checkerboard model (trained briefly, so its flow is smooth in t) and its pairs.
pub(crate) fn tiny_model_and_pairs(dir: &Path) -> (PathBuf, PathBuf) {
    let model_path = dir.join("m.safetensors");
    let source = DatasetSource::Named(DatasetName::Checkerboard);
    let dataset = data::load(&source, &DataSources::default(), &Default::default(), 1).unwrap();
    let args = TrainArgs {
        dataset: source,
        images: Default::default(),
        steps: 400,
        batch: 256,
        lr: 3e-3,
        weight_decay: 0.0,
        ema: 0.9,
        label_dropout: 0.0,
        network: crate::network_args::NetworkArgs {
            architecture: crate::network_args::ArchitectureName::Mlp,
            width: 48,
            depth: 2,
            time_embedding: 8,
            time_scale: 10.0,
            prediction: web_sampler::model::Prediction::Data,
            class_embedding: 0,
            unet: Default::default(),
        },
        seed: 1,
        checkpoint_every: 1000,
        checkpoint_minutes: 10.0,
        resume: false,
        output: model_path.clone(),
        compute: compute(),
    };
    let model = train(&args, &dataset, &Device::Cpu, false).unwrap().model;
    let options = TruthOptions {
        count: 224,
        validation: 64,
        test: 64,
        seed: 3,
        guidance: 0.0,
        class: None,
        rtol: 1e-6,
        atol: 1e-6,
        batch: 224,
        shard: None,
    };
    let pairs = compute_pairs(&model, &options, &mut |_| {}).unwrap();
    let pairs_path = dir.join("pairs.safetensors");
    pairs.save(&pairs_path).unwrap();
    (model_path, pairs_path)
}

pub(crate) fn args(model: &Path, pairs: &Path, output: &Path) -> DistillArgs {
    DistillArgs {
        model: model.to_path_buf(),
        pairs: pairs.to_path_buf(),
        nfe: 4,
        guidance: None,
        init: Method::Euler,
        grid: Grid::Uniform,
        time_only: false,
        time_only_baseline: None,
        psnr_cache: None,
        iterations: 150,
        batch: 48,
        lr: 2e-2,
        validate_every: 25,
        seed: 0,
        checkpoint_every: 100,
        checkpoint_minutes: 10.0,
        low_memory: false,
        resume: false,
        output: output.to_path_buf(),
        compute: compute(),
    }
}

/// The distilled solver (written to `out`) beats its init by more than `margin` dB on the
/// test pairs, and the runtime, reading the file, reproduces the validation and test figures
/// it records and those of its baselines. Returns the file.
fn check_gain_and_recorded_psnr(
    what: &str,
    outcome: &DistillOutcome,
    margin: f64,
    out: &Path,
    model: &Model,
    pairs: &Pairs,
) -> SolverFile {
    let test = &outcome.test;
    let init = test.init.expect("the init is known");
    eprintln!(
        "{what} NFE 4: BNS {:.2} dB, Euler init {init:.2} dB on the test pairs",
        test.solver.mean
    );
    assert!(
        test.solver.mean > init + margin,
        "BNS {:.2} dB vs Euler init {init:.2} dB",
        test.solver.mean
    );
    assert!(outcome.validation_psnr >= outcome.init_validation_psnr - 1e-9);
    let file = SolverFile::load(out).unwrap();
    let runtime =
        |view: &PairsView| mean_std(&solver_psnr(model, &file.table(), view, 0.0).unwrap());
    let (validation, _) = runtime(&pairs.validation());
    let (test_psnr, test_std) = runtime(&pairs.test());
    for (key, measured) in [
        ("validation_psnr", validation),
        ("test_psnr", test_psnr),
        ("test_psnr_std", test_std),
        ("test_psnr_sem", test_std / (pairs.test().len as f64).sqrt()),
        ("init_test_psnr", init),
    ] {
        assert!(
            (measured - file.metrics[key]).abs() < 1e-9,
            "{key}: {measured} vs {:?}",
            file.metrics
        );
    }
    // The best classical solver at NFE 4 is at least as good as the Euler init, and it is
    // the best of them all, measured again here.
    let best = file.metrics["best_classical_test_psnr"];
    assert!(best >= init, "{best} vs {init}");
    let label = file.provenance["best_classical"].as_str().unwrap();
    let (method, grid) = label.split_once('-').unwrap();
    let table = method
        .parse::<Method>()
        .unwrap()
        .build(4, grid.parse().unwrap())
        .unwrap();
    let (again, _) = mean_std(&solver_psnr(model, &table, &pairs.test(), 0.0).unwrap());
    assert!((again - best).abs() < 1e-9, "{label}: {again} vs {best}");
    assert_eq!(file.provenance["test_pairs"], json!(pairs.test().len));
    file
}

#[test]
fn distilling_beats_the_euler_init_and_the_file_reproduces_its_psnr() {
    let scratch = ScratchDir::new("distill-gain");
    let dir = scratch.path();
    let (model_file, pairs_file) = tiny_model_and_pairs(dir);
    let out = dir.join("bns-4.json");
    let model = Model::load(&model_file).unwrap();
    let pairs = Pairs::load(&pairs_file).unwrap();

    // The time-only baseline also starts from Euler and cannot do worse than it on the
    // validation pairs it was chosen on.
    let time_only_file = dir.join("t.json");
    let mut time_only = args(&model_file, &pairs_file, &time_only_file);
    time_only.time_only = true;
    let t = distill(&time_only, &Device::Cpu, false).unwrap();
    assert!(
        t.validation_psnr >= t.init_validation_psnr - 1e-9,
        "{} vs {}",
        t.validation_psnr,
        t.init_validation_psnr
    );
    assert_eq!(t.solver.kind, "bns-time-only");
    assert_eq!(t.test.time_only, None);

    // A baseline of another NFE is refused before any work.
    let mut wrong = args(&model_file, &pairs_file, &dir.join("wrong.json"));
    wrong.nfe = 6;
    wrong.time_only_baseline = Some(time_only_file.clone());
    let shown = format!("{:#}", distill(&wrong, &Device::Cpu, false).unwrap_err());
    assert!(
        shown.contains("t.json") && shown.contains("at NFE 4") && shown.contains("at NFE 6"),
        "{shown}"
    );
    assert!(!dir.join("wrong.json").exists());

    let mut bns = args(&model_file, &pairs_file, &out);
    bns.time_only_baseline = Some(time_only_file.clone());
    let outcome = distill(&bns, &Device::Cpu, false).unwrap();
    let file = check_gain_and_recorded_psnr("MLP", &outcome, 3.0, &out, &model, &pairs);
    file.check_model(&model, "bns-4.json").unwrap();
    assert_eq!(file.kind, "bns");
    assert_eq!(file.nfe, 4);
    // The baseline's figure is its own test PSNR, as recorded in its own file.
    let baseline = file.metrics["time_only_test_psnr"];
    assert_eq!(Some(baseline), outcome.test.time_only);
    let recorded = SolverFile::load(&time_only_file).unwrap().metrics["test_psnr"];
    assert!(
        (baseline - recorded).abs() < 1e-9,
        "{baseline} vs {recorded}"
    );

    // The best classical solver's figure and the baseline's were taken from the baseline's
    // file (distilled on the same pairs file): they are what measuring all again finds, bit
    // for bit.
    let pairs_id = crate::files::file_sha256(&pairs_file).unwrap();
    assert_eq!(file.provenance["pairs_id"], json!(pairs_id));
    let baseline_file = SolverFile::load(&time_only_file).unwrap();
    let again = TestFigures::measure(
        &model,
        &file,
        &pairs.test(),
        &pairs_id,
        Some(&baseline_file),
        &PsnrCache::none(),
    )
    .unwrap();
    assert_eq!(outcome.test, again);
    // Taken, not measured: a figure changed in the baseline's file comes through, unless
    // the file's figures are of other pairs.
    let mut changed = baseline_file.clone();
    changed
        .metrics
        .insert("best_classical_test_psnr".into(), 99.0);
    let beside = |baseline: &SolverFile, id: &str| {
        TestFigures::measure_beside(
            &model,
            &file,
            &pairs.test(),
            id,
            Some(baseline),
            &PsnrCache::none(),
        )
        .unwrap()
    };
    assert_eq!(beside(&changed, &pairs_id).best_classical.1, 99.0);
    assert_eq!(
        beside(&changed, &"0".repeat(64)),
        TestFigures {
            pairs_id: "0".repeat(64),
            ..again.clone()
        }
    );
}

/// Train → truth → distill on a tiny U-Net (the CPU forward for the truth and the PSNR,
/// candle's for the gradients): the distilled solver beats its Euler init, and the runtime
/// reproduces the PSNR its file records.
#[test]
fn distilling_a_tiny_unet_beats_its_init() {
    let scratch = ScratchDir::new("distill-unet");
    let dir = scratch.path();
    let model_path = dir.join("unet.safetensors");
    let data = crate::commands::train::tests::squares();
    let train_args = crate::commands::train::tests::unet_args(&model_path, 30, false);
    let model = train(&train_args, &data, &Device::Cpu, false)
        .unwrap()
        .model;
    let options = TruthOptions {
        count: 40,
        validation: 12,
        test: 12,
        seed: 3,
        guidance: 0.0,
        class: None,
        rtol: 1e-5,
        atol: 1e-5,
        batch: 40,
        shard: None,
    };
    let pairs = compute_pairs(&model, &options, &mut |_| {}).unwrap();
    let pairs_path = dir.join("pairs.safetensors");
    pairs.save(&pairs_path).unwrap();
    let out = dir.join("bns-4.json");
    let mut a = args(&model_path, &pairs_path, &out);
    a.iterations = 20;
    a.batch = 16;
    a.validate_every = 10;
    let outcome = distill(&a, &Device::Cpu, false).unwrap();
    check_gain_and_recorded_psnr("U-Net", &outcome, 1.0, &out, &model, &pairs);
    // With one evaluation's memory at a time: the same gradients up to rounding, so the
    // same solver up to rounding.
    let low = dir.join("bns-4-low-memory.json");
    let low_memory = distill(
        &DistillArgs {
            low_memory: true,
            output: low.clone(),
            ..a
        },
        &Device::Cpu,
        false,
    )
    .unwrap();
    check_gain_and_recorded_psnr(
        "U-Net, --low-memory",
        &low_memory,
        1.0,
        &low,
        &model,
        &pairs,
    );
    assert!(
        (low_memory.validation_psnr - outcome.validation_psnr).abs() < 0.05,
        "validation PSNR {} with --low-memory, {} without",
        low_memory.validation_psnr,
        outcome.validation_psnr
    );
}

#[test]
fn a_killed_distillation_resumes_to_the_same_solver() {
    let scratch = ScratchDir::new("distill-resume");
    let dir = scratch.path();
    let (model, pairs) = tiny_model_and_pairs(dir);
    let settings = |output: &Path| DistillArgs {
        iterations: 24,
        validate_every: 5,
        checkpoint_every: 7,
        batch: 16,
        ..args(&model, &pairs, output)
    };
    let whole = dir.join("whole.json");
    let uninterrupted = distill(&settings(&whole), &Device::Cpu, false).unwrap();
    assert!(!crate::checkpoint::checkpoint_path(&whole).exists());

    // Killed after iteration 16: the checkpoint of iteration 14 is what is left.
    let output = dir.join("resumed.json");
    STOP_AFTER.with(|s| s.set(Some(16)));
    let stopped = distill(&settings(&output), &Device::Cpu, false);
    STOP_AFTER.with(|s| s.set(None));
    assert!(stopped.is_err() && !output.exists());
    let ckpt = crate::checkpoint::checkpoint_path(&output);
    assert!(ckpt.exists());

    // Other settings are refused by name, and the checkpoint is left alone.
    let other = DistillArgs {
        lr: 1e-3,
        resume: true,
        ..settings(&output)
    };
    let message = format!("{:#}", distill(&other, &Device::Cpu, false).err().unwrap());
    assert!(
        message.contains("resumed.json.ckpt") && message.contains("another run"),
        "{message}"
    );
    let resumed = DistillArgs {
        resume: true,
        ..settings(&output)
    };
    let outcome = distill(&resumed, &Device::Cpu, false).unwrap();
    assert!(!ckpt.exists());
    let (a, b) = (&outcome.solver, &uninterrupted.solver);
    assert_eq!(
        (&a.times, &a.a, &a.b),
        (&b.times, &b.a, &b.b),
        "the same table, bit for bit"
    );
    assert_eq!(a.metrics, b.metrics);
    assert_eq!(
        a.provenance["best_iteration"],
        b.provenance["best_iteration"]
    );

    // With iterations far apart (every 1,000) but minutes not (0: after every iteration),
    // a run killed after iteration 11 leaves its checkpoint of iteration 11, and resumes
    // to the same solver too.
    let by_minutes = dir.join("by-minutes.json");
    let settings = |resume| DistillArgs {
        checkpoint_every: 1000,
        checkpoint_minutes: 0.0,
        low_memory: false,
        resume,
        ..settings(&by_minutes)
    };
    STOP_AFTER.with(|s| s.set(Some(11)));
    assert!(distill(&settings(false), &Device::Cpu, false).is_err());
    STOP_AFTER.with(|s| s.set(None));
    assert!(crate::checkpoint::checkpoint_path(&by_minutes).exists());
    let c = distill(&settings(true), &Device::Cpu, false)
        .unwrap()
        .solver;
    assert_eq!((&c.times, &c.a, &c.b), (&b.times, &b.a, &b.b));
    assert_eq!(c.metrics, b.metrics);

    // A damaged checkpoint is refused, naming the file.
    std::fs::write(&ckpt, b"not a checkpoint").unwrap();
    let message = format!(
        "{:#}",
        distill(&resumed, &Device::Cpu, false).err().unwrap()
    );
    assert!(
        message.contains("resumed.json.ckpt") && message.contains("not a valid"),
        "{message}"
    );
}

#[test]
fn bad_requests_are_refused_and_leave_the_output_alone() {
    let scratch = ScratchDir::new("distill-bad");
    let dir = scratch.path();
    let (model, pairs) = tiny_model_and_pairs(dir);
    let out = dir.join("keep.json");
    std::fs::write(&out, "previous").unwrap();
    let message = |a: DistillArgs| distill(&a, &Device::Cpu, false).err().unwrap().to_string();

    let mut a = args(&model, &pairs, &out);
    a.nfe = 0;
    assert!(message(a).contains("--nfe must be at least 1"));

    let mut a = args(&model, &pairs, &out);
    a.guidance = Some(2.0);
    let m = message(a);
    assert!(
        m.contains("guidance") && m.contains("pairs.safetensors"),
        "{m}"
    );

    let mut a = args(&model, &pairs, &out);
    a.time_only = true;
    a.init = Method::Midpoint;
    assert!(message(a).contains("--init euler"));

    let mut a = args(&model, &pairs, &out);
    a.init = Method::Midpoint;
    a.nfe = 5;
    assert!(message(a).contains("multiple of 2"));

    // Pairs computed for another model.
    let other = dir.join("other.safetensors");
    let spec = Model::load(&model).unwrap().spec().clone();
    Model::random(spec, 99).unwrap().save(&other).unwrap();
    let m = message(args(&other, &pairs, &out));
    assert!(m.contains("pairs.safetensors"), "{m}");

    // Pairs of this model whose labels it has no class for (the tiny model is
    // unconditional: its only label is its null class 0).
    let mut tampered = Pairs::load(&pairs).unwrap();
    for label in [1, u32::MAX] {
        tampered.labels[7] = label;
        let bad = dir.join("bad-labels.safetensors");
        tampered.save(&bad).unwrap();
        let m = message(args(&model, &bad, &out));
        assert!(
            m.contains("bad-labels.safetensors")
                && m.contains(&format!("pair 7 has label {label}")),
            "{m}"
        );
    }

    assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous");
}
