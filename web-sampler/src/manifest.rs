//! The manifest of a published model: `www/models/<name>/manifest.json`, which `bns publish`
//! writes and the page and the `<bns-sampler>` widget read (`www/lib/weights.js`). It names the
//! model file with its id and size (and, when published with `--f16`, the same model stored in
//! half precision, which the page prefers), and the published solver files with what the page
//! shows about them. Its fields, and `index.json` beside the models: `FORMATS.md` §4.

use serde::{Deserialize, Serialize};

use crate::versioned_json::{self, Problem};
use crate::{Error, Result};

/// Version of the manifest format this runtime reads and writes.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;

/// `www/models/<name>/manifest.json`. Field names in JSON are exactly these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT_VERSION`].
    pub format_version: u32,
    /// The model's folder name on the site ([`check_name`]).
    pub name: String,
    /// The title the page shows.
    pub title: String,
    /// The model file, relative to the manifest (`model.safetensors`).
    pub model: String,
    /// Id (SHA-256) of the model file.
    pub model_id: String,
    /// Size of the model file in bytes.
    pub model_bytes: usize,
    /// The model rounded to `f16` (FORMATS.md §1.8), relative to the manifest
    /// (`model.f16.safetensors`), if published: the page loads it instead of `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_f16: Option<String>,
    /// Id of the `model_f16` file (its spec's `rounded_from` is `model_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_f16_id: Option<String>,
    /// Size of the `model_f16` file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_f16_bytes: Option<usize>,
    /// The published solvers, by guidance, then NFE, then kind.
    pub solvers: Vec<ManifestSolver>,
}

/// One published solver of a [`Manifest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestSolver {
    /// The solver file, relative to the manifest (`<name>.json`).
    pub file: String,
    /// `<kind>-<nfe>-w<guidance>`, unique in the manifest.
    pub name: String,
    pub kind: String,
    pub nfe: usize,
    pub guidance: f64,
    /// The test PSNR (dB) the runtime measured when publishing: mean over the test split of the
    /// ground-truth pairs, which took no part in distilling the solver. (Version 1 had
    /// `validation_psnr` here.)
    pub test_psnr: f64,
    /// The same, measured with the `model_f16` weights; present exactly when the manifest has
    /// `model_f16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_psnr_f16: Option<f64>,
}

/// Refuses a model name that is not a plain folder name: letters, digits, `-` and `_`.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "name {name:?}: use letters, digits, '-' and '_' only"
        ));
    }
    Ok(())
}

/// Whether `file` names a file beside the manifest (no folder, not empty, not hidden).
fn is_plain_file_name(file: &str) -> bool {
    !file.is_empty() && !file.starts_with('.') && !file.contains(['/', '\\'])
}

impl Manifest {
    /// Parses and validates a manifest; every error has `origin` as its origin and names the
    /// field. The version is checked before the other fields.
    pub fn from_json(text: &str, origin: &str) -> Result<Manifest> {
        let version = MANIFEST_FORMAT_VERSION;
        let manifest: Manifest = versioned_json::read(text, version, None).map_err(|p| {
            let problem = match p {
                Problem::InvalidJson(e) => format!("invalid JSON: {e}"),
                Problem::NotAnObject => "a manifest must be a JSON object".into(),
                Problem::NoVersion => {
                    format!("missing field `format_version` (this runtime reads version {version})")
                }
                Problem::VersionNotWhole(v) => format!(
                    "format_version must be a whole number, got {v} (this runtime reads version \
                     {version})"
                ),
                Problem::UnknownVersion(v) => format!(
                    "unknown manifest format version {v} (this runtime reads version {version})"
                ),
                Problem::InvalidFields(e) => format!("invalid manifest: {e}"),
            };
            Error::new(origin, problem)
        })?;
        manifest.validate(origin)?;
        Ok(manifest)
    }

