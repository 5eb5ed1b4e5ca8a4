//! The reports of `bns eval`: `psnr.csv`, `distance.csv`, `results.md` and the PSNR-vs-NFE
//! chart. Their names and bytes are what the published docs link to and quote.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use web_sampler::grid::Grid;
use web_sampler::solver::Method;

use super::distance::{DistanceKind, Distances};
use super::solvers::{better_grid, classical_label, EvalSolver, REFERENCE_LABEL};
use super::{EvalArgs, Evaluation, PsnrCell};

use crate::data::DatasetName;
use crate::plot::{Line, LineChart};

/// `psnr.csv`: one row per measured cell; numbers in full precision (they read back exactly).
pub fn psnr_csv(cells: &[PsnrCell]) -> String {
    let mut text = String::from("solver,kind,grid,nfe,psnr_mean,psnr_std\n");
    for c in cells {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{}",
            csv_field(&c.solver),
            csv_field(&c.kind),
            csv_field(&c.grid),
            c.nfe,
            c.mean,
            c.std
        );
    }
    text
}

/// `distance.csv`: solver, NFE (empty for the floor), metric, value.
pub fn distance_csv(d: &Distances) -> String {
    let metric = match d.kind {
        DistanceKind::Frechet { .. } => "fd_small_classifier_features_not_inception_fid",
        DistanceKind::SlicedWasserstein { .. } => "sliced_wasserstein",
    };
    let mut text = String::from("solver,nfe,metric,value\n");
    for row in &d.rows {
        let nfe = row.nfe.map(|n| n.to_string()).unwrap_or_default();
        let _ = writeln!(
            text,
            "{},{nfe},{metric},{}",
            csv_field(&row.solver),
            row.value
        );
    }
    text
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// `results.md`: the header, the PSNR table (best per column in bold) and the distance table.
pub fn markdown(e: &Evaluation, args: &EvalArgs) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Solver evaluation\n");
    let _ = writeln!(
        md,
        "* Model `{}` ({}), dataset {}",
        e.model_id,
        args.model.display(),
        e.model_dataset
    );
    let _ = writeln!(
        md,
        "* Ground truth `{}`: DOPRI5 with rtol {:e}, atol {:e}, mean NFE {:.1}; {} test pairs",
        e.pairs_file.display(),
        e.rtol,
        e.atol,
        e.truth_mean_nfe,
        e.test_pairs
    );
    let _ = writeln!(md, "* Guidance w = {}", e.guidance);
    for s in &e.solvers {
        if let Some(file) = s.file() {
            let _ = writeln!(
                md,
                "* Distilled solver {} at {} NFE: `{}`",
                s.label,
                s.nfe,
                file.display()
            );
        }
    }
    let _ = writeln!(
        md,
        "* PSNR: mean ± std over the test pairs (held out from distillation), in dB on images mapped to [0, 1], as the \
         runtime's CPU path runs each solver; best per column in bold; an empty cell is an NFE the \
         method cannot take (not a multiple of its stages)\n"
    );
    let _ = writeln!(md, "## PSNR (dB) against the ground truth\n");
    let columns: BTreeSet<usize> = e.psnr.iter().map(|c| c.nfe).collect();
    let mut rows: Vec<&str> = Vec::new();
    for s in &e.solvers {
        if !rows.contains(&s.label.as_str()) {
            rows.push(&s.label);
        }
    }
    let best = |n: usize| {
        e.psnr
            .iter()
            .filter(|c| c.nfe == n && c.mean.is_finite())
            .map(|c| c.mean)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let _ = write!(md, "| solver |");
    columns.iter().for_each(|n| {
        let _ = write!(md, " NFE {n} |");
    });
    let _ = write!(md, "\n|---|");
    columns.iter().for_each(|_| md.push_str("---:|"));
    md.push('\n');
    for label in rows {
        let _ = write!(md, "| {label} |");
        for &n in &columns {
            match e.psnr_cell(label, n) {
                Some(c) => {
                    let text = format!("{:.2} ± {:.2}", c.mean, c.std);
                    if c.mean == best(n) {
                        let _ = write!(md, " **{text}** |");
                    } else {
                        let _ = write!(md, " {text} |");
                    }
                }
                None => md.push_str("  |"),
            }
        }
        md.push('\n');
    }
    md.push('\n');
    match &e.distances {
        None => {
            let _ = writeln!(
                md,
                "## Quality and diversity\n\nNot measured (see the notes).\n"
            );
        }
        Some(d) => distance_markdown(&mut md, d),
    }
    if !e.pictures.is_empty() {
        let real = e
            .pictures
            .iter()
            .any(|p| p.ends_with(super::REAL_TEST_PICTURE));
        let _ = writeln!(
            md,
            "## Samples\n\nThe same seeds for every solver (classes cycling), at the pairs' \
             guidance{}.\n",
            if real {
                "; `real-test.png` shows real images of the test split"
            } else {
                ""
            }
        );
        for path in &e.pictures {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = writeln!(md, "* `{name}`: ![{name}]({name})");
        }
        md.push('\n');
    }
    if !e.notes.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for n in &e.notes {
            let _ = writeln!(md, "* {n}");
        }
    }
    md
}

