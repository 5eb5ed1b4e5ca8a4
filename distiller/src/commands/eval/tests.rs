//! Tests of `bns eval` on tiny random models: the PSNR table, the solver files taken, the
//! distances and the notes.

use std::path::{Path, PathBuf};

use web_sampler::grid::Grid;
use web_sampler::solver::{Method, SolverFile};

use super::distance::{DistanceKind, CLASSIFIER_FILE};
use super::solvers::REFERENCE_LABEL;
use super::*;
use crate::classifier::tests::synthetic_images;
use crate::commands::truth::{compute_pairs, TruthOptions};
use crate::compute::DeviceKind;
use crate::data::DatasetName;
use crate::metrics::{mean_std, solver_psnr};
use crate::network::tests::tiny_spec;
use web_sampler::scratch::ScratchDir;

/// A random 4×4 image model with 4 classes (the synthetic dataset's), and its pairs at
/// guidance 0.5, written into `dir`.
fn image_setup(dir: &Path) -> (PathBuf, PathBuf, Model) {
    let mut spec = tiny_spec([1, 4, 4], 4);
    spec.dataset = "fashion-mnist".into();
    let model = Model::random(spec, 7).unwrap();
    let model_path = dir.join("m.safetensors");
    model.save(&model_path).unwrap();
    let model = Model::load(&model_path).unwrap();
    let options = TruthOptions {
        count: 34,
        validation: 10,
        test: 10,
        seed: 3,
        guidance: 0.5,
        class: None,
        rtol: 1e-6,
        atol: 1e-6,
        batch: 24,
        shard: None,
    };
    let pairs = compute_pairs(&model, &options, &mut |_| {}).unwrap();
    let pairs_path = dir.join("pairs.safetensors");
    pairs.save(&pairs_path).unwrap();
    (model_path, pairs_path, model)
}

fn args(model: &Path, pairs: &Path, output: &Path) -> EvalArgs {
    EvalArgs {
        model: model.to_path_buf(),
        pairs: pairs.to_path_buf(),
        solvers: Vec::new(),
        nfe: vec![2, 3, 4],
        classifier: None,
        classifier_steps: 5,
        dataset: None,
        skip_bad_images: false,
        fd_samples: 0,
        fd_nfe: vec![4],
        psnr_cache: None,
        output: output.to_path_buf(),
        compute: ComputeArgs {
            device: DeviceKind::Cpu,
            threads: Some(2),
        },
    }
}

fn synthetic(source: &DatasetSource, _: &ImageFolderOptions) -> Result<Dataset> {
    assert_eq!(source, &DatasetSource::Named(DatasetName::FashionMnist));
    Ok(synthetic_images(4, 200, 60))
}

/// A "distilled" solver file for `model_id`: the Euler table at 4 NFE, kind `bns`.
fn solver_file(model_id: &str, guidance: f64) -> SolverFile {
    solver_file_at(4, model_id, guidance)
}

/// A "distilled" solver file for `model_id`: the Euler table at `nfe`, kind `bns`.
fn solver_file_at(nfe: usize, model_id: &str, guidance: f64) -> SolverFile {
    let table = Method::Euler.build(nfe, Grid::Uniform).unwrap();
    let mut f = SolverFile::new("bns-4", "bns", guidance, table);
    f.model_id = Some(model_id.to_string());
    f
}

