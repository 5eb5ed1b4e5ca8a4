//! The `bns` binary as a user runs it: output files, readable tables, and errors that name the
//! file and the problem.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{bns, Scratch};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn small_model(dir: &Scratch, name: &str, seed: &str) -> String {
    let path = dir.path(name);
    let o = bns(&[
        "model",
        "init",
        "--shape",
        "1,6,5",
        "--classes",
        "3",
        "--width",
        "16",
        "--depth",
        "2",
        "--seed",
        seed,
        "-o",
        &path,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    path
}

#[test]
fn help_lists_the_commands() {
    let o = bns(&["--help"]);
    assert!(o.status.success());
    for word in ["solver", "model", "sample"] {
        assert!(stdout(&o).contains(word), "{}", stdout(&o));
    }
    let o = bns(&["solver", "new", "--help"]);
    assert!(stdout(&o).contains("--method") && stdout(&o).contains("edm"));
}

#[test]
fn solver_new_and_show() {
    let dir = Scratch::new("cli", "show");
    let file = dir.path("rk4.json");
    let o = bns(&[
        "solver", "new", "--method", "rk4", "--grid", "edm", "--nfe", "8", "-o", &file,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bns(&["solver", "show", &file]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("kind      rk4"), "{text}");
    assert!(text.contains("NFE       8"), "{text}");
    // One time row per step plus the output row.
    assert_eq!(text.matches("   a: ").count(), 8, "{text}");
    assert!(text.contains("1.00000   (output x_n)"), "{text}");
}

#[test]
fn sample_writes_a_png_and_the_values() {
    let dir = Scratch::new("cli", "sample");
    let model = small_model(&dir, "m.safetensors", "1");
    let solver = dir.path("euler.json");
    let o = bns(&[
        "solver", "new", "--method", "euler", "--nfe", "4", "--model", &model, "-o", &solver,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (png, values) = (dir.path("grid.png"), dir.path("v.json"));
    // The arguments of one request, written to `values_path`, on the backend `extra` names.
    let sample_args = |values_path: &str, extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--model",
            &model,
            "--solver",
            &solver,
            "--seed",
            "3",
            "--batch",
            "6",
            "--guidance",
            "1.5",
            "-o",
            &png,
            "--values",
            values_path,
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let o = Command::new(env!("CARGO_BIN_EXE_bns"))
        .args(sample_args(&values, &[]))
        .output()
        .expect("bns runs");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("6 samples, 4 NFE"), "{}", stdout(&o));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&values).unwrap()).unwrap();
    assert_eq!(doc["shape"], serde_json::json!([6, 1, 6, 5]));
    assert_eq!(doc["values"].as_array().unwrap().len(), 6 * 30);

    // The same request on the GPU path (lavapipe without a GPU) agrees to rounding; without an
    // XDG_RUNTIME_DIR (a server, a container) Vulkan's loaders do not complain of it.
    let gpu_values = dir.path("v-gpu.json");
    let o = Command::new(env!("CARGO_BIN_EXE_bns"))
        .args(sample_args(&gpu_values, &["--backend", "gpu"]))
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("bns runs");
    let required = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    if !o.status.success() && !required && stderr(&o).contains("Vulkan") {
        eprintln!("skipped the GPU path: {}", stderr(&o));
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("XDG_RUNTIME_DIR"), "{}", stderr(&o));
    let gpu: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&gpu_values).unwrap()).unwrap();
    assert_eq!(gpu["shape"], doc["shape"]);
    let worst = gpu["values"]
        .as_array()
        .unwrap()
        .iter()
        .zip(doc["values"].as_array().unwrap())
        .map(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-4, "GPU vs CPU: max |Δ| = {worst}");
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = Scratch::new("cli", "errors");
    let model = small_model(&dir, "m.safetensors", "1");
    let other = small_model(&dir, "other.safetensors", "2");

    // A solver bound to another model.
    let bound = dir.path("bound.json");
    assert!(bns(&[
        "solver", "new", "--method", "euler", "--nfe", "2", "--model", &other, "-o", &bound
    ])
    .status
    .success());
    let o = bns(&[
        "sample",
        "--model",
        &model,
        "--solver",
        &bound,
        "-o",
        &dir.path("x.png"),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&bound) && stderr(&o).contains("model"),
        "{}",
        stderr(&o)
    );
    assert!(!Path::new(&dir.path("x.png")).exists());

    // Times that decrease.
    let text = std::fs::read_to_string(&bound).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["times"] = serde_json::json!([0.0, 0.7, 0.5]);
    let bad = dir.path("bad.json");
    std::fs::write(&bad, doc.to_string()).unwrap();
    let o = bns(&["solver", "show", &bad]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with(&format!("error: {bad}: ")),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("times[2]"), "{}", stderr(&o));

    // A truncated model file.
    let bytes = std::fs::read(&model).unwrap();
    let cut = dir.path("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = bns(&["model", "show", &cut]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with(&format!("error: {cut}: ")),
        "{}",
        stderr(&o)
    );

    // A file that does not exist.
    let missing = dir.path("missing.json");
    let o = bns(&["solver", "show", &missing]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(&missing), "{}", stderr(&o));

    // An NFE the method cannot use, and an unknown method.
    let o = bns(&[
        "solver",
        "new",
        "--method",
        "rk4",
        "--nfe",
        "6",
        "-o",
        &dir.path("r.json"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("multiple of 4"), "{}", stderr(&o));
    let o = bns(&[
        "solver",
        "new",
        "--method",
        "rk5",
        "--nfe",
        "6",
        "-o",
        &dir.path("r.json"),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("rk5") && stderr(&o).contains("euler"),
        "{}",
        stderr(&o)
    );

    // A class the model does not have.
    let free = dir.path("free.json");
    assert!(
        bns(&["solver", "new", "--method", "euler", "--nfe", "2", "-o", &free])
            .status
            .success()
    );
    let o = bns(&[
        "sample",
        "--model",
        &model,
        "--solver",
        &free,
        "--class",
        "7",
        "-o",
        &dir.path("y.png"),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("class 7 is out of range"),
        "{}",
        stderr(&o)
    );

    // An unknown dataset: the message lists the ones there are.
    let o = bns(&[
        "train",
        "--dataset",
        "cifar10",
        "-o",
        &dir.path("m2.safetensors"),
    ]);
    assert!(!o.status.success());
    for name in [
        "cifar10",
        "fashion-mnist",
        "mnist",
        "checkerboard",
        "moons",
        "8gaussians",
    ] {
        assert!(stderr(&o).contains(name), "{}", stderr(&o));
    }
    // NFE 0.
    let o = bns(&[
        "solver",
        "new",
        "--method",
        "euler",
        "--nfe",
        "0",
        "-o",
        &dir.path("z.json"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("NFE"), "{}", stderr(&o));
}

#[test]
fn a_diverging_solve_names_the_solver_file() {
    let dir = Scratch::new("cli", "diverged");
    let model = small_model(&dir, "m.safetensors", "1");
    // Euler at NFE 2 with a first step 1e308 times too long.
    let file = dir.path("huge.json");
    let o = bns(&[
        "solver", "new", "--method", "euler", "--nfe", "2", "-o", &file,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    json["b"][0][0] = 1e308.into();
    std::fs::write(&file, json.to_string()).unwrap();
    let png = dir.path("x.png");
    let o = bns(&[
        "sample",
        "--model",
        &model,
        "--solver",
        &file,
        "--guidance",
        "0",
        "-o",
        &png,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with(&format!("error: {file}: the solve diverged: ")),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("the solver's coefficients or the guidance scale (w = 0)"),
        "{}",
        stderr(&o)
    );
    assert!(!Path::new(&png).exists());
}

#[test]
fn text_from_files_reaches_the_terminal_escaped() {
    // A solver file whose name and kind carry an ANSI escape sequence and other controls.
    let dir = Scratch::new("cli", "escape");
    let file = dir.path("euler.json");
    let o = bns(&[
        "solver", "new", "--method", "euler", "--grid", "uniform", "--nfe", "2", "-o", &file,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    json["name"] = "evil\u{1b}[2J\u{1b}]0;owned\u{7}\r\nname".into();
    std::fs::write(&file, json.to_string()).unwrap();
    let o = bns(&["solver", "show", &file]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\r'),
        "{text:?}"
    );
    assert!(
        text.contains(r"name      evil\u{1b}[2J\u{1b}]0;owned\u{7}\r\nname"),
        "{text}"
    );
}

#[test]
fn reproduce_sh_without_arguments_prints_its_usage_and_starts_nothing() {
    let dir = Scratch::new("cli", "reproduce");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reproduce.sh");
    for args in [&[][..], &["no-such-model"][..]] {
        let o = Command::new("bash")
            .arg(&script)
            .args(args)
            .current_dir(&dir.0)
            .env("BNS", env!("CARGO_BIN_EXE_bns"))
            .output()
            .expect("bash runs");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("usage:"), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("fashion-mnist mnist checkerboard"));
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
        assert!(!dir.0.join("runs").exists(), "{args:?} created runs/");
    }
}

#[test]
fn pipeline_refuses_guidance_for_an_unconditional_dataset() {
    let dir = Scratch::new("cli", "pipeline-guidance");
    std::fs::create_dir_all(dir.0.join("www")).unwrap();
    std::fs::write(dir.0.join("www/index.html"), "<!doctype html>").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bns"))
        .args([
            "pipeline",
            "--dataset",
            "moons",
            "--name",
            "m",
            "--guidance",
            "0,2",
        ])
        .current_dir(&dir.0)
        .output()
        .expect("bns runs");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--guidance 2: moons is unconditional"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.0.join("runs").exists());
}

#[test]
fn a_flag_of_the_other_architecture_is_refused() {
    let dir = Scratch::new("cli", "other-architecture");
    let model = dir.path("m.safetensors");
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "train",
                "--dataset",
                "moons",
                "--arch",
                "unet",
                "--width",
                "64",
            ],
            "--width is a flag of --arch mlp, not of --arch unet",
        ),
        (
            &["model", "init", "--groups", "4"],
            "--groups is a flag of --arch unet, not of --arch mlp",
        ),
        (
            &["model", "init", "--arch", "unet", "--class-embedding", "8"],
            "--class-embedding is a flag of --arch mlp, not of --arch unet",
        ),
    ];
    for (args, expected) in cases {
        let mut argv = args.to_vec();
        argv.extend(["-o", model.as_str()]);
        let o = bns(&argv);
        assert!(!o.status.success(), "{argv:?}");
        let message = stderr(&o);
        assert!(message.starts_with("error: "), "{message}");
        assert!(message.contains(expected), "{argv:?}: {message}");
        assert!(!Path::new(&model).exists());
    }
}
