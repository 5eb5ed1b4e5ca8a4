//! `bns publish`: put a model and its distilled solvers on the site, under
//! `www/models/<name>/` with a `manifest.json`, after checking each solver on the runtime.
//!
//! Before anything is written, every solver is re-run by `web-sampler` (the code the page runs)
//! on the test pairs of its guidance, and publishing is refused if the PSNR differs from the test
//! PSNR the solver records by more than [`PSNR_TOLERANCE_DB`], or if the solver was distilled for
//! another model. The manifest lists the measured test PSNR. With `--f16` the model is also
//! published rounded to half precision (`model.f16.safetensors`, half the download, which the
//! page then loads), each solver measured again with those weights. The folder is assembled
//! beside the target and swapped in at the end.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use web_sampler::manifest::{self, Manifest, ManifestSolver, MANIFEST_FORMAT_VERSION};
use web_sampler::model::{Model, WeightDtype};
use web_sampler::solver::SolverFile;

use crate::files::write_atomically;
use crate::metrics::{mean_std, solver_psnr, TEST_PSNR};
use crate::pairs::Pairs;

/// Largest accepted difference between a solver's recorded and re-measured test PSNR.
pub const PSNR_TOLERANCE_DB: f64 = 0.1;
/// The half-precision model's file name in the published folder.
const F16_FILE: &str = "model.f16.safetensors";

#[derive(Args, Clone, Debug)]
pub struct PublishArgs {
    /// Name of the model on the site (a folder name: letters, digits, '-', '_')
    #[arg(long)]
    pub name: String,
    /// Title shown on the page
    #[arg(long)]
    pub title: String,
    /// The model file
    #[arg(long)]
    pub model: PathBuf,
    /// Distilled solver files, or folders to take every `*.json` solver of this model from
    #[arg(long, num_args = 1.., required = true)]
    pub solvers: Vec<PathBuf>,
    /// Ground-truth pairs files (one per guidance scale) whose test splits verify the solvers
    #[arg(long, num_args = 1.., required = true)]
    pub pairs: Vec<PathBuf>,
    /// The site folder
    #[arg(long, default_value = "www")]
    pub site: PathBuf,
    /// Make this the model the page opens with
    #[arg(long)]
    pub default: bool,
    /// Also publish the model with its weights rounded to f16 (half the bytes), which the page
    /// then downloads instead; each solver's test PSNR is measured with it too
    #[arg(long)]
    pub f16: bool,
}

pub fn run(args: PublishArgs) -> Result<()> {
    let manifest = publish(&args, &mut |line| println!("{line}"))?;
    println!(
        "published {} ({} solvers) in {}",
        manifest.name,
        manifest.solvers.len(),
        args.site.join("models").join(&manifest.name).display()
    );
    Ok(())
}

fn solver_files(paths: &[PathBuf], model: &Model) -> Result<Vec<(PathBuf, SolverFile)>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("{}: cannot list", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            entries.sort();
            for entry in entries {
                let Ok(file) = SolverFile::load(&entry) else {
                    continue;
                };
                if file.model_id.is_some() && file.fits(model) {
                    out.push((entry, file));
                }
            }
        } else {
            let file = SolverFile::load(path)?;
            file.check_model(model, &path.display().to_string())?;
            if file.model_id.is_none() {
                bail!(
                    "{}: a classical solver (not bound to a model); the page builds those itself",
                    path.display()
                );
            }
            out.push((path.clone(), file));
        }
    }
    if out.is_empty() {
        bail!("no solver for model {} among {:?}", model.id(), paths);
    }
    Ok(out)
}

