//! The solvers `bns eval` compares: every classical method on every grid, the distilled solver
//! files of `--solvers`, and the sample jobs (distances, pictures) they give.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use web_sampler::grid::Grid;
use web_sampler::model::Model;
use web_sampler::solver::{Method, NsTable, SolverFile};

use super::PsnrCell;

/// Label of the tight classical solver whose samples stand for the ground truth.
pub const REFERENCE_LABEL: &str = "reference (RK4, 200 NFE)";
/// NFE of the reference (RK4 on the uniform grid: 50 steps).
pub const REFERENCE_NFE: usize = 200;
/// Kinds of solver files taken from a `--solvers` folder.
pub const DISTILLED_KINDS: [&str; 2] = ["bns", "bns-time-only"];

/// A solver of the table at one NFE.
#[derive(Clone, Debug)]
pub struct EvalSolver {
    /// Row label, also used in file names: `euler-uniform`, `dpmpp2m-edm`, `bns`, ….
    pub label: String,
    pub nfe: usize,
    pub table: NsTable,
    pub origin: SolverOrigin,
}

/// Where a solver of the table comes from.
#[derive(Clone, Debug)]
pub enum SolverOrigin {
    /// A classical method on a time grid (rebuilt at any NFE it supports).
    Classical { method: Method, grid: Grid },
    /// A solver file of `--solvers` (of a distilled kind when taken from a folder), at its own
    /// NFE.
    Distilled {
        /// The file's kind: `bns`, `bns-time-only`, or any other when the file was named.
        kind: String,
        file: PathBuf,
    },
}

impl EvalSolver {
    /// The `kind` column: the method's name or the file's kind.
    pub fn kind(&self) -> &str {
        match &self.origin {
            SolverOrigin::Classical { method, .. } => method.name(),
            SolverOrigin::Distilled { kind, .. } => kind,
        }
    }

    /// The `grid` column: `uniform` or `edm` for a classical method, `learned` for a BNS file,
    /// `custom` for another file.
    pub fn grid_name(&self) -> &str {
        match &self.origin {
            SolverOrigin::Classical { grid, .. } => grid.name(),
            SolverOrigin::Distilled { kind, .. } if kind.starts_with("bns") => "learned",
            SolverOrigin::Distilled { .. } => "custom",
        }
    }

    /// The solver file, for a distilled solver.
    pub fn file(&self) -> Option<&Path> {
        match &self.origin {
            SolverOrigin::Classical { .. } => None,
            SolverOrigin::Distilled { file, .. } => Some(file),
        }
    }
}

/// The solver files of `--solvers`: files are taken whatever their kind, but must be for this
/// model and guidance (an error names the file and both ids or guidances); from a folder, every
/// `*.json` solver of a distilled kind for this model and guidance, the others skipped with a
/// note. The same file named twice is taken once.
pub fn collect_distilled(
    paths: &[PathBuf],
    model: &Model,
    guidance: f64,
    note: &mut dyn FnMut(String),
) -> Result<Vec<(PathBuf, SolverFile)>> {
    let mut found: Vec<(PathBuf, SolverFile)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut keep = |path: PathBuf, file: SolverFile| {
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if seen.insert(key) {
            found.push((path, file));
        }
    };
    for path in paths {
        let origin = path.display().to_string();
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("{origin}: cannot list the folder"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
                .collect();
            entries.sort();
            for entry in entries {
                let shown = entry.display();
                let file = match SolverFile::load(&entry) {
                    Ok(file) => file,
                    Err(e) => {
                        note(format!(
                            "skipping {shown}: not a solver file ({})",
                            e.problem
                        ));
                        continue;
                    }
                };
                if !DISTILLED_KINDS.contains(&file.kind.as_str()) {
                    note(format!(
                        "skipping {shown}: kind {:?} is not a distilled solver (the classical \
                         methods are evaluated anyway)",
                        file.kind
                    ));
                } else if !file.fits(model) {
                    note(format!(
                        "skipping {shown}: distilled for model {}, not for this model {}",
                        file.model_id.as_deref().unwrap_or("(none)"),
                        model.id()
                    ));
                } else if file.guidance != guidance {
                    note(format!(
                        "skipping {shown}: distilled for guidance {}, but the pairs' guidance is \
                         {guidance}",
                        file.guidance
                    ));
                } else {
                    keep(entry, file);
                }
            }
        } else if path.is_file() {
            let file = SolverFile::load(path)?;
            file.check_model(model, &origin)?;
            if file.guidance != guidance {
                bail!(
                    "{origin}: this solver is for guidance {}, but the pairs' guidance is \
                     {guidance}; evaluate it with pairs computed at its guidance",
                    file.guidance
                );
            }
            keep(path.clone(), file);
        } else {
            bail!("{origin}: no such solver file or folder");
        }
    }
    Ok(found)
}

