//! The solver file: one JSON document holding an NS table in general form with its
//! name, kind, NFE, guidance, the model it was distilled for, metrics and provenance. Loading
//! always validates; saving writes a temporary file and renames it over the target. Every field,
//! the update it describes, its limits and its metrics: `FORMATS.md` §2.

use super::{NsTable, MAX_STEPS};
use crate::model::Model;
use crate::versioned_json::{self, Problem};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the solver file format that this runtime reads and writes.
pub const SOLVER_FORMAT_VERSION: u32 = 1;

/// The largest solver file read, in bytes: a table of [`MAX_STEPS`] steps holds
/// `(n+1) + n(n+1)` numbers (times, then rows of `a` and `b` of 1..=n entries), and a JSON number
/// with its separator takes at most 32 bytes (an f64 written in full is 24 characters); 1 MiB
/// more for the name, kind, metrics and provenance. A longer text is refused before it is parsed,
/// so a huge file costs neither memory nor time.
pub const MAX_SOLVER_FILE_BYTES: usize =
    ((MAX_STEPS + 1) + MAX_STEPS * (MAX_STEPS + 1)) * 32 + (1 << 20);

/// The solver file (JSON). Field names in JSON are exactly these. Fields not listed here are
/// ignored when reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolverFile {
    /// Always [`SOLVER_FORMAT_VERSION`]; read first, so that a newer file is refused by version.
    pub format_version: u32,
    /// Human-readable name, e.g. `"bns-nfe8-w0"`.
    pub name: String,
    /// `"bns"`, `"euler"`, `"midpoint"`, `"heun"`, `"rk4"`, `"ab2"`, `"ab3"`, `"dpmpp2m"`,
    /// `"bns-time-only"`, …
    pub kind: String,
    /// Network evaluations, equal to the number of steps of the table.
    pub nfe: usize,
    /// Guidance scale `w` the solver is meant for (0 = unguided).
    pub guidance: f64,
    /// `t_0..t_n` (see [`NsTable`]).
    pub times: Vec<f64>,
    /// Coefficients on the states; row i has i+1 entries.
    pub a: Vec<Vec<f64>>,
    /// Coefficients on the velocities; row i has i+1 entries.
    pub b: Vec<Vec<f64>>,
    /// Id (SHA-256 of the model file) of the model the solver was distilled for; `None` for a
    /// classical solver, which fits any model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// E.g. validation PSNR and the baselines' PSNR at the same NFE.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// E.g. init, iterations, pairs, seconds, date.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provenance: BTreeMap<String, serde_json::Value>,
}

impl SolverFile {
    /// A solver file for `table` with `nfe` = its number of steps, no model id, no metrics and no
    /// provenance.
    pub fn new(
        name: impl Into<String>,
        kind: impl Into<String>,
        guidance: f64,
        table: NsTable,
    ) -> SolverFile {
        SolverFile {
            format_version: SOLVER_FORMAT_VERSION,
            name: name.into(),
            kind: kind.into(),
            nfe: table.steps(),
            guidance,
            times: table.times,
            a: table.a,
            b: table.b,
            model_id: None,
            metrics: BTreeMap::new(),
            provenance: BTreeMap::new(),
        }
    }

    /// Parses and validates a solver file. Every error has `origin` (a file name) as its origin
    /// and a problem naming the field: invalid JSON (serde's message with line and column), a
    /// missing or unknown `format_version`, a missing field, `nfe` that differs from the number
    /// of steps, wrong coefficient lengths, non-finite numbers, times outside [0, 1] or
    /// decreasing, guidance not finite or negative.
    pub fn from_json(text: &str, origin: &str) -> Result<SolverFile> {
        check_size(text.len(), origin)?;
        // The version is checked before the fields, so that a file of another version is refused
        // for its version rather than for a field it happens to lack.
        let reads = format!("this runtime reads version {SOLVER_FORMAT_VERSION}");
        let file: SolverFile =
            versioned_json::read(text, SOLVER_FORMAT_VERSION, None).map_err(|p| {
                let problem = match p {
                    Problem::InvalidJson(e) => format!("invalid JSON: {e}"),
                    Problem::NotAnObject => {
                        "a solver file must be a JSON object, with fields format_version, name, \
                         kind, nfe, guidance, times, a, b"
                            .into()
                    }
                    Problem::NoVersion => format!("missing field `format_version` ({reads})"),
                    Problem::VersionNotWhole(v) => {
                        format!("format_version must be a whole number, got {v} ({reads})")
                    }
                    Problem::UnknownVersion(v) => format!("unknown format version {v} ({reads})"),
                    Problem::InvalidFields(e) => format!("invalid solver file: {e}"),
                };
                Error::new(origin, problem)
            })?;
        file.validate(origin)?;
        Ok(file)
    }