/// Checks and writes; `say` receives one line per verified solver.
pub fn publish(args: &PublishArgs, say: &mut dyn FnMut(String)) -> Result<Manifest> {
    if manifest::check_name(&args.name).is_err() {
        bail!(
            "--name {:?}: use letters, digits, '-' and '_' only",
            args.name
        );
    }
    // A site is a folder with the page in it; anything else (e.g. `www` resolved outside a
    // checkout) would get a stray `models/` folder.
    if !args.site.join("index.html").is_file() {
        bail!(
            "--site {}: not a site folder (it has no index.html); give the site with --site, e.g. \
             --site path/to/bns/www",
            args.site.display()
        );
    }
    let model_bytes = std::fs::read(&args.model)
        .with_context(|| format!("{}: cannot read", args.model.display()))?;
    let model = Model::from_bytes(&model_bytes, &args.model.display().to_string())?;
    if args.f16 && model.dtype() == WeightDtype::F16 {
        bail!(
            "{}: this model is stored in f16 already; publish the f32 model it was rounded from \
             with --f16",
            args.model.display()
        );
    }
    let half = if args.f16 {
        Some(model.with_dtype(WeightDtype::F16)?)
    } else {
        None
    };
    let pairs: Vec<(PathBuf, Pairs)> = args
        .pairs
        .iter()
        .map(|p| {
            let pairs = Pairs::load(p)?;
            pairs.check_for(&model, p)?;
            pairs.test_split(p)?;
            Ok((p.clone(), pairs))
        })
        .collect::<Result<_>>()?;

    // Each published solver with its document.
    let mut published: Vec<(ManifestSolver, String)> = Vec::new();
    for (path, file) in solver_files(&args.solvers, &model)? {
        let origin = path.display();
        let Some(recorded) = file.metrics.get(TEST_PSNR).copied() else {
            bail!(
                "{origin}: records no {TEST_PSNR} to verify (a solver distilled before the test \
                 split existed: measure it with `bns solver measure`)"
            );
        };
        let Some((pairs_path, pairs)) =
            pairs.iter().find(|(_, p)| p.meta.guidance == file.guidance)
        else {
            bail!(
                "{origin}: no pairs file with guidance {} among --pairs to verify it on",
                file.guidance
            );
        };
        let (measured, _) = mean_std(&solver_psnr(
            &model,
            &file.table(),
            &pairs.test(),
            file.guidance,
        )?);
        if (measured - recorded).abs() > PSNR_TOLERANCE_DB {
            bail!(
                "{origin}: records a test PSNR of {recorded:.3} dB but the runtime measures \
                 {measured:.3} dB on the test pairs of {} (more than {PSNR_TOLERANCE_DB} dB \
                 apart); not publishing",
                pairs_path.display()
            );
        }
        say(format!(
            "verified {origin}: test PSNR {measured:.2} dB (recorded {recorded:.2} dB, NFE {}, w = \
             {})",
            file.nfe, file.guidance
        ));
        let test_psnr_f16 = match &half {
            Some(half) => {
                let (psnr, _) = mean_std(&solver_psnr(
                    half,
                    &file.table(),
                    &pairs.test(),
                    file.guidance,
                )?);
                say(format!(
                    "  with the f16 weights: test PSNR {psnr:.2} dB ({:+.3} dB)",
                    psnr - measured
                ));
                Some(psnr)
            }
            None => None,
        };
        let name = format!("{}-{}-w{}", file.kind, file.nfe, file.guidance);
        if published.iter().any(|(s, _)| s.name == name) {
            bail!("{origin}: a second {name} solver (publish one per kind, NFE and guidance)");
        }
        let entry = ManifestSolver {
            file: format!("{name}.json"),
            name,
            kind: file.kind.clone(),
            nfe: file.nfe,
            guidance: file.guidance,
            test_psnr: measured,
            test_psnr_f16,
        };
        published.push((entry, file.to_json()));
    }
    let half_bytes = half.as_ref().map(Model::to_bytes);
    published.sort_by(|(a, _), (b, _)| {
        (a.guidance, a.nfe, &a.kind)
            .partial_cmp(&(b.guidance, b.nfe, &b.kind))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        name: args.name.clone(),
        title: args.title.clone(),
        model: "model.safetensors".into(),
        model_id: model.id().to_string(),
        model_bytes: model_bytes.len(),
        model_f16: half.as_ref().map(|_| F16_FILE.to_string()),
        model_f16_id: half.as_ref().map(|h| h.id().to_string()),
        model_f16_bytes: half_bytes.as_ref().map(Vec::len),
        solvers: published.iter().map(|(s, _)| s.clone()).collect(),
    };
    let manifest_path = args
        .site
        .join("models")
        .join(&args.name)
        .join("manifest.json");
    manifest.validate(&manifest_path.display().to_string())?;

    // Assemble the folder beside its final place, then swap it in.
    let models = args.site.join("models");
    std::fs::create_dir_all(&models)
        .with_context(|| format!("{}: cannot create", models.display()))?;
    let target = models.join(&args.name);
    let staging = models.join(format!(".{}.staging-{}", args.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let write = || -> Result<()> {
        std::fs::create_dir_all(&staging)?;
        write_atomically(&staging.join("model.safetensors"), &model_bytes)?;
        if let Some(bytes) = &half_bytes {
            write_atomically(&staging.join(F16_FILE), bytes)?;
        }
        for (entry, text) in &published {
            write_atomically(&staging.join(&entry.file), text.as_bytes())?;
        }
        let json = manifest.to_json() + "\n";
        write_atomically(&staging.join("manifest.json"), json.as_bytes())?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let old = models.join(format!(".{}.old-{}", args.name, std::process::id()));
    if target.exists() {
        std::fs::rename(&target, &old)
            .with_context(|| format!("{}: cannot replace", target.display()))?;
    }
    std::fs::rename(&staging, &target)
        .with_context(|| format!("{}: cannot write", target.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    update_index(&models.join("index.json"), &args.name, args.default)?;
    Ok(manifest)
}

/// Adds `name` to `index.json` (the list of published models; the first is the default).
fn update_index(path: &Path, name: &str, default: bool) -> Result<()> {
    let mut names: Vec<String> = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON list of model names", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    names.retain(|n| n != name);
    if default {
        names.insert(0, name.to_string());
    } else {
        names.push(name.to_string());
    }
    write_atomically(
        path,
        (serde_json::to_string_pretty(&names)? + "\n").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::distill::distill;
    use crate::commands::distill::tests::{args as distill_args, tiny_model_and_pairs};
    use candle_core::Device;
    use web_sampler::scratch::ScratchDir;

    /// Arguments that publish to `dir/www`, a site folder (with its page).
    fn publish_args(dir: &Path, model: &Path, solver: &Path, pairs: &Path) -> PublishArgs {
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/index.html"), "<!doctype html>").unwrap();
        PublishArgs {
            name: "tiny".into(),
            title: "Tiny checkerboard".into(),
            model: model.to_path_buf(),
            solvers: vec![solver.to_path_buf()],
            pairs: vec![pairs.to_path_buf()],
            site: dir.join("www"),
            default: true,
            f16: false,
        }
    }

    #[test]
    fn a_folder_without_the_page_is_not_a_site() {
        let scratch = ScratchDir::new("publish-no-site");
        let dir = scratch.path();
        let mut args = publish_args(dir, &dir.join("m"), &dir.join("s"), &dir.join("p"));
        args.site = dir.join("elsewhere");
        std::fs::create_dir_all(&args.site).unwrap();
        let message = publish(&args, &mut |_| {}).err().unwrap().to_string();
        assert!(
            message.contains("elsewhere") && message.contains("no index.html"),
            "{message}"
        );
        assert!(!args.site.join("models").exists());
    }

    #[test]
    fn publishes_verified_solvers_and_refuses_the_rest() {
        let scratch = ScratchDir::new("publish-publish");
        let dir = scratch.path();
        let (model, pairs) = tiny_model_and_pairs(dir);
        let solver = dir.join("bns-4.json");
        let mut a = distill_args(&model, &pairs, &solver);
        a.iterations = 30;
        distill(&a, &Device::Cpu, false).unwrap();

        let mut lines = Vec::new();
        let manifest = publish(&publish_args(dir, &model, &solver, &pairs), &mut |l| {
            lines.push(l)
        })
        .unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("verified "), "{lines:?}");
        let folder = dir.join("www/models/tiny");
        let written = Manifest::from_json(
            &std::fs::read_to_string(folder.join("manifest.json")).unwrap(),
            "manifest.json",
        )
        .unwrap();
        assert_eq!(written, manifest);
        assert_eq!(manifest.solvers.len(), 1);
        let published = Model::load(&folder.join("model.safetensors")).unwrap();
        assert_eq!(published.id(), manifest.model_id);
        let file = SolverFile::load(&folder.join(&manifest.solvers[0].file)).unwrap();
        file.check_model(&published, "published").unwrap();
        // The manifest lists the test PSNR, measured again on the test pairs.
        let listed = manifest.solvers[0].test_psnr;
        assert!((listed - file.metrics[TEST_PSNR]).abs() < 1e-9, "{listed}");
        let index: Vec<String> = serde_json::from_str(
            &std::fs::read_to_string(dir.join("www/models/index.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(index, ["tiny"]);
        assert!(manifest.model_f16.is_none() && !folder.join(F16_FILE).exists());

        // With --f16: the rounded model beside it, each solver measured with it too.
        let mut args = publish_args(dir, &model, &solver, &pairs);
        args.f16 = true;
        let mut lines = Vec::new();
        let manifest = publish(&args, &mut |l| lines.push(l)).unwrap();
        assert!(lines[1].contains("with the f16 weights"), "{lines:?}");
        let half = Model::load(&folder.join(F16_FILE)).unwrap();
        assert_eq!(manifest.model_f16.as_deref(), Some(F16_FILE));
        assert_eq!(manifest.model_f16_id.as_deref(), Some(half.id()));
        assert_eq!(
            manifest.model_f16_bytes,
            Some(std::fs::metadata(folder.join(F16_FILE)).unwrap().len() as usize)
        );
        assert_eq!(half.dtype(), WeightDtype::F16);
        assert_eq!(
            half.spec().rounded_from.as_deref(),
            Some(manifest.model_id.as_str())
        );
        assert!(manifest.model_f16_bytes.unwrap() < manifest.model_bytes / 2 + 1024);
        file.check_model(&half, "published").unwrap();
        let (wide, narrow) = (
            manifest.solvers[0].test_psnr,
            manifest.solvers[0].test_psnr_f16.unwrap(),
        );
        assert!(
            narrow.is_finite() && (wide - narrow).abs() < 1.0,
            "{wide} vs {narrow}"
        );
        // An f16 model is not rounded again.
        let mut again = publish_args(dir, &folder.join(F16_FILE), &solver, &pairs);
        again.f16 = true;
        again.name = "again".into();
        let message = publish(&again, &mut |_| {}).err().unwrap().to_string();
        assert!(message.contains("stored in f16 already"), "{message}");

        // A recorded PSNR that the runtime does not reproduce.
        let mut tampered = SolverFile::load(&solver).unwrap();
        *tampered.metrics.get_mut(TEST_PSNR).unwrap() += 0.5;
        let bad = dir.join("tampered.json");
        tampered.save(&bad).unwrap();
        let mut args = publish_args(dir, &model, &bad, &pairs);
        args.name = "other".into();
        let message = publish(&args, &mut |_| {}).err().unwrap().to_string();
        assert!(
            message.contains("tampered.json") && message.contains("not publishing"),
            "{message}"
        );
        assert!(!dir.join("www/models/other").exists());

        // A solver distilled for another model.
        let other_model = dir.join("other.safetensors");
        let spec = Model::load(&model).unwrap().spec().clone();
        Model::random(spec, 42).unwrap().save(&other_model).unwrap();
        let mut args = publish_args(dir, &other_model, &solver, &pairs);
        args.name = "other".into();
        let message = publish(&args, &mut |_| {}).err().unwrap().to_string();
        assert!(
            message.contains("pairs.safetensors") || message.contains("bns-4.json"),
            "{message}"
        );
        assert!(!dir.join("www/models/other").exists());
    }
}
