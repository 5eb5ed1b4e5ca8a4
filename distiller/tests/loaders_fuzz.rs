//! The distiller's loaders of untrusted files — ground-truth pairs, `bns truth`'s partial
//! progress, the checkpoints of `bns train` and `bns distill`, and `bns eval`'s classifier —
//! against mutated and hand-made hostile inputs (web_sampler's `mutation`): each either loads or
//! returns an error naming the file, and none panics. The allocation bound is watched in
//! `tests/tests/loaders_fuzz.rs` for the runtime's loaders only: a binary linking the distiller
//! has the distiller's global allocator, so a counting one cannot be installed here. The
//! distiller's loaders read tensors as slices of the file they were given (`TensorFile`), with
//! shapes taken from the run's settings or bounded by `MAX_DATA_DIM`, so what they allocate is
//! bounded by the input's size.
//!
//! `BNS_FUZZ_CASES` cases per loader (default 2000); run longer with e.g.
//! `BNS_FUZZ_CASES=100000 cargo test -p distiller --test loaders_fuzz --release`.

use std::path::Path;

use candle_core::{Device, Tensor};
use distiller::bns::BnsParameters;
use distiller::checkpoint::checkpoint_path;
use distiller::classifier::{self, Classifier, TrainSettings};
use distiller::commands::distill::checkpoint as distill_checkpoint;
use distiller::commands::train::{self, TrainArgs};
use distiller::commands::truth::{compute_pairs, TruthOptions};
use distiller::compute::{ComputeArgs, DeviceKind};
use distiller::data::{
    self, DataSources, Dataset, DatasetName, DatasetSource, ImageFolderOptions, Split,
};
use distiller::network::CandleNetwork;
use distiller::network_args::{ArchitectureName, NetworkArgs};
use distiller::optim::AdamW;
use distiller::pairs::{Pairs, Partial, Tensors};
use web_sampler::grid::Grid;
use web_sampler::model::{Model, Prediction};
use web_sampler::mutation::{cases, check, inputs};
use web_sampler::scratch::ScratchDir;
use web_sampler::solver::Method;

fn options() -> TruthOptions {
    TruthOptions {
        count: 8,
        validation: 2,
        test: 2,
        seed: 1,
        guidance: 0.0,
        class: None,
        rtol: 1e-4,
        atol: 1e-4,
        batch: 6,
        shard: None,
    }
}

/// The published checkerboard model.
fn checkerboard_model() -> Model {
    let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models/checkerboard");
    Model::load(&site.join("model.safetensors")).unwrap()
}

/// A small valid pairs file of the published checkerboard model.
fn valid_pairs(dir: &Path) -> Pairs {
    let model = checkerboard_model();
    let pairs = compute_pairs(&model, &options(), &mut |_| {}).unwrap();
    pairs.save(&dir.join("pairs.safetensors")).unwrap();
    pairs
}

#[test]
fn pairs_files() {
    let scratch = ScratchDir::new("fuzz-pairs");
    valid_pairs(scratch.path());
    let valid = std::fs::read(scratch.path().join("pairs.safetensors")).unwrap();
    let load = |b: &[u8]| Pairs::from_bytes(b, "p.safetensors");
    let (_, refused) = check("pairs", "p.safetensors", inputs(valid, 4), load, None);
    assert!(refused > cases() / 2);
}

#[test]
fn partial_progress_files() {
    let scratch = ScratchDir::new("fuzz-partial");
    let pairs = valid_pairs(scratch.path());
    let partial = Partial {
        model_id: pairs.meta.model_id.clone(),
        data_shape: pairs.meta.data_shape.clone(),
        options: options(),
        tensors: Tensors {
            noise: pairs.noise,
            truth: pairs.truth,
            labels: pairs.labels,
        },
        nfe_rows: 60,
        seconds: 0.5,
    };
    let valid_path = scratch.path().join("valid.partial");
    partial.save(&valid_path).unwrap();
    let valid = std::fs::read(&valid_path).unwrap();
    let path = scratch.path().join("case.partial");
    let load = |b: &[u8]| {
        std::fs::write(&path, b).unwrap();
        Partial::<TruthOptions>::load(&path)
    };
    let (_, refused) = check(
        "partial progress",
        "case.partial",
        inputs(valid, 5),
        load,
        None,
    );
    assert!(refused > cases() / 2);
}

/// A few steps of training a small MLP on the checkerboard, checkpointing every step.
fn train_args(output: &Path) -> TrainArgs {
    TrainArgs {
        dataset: DatasetSource::Named(DatasetName::Checkerboard),
        images: ImageFolderOptions::default(),
        steps: 3,
        batch: 16,
        lr: 3e-3,
        weight_decay: 0.0,
        ema: 0.9,
        label_dropout: 0.1,
        network: NetworkArgs {
            architecture: ArchitectureName::Mlp,
            width: 16,
            depth: 2,
            time_embedding: 8,
            time_scale: 10.0,
            prediction: Prediction::Data,
            class_embedding: 4,
            unet: Default::default(),
        },
        seed: 5,
        checkpoint_every: 1,
        checkpoint_minutes: 10.0,
        resume: false,
        output: output.to_path_buf(),
        compute: ComputeArgs {
            device: DeviceKind::Cpu,
            threads: None,
        },
    }
}

