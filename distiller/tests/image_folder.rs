//! A user's own folder of PNGs through the whole pipeline, as the `bns` binary runs it: train on
//! `images:DIR` → truth → distill → eval → publish (and `bns sample`), for a labelled colour
//! folder and for an unconditional grey one, and the same in one `bns pipeline`.

mod common;

use std::path::Path;

use common::{bns, Scratch};
use image::{Rgb, RgbImage};
use web_sampler::manifest::Manifest;
use web_sampler::model::Model;

/// Runs `bns args` and returns its stdout; panics with its stderr when it fails.
fn ok(args: &[&str]) -> String {
    let o = bns(args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "bns {args:?} failed:\n{out}\n{err}");
    out
}

/// A `side × side` picture of a disc or a square of colour `rgb` on white.
fn shape(side: u32, square: bool, rgb: [u8; 3]) -> RgbImage {
    let centre = (side as f32 - 1.0) / 2.0;
    let radius = side as f32 * 0.35;
    RgbImage::from_fn(side, side, |x, y| {
        let (dx, dy) = (x as f32 - centre, y as f32 - centre);
        let inside = if square {
            dx.abs() <= radius && dy.abs() <= radius
        } else {
            dx * dx + dy * dy <= radius * radius
        };
        Rgb(if inside { rgb } else { [255, 255, 255] })
    })
}

/// Whether some pixel of the PNG at `path` has red, green and blue not all equal.
fn has_colour(path: &str) -> bool {
    let picture = image::open(path).unwrap().into_rgb8();
    picture
        .pixels()
        .any(|p| p.0[0] != p.0[1] || p.0[1] != p.0[2])
}

/// The settings of a tiny, quick model and of quick truth, distill and eval runs.
const TRAIN: [&str; 12] = [
    "--steps",
    "60",
    "--batch",
    "32",
    "--width",
    "32",
    "--depth",
    "2",
    "--time-embedding",
    "8",
    "--class-embedding",
    "4",
];
const TRUTH: [&str; 8] = [
    "--count",
    "32",
    "--validation",
    "8",
    "--test",
    "8",
    "--batch",
    "32",
];

fn folder_pipeline(scratch: &Scratch, folder: &Path, name: &str) -> (Model, String) {
    let dataset = format!("images:{}", folder.display());
    let model = scratch.path("model.safetensors");
    let pairs = scratch.path("pairs.safetensors");
    let solver = scratch.path("bns-4.json");
    let mut train = vec!["train", "--dataset", &dataset, "-o", &model];
    train.extend(TRAIN);
    let said = ok(&train);
    assert!(said.contains("train and"), "{said}");
    let mut truth = vec!["truth", "--model", &model, "-o", &pairs];
    truth.extend(TRUTH);
    ok(&truth);
    ok(&[
        "distill",
        "--model",
        &model,
        "--pairs",
        &pairs,
        "--nfe",
        "4",
        "--iterations",
        "10",
        "--batch",
        "8",
        "--validate-every",
        "5",
        "-o",
        &solver,
    ]);
    let eval = scratch.path("eval");
    ok(&[
        "eval",
        "--model",
        &model,
        "--pairs",
        &pairs,
        "--solvers",
        &solver,
        "--nfe",
        "4",
        "--fd-nfe",
        "4",
        "--fd-samples",
        "24",
        "--classifier-steps",
        "20",
        "--dataset",
        &dataset,
        "-o",
        &eval,
    ]);
    let results = std::fs::read_to_string(Path::new(&eval).join("results.md")).unwrap();
    assert!(results.contains("real-test.png"), "{results}");
    let real = image::open(Path::new(&eval).join("real-test.png")).unwrap();
    assert!(real.width() > 0 && real.height() > 0);
    let site = scratch.path("www");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(Path::new(&site).join("index.html"), "<!doctype html>").unwrap();
    ok(&[
        "publish",
        "--name",
        name,
        "--title",
        "Shapes",
        "--model",
        &model,
        "--solvers",
        &solver,
        "--pairs",
        &pairs,
        "--site",
        &site,
    ]);
    let folder = Path::new(&site).join("models").join(name);
    let manifest_text = std::fs::read_to_string(folder.join("manifest.json")).unwrap();
    let manifest = Manifest::from_json(&manifest_text, "manifest.json").unwrap();
    let published = Model::load(&folder.join(&manifest.model)).unwrap();
    assert_eq!(published.id(), manifest.model_id);
    assert_eq!(published.id(), Model::load(Path::new(&model)).unwrap().id());
    (published, results)
}