    /// Checks everything [`from_json`](Self::from_json) checks after parsing: the version, a
    /// non-empty name and kind, `nfe` = number of steps, the table ([`NsTable::validate`]), a
    /// finite non-negative guidance, a non-empty model id if present, finite metrics.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let err = |problem: String| Err(Error::new(origin, problem));
        if self.format_version != SOLVER_FORMAT_VERSION {
            return err(format!(
                "unknown format version {} (this runtime reads version {SOLVER_FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.name.trim().is_empty() {
            return err("name is empty".into());
        }
        if self.kind.trim().is_empty() {
            return err("kind is empty".into());
        }
        if self.nfe != self.a.len() {
            return err(format!(
                "nfe = {} but the table has {} steps (rows of a); they must be equal",
                self.nfe,
                self.a.len()
            ));
        }
        if !self.guidance.is_finite() {
            return err(format!("guidance is not finite ({})", self.guidance));
        }
        if self.guidance < 0.0 {
            return err(format!(
                "guidance = {} is negative (it must be ≥ 0; 0 is unguided)",
                self.guidance
            ));
        }
        if self
            .model_id
            .as_ref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return err("model_id is empty (leave it out for a solver that fits any model)".into());
        }
        if let Some((key, v)) = self.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return err(format!("metrics[{key:?}] is not finite ({v})"));
        }
        self.table().validate().or_else(err)
    }

    /// The file as pretty-printed JSON. Numbers are written in the shortest form that reads back
    /// to the same `f64`. JSON has no NaN or infinity: serde_json writes a non-finite number as
    /// `null`, which [`from_json`](Self::from_json) then refuses, so validate before writing
    /// ([`save`](Self::save) does).
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings, numbers and string-keyed maps cannot fail.
        serde_json::to_string_pretty(self).expect("a SolverFile always serializes to JSON")
    }

    /// The NS table (times, a, b) of this file.
    pub fn table(&self) -> NsTable {
        NsTable {
            times: self.times.clone(),
            a: self.a.clone(),
            b: self.b.clone(),
        }
    }

    /// Refuses a solver distilled for another model: the error names `origin` and both ids.
    /// A solver without `model_id` (a classical one) fits any model, and a distilled one fits
    /// its model and that model rounded to `f16` ([`Model::answers_to`]).
    pub fn check_model(&self, model: &Model, origin: &str) -> Result<()> {
        self.check_model_id(|id| model.answers_to(id), model.id(), origin)
    }

    /// Whether the solver fits `model`, as [`check_model`](Self::check_model) decides.
    pub fn fits(&self, model: &Model) -> bool {
        self.model_id
            .as_deref()
            .is_none_or(|id| model.answers_to(id))
    }

    /// [`check_model`](Self::check_model) for a model that `fits` an id, shown as `shown`.
    fn check_model_id(&self, fits: impl Fn(&str) -> bool, shown: &str, origin: &str) -> Result<()> {
        match &self.model_id {
            Some(own) if !fits(own) => Err(Error::new(
                origin,
                format!(
                    "this solver was distilled for model {own}, but the loaded model is {shown}; \
                     use a solver distilled for this model or a classical one"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Reads and validates a solver file; the origin of every error is the path as displayed.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path) -> Result<SolverFile> {
        use std::io::Read;
        let origin = path.display().to_string();
        let cannot =
            |e: std::io::Error| Error::new(&origin, format!("cannot read the solver file: {e}"));
        let file = std::fs::File::open(path).map_err(cannot)?;
        // By the size on disk first, then by what is read (the file may grow meanwhile).
        let length = file.metadata().map_err(cannot)?.len();
        check_size(usize::try_from(length).unwrap_or(usize::MAX), &origin)?;
        let mut text = String::new();
        file.take(MAX_SOLVER_FILE_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .map_err(cannot)?;
        SolverFile::from_json(&text, &origin)
    }

    /// Validates, then writes the file atomically: to a temporary file in the same directory,
    /// which is then renamed over `path`. On failure the temporary file is removed and `path` is
    /// left as it was.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let origin = path.display().to_string();
        self.validate(&origin)?;
        if path.file_name().is_none() {
            return Err(Error::new(origin, "not a file path (it has no file name)"));
        }
        let text = self.to_json() + "\n";
        crate::atomic_write::write_atomically(path, text.as_bytes())
            .map_err(|e| Error::new(origin, format!("cannot write the solver file: {e}")))
    }
}

/// Refuses a solver file longer than [`MAX_SOLVER_FILE_BYTES`].
fn check_size(bytes: usize, origin: &str) -> Result<()> {
    if bytes > MAX_SOLVER_FILE_BYTES {
        return Err(Error::new(
            origin,
            format!(
                "the solver file is {bytes} bytes; a solver of at most {MAX_STEPS} steps takes at \
                 most {MAX_SOLVER_FILE_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::solver::Method;

    const ORIGIN: &str = "solvers/test.json";

    fn sample_file() -> SolverFile {
        let mut f = SolverFile::new(
            "bns-nfe4",
            "bns",
            1.5,
            Method::Midpoint.build(4, Grid::Edm).unwrap(),
        );
        f.model_id = Some("ab12cd".into());
        f.metrics.insert("psnr_val".into(), 31.25);
        f.metrics.insert("psnr_euler".into(), 20.0 / 3.0);
        f.provenance.insert("init".into(), "midpoint-edm".into());
        f.provenance.insert("iterations".into(), 2000.into());
        f
    }

    /// `text` with the first occurrence of `from` replaced by `to` (which must exist).
    fn edit(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{from:?} not in {text}");
        text.replacen(from, to, 1)
    }

    fn assert_refused(text: &str, expected: &[&str]) {
        let err = SolverFile::from_json(text, ORIGIN).unwrap_err();
        assert_eq!(err.origin, ORIGIN);
        let shown = err.to_string();
        assert!(shown.starts_with(ORIGIN), "{shown}");
        for e in expected {
            assert!(shown.contains(e), "{shown:?} should contain {e:?}");
        }
    }

    #[test]
    fn new_sets_nfe_and_version() {
        let f = SolverFile::new(
            "e",
            "euler",
            0.0,
            Method::Euler.build(6, Grid::Uniform).unwrap(),
        );
        assert_eq!(f.nfe, 6);
        assert_eq!(f.format_version, SOLVER_FORMAT_VERSION);
        assert_eq!(f.table(), Method::Euler.build(6, Grid::Uniform).unwrap());
        f.validate("x").unwrap();
        // Optional fields are left out of the JSON when empty.
        let json = f.to_json();
        assert!(!json.contains("model_id") && !json.contains("metrics"));
        assert!(!json.contains("provenance"));
    }

    /// Whether two numbers are equal or neighbouring `f64`s.
    fn within_one_ulp(a: f64, b: f64) -> bool {
        a == b || (a.signum() == b.signum() && a.to_bits().abs_diff(b.to_bits()) <= 1)
    }

    /// Equal, except that the numbers of `times`, `a`, `b` and `metrics` may differ by one ulp:
    /// serde_json writes the shortest exact form, but without its `float_roundtrip` feature it
    /// may read some 17-digit numbers back one ulp off.
    fn assert_same(back: &SolverFile, f: &SolverFile) {
        let mut g = back.clone();
        let close = |x: &[f64], y: &[f64]| {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| within_one_ulp(*a, *b))
        };
        assert!(
            close(&back.times, &f.times),
            "{:?} vs {:?}",
            back.times,
            f.times
        );
        for (rows_back, rows) in [(&back.a, &f.a), (&back.b, &f.b)] {
            assert_eq!(rows_back.len(), rows.len());
            for (x, y) in rows_back.iter().zip(rows) {
                assert!(close(x, y), "{x:?} vs {y:?}");
            }
        }
        let (mb, mf): (Vec<f64>, Vec<f64>) = (
            back.metrics.values().copied().collect(),
            f.metrics.values().copied().collect(),
        );
        assert!(close(&mb, &mf));
        g.times = f.times.clone();
        g.a = f.a.clone();
        g.b = f.b.clone();
        g.metrics = f.metrics.clone();
        assert_eq!(&g, f);
    }

    #[test]
    fn json_round_trip() {
        for method in Method::ALL {
            for grid in Grid::ALL {
                let mut f = sample_file();
                let table = method.build(method.stages() * 3, grid).unwrap();
                f.nfe = table.steps();
                f.times = table.times;
                f.a = table.a;
                f.b = table.b;
                let json = f.to_json();
                assert!(json.contains("\n  \"format_version\": 1,"), "{json}");
                let back = SolverFile::from_json(&json, ORIGIN).unwrap();
                assert_same(&back, &f);
                // Writing what was read and reading it again changes nothing more.
                let again = SolverFile::from_json(&back.to_json(), ORIGIN).unwrap();
                assert_same(&again, &f);
            }
        }
        // Short decimals, as people write them, read back exactly.
        let f = sample_file();
        assert_eq!(SolverFile::from_json(&f.to_json(), ORIGIN).unwrap(), f);
    }

    #[test]
    fn save_and_load_round_trip_atomically() {
        let scratch = crate::scratch::ScratchDir::new("solver-file-test");
        let dir = scratch.path();
        let path = dir.join("s.json");
        let f = sample_file();
        f.save(&path).unwrap();
        assert_same(&SolverFile::load(&path).unwrap(), &f);
        // An invalid file is refused before anything is written; the old file stays.
        let mut bad = f.clone();
        bad.guidance = f64::NAN;
        let err = bad.save(&path).unwrap_err();
        assert!(err.origin.ends_with("s.json") && err.problem.contains("guidance"));
        assert_same(&SolverFile::load(&path).unwrap(), &f);
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("s.json")]);
        // Errors from the file system name the path.
        let missing = dir.join("missing.json");
        let err = SolverFile::load(&missing).unwrap_err();
        assert!(
            err.to_string().contains("missing.json: cannot read"),
            "{err}"
        );
        let err = f.save(&dir.join("no-such-dir").join("x.json")).unwrap_err();
        assert!(err.to_string().contains("x.json: cannot write"), "{err}");
    }

    #[test]
    fn oversized_files_are_refused_before_they_are_parsed() {
        // Not even JSON: refused for its size, so the parser never ran over it.
        let text = "[".repeat(MAX_SOLVER_FILE_BYTES + 1);
        let err = SolverFile::from_json(&text, ORIGIN).unwrap_err();
        assert_eq!(err.origin, ORIGIN);
        assert!(
            err.problem
                .contains(&format!("{} bytes", MAX_SOLVER_FILE_BYTES + 1))
                && err.problem.contains("at most 1000 steps"),
            "{}",
            err.problem
        );
        // On disk: refused by its length, without reading it (a sparse file of 1 GB).
        let dir = crate::scratch::ScratchDir::new("solver-oversized");
        let path = dir.path().join("huge.json");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let err = SolverFile::load(&path).unwrap_err();
        assert!(err.problem.contains("1073741824 bytes"), "{}", err.problem);
        // The largest table fits under the limit.
        let n = MAX_STEPS;
        let big = SolverFile::new(
            "x".repeat(200),
            "bns",
            0.0,
            NsTable {
                times: (0..=n).map(|i| i as f64 / n as f64).collect(),
                a: (0..n)
                    .map(|i| vec![-1.234_567_890_123_456_7e-300; i + 1])
                    .collect(),
                b: (0..n)
                    .map(|i| vec![-1.234_567_890_123_456_7e-300; i + 1])
                    .collect(),
            },
        );
        let json = big.to_json();
        assert!(json.len() <= MAX_SOLVER_FILE_BYTES, "{}", json.len());
        assert_eq!(SolverFile::from_json(&json, ORIGIN).unwrap().nfe, n);
    }

    #[test]
    fn bad_json_is_refused_with_origin_and_position() {
        assert_refused(
            "{ \"format_version\": 1, ",
            &["invalid JSON", "line 1 column"],
        );
        assert_refused("[1, 2]", &["must be a JSON object"]);
        assert_refused("", &["invalid JSON"]);
    }

    #[test]
    fn unknown_or_missing_format_version_is_refused() {
        let json = sample_file().to_json();
        assert_refused(
            &edit(&json, "\"format_version\": 1", "\"format_version\": 7"),
            &["unknown format version 7 (this runtime reads version 1)"],
        );
        assert_refused(
            &edit(&json, "\"format_version\": 1", "\"format_version\": \"1\""),
            &["format_version must be a whole number"],
        );
        assert_refused(
            &edit(&json, "\"format_version\": 1,", ""),
            &["missing field `format_version`"],
        );
        // A version-2 file with other fields is refused for its version, not its fields.
        assert_refused(
            "{\"format_version\": 2, \"steps\": []}",
            &["unknown format version 2"],
        );
    }

    #[test]
    fn missing_field_is_named() {
        let json = sample_file().to_json();
        assert_refused(
            &edit(&json, "\"guidance\": 1.5,", ""),
            &["missing field `guidance`", "line"],
        );
        assert_refused(
            &edit(&json, "\"kind\": \"bns\",", ""),
            &["missing field `kind`"],
        );
    }

    #[test]
    fn nfe_mismatch_is_refused() {
        let json = sample_file().to_json();
        assert_refused(
            &edit(&json, "\"nfe\": 4", "\"nfe\": 5"),
            &["nfe = 5 but the table has 4 steps"],
        );
        assert_refused(
            &edit(&json, "\"nfe\": 4", "\"nfe\": -1"),
            &["invalid solver file"],
        );
    }

    #[test]
    fn table_problems_are_named() {
        let f = sample_file();
        let check = |edit: &dyn Fn(&mut SolverFile), expected: &str| {
            let mut g = f.clone();
            edit(&mut g);
            // Validating in Rust ...
            let err = g.validate(ORIGIN).unwrap_err();
            assert_eq!(err.origin, ORIGIN);
            assert!(
                err.problem.contains(expected),
                "{err} should contain {expected:?}"
            );
            // ... and reading the JSON it writes (non-finite numbers are written as null and
            // then refused by the parser, naming the position instead).
            assert!(SolverFile::from_json(&g.to_json(), ORIGIN).is_err());
        };
        check(
            &|g| g.times[2] = 0.05,
            "times[2] = 0.05 is less than times[1]",
        );
        check(&|g| g.times[3] = 1.25, "times[3] = 1.25 is outside [0, 1]");
        check(&|g| g.times[0] = -0.5, "times[0] = -0.5 is outside [0, 1]");
        check(
            &|g| {
                g.a[2].pop();
            },
            "a[2] has 2 entries, expected 3",
        );
        check(&|g| g.b[1].push(0.0), "b[1] has 3 entries, expected 2");
        check(&|g| g.a[1][0] = f64::NAN, "a[1][0] is not finite (NaN)");
        check(
            &|g| g.b[3][2] = f64::INFINITY,
            "b[3][2] is not finite (inf)",
        );
        check(
            &|g| g.times[1] = f64::NEG_INFINITY,
            "times[1] is not finite",
        );
        check(&|g| g.guidance = f64::INFINITY, "guidance is not finite");
        check(&|g| g.guidance = -1.0, "guidance = -1 is negative");
        check(&|g| g.name = String::new(), "name is empty");
        check(&|g| g.kind = " ".into(), "kind is empty");
        check(&|g| g.model_id = Some(String::new()), "model_id is empty");
        check(
            &|g| {
                g.metrics.insert("psnr".into(), f64::NAN);
            },
            "metrics[\"psnr\"] is not finite",
        );
        // The same through JSON text.
        let json = f.to_json();
        let mut g = f.clone();
        g.times[2] = 0.05;
        assert_refused(&g.to_json(), &["times[2] = 0.05 is less than times[1]"]);
        assert_refused(
            &edit(&json, "\"guidance\": 1.5", "\"guidance\": -2"),
            &["guidance = -2"],
        );
    }

    #[test]
    fn overflowing_numbers_in_text_are_refused() {
        let json = sample_file().to_json();
        assert_refused(
            &edit(&json, "\"guidance\": 1.5", "\"guidance\": 1e999"),
            &["invalid JSON", "number out of range", "line"],
        );
        let mut f = sample_file();
        f.a[1][0] = 0.123;
        assert_refused(
            &edit(&f.to_json(), "0.123", "-1e999"),
            &["invalid JSON", "number out of range"],
        );
        assert_refused(
            &edit(&json, "\"guidance\": 1.5", "\"guidance\": NaN"),
            &["invalid JSON"],
        );
    }

    #[test]
    fn check_model_refuses_another_model_and_names_both_ids() {
        let f = sample_file();
        let check =
            |f: &SolverFile, id: &'static str| f.check_model_id(|own| own == id, id, ORIGIN);
        assert!(check(&f, "ab12cd").is_ok());
        let err = check(&f, "ffee99").unwrap_err();
        assert_eq!(err.origin, ORIGIN);
        let shown = err.to_string();
        assert!(
            shown.contains("ab12cd") && shown.contains("ffee99"),
            "{shown}"
        );
        let mut classical = f.clone();
        classical.model_id = None;
        assert!(check(&classical, "ffee99").is_ok());
    }
}
