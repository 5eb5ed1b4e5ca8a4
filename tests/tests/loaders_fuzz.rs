//! The runtime's loaders of untrusted files — model, solver, manifest — against mutated and
//! hand-made hostile inputs: each either loads or returns an error naming the file; none panics,
//! and none allocates more than [`ALLOCATION_CAP`] at once (a counting allocator watches every
//! request of this test binary). The distiller's loaders have their own, in
//! `distiller/tests/loaders_fuzz.rs`.
//!
//! Seeded and deterministic: `BNS_FUZZ_CASES` cases per loader (default 2000, seconds in all); run longer with e.g.
//! `BNS_FUZZ_CASES=100000 cargo test -p bns-tests --test loaders_fuzz --release`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use web_sampler::manifest::Manifest;
use web_sampler::model::Model;
use web_sampler::mutation::{cases, check, inputs};
use web_sampler::solver::SolverFile;

/// The largest single allocation a loader may make on hostile input (the largest valid inputs
/// here are a few MB).
const ALLOCATION_CAP: usize = 256 << 20;

/// The system allocator, remembering the largest request.
struct Watched;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Watched {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Watched = Watched;

fn site(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../www")
        .join(path)
}

#[test]
fn model_files() {
    let valid = std::fs::read(site("models/checkerboard/model.safetensors")).unwrap();
    let (loaded, refused) = check(
        "model",
        "m.safetensors",
        inputs(valid, 1),
        |b| Model::from_bytes(b, "m.safetensors"),
        Some((&LARGEST, ALLOCATION_CAP)),
    );
    assert!(refused > cases() / 2, "{loaded} loaded, {refused} refused");
}

#[test]
fn solver_files() {
    let valid = std::fs::read(site("models/checkerboard/bns-8-w0.json")).unwrap();
    let (_, refused) = check(
        "solver",
        "s.json",
        inputs(valid, 2),
        |b| SolverFile::from_json(&String::from_utf8_lossy(b), "s.json"),
        Some((&LARGEST, ALLOCATION_CAP)),
    );
    assert!(refused > cases() / 2);
}

#[test]
fn manifests() {
    let valid = std::fs::read(site("models/checkerboard/manifest.json")).unwrap();
    let (_, refused) = check(
        "manifest",
        "manifest.json",
        inputs(valid, 3),
        |b| Manifest::from_json(&String::from_utf8_lossy(b), "manifest.json"),
        Some((&LARGEST, ALLOCATION_CAP)),
    );
    assert!(refused > cases() / 2);
}