#[test]
fn a_folder_of_coloured_shapes_goes_from_training_to_the_site() {
    let scratch = Scratch::new("images", "classes");
    let folder = scratch.0.join("shapes");
    for i in 0..24u32 {
        let shade = (30 + 6 * i) as u8;
        for (class, square, rgb) in [
            ("circle", false, [230, shade, 30]),
            ("square", true, [30, shade, 230]),
        ] {
            let path = folder.join(class).join(format!("{i:02}.png"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            shape(12, square, rgb).save(&path).unwrap();
        }
    }
    let (model, results) = folder_pipeline(&scratch, &folder, "shapes");
    let spec = model.spec();
    assert_eq!(spec.data_shape, vec![3, 12, 12]);
    assert_eq!(spec.num_classes, 2);
    assert_eq!(spec.class_names, vec!["circle", "square"]);
    assert_eq!(spec.dataset, "images:shapes");
    // FD on a classifier of the folder's two classes, against its test split.
    assert!(
        results.contains("FD on a small images:shapes classifier"),
        "{results}"
    );
    assert!(results.contains("432→256→128→2"), "{results}");
    assert!(!results.contains("rotation"), "{results}");
    // The sample grids are in colour, from eval and from `bns sample`.
    let grids: Vec<String> = std::fs::read_dir(scratch.0.join("eval"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.contains("samples-") && p.ends_with(".png"))
        .collect();
    assert!(grids.len() >= 2, "{grids:?}");
    assert!(has_colour(&scratch.path("eval/real-test.png")));
    for grid in &grids {
        assert!(has_colour(grid), "{grid} is grey");
    }
    let picture = scratch.path("sample.png");
    ok(&[
        "sample",
        "--model",
        &scratch.path("model.safetensors"),
        "--solver",
        &scratch.path("bns-4.json"),
        "--batch",
        "4",
        "-o",
        &picture,
    ]);
    assert!(has_colour(&picture), "{picture} is grey");
    // Evaluating on another folder is refused, naming both.
    let other = scratch.0.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let o = bns(&[
        "eval",
        "--model",
        &scratch.path("model.safetensors"),
        "--pairs",
        &scratch.path("pairs.safetensors"),
        "--dataset",
        &format!("images:{}", other.display()),
        "-o",
        &scratch.path("eval-other"),
    ]);
    let error = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(error.contains("images:shapes"), "{error}");
}

#[test]
fn an_unconditional_grey_folder_is_measured_on_rotation_features() {
    let scratch = Scratch::new("images", "unconditional");
    let folder = scratch.0.join("marks");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..30u32 {
        let grey = (20 + 5 * i) as u8;
        shape(8, i % 2 == 0, [grey, grey, grey])
            .save(folder.join(format!("{i:02}.png")))
            .unwrap();
    }
    let (model, results) = folder_pipeline(&scratch, &folder, "marks");
    let spec = model.spec();
    assert_eq!(spec.data_shape, vec![1, 8, 8]);
    assert_eq!(spec.num_classes, 0);
    assert!(spec.class_names.is_empty());
    assert_eq!(spec.dataset, "images:marks");
    assert!(results.contains("no class labels"), "{results}");
    assert!(!has_colour(&scratch.path("eval/real-test.png")));
    assert!(results.contains("rotation"), "{results}");
}

#[test]
fn folder_errors_and_warnings_name_the_files() {
    let scratch = Scratch::new("images", "errors");
    let folder = scratch.0.join("pictures");
    std::fs::create_dir_all(&folder).unwrap();
    let dataset = format!("images:{}", folder.display());
    let model = scratch.path("m.safetensors");
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--dataset", &dataset, "-o", &model, "--steps", "2"];
        args.extend(["--batch", "8", "--width", "16", "--depth", "2"]);
        args.extend(["--time-embedding", "8", "--class-embedding", "4"]);
        args.extend(extra);
        bns(&args)
    };
    // An empty folder.
    let o = train(&[]);
    let error = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success());
    assert!(
        error.contains(&folder.display().to_string()) && error.contains("no PNG or JPEG"),
        "{error}"
    );
    // An unreadable file: refused with its path, or left out with a warning naming it.
    for i in 0..4 {
        shape(8, i % 2 == 0, [200, 20, 20])
            .save(folder.join(format!("{i}.png")))
            .unwrap();
    }
    let bad = folder.join("broken.jpg");
    std::fs::write(&bad, b"not a jpeg").unwrap();
    let o = train(&[]);
    let error = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success());
    assert!(
        error.contains(&bad.display().to_string()) && error.contains("--skip-bad-images"),
        "{error}"
    );
    let o = train(&["--skip-bad-images"]);
    let warning = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{warning}");
    assert!(
        warning.contains("1 unreadable image left out") && warning.contains("broken.jpg"),
        "{warning}"
    );
    let spec = Model::load(Path::new(&model)).unwrap().spec().clone();
    assert_eq!(spec.data_shape, vec![3, 8, 8]);
    // --channels 1 makes it grey; the flags are refused for a built-in set.
    let o = train(&["--skip-bad-images", "--channels", "1"]);
    assert!(o.status.success());
    let spec = Model::load(Path::new(&model)).unwrap().spec().clone();
    assert_eq!(spec.data_shape, vec![1, 8, 8]);
    let o = bns(&["train", "--dataset", "moons", "--size", "8", "-o", &model]);
    let error = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success());
    assert!(error.contains("images:DIR"), "{error}");
}

