//! The native CPU path against ONNX Runtime on the same network, the same noise and the same
//! solver, interleaved in one run, at 1 and 2 threads: prints a table of median times and ratios.
//!
//!     cargo bench -p web-sampler --bench peers -- --python /path/to/venv/bin/python
//!         [--batch 64 --rounds 7 --threads 1,2 --models www/models --model fashion-mnist
//!          --solver bns-8-w0.json]
//!     cargo bench -p web-sampler --bench peers -- --python … --export DIR
//!
//! `--python` (default `python3`) must have `onnxruntime`, `onnx` and `numpy`. The benchmark
//! exports the model file to ONNX with `benches/onnx/export.py` (the network, and the whole
//! solve in one graph) and drives `benches/onnx/peer.py`, a second process that runs ONNX
//! Runtime: the two processes take turns on the same cores (one waits while the other is
//! timed), round after round. Before timing, every contender's output must agree with the
//! project's within 1e-4, and the project's must not change by a bit with the thread count.
//!
//! With `--export DIR` it only writes the problem (`problem.json`: the noise, the classes, the
//! NS table) and the two ONNX files into DIR, and times nothing: the browser counterpart,
//! `tests/browser/peers.mjs`, runs onnxruntime-web on them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

#[path = "common/workload.rs"]
mod workload;
use workload::{option, Workload};

use web_sampler::model::Model;
use web_sampler::noise::gaussian_batch;
use web_sampler::sample::{class_labels, integrate};

type Failure = Box<dyn std::error::Error>;

/// The largest |ONNX Runtime − project| accepted before timing.
const AGREEMENT: f32 = 1e-4;

/// The ONNX Runtime process and its command line.
struct Peer {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Peer {
    fn answer(&mut self) -> Result<String, Failure> {
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            return Err("the ONNX Runtime process ended (see its error above)".into());
        }
        Ok(line.trim().to_string())
    }

    /// Runs `kind` (`loop` or `graph`) on `threads` threads; its milliseconds.
    fn solve(&mut self, kind: &str, threads: usize, save: Option<&Path>) -> Result<f64, Failure> {
        match save {
            Some(path) => writeln!(self.input, "{kind} {threads} {}", path.display())?,
            None => writeln!(self.input, "{kind} {threads}")?,
        }
        self.input.flush()?;
        Ok(self.answer()?.parse()?)
    }
}