/// The table rows of the distilled solvers. A row is labelled by the solver's kind; when two
/// files of one kind share an NFE, that kind's rows also name their initialisation
/// (`bns (midpoint-uniform)`), and if that is not enough, their file.
pub fn distilled_solvers(files: Vec<(PathBuf, SolverFile)>) -> Vec<EvalSolver> {
    let clash = |labels: &[String], i: usize| {
        (0..files.len())
            .any(|j| j != i && labels[j] == labels[i] && files[j].1.nfe == files[i].1.nfe)
    };
    let mut labels: Vec<String> = files.iter().map(|(_, f)| f.kind.clone()).collect();
    let clashing_kinds: BTreeSet<String> = (0..files.len())
        .filter(|&i| clash(&labels, i))
        .map(|i| files[i].1.kind.clone())
        .collect();
    for (label, (_, f)) in labels.iter_mut().zip(&files) {
        if clashing_kinds.contains(&f.kind) {
            let text = |key: &str| f.provenance.get(key).and_then(|v| v.as_str());
            if let (Some(init), Some(grid)) = (text("init"), text("grid")) {
                *label = format!("{} ({init}-{grid})", f.kind);
            }
        }
    }
    let still: Vec<bool> = (0..files.len()).map(|i| clash(&labels, i)).collect();
    for ((label, (path, _)), clashes) in labels.iter_mut().zip(&files).zip(still) {
        if clashes {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            *label = format!("{label} [{}]", stem.unwrap_or_default());
        }
    }
    files
        .into_iter()
        .zip(labels)
        .map(|((file, solver), label)| EvalSolver {
            label: label.replace('|', "/"),
            nfe: solver.nfe,
            table: solver.table(),
            origin: SolverOrigin::Distilled {
                kind: solver.kind,
                file,
            },
        })
        .collect()
}

/// Every classical method on every grid at every NFE it supports.
pub fn classical_solvers(nfe: &[usize]) -> Vec<EvalSolver> {
    let nfe: BTreeSet<usize> = nfe.iter().copied().collect();
    let mut out = Vec::new();
    for method in Method::ALL {
        for grid in Grid::ALL {
            for &n in &nfe {
                if let Ok(table) = method.build(n, grid) {
                    out.push(EvalSolver {
                        label: classical_label(method, grid),
                        nfe: n,
                        table,
                        origin: SolverOrigin::Classical { method, grid },
                    });
                }
            }
        }
    }
    out
}

/// The row label of a classical method on a grid: `euler-uniform`, `dpmpp2m-edm`, ….
pub use crate::metrics::classical_label;

/// A solver to generate samples with, for a distance or a picture.
pub struct SampleJob {
    pub label: String,
    pub nfe: usize,
    pub table: NsTable,
    /// The picture's file (empty for a distance).
    pub path: PathBuf,
}