fn distance_markdown(md: &mut String, d: &Distances) {
    let data = dataset_title(&d.dataset);
    let (heading, short) = match &d.kind {
        DistanceKind::Frechet {
            classifier,
            widths,
            test_accuracy,
            trained,
            rotations,
        } => {
            let widths: Vec<String> = widths.iter().map(|w| w.to_string()).collect();
            let _ = writeln!(
                md,
                "## Quality and diversity: FD on a small {data} classifier's features, not Inception FID\n"
            );
            let _ =
                writeln!(
                md,
                "Fréchet distance between Gaussians fitted to the {}-d penultimate features of a \
                 small MLP classifier ({}, SiLU; `{}`, {}test accuracy {:.2}%) for \
                 {} generated images per solver and for the {} test images. This is FD on a \
                 small {data} classifier's features, not Inception FID: compare it only with \
                 itself. Lower is better; best per column in bold.\n",
                widths
                    .get(widths.len().saturating_sub(2))
                    .map_or("?", String::as_str),
                widths.join("→"),
                classifier.display(),
                if *trained { "trained by this run, " } else { "" },
                100.0 * test_accuracy,
                d.samples,
                d.test_rows
            );
            if *rotations {
                let _ = writeln!(
                    md,
                    "The dataset has no class labels, so this classifier was trained on a \
                     self-supervised task instead: telling which rotation (a multiple of 90°, or \
                     0°/180° for images that are not square) was applied to a train image; its \
                     test accuracy is on the rotated test images. The features compared are its \
                     penultimate activations of the unrotated images.\n"
                );
            }
            ("FD", "FD")
        }
        DistanceKind::SlicedWasserstein { directions } => {
            let _ = writeln!(
                md,
                "## Quality and diversity: sliced Wasserstein distance\n"
            );
            let _ = writeln!(
                md,
                "Sliced Wasserstein-2 distance ({directions} random directions) between {} \
                 generated points per solver and the {} points of the {data} test split. Lower \
                 is better; best per column in bold.\n",
                d.samples, d.test_rows
            );
            ("SW", "SW")
        }
    };
    let columns: BTreeSet<usize> = d
        .rows
        .iter()
        .filter(|r| r.solver != REFERENCE_LABEL)
        .filter_map(|r| r.nfe)
        .collect();
    let mut labels: Vec<&str> = Vec::new();
    for r in &d.rows {
        if r.nfe.is_some() && r.solver != REFERENCE_LABEL && !labels.contains(&r.solver.as_str()) {
            labels.push(&r.solver);
        }
    }
    let best = |n: usize| {
        d.rows
            .iter()
            .filter(|r| r.nfe == Some(n) && r.solver != REFERENCE_LABEL && r.value.is_finite())
            .map(|r| r.value)
            .fold(f64::INFINITY, f64::min)
    };
    let _ = write!(md, "| solver |");
    columns.iter().for_each(|n| {
        let _ = write!(md, " {heading} at NFE {n} |");
    });
    let _ = write!(md, "\n|---|");
    columns.iter().for_each(|_| md.push_str("---:|"));
    md.push('\n');
    for label in labels {
        let _ = write!(md, "| {label} |");
        for &n in &columns {
            match d
                .rows
                .iter()
                .find(|r| r.solver == label && r.nfe == Some(n))
            {
                Some(r) if !r.value.is_finite() => md.push_str(" diverged |"),
                Some(r) if r.value == best(n) => {
                    let _ = write!(md, " **{}** |", number(r.value));
                }
                Some(r) => {
                    let _ = write!(md, " {} |", number(r.value));
                }
                None => md.push_str("  |"),
            }
        }
        md.push('\n');
    }
    let _ = writeln!(md, "\n| baseline | {short} |\n|---|---:|");
    for r in d
        .rows
        .iter()
        .filter(|r| r.solver == REFERENCE_LABEL || r.nfe.is_none())
    {
        let _ = writeln!(md, "| {} | {} |", r.solver, number(r.value));
    }
    md.push('\n');
}