    /// The manifest as pretty-printed JSON (what `manifest.json` holds, without the final
    /// newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Manifest always serializes to JSON")
    }

    /// Checks the version, the name, the file names (plain names beside the manifest), a
    /// non-empty model id, and each solver: a unique name, at least one NFE, a finite
    /// non-negative guidance and a finite PSNR.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let err = |problem: String| Err(Error::new(origin, problem));
        if self.format_version != MANIFEST_FORMAT_VERSION {
            return err(format!(
                "unknown manifest format version {} (this runtime reads version \
                 {MANIFEST_FORMAT_VERSION})",
                self.format_version
            ));
        }
        check_name(&self.name).or_else(err)?;
        if !is_plain_file_name(&self.model) {
            return err(format!(
                "model {:?} is not a file name beside the manifest",
                self.model
            ));
        }
        if self.model_id.trim().is_empty() {
            return err("model_id is empty".into());
        }
        let half = self.model_f16.is_some();
        if half != self.model_f16_id.is_some() || half != self.model_f16_bytes.is_some() {
            return err(
                "model_f16, model_f16_id and model_f16_bytes come together (all three or none)"
                    .into(),
            );
        }
        if let Some(file) = &self.model_f16 {
            if !is_plain_file_name(file) || *file == self.model {
                return err(format!(
                    "model_f16 {file:?} is not a file name beside the manifest, other than model"
                ));
            }
        }
        if self
            .model_f16_id
            .as_ref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return err("model_f16_id is empty".into());
        }
        for (i, solver) in self.solvers.iter().enumerate() {
            let at = format!("solvers[{i}]");
            if !is_plain_file_name(&solver.file) {
                return err(format!(
                    "{at}.file {:?} is not a file name beside the manifest",
                    solver.file
                ));
            }
            if self.solvers[..i].iter().any(|s| s.name == solver.name) {
                return err(format!("{at}.name {:?} appears twice", solver.name));
            }
            if solver.nfe == 0 {
                return err(format!("{at}.nfe is 0"));
            }
            if !(solver.guidance.is_finite() && solver.guidance >= 0.0) {
                return err(format!(
                    "{at}.guidance must be finite and ≥ 0, got {}",
                    solver.guidance
                ));
            }
            if !solver.test_psnr.is_finite() {
                return err(format!(
                    "{at}.test_psnr is not finite ({})",
                    solver.test_psnr
                ));
            }
            match solver.test_psnr_f16 {
                Some(psnr) if !psnr.is_finite() => {
                    return err(format!("{at}.test_psnr_f16 is not finite ({psnr})"))
                }
                Some(_) if !half => {
                    return err(format!(
                        "{at}.test_psnr_f16 is given but the manifest has no model_f16"
                    ))
                }
                None if half => {
                    return err(format!(
                        "{at}.test_psnr_f16 is missing (the manifest has model_f16)"
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "www/models/tiny/manifest.json";

    fn sample() -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            name: "tiny".into(),
            title: "Tiny checkerboard".into(),
            model: "model.safetensors".into(),
            model_id: "ab".repeat(32),
            model_bytes: 1234,
            model_f16: None,
            model_f16_id: None,
            model_f16_bytes: None,
            solvers: vec![ManifestSolver {
                file: "bns-8-w0.json".into(),
                name: "bns-8-w0".into(),
                kind: "bns".into(),
                nfe: 8,
                guidance: 0.0,
                test_psnr: 31.5,
                test_psnr_f16: None,
            }],
        }
    }

    fn problem(text: &str) -> String {
        let e = Manifest::from_json(text, ORIGIN).unwrap_err();
        assert_eq!(e.origin, ORIGIN);
        e.problem
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let json = m.to_json();
        assert!(json.starts_with("{\n  \"format_version\": 2,\n  \"name\": \"tiny\""));
        assert_eq!(Manifest::from_json(&json, ORIGIN).unwrap(), m);
        assert!(!json.contains("f16"), "{json}");
        let half = with_f16(sample());
        let json = half.to_json();
        assert!(
            json.contains("\"model_f16\": \"model.f16.safetensors\""),
            "{json}"
        );
        assert_eq!(Manifest::from_json(&json, ORIGIN).unwrap(), half);
    }

    /// `m` with a half-precision model file.
    fn with_f16(mut m: Manifest) -> Manifest {
        m.model_f16 = Some("model.f16.safetensors".into());
        m.model_f16_id = Some("cd".repeat(32));
        m.model_f16_bytes = Some(640);
        for solver in &mut m.solvers {
            solver.test_psnr_f16 = Some(solver.test_psnr - 0.01);
        }
        m
    }

    #[test]
    fn the_version_comes_first() {
        assert!(problem(r#"{"format_version": 3, "files": []}"#)
            .contains("unknown manifest format version 3"));
        // Version 1 (with `validation_psnr`) is refused by its version, not by a field.
        assert!(
            problem(r#"{"format_version": 1, "solvers": [{"validation_psnr": 1}]}"#)
                .contains("unknown manifest format version 1")
        );
        assert!(problem(r#"{"name": "tiny"}"#).contains("missing field `format_version`"));
        assert!(problem("[]").contains("JSON object"));
        assert!(problem("{").contains("invalid JSON"));
        let json = sample()
            .to_json()
            .replace("  \"title\": \"Tiny checkerboard\",\n", "");
        assert!(problem(&json).contains("missing field `title`"));
    }

    #[test]
    fn bad_fields_are_named() {
        let check = |edit: &dyn Fn(&mut Manifest), expected: &str| {
            let mut m = sample();
            edit(&mut m);
            let shown = m.validate(ORIGIN).unwrap_err().problem;
            assert!(
                shown.contains(expected),
                "{shown} should contain {expected:?}"
            );
        };
        check(&|m| m.name = "a/b".into(), "use letters, digits");
        check(&|m| m.model = "../model.safetensors".into(), "model");
        check(&|m| m.model_id = String::new(), "model_id is empty");
        check(
            &|m| m.solvers[0].file = "x/y.json".into(),
            "solvers[0].file",
        );
        check(&|m| m.solvers[0].nfe = 0, "solvers[0].nfe");
        check(&|m| m.solvers[0].guidance = -1.0, "solvers[0].guidance");
        check(
            &|m| m.solvers[0].test_psnr = f64::NAN,
            "solvers[0].test_psnr",
        );
        check(
            &|m| {
                let again = m.solvers[0].clone();
                m.solvers.push(again);
            },
            "solvers[1].name \"bns-8-w0\" appears twice",
        );
        check(&|m| m.solvers[0].test_psnr_f16 = Some(30.0), "no model_f16");
        assert!(with_f16(sample()).validate(ORIGIN).is_ok());
        let check_f16 = |edit: &dyn Fn(&mut Manifest), expected: &str| {
            check(
                &|m| {
                    *m = with_f16(m.clone());
                    edit(m);
                },
                expected,
            )
        };
        check_f16(&|m| m.model_f16_bytes = None, "all three or none");
        check_f16(
            &|m| m.model_f16 = Some("model.safetensors".into()),
            "other than model",
        );
        check_f16(
            &|m| m.model_f16_id = Some(" ".into()),
            "model_f16_id is empty",
        );
        check_f16(
            &|m| m.solvers[0].test_psnr_f16 = None,
            "solvers[0].test_psnr_f16 is missing",
        );
        check_f16(
            &|m| m.solvers[0].test_psnr_f16 = Some(f64::INFINITY),
            "solvers[0].test_psnr_f16 is not finite",
        );
    }
}