/// Every solver at every `nfe` (classical ones rebuilt at that NFE if it is not in the PSNR
/// table; distilled ones only at their own NFE), then the reference.
pub fn distance_jobs(solvers: &[EvalSolver], nfe: &[usize]) -> Vec<SampleJob> {
    if nfe.is_empty() {
        return Vec::new();
    }
    let mut jobs = Vec::new();
    let mut labels: Vec<&str> = Vec::new();
    for s in solvers {
        if !labels.contains(&s.label.as_str()) {
            labels.push(&s.label);
        }
    }
    let unique: BTreeSet<usize> = nfe.iter().copied().collect();
    for label in labels {
        let first = solvers.iter().find(|s| s.label == label);
        for &n in &unique {
            let table = match first.map(|s| &s.origin) {
                Some(SolverOrigin::Classical { method, grid }) => method.build(n, *grid).ok(),
                _ => solvers
                    .iter()
                    .find(|s| s.label == label && s.nfe == n)
                    .map(|s| s.table.clone()),
            };
            if let Some(table) = table {
                jobs.push(SampleJob {
                    label: label.to_string(),
                    nfe: n,
                    table,
                    path: PathBuf::new(),
                });
            }
        }
    }
    jobs.push(reference_job(PathBuf::new()));
    jobs
}

fn reference_job(path: PathBuf) -> SampleJob {
    SampleJob {
        label: REFERENCE_LABEL.into(),
        nfe: REFERENCE_NFE,
        table: Method::Rk4
            .build(REFERENCE_NFE, Grid::Uniform)
            .unwrap_or_else(|_| unreachable!("200 is a multiple of RK4's 4 stages")),
        path,
    }
}

/// The sample grids: at each `nfe`, every distilled solver of kind `bns` with that NFE, and
/// Euler, midpoint and DPM-Solver++ on their better grid there (by PSNR at that NFE, else over
/// all NFE); then the reference.
pub fn picture_jobs(
    solvers: &[EvalSolver],
    psnr: &[PsnrCell],
    nfe: &[usize],
    output: &Path,
) -> Vec<SampleJob> {
    let path =
        |label: &str, n: usize| output.join(format!("samples-{}-nfe{n}.png", file_label(label)));
    let mut jobs = Vec::new();
    let unique: BTreeSet<usize> = nfe.iter().copied().collect();
    for &n in &unique {
        let bns = solvers.iter().filter(|s| {
            matches!(&s.origin, SolverOrigin::Distilled { kind, .. } if kind == "bns") && s.nfe == n
        });
        for s in bns {
            jobs.push(SampleJob {
                label: s.label.clone(),
                nfe: n,
                table: s.table.clone(),
                path: path(&s.label, n),
            });
        }
        for method in [Method::Euler, Method::Midpoint, Method::DpmPp2m] {
            let grid = better_grid(method, psnr, Some(n));
            if let Ok(table) = method.build(n, grid) {
                let label = classical_label(method, grid);
                jobs.push(SampleJob {
                    path: path(&label, n),
                    label,
                    nfe: n,
                    table,
                });
            }
        }
    }
    jobs.push(reference_job(
        output.join(format!("samples-reference-rk4-nfe{REFERENCE_NFE}.png")),
    ));
    jobs
}

/// A label as a file-name piece: letters, digits, `-`, `_` and `.` kept, the rest `-`.
fn file_label(label: &str) -> String {
    let mapped: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    mapped.trim_matches('-').to_string()
}

/// The grid on which `method` has the higher PSNR: at `nfe` if both grids were measured there,
/// else averaged over the NFE measured on both; uniform when nothing decides.
pub fn better_grid(method: Method, psnr: &[PsnrCell], nfe: Option<usize>) -> Grid {
    let cell = |grid: Grid, n: usize| {
        psnr.iter()
            .find(|c| c.kind == method.name() && c.grid == grid.name() && c.nfe == n)
            .map(|c| c.mean)
            .filter(|m| m.is_finite())
    };
    if let Some(n) = nfe {
        if let (Some(u), Some(e)) = (cell(Grid::Uniform, n), cell(Grid::Edm, n)) {
            return if e > u { Grid::Edm } else { Grid::Uniform };
        }
    }
    let both: Vec<(f64, f64)> = psnr
        .iter()
        .filter(|c| c.kind == method.name())
        .filter_map(|c| Some((cell(Grid::Uniform, c.nfe)?, cell(Grid::Edm, c.nfe)?)))
        .collect();
    let edm_wins = !both.is_empty()
        && both.iter().map(|p| p.1).sum::<f64>() > both.iter().map(|p| p.0).sum::<f64>();
    if edm_wins {
        Grid::Edm
    } else {
        Grid::Uniform
    }
}