#[test]
fn training_checkpoints() {
    let scratch = ScratchDir::new("fuzz-train-checkpoint");
    let args = train_args(&scratch.path().join("m.safetensors"));
    let sources = DataSources::default();
    let data = data::load(&args.dataset, &sources, &args.images, args.seed).unwrap();
    train::train(&args, &data, &Device::Cpu, false).unwrap();
    let valid = std::fs::read(checkpoint_path(&args.output)).unwrap();
    let run = train::run_identity(&args, &data).unwrap();
    let origin = Path::new("m.safetensors.ckpt");
    let load = |b: &[u8]| train::parse_checkpoint(origin, b, &run, &Device::Cpu);
    let (adam, _, _) = load(&valid).expect("the valid checkpoint loads");
    assert_eq!(adam.steps, 3);
    let (_, refused) = check(
        "training checkpoint",
        "m.safetensors.ckpt",
        inputs(valid, 6),
        load,
        None,
    );
    assert!(refused > cases() / 2);
}

/// The solver being distilled: Euler at NFE 4 on the uniform grid.
fn distill_parameters() -> (BnsParameters, AdamW) {
    let table = Method::Euler.build(4, Grid::Uniform).unwrap();
    let params = BnsParameters::from_table(&table, false, &Device::Cpu).unwrap();
    let adam = AdamW::new(params.vars(), 0.0).unwrap();
    (params, adam)
}

#[test]
fn distillation_checkpoints() {
    let scratch = ScratchDir::new("fuzz-distill-checkpoint");
    let model = checkerboard_model();
    let pairs = valid_pairs(scratch.path());
    // Three optimisation steps on the pairs, as `bns distill` takes them, then its checkpoint.
    let (params, mut adam) = distill_parameters();
    let net = CandleNetwork::from_model(&model, &Device::Cpu).unwrap();
    let rows = pairs.labels.len();
    let dim = pairs.noise.len() / rows;
    let x0 = Tensor::from_slice(&pairs.noise, (rows, dim), &Device::Cpu).unwrap();
    let truth = Tensor::from_slice(&pairs.truth, (rows, dim), &Device::Cpu).unwrap();
    let labels = Tensor::from_slice(&pairs.labels, rows, &Device::Cpu).unwrap();
    let mut recent = Vec::new();
    for _ in 0..3 {
        let loss = params.loss(&net, &x0, &truth, &labels, 0.0).unwrap();
        recent.push(f64::from(loss.to_scalar::<f32>().unwrap()));
        adam.step(&loss.backward().unwrap(), 1e-2).unwrap();
    }
    let run = distill_checkpoint::RunIdentity {
        model_id: model.id().to_string(),
        pairs: serde_json::to_string(&pairs.meta).unwrap(),
        nfe: 4,
        init: "euler".into(),
        grid: "uniform".into(),
        time_only: false,
        iterations: 10,
        batch: rows,
        lr: 1e-2,
        validate_every: 5,
        seed: 0,
    };
    let meta = distill_checkpoint::CheckpointMeta {
        run: run.clone(),
        iteration: 3,
        adam_steps: adam.steps,
        init_validation: 20.0,
        best_psnr: 20.0,
        best_iteration: 0,
        recent,
        seconds: 0.5,
    };
    let valid_path = scratch.path().join("s.json.ckpt");
    let best = params.snapshot().unwrap();
    distill_checkpoint::save(&valid_path, &meta, &params, &adam, &best).unwrap();
    let valid = std::fs::read(&valid_path).unwrap();
    let origin = Path::new("s.json.ckpt");
    let load = |b: &[u8]| {
        let (params, mut adam) = distill_parameters();
        distill_checkpoint::parse(origin, b, &run, &params, &mut adam, &Device::Cpu)
    };
    let (loaded, _) = load(&valid).expect("the valid checkpoint loads");
    assert_eq!(loaded, meta);
    let (_, refused) = check(
        "distillation checkpoint",
        "s.json.ckpt",
        inputs(valid, 7),
        load,
        None,
    );
    assert!(refused > cases() / 2);
}

/// Two classes of 4-value rows: all positive or all negative, with a little variety.
fn signs() -> Dataset {
    let split = |len: usize| {
        let labels: Vec<u32> = (0..len as u32).map(|i| i % 2).collect();
        let x = labels
            .iter()
            .enumerate()
            .flat_map(|(i, &class)| {
                let sign = if class == 0 { 1.0 } else { -1.0 };
                (0..4).map(move |k| sign * (0.2 + 0.1 * ((i + k) % 5) as f32))
            })
            .collect();
        Split {
            x,
            labels,
            len,
            dim: 4,
        }
    };
    Dataset {
        name: DatasetName::Mnist.name().into(),
        shape: [1, 2, 2],
        num_classes: 2,
        class_names: vec!["positive".into(), "negative".into()],
        train: split(32),
        test: split(8),
    }
}

#[test]
fn classifier_files() {
    let scratch = ScratchDir::new("fuzz-classifier");
    let settings = TrainSettings {
        steps: 2,
        batch: 8,
        lr: 1e-3,
        seed: 1,
    };
    let path = scratch.path().join("classifier.safetensors");
    classifier::train(&signs(), &settings, &Device::Cpu, false)
        .unwrap()
        .save(&path)
        .unwrap();
    let valid = std::fs::read(&path).unwrap();
    let load = |b: &[u8]| Classifier::from_bytes(b, "c.safetensors", &Device::Cpu);
    assert_eq!(load(&valid).unwrap().meta().input_dim, 4);
    let (_, refused) = check("classifier", "c.safetensors", inputs(valid, 8), load, None);
    assert!(refused > cases() / 2);
}