#[test]
fn psnr_table_has_every_cell_and_matches_solver_psnr() {
    let scratch = ScratchDir::new("eval-table");
    let dir = scratch.path();
    let (model_path, pairs_path, model) = image_setup(dir);
    let solvers = dir.join("solvers");
    std::fs::create_dir_all(&solvers).unwrap();
    solver_file(model.id(), 0.5)
        .save(&solvers.join("bns-4.json"))
        .unwrap();
    solver_file(&"ab".repeat(32), 0.5)
        .save(&solvers.join("other-model.json"))
        .unwrap();
    solver_file(model.id(), 2.0)
        .save(&solvers.join("other-guidance.json"))
        .unwrap();
    std::fs::write(solvers.join("manifest.json"), "{\"models\": []}").unwrap();
    let out = dir.join("out");
    let mut a = args(&model_path, &pairs_path, &out);
    a.solvers = vec![solvers.clone()];
    let e = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();

    // Every classical method × grid × supported NFE, and nothing else.
    for method in Method::ALL {
        for grid in Grid::ALL {
            for nfe in [2, 3, 4] {
                let label = format!("{}-{}", method.name(), grid.name());
                let cell = e.psnr_cell(&label, nfe);
                assert_eq!(
                    cell.is_some(),
                    nfe % method.stages() == 0,
                    "{label} at {nfe}"
                );
            }
        }
    }
    let classical = e.psnr.iter().filter(|c| c.grid != "learned").count();
    assert_eq!(classical, (4 * 3 + 2 * 2 + 1) * 2);
    // The distilled solver: only the one for this model and guidance.
    let bns: Vec<&PsnrCell> = e.psnr.iter().filter(|c| c.kind == "bns").collect();
    assert_eq!(bns.len(), 1);
    assert_eq!((bns[0].solver.as_str(), bns[0].nfe), ("bns", 4));
    let notes = e.notes.join("\n");
    assert!(
        notes.contains("other-model.json") && notes.contains(&"ab".repeat(32)),
        "{notes}"
    );
    assert!(notes.contains("other-guidance.json"), "{notes}");
    assert!(notes.contains("manifest.json"), "{notes}");

    // One cell equals metrics::solver_psnr; the bns file holds the Euler table.
    let pairs = Pairs::load(&pairs_path).unwrap();
    let table = Method::DpmPp2m.build(3, Grid::Edm).unwrap();
    let (mean, std) = mean_std(&solver_psnr(&model, &table, &pairs.test(), 0.5).unwrap());
    let cell = e.psnr_cell("dpmpp2m-edm", 3).unwrap();
    assert_eq!((cell.mean, cell.std), (mean, std));
    assert_eq!(bns[0].mean, e.psnr_cell("euler-uniform", 4).unwrap().mean);

    // psnr.csv reads back to the same cells.
    let csv = std::fs::read_to_string(out.join("psnr.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("solver,kind,grid,nfe,psnr_mean,psnr_std")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), e.psnr.len());
    let row = rows
        .iter()
        .find(|r| r[0] == "dpmpp2m-edm" && r[3] == "3")
        .unwrap();
    assert_eq!((row[1], row[2]), ("dpmpp2m", "edm"));
    assert_eq!(row[4].parse::<f64>().unwrap(), mean);
    assert_eq!(row[5].parse::<f64>().unwrap(), std);

    // results.md: the header, one row per solver with a column per NFE, a bold best.
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains(model.id()) && md.contains("pairs.safetensors"),
        "{md}"
    );
    assert!(md.contains("10 test pairs") && md.contains("Guidance w = 0.5"));
    assert!(md.contains("| solver | NFE 2 | NFE 3 | NFE 4 |"), "{md}");
    let table_rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| solver"))
        .collect();
    assert_eq!(table_rows.len(), 1 + 14, "{md}");
    for row in &table_rows {
        assert_eq!(row.matches('|').count(), 5, "{row}");
    }
    assert!(md.contains("**"), "{md}");
    let midpoint = table_rows
        .iter()
        .find(|r| r.starts_with("| midpoint-uniform |"))
        .unwrap();
    assert!(
        midpoint.contains("|  |"),
        "the NFE 3 cell is empty: {midpoint}"
    );
    // The chart and the sample grids.
    for name in ["psnr.png", "psnr.svg"] {
        assert!(out.join(name).exists(), "{name}");
    }
    for name in ["samples-bns-nfe4.png", "samples-reference-rk4-nfe200.png"] {
        assert!(out.join(name).exists(), "{name}");
    }
    assert!(e.pictures.len() >= 5, "{:?}", e.pictures);
}

#[test]
fn explicit_solver_files_for_another_model_or_guidance_are_errors() {
    let scratch = ScratchDir::new("eval-explicit");
    let dir = scratch.path();
    let (model_path, pairs_path, model) = image_setup(dir);
    let other_id = "cd".repeat(32);
    let foreign = dir.join("foreign.json");
    solver_file(&other_id, 0.5).save(&foreign).unwrap();
    let mut a = args(&model_path, &pairs_path, &dir.join("out"));
    a.solvers = vec![foreign];
    let e = format!(
        "{:#}",
        evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap_err()
    );
    assert!(
        e.contains("foreign.json") && e.contains(&other_id) && e.contains(model.id()),
        "{e}"
    );
    let wrong = dir.join("wrong-w.json");
    solver_file(model.id(), 1.0).save(&wrong).unwrap();
    a.solvers = vec![wrong];
    let e = format!(
        "{:#}",
        evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap_err()
    );
    assert!(e.contains("wrong-w.json") && e.contains("guidance"), "{e}");
    a.solvers = vec![dir.join("missing.json")];
    let e = format!(
        "{:#}",
        evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap_err()
    );
    assert!(e.contains("missing.json"), "{e}");
    let mut a = args(&model_path, &pairs_path, &dir.join("out"));
    a.nfe = vec![0];
    assert!(evaluate(&a, &Device::Cpu, &mut synthetic, false).is_err());
}

/// An evaluation with distances of [`image_setup`]'s model in `dir`: a "distilled" solver file
/// at 3 NFE, where only the one-stage methods run (fewer distances to compute), 40 samples each.
/// Returns its arguments, the model, its pairs file and the solver.
fn distance_setup(dir: &Path) -> (EvalArgs, Model, PathBuf, SolverFile) {
    let (model_path, pairs_path, model) = image_setup(dir);
    let file = dir.join("bns.json");
    let solver = solver_file_at(3, model.id(), 0.5);
    solver.save(&file).unwrap();
    let mut a = args(&model_path, &pairs_path, &dir.join("out"));
    a.solvers = vec![file];
    a.fd_samples = 40;
    a.nfe = vec![3];
    a.fd_nfe = vec![3];
    (a, model, pairs_path, solver)
}

#[test]
fn frechet_distances_with_a_trained_then_reused_classifier() {
    let scratch = ScratchDir::new("eval-fd");
    let dir = scratch.path();
    let (mut a, ..) = distance_setup(dir);
    let out = a.output.clone();
    let e = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();
    let d = e.distances.as_ref().unwrap();
    let DistanceKind::Frechet {
        trained,
        classifier,
        ..
    } = &d.kind
    else {
        panic!("{:?}", d.kind)
    };
    assert!(*trained);
    assert_eq!(classifier, &out.join(CLASSIFIER_FILE));
    // Every solver at NFE 3 (the 4 one-stage methods on 2 grids), the reference, the floor.
    assert_eq!(d.rows.len(), 1 + 8 + 1 + 1, "{:?}", d.rows);
    assert!(d.rows.iter().all(|r| r.value.is_finite() && r.value >= 0.0));
    let bns = d.rows.iter().find(|r| r.solver == "bns").unwrap();
    let euler = d.rows.iter().find(|r| r.solver == "euler-uniform").unwrap();
    assert_eq!(bns.value, euler.value, "same table, same seeds");
    assert!(d.rows.iter().any(|r| r.solver == REFERENCE_LABEL));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("not Inception FID"), "{md}");
    assert!(md.contains(REFERENCE_LABEL), "{md}");
    let csv = std::fs::read_to_string(out.join("distance.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + d.rows.len());

    // A second run reuses the classifier and gives the same distances.
    let again = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();
    let d2 = again.distances.unwrap();
    assert!(matches!(
        d2.kind,
        DistanceKind::Frechet { trained: false, .. }
    ));
    assert_eq!(d.rows, d2.rows);

    // A corrupt classifier file is an error naming it.
    let bad = dir.join("bad-classifier.safetensors");
    std::fs::write(&bad, b"garbage").unwrap();
    a.classifier = Some(bad);
    let e = format!(
        "{:#}",
        evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap_err()
    );
    assert!(e.contains("bad-classifier.safetensors"), "{e}");
}

#[test]
fn two_dimensional_models_use_sliced_wasserstein() {
    let scratch = ScratchDir::new("eval-sw");
    let dir = scratch.path();
    let mut spec = tiny_spec([2, 1, 1], 0);
    spec.dataset = "checkerboard".into();
    let model = Model::random(spec, 3).unwrap();
    let model_path = dir.join("m.safetensors");
    model.save(&model_path).unwrap();
    let options = TruthOptions {
        count: 28,
        validation: 8,
        test: 8,
        seed: 1,
        guidance: 0.0,
        class: None,
        rtol: 1e-6,
        atol: 1e-6,
        batch: 20,
        shard: None,
    };
    let pairs = compute_pairs(&model, &options, &mut |_| {}).unwrap();
    let pairs_path = dir.join("pairs.safetensors");
    pairs.save(&pairs_path).unwrap();
    let out = dir.join("out");
    let mut a = args(&model_path, &pairs_path, &out);
    a.fd_samples = 64;
    a.nfe = vec![4];
    let sources = DataSources::default();
    let mut load = |source: &DatasetSource, options: &ImageFolderOptions| {
        let mut data = data::load(source, &sources, options, 0)?;
        data.test.len = 1000;
        data.test.x.truncate(2000);
        data.test.labels.truncate(1000);
        Ok(data)
    };
    let e = evaluate(&a, &Device::Cpu, &mut load, false).unwrap();
    let d = e.distances.unwrap();
    assert!(matches!(d.kind, DistanceKind::SlicedWasserstein { .. }));
    assert_eq!(d.rows.len(), 14 + 2);
    assert!(d.rows.iter().all(|r| r.value.is_finite()));
    assert!(!out.join(CLASSIFIER_FILE).exists());
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("sliced Wasserstein"), "{md}");
    let grids = ["uniform", "edm"].map(|g| out.join(format!("samples-euler-{g}-nfe4.png")));
    assert!(grids.iter().any(|p| p.exists()), "{grids:?}");
}

#[test]
fn a_model_without_a_known_dataset_skips_the_distances_with_a_note() {
    let scratch = ScratchDir::new("eval-nodata");
    let dir = scratch.path();
    let (model_path, pairs_path, _) = image_setup(dir);
    // Rewrite the model with an unknown dataset name (its pairs then no longer match).
    let mut spec = Model::load(&model_path).unwrap().spec().clone();
    spec.dataset = "none (random weights)".into();
    let model = Model::random(spec, 7).unwrap();
    model.save(&model_path).unwrap();
    let options = TruthOptions {
        count: 16,
        validation: 4,
        test: 4,
        seed: 3,
        guidance: 0.5,
        class: None,
        rtol: 1e-5,
        atol: 1e-5,
        batch: 12,
        shard: None,
    };
    let model = Model::load(&model_path).unwrap();
    compute_pairs(&model, &options, &mut |_| {})
        .unwrap()
        .save(&pairs_path)
        .unwrap();
    let mut a = args(&model_path, &pairs_path, &dir.join("out"));
    a.fd_samples = 10;
    a.nfe = vec![4];
    let e = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();
    assert!(e.distances.is_none());
    assert!(
        e.notes.iter().any(|n| n.contains("--dataset")),
        "{:?}",
        e.notes
    );
    // --dataset that disagrees with a model's own dataset is refused.
    let (model_path, pairs_path, _) = image_setup(dir);
    a.model = model_path;
    a.pairs = pairs_path;
    a.dataset = Some(DatasetSource::Named(DatasetName::Mnist));
    let e = format!(
        "{:#}",
        evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap_err()
    );
    assert!(
        e.contains("--dataset mnist") && e.contains("fashion-mnist"),
        "{e}"
    );
}

#[test]
fn an_interrupted_evaluation_continues_from_its_partial_file() {
    let scratch = ScratchDir::new("eval-resume");
    let (a, model, pairs_path, bns) = distance_setup(scratch.path());
    let out = a.output.clone();
    let whole = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();
    let partial = out.join(finished::PARTIAL_FILE);
    assert!(!partial.exists(), "removed once results.md is written");

    // What a run stopped after two jobs leaves: their results (made up here, so that the next
    // run shows it took them instead of measuring again).
    let euler = Method::Euler.build(3, Grid::Uniform).unwrap();
    let write_partial = |fd_samples: usize| {
        let inputs = finished::inputs(
            model.id(),
            &pairs_path,
            Some(&out.join(CLASSIFIER_FILE)),
            fd_samples,
        )
        .unwrap();
        let kept = Finished::open(&out, inputs, &mut |_| {});
        kept.keep(
            &finished::key("psnr", "euler-uniform", 3, &euler),
            Ok(&[123.25, 0.5]),
        )
        .unwrap();
        kept.keep(
            &finished::key("distance", "bns", 3, &bns.table()),
            Ok(&[7.5]),
        )
        .unwrap();
    };
    write_partial(40);
    let resumed = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();
    assert!(!partial.exists());
    assert_noted(&resumed, "2 jobs already done");
    for (cell, before) in resumed.psnr.iter().zip(&whole.psnr) {
        if cell.solver == "euler-uniform" && cell.nfe == 3 {
            assert_eq!((cell.mean, cell.std), (123.25, 0.5));
        } else {
            assert_eq!(cell, before, "measured again, the same");
        }
    }
    let (rows, before) = (
        &resumed.distances.as_ref().unwrap().rows,
        &whole.distances.as_ref().unwrap().rows,
    );
    assert_eq!(rows.len(), before.len());
    for (row, before) in rows.iter().zip(before) {
        if row.solver == "bns" {
            assert_eq!(row.value, 7.5);
        } else {
            assert_eq!(row, before);
        }
    }

    // A partial file of another evaluation (here: another sample count) is not taken.
    write_partial(41);
    let again = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();
    assert_noted(&again, "made for other inputs");
    assert_eq!(again.psnr, whole.psnr);
    assert_eq!(again.distances.unwrap().rows, *before);
}

/// Asserts that one of `e`'s notes contains `text`.
fn assert_noted(e: &Evaluation, text: &str) {
    assert!(e.notes.iter().any(|n| n.contains(text)), "{:?}", e.notes);
}

#[test]
fn figures_kept_in_the_psnr_cache_are_taken_and_those_measured_are_kept() {
    let scratch = ScratchDir::new("eval-psnr-cache");
    let dir = scratch.path();
    let (model_path, pairs_path, model) = image_setup(dir);
    let cache_file = dir.join("psnr-cache.json");
    // What a distillation at NFE 3 kept: the DPM-Solver++(2M) EDM table's figures.
    let pairs = Pairs::load(&pairs_path).unwrap();
    let table = Method::DpmPp2m.build(3, Grid::Edm).unwrap();
    let pairs_id = file_sha256(&pairs_path).unwrap();
    let measured = PsnrCache::open(&cache_file, model.id(), &pairs_id, 0.5)
        .unwrap()
        .psnr(&model, &table, &pairs.test(), 0.5)
        .unwrap();
    assert_eq!(
        measured,
        mean_std(&solver_psnr(&model, &table, &pairs.test(), 0.5).unwrap())
    );
    // Its value changed in the file (bits of 99 dB and 1 dB): the evaluation shows what the
    // file holds, so it took the figure instead of measuring it.
    let text = std::fs::read_to_string(&cache_file).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = json["psnr"].as_object_mut().unwrap();
    assert_eq!(entries.len(), 1);
    for value in entries.values_mut() {
        *value = serde_json::json!([99.0f64.to_bits(), 1.0f64.to_bits()]);
    }
    std::fs::write(&cache_file, serde_json::to_vec(&json).unwrap()).unwrap();

    let out = dir.join("out");
    let mut a = args(&model_path, &pairs_path, &out);
    a.psnr_cache = Some(cache_file.clone());
    let e = evaluate(&a, &Device::Cpu, &mut synthetic, false).unwrap();
    let cell = e.psnr_cell("dpmpp2m-edm", 3).unwrap();
    assert_eq!((cell.mean, cell.std), (99.0, 1.0));
    // The others were measured, and kept: one entry per cell now.
    let euler = e.psnr_cell("euler-uniform", 4).unwrap();
    let table = Method::Euler.build(4, Grid::Uniform).unwrap();
    assert_eq!(
        (euler.mean, euler.std),
        mean_std(&solver_psnr(&model, &table, &pairs.test(), 0.5).unwrap())
    );
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cache_file).unwrap()).unwrap();
    // (Cells of the same table, e.g. two methods that coincide at this NFE, share an entry.)
    let tables: std::collections::BTreeSet<Vec<u8>> = e
        .psnr
        .iter()
        .map(|c| {
            let method: Method = c.kind.parse().unwrap();
            let grid: Grid = c.grid.parse().unwrap();
            serde_json::to_vec(&method.build(c.nfe, grid).unwrap()).unwrap()
        })
        .collect();
    assert!(tables.len() < e.psnr.len());
    assert_eq!(kept["psnr"].as_object().unwrap().len(), tables.len());
}