/// A distance with four significant digits.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return "diverged".into();
    }
    let digits = (3 - v.abs().max(1e-12).log10().floor() as i32).clamp(0, 8) as usize;
    format!("{v:.digits$}")
}

/// The chart: each classical method on its better grid (thin lines), every distilled solver
/// (thick lines).
pub fn psnr_chart(solvers: &[EvalSolver], psnr: &[PsnrCell], title: String) -> LineChart {
    const COLORS: [(u8, u8, u8); 7] = [
        (31, 119, 180),
        (44, 160, 44),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (23, 190, 207),
    ];
    const DISTILLED: [(u8, u8, u8); 4] = [(214, 39, 40), (255, 127, 14), (188, 189, 34), (0, 0, 0)];
    let points = |label: &str| -> Vec<(f64, f64)> {
        psnr.iter()
            .filter(|c| c.solver == label)
            .map(|c| (c.nfe as f64, c.mean))
            .collect()
    };
    let mut lines = Vec::new();
    let mut distilled: Vec<&str> = Vec::new();
    for s in solvers.iter().filter(|s| s.file().is_some()) {
        if !distilled.contains(&s.label.as_str()) {
            distilled.push(&s.label);
        }
    }
    for (i, label) in distilled.iter().enumerate() {
        let color = match *label {
            "bns" => DISTILLED[0],
            "bns-time-only" => DISTILLED[1],
            _ => DISTILLED[2 + i % 2],
        };
        let mut p = points(label);
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        lines.push(Line {
            label: label.to_string(),
            points: p,
            color,
            dashed: false,
            emphasis: true,
        });
    }
    for (method, color) in Method::ALL.iter().zip(COLORS) {
        let grid = better_grid(*method, psnr, None);
        let p = points(&classical_label(*method, grid));
        if !p.is_empty() {
            lines.push(Line {
                label: format!("{} ({} grid)", method.name(), grid.name()),
                points: p,
                color,
                dashed: grid == Grid::Edm,
                emphasis: false,
            });
        }
    }
    LineChart {
        title,
        x_label: "NFE (network evaluations)".into(),
        y_label: "PSNR vs ground truth (dB)".into(),
        lines,
    }
}

/// "Fashion-MNIST", "MNIST", or the file's own name for other datasets.
pub fn dataset_title(name: &str) -> String {
    match name.parse::<DatasetName>() {
        Ok(DatasetName::FashionMnist) => "Fashion-MNIST".into(),
        Ok(DatasetName::Mnist) => "MNIST".into(),
        Ok(other) => other.name().into(),
        Err(_) => name.into(),
    }
}
