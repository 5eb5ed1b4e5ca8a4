//! The distiller's loaders of untrusted files — ground-truth pairs and `bns truth`'s partial
//! progress — against mutated and hand-made hostile inputs (web_sampler's `mutation`): each either
//! loads or returns an error naming the file, and none panics. (This binary keeps the
//! distiller's allocator; the allocation bound is watched in `tests/tests/loaders_fuzz.rs`.)
//!
//! `BNS_FUZZ_CASES` cases per loader (default 2000); run longer with e.g.
//! `BNS_FUZZ_CASES=100000 cargo test -p distiller --test loaders_fuzz --release`.

use std::path::Path;

use distiller::commands::truth::{compute_pairs, TruthOptions};
use distiller::pairs::{Pairs, Partial, Tensors};
use web_sampler::model::Model;
use web_sampler::mutation::{cases, check, inputs};
use web_sampler::scratch::ScratchDir;

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

/// A small valid pairs file of the published checkerboard model.
fn valid_pairs(dir: &Path) -> Pairs {
    let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models/checkerboard");
    let model = Model::load(&site.join("model.safetensors")).unwrap();
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