/// The CPU's model name (Linux's `/proc/cpuinfo`), or `unknown` elsewhere.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn run_python(python: &str, script: &Path, args: &[&Path]) -> Result<(), Failure> {
    let status = Command::new(python).arg(script).args(args).status()?;
    if !status.success() {
        return Err(format!("{python} {} failed ({status})", script.display()).into());
    }
    Ok(())
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = option(&args, "--rounds", "7").parse::<usize>()?.max(1);
    let python = option(&args, "--python", "python3");
    let threads: Vec<usize> = option(&args, "--threads", "1,2")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let Workload {
        name,
        solver,
        model_path,
        model,
        file,
        table,
        request,
    } = Workload::from_args(&args)?;
    let batch = request.batch;
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if file.guidance != 0.0 {
        return Err("the ONNX graphs have no guidance: use a w = 0 solver".into());
    }
    let classes = class_labels(&model, &request)?;
    let dim = model.spec().data_dim();
    let x0 = gaussian_batch(request.seed, batch, dim);

    let export = args
        .iter()
        .position(|a| a == "--export")
        .map(|i| {
            args.get(i + 1)
                .map(PathBuf::from)
                .ok_or("--export needs a folder")
        })
        .transpose()?;
    let scratch = export
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("bns-peers-{}", std::process::id())));
    std::fs::create_dir_all(&scratch)?;
    let problem = scratch.join("problem.json");
    let doc = serde_json::json!({
        "dim": dim, "x0": x0, "classes": classes,
        "times": table.times, "a": table.a, "b": table.b,
    });
    std::fs::write(&problem, doc.to_string())?;
    let (network, solve) = (scratch.join("network.onnx"), scratch.join("solve.onnx"));
    let scripts = here.join("benches/onnx");
    run_python(
        &python,
        &scripts.join("export.py"),
        &[
            &model_path,
            &network,
            Path::new("--table"),
            &problem,
            Path::new("--solve"),
            &solve,
        ],
    )?;
    if let Some(dir) = export {
        println!(
            "wrote problem.json, network.onnx and solve.onnx to {} ({name}, {solver}, batch {batch})",
            dir.display()
        );
        return Ok(());
    }
    let mut child = Command::new(&python)
        .arg(scripts.join("peer.py"))
        .args([&network, &solve, &problem])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut peer = Peer {
        input: child.stdin.take().ok_or("no stdin")?,
        output: BufReader::new(child.stdout.take().ok_or("no stdout")?),
        child,
    };
    let ready = peer.answer()?;
    let version = ready.strip_prefix("ready ").unwrap_or("?").to_string();

    let project = |model: &Model| integrate(model, &table, x0.clone(), &classes, request.guidance);
    let reference = project(&model)?;
    // One model per thread count, as ONNX Runtime keeps one session per thread count (the
    // forward's workers, and their working buffers, belong to this thread and stay between
    // rounds either way).
    let models: Vec<Model> = threads
        .iter()
        .map(|&n| {
            let mut model = model.clone();
            model.set_threads(n);
            model
        })
        .collect();
    for (&n, model) in threads.iter().zip(&models) {
        let again = project(model)?;
        if again
            .iter()
            .zip(&reference)
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            return Err(format!("the CPU path changes with {n} threads").into());
        }
    }
    let saved = scratch.join("out.f32");
    let mut agreement = Vec::new();
    for kind in ["loop", "graph"] {
        peer.solve(kind, threads[0], Some(&saved))?;
        let bytes = std::fs::read(&saved)?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let worst = values
            .iter()
            .zip(&reference)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        if values.len() != reference.len() || worst > AGREEMENT || values.iter().any(|v| v.is_nan())
        {
            return Err(format!("ONNX Runtime ({kind}) differs by {worst} (> {AGREEMENT})").into());
        }
        agreement.push(worst);
    }

    // Warm-up of every contender and thread count, then the rounds.
    let contenders = 3 * threads.len();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); contenders];
    for round in 0..=rounds {
        for (k, (&n, model)) in threads.iter().zip(&models).enumerate() {
            let start = Instant::now();
            std::hint::black_box(project(model)?);
            let ours = start.elapsed().as_secs_f64() * 1e3;
            let looped = peer.solve("loop", n, None)?;
            let graph = peer.solve("graph", n, None)?;
            if round > 0 {
                times[3 * k].push(ours);
                times[3 * k + 1].push(looped);
                times[3 * k + 2].push(graph);
            }
        }
    }
    drop(peer.input);
    peer.child.wait()?;
    std::fs::remove_dir_all(&scratch)?;

    println!(
        "model {name} ({} parameters), solver {solver} (NFE {}), batch {batch}, seed 1, {rounds} interleaved rounds after a warm-up; ONNX Runtime {version}",
        model.spec().parameter_count(),
        table.steps()
    );
    println!(
        "outputs agree: max |ONNX Runtime − project| = {:.1e} (network loop), {:.1e} (one graph); the project's bits are the same at every thread count",
        agreement[0], agreement[1]
    );
    println!(
        "CPU: {}; the project's kernel: {} (`--bench kernel` prints how near it runs to this core's ceiling)",
        cpu_name(),
        web_sampler::model::dense::kernel()
    );
    println!();
    println!("| contender | threads | median ms | ONNX Runtime / project |");
    println!("|---|---:|---:|---:|");
    for (k, &n) in threads.iter().enumerate() {
        let ours = median(&mut times[3 * k]);
        let rows = [
            ("this project, native CPU path", ours),
            (
                "ONNX Runtime, network graph, loop in the caller",
                median(&mut times[3 * k + 1]),
            ),
            (
                "ONNX Runtime, whole solve in one graph",
                median(&mut times[3 * k + 2]),
            ),
        ];
        for (i, (label, ms)) in rows.iter().enumerate() {
            let ratio = if i == 0 {
                "1.00".to_string()
            } else {
                format!("{:.2}", ms / ours)
            };
            println!("| {label} | {n} | {ms:.1} | {ratio} |");
        }
    }
    Ok(())
}
