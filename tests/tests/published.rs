//! The published site: every model in `www/models/` loads through the runtime, is written back
//! byte for byte (so its id, to which its solvers are bound, is stable across refactors of the
//! spec), and its manifest names that id; every listed solver loads for it and records its test
//! PSNR, the one the manifest lists, with its baselines'. A model offered in half precision too
//! (`model_f16`) has that file rounded from it, under the id the manifest names, and a PSNR
//! measured with it for every solver.

use std::path::{Path, PathBuf};

use web_sampler::manifest::Manifest;
use web_sampler::model::{Model, WeightDtype};
use web_sampler::solver::SolverFile;

fn models_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models")
}

#[test]
fn published_models_round_trip_with_their_ids() {
    let mut seen = 0;
    for entry in std::fs::read_dir(models_folder()).unwrap() {
        let folder = entry.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        let manifest_path = folder.join("manifest.json");
        let text = std::fs::read_to_string(&manifest_path).unwrap();
        let manifest = Manifest::from_json(&text, &manifest_path.display().to_string()).unwrap();
        let bytes = std::fs::read(folder.join(&manifest.model)).unwrap();
        let model = Model::from_bytes(&bytes, &manifest.model).unwrap();
        assert_eq!(model.id(), manifest.model_id, "{}", folder.display());
        assert!(
            model.to_bytes() == bytes,
            "{}: the model is not written back byte for byte",
            folder.display()
        );
        let half = manifest.model_f16.as_ref().map(|file| {
            let bytes = std::fs::read(folder.join(file)).unwrap();
            let half = Model::from_bytes(&bytes, file).unwrap();
            assert_eq!(Some(half.id()), manifest.model_f16_id.as_deref(), "{file}");
            assert_eq!(Some(bytes.len()), manifest.model_f16_bytes, "{file}");
            assert_eq!(half.dtype(), WeightDtype::F16, "{file}");
            assert!(
                half.to_bytes() == bytes,
                "{file}: not written back byte for byte"
            );
            // Exactly the published model rounded to f16.
            let rounded = model.with_dtype(WeightDtype::F16).unwrap();
            assert_eq!(
                rounded.id(),
                half.id(),
                "{file} is not the model rounded to f16"
            );
            half
        });
        for solver in &manifest.solvers {
            let path = folder.join(&solver.file);
            let text = std::fs::read_to_string(&path).unwrap();
            let file = SolverFile::from_json(&text, &path.display().to_string()).unwrap();
            assert_eq!(
                file.model_id.as_deref(),
                Some(model.id()),
                "{}",
                solver.file
            );
            if let Some(half) = &half {
                file.check_model(half, &solver.file).unwrap();
                let psnr = solver.test_psnr_f16.expect("a PSNR with the f16 weights");
                assert!(psnr.is_finite(), "{}", solver.file);
            }
            // Published figures are test-split figures, with the baselines at the same NFE and
            // guidance recorded beside them.
            let recorded = file.metrics.get("test_psnr").copied();
            assert!(
                recorded.is_some_and(|psnr| (psnr - solver.test_psnr).abs() <= 0.1),
                "{}: manifest {} dB, file {recorded:?}",
                solver.file,
                solver.test_psnr
            );
            for key in [
                "test_psnr_sem",
                "init_test_psnr",
                "best_classical_test_psnr",
                "time_only_test_psnr",
            ] {
                assert!(file.metrics.contains_key(key), "{}: no {key}", solver.file);
            }
        }
        seen += 1;
    }
    assert_eq!(
        seen, 4,
        "checkerboard, fashion-mnist, fashion-mnist-unet and mnist"
    );
}