/// `bns pipeline` on a folder, as the README shows it: one command from the PNGs to the site,
/// with the folder's size and class names in the model and the evaluation told where the test
/// images are.
#[test]
fn bns_pipeline_takes_a_folder_from_pngs_to_the_site() {
    let scratch = Scratch::new("images", "pipeline");
    let folder = scratch.0.join("shapes");
    for i in 0..12u32 {
        for (class, square) in [("circle", false), ("square", true)] {
            let path = folder.join(class).join(format!("{i:02}.png"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            // 16×16 files, read at --size 8.
            shape(16, square, [200, (10 * i) as u8, 40])
                .save(&path)
                .unwrap();
        }
    }
    let site = scratch.0.join("www");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<!doctype html>").unwrap();
    let dataset = format!("images:{}", folder.display());
    #[rustfmt::skip]
    let out = ok(&[
        "pipeline", "--dataset", &dataset, "--size", "8", "--name", "shapes",
        "--steps", "20", "--width", "16", "--depth", "2", "--guidance", "0",
        "--truth-count", "48", "--truth-validation", "8", "--truth-test", "8",
        "--nfe", "2", "--iterations", "10", "--fd-samples", "0", "--threads", "1",
        "--out", &scratch.path("runs"), "--site", &site.display().to_string(),
    ]);
    assert!(out.contains("?model=shapes"), "{out}");
    let manifest = Manifest::from_json(
        &std::fs::read_to_string(site.join("models/shapes/manifest.json")).unwrap(),
        "manifest.json",
    )
    .unwrap();
    assert_eq!(manifest.solvers.len(), 1);
    let model = Model::load(&site.join("models/shapes/model.safetensors")).unwrap();
    let spec = model.spec();
    assert_eq!(spec.data_shape, vec![3, 8, 8]);
    assert_eq!(spec.class_names, vec!["circle", "square"]);
    let results = std::fs::read_to_string(scratch.0.join("runs/eval-w0/results.md")).unwrap();
    assert!(results.contains("8 test pairs"), "{results}");
}
