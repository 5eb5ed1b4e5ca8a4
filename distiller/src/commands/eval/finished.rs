//! The finished jobs of an evaluation, kept in `<output>/eval.partial.json` while it runs, so
//! that an interrupted `bns eval` (or `bns pipeline`) continues where it stopped: a job whose
//! result is in the file is not run again. On a U-Net a whole evaluation takes hours of CPU.
//!
//! The file names what its results were measured on (the model's id, the SHA-256 of the pairs
//! file and of the classifier, the samples per distance); a file made for other inputs is
//! ignored and replaced. Each job is keyed by its kind, its solver's label and NFE and the
//! SHA-256 of its solver's table, so a re-distilled solver is measured again. Values keep their
//! exact bits (NaN included). The file is removed once `results.md` is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use web_sampler::solver::NsTable;

use crate::files::{file_sha256, write_atomically};
use crate::psnr_cache::table_sha256;

/// The file's name in the output folder.
pub const PARTIAL_FILE: &str = "eval.partial.json";

/// What the file holds.
#[derive(Serialize, Deserialize, Default)]
struct Contents {
    /// The evaluation's inputs (see [`inputs`]).
    inputs: String,
    /// Results by job key, each value's bits (`f64::to_bits`), or the reason there is none.
    jobs: BTreeMap<String, std::result::Result<Vec<u64>, String>>,
}

/// The finished jobs of this evaluation, shared by the worker threads.
pub struct Finished {
    path: PathBuf,
    contents: Mutex<Contents>,
}

/// The description of an evaluation's inputs that a partial file must match.
pub fn inputs(
    model_id: &str,
    pairs: &Path,
    classifier: Option<&Path>,
    fd_samples: usize,
) -> Result<String> {
    let classifier = match classifier {
        Some(path) => file_sha256(path)?,
        None => "none".to_string(),
    };
    Ok(format!(
        "model {model_id}; pairs {}; classifier {classifier}; samples per distance {fd_samples}",
        file_sha256(pairs)?
    ))
}

/// The key of a job: its kind (`psnr`, `distance`), solver label, NFE and table.
pub fn key(kind: &str, label: &str, nfe: usize, table: &NsTable) -> String {
    format!("{kind} {label} {nfe} {}", &table_sha256(table)[..16])
}

impl Finished {
    /// The finished jobs in `output`'s partial file if it was made for `inputs`; else none
    /// (`note` says when an existing file is set aside).
    pub fn open(output: &Path, inputs: String, note: &mut dyn FnMut(String)) -> Finished {
        let path = output.join(PARTIAL_FILE);
        let kept = std::fs::read(&path)
            .ok()
            .map(|bytes| serde_json::from_slice::<Contents>(&bytes));
        let contents = match kept {
            Some(Ok(contents)) if contents.inputs == inputs => {
                if !contents.jobs.is_empty() {
                    note(format!(
                        "continuing from {}: {} jobs already done",
                        path.display(),
                        contents.jobs.len()
                    ));
                }
                contents
            }
            Some(_) => {
                note(format!(
                    "{}: made for other inputs or unreadable, started again",
                    path.display()
                ));
                Contents {
                    inputs,
                    ..Contents::default()
                }
            }
            None => Contents {
                inputs,
                ..Contents::default()
            },
        };
        Finished {
            path,
            contents: Mutex::new(contents),
        }
    }

    /// The values of job `key`, if it finished in an earlier run.
    pub fn get(&self, key: &str) -> Option<std::result::Result<Vec<f64>, String>> {
        let contents = self.contents.lock().ok()?;
        let kept = contents.jobs.get(key)?;
        Some(
            kept.as_ref()
                .map(|bits| bits.iter().map(|&b| f64::from_bits(b)).collect())
                .map_err(Clone::clone),
        )
    }

    /// Records job `key`'s values and rewrites the file (atomically).
    pub fn keep(&self, key: &str, values: std::result::Result<&[f64], &str>) -> Result<()> {
        let mut contents = self
            .contents
            .lock()
            .map_err(|_| anyhow::anyhow!("{}: a job failed while writing", self.path.display()))?;
        contents.jobs.insert(
            key.to_string(),
            values
                .map(|v| v.iter().map(|x| x.to_bits()).collect())
                .map_err(str::to_string),
        );
        let bytes = serde_json::to_vec(&*contents)?;
        write_atomically(&self.path, &bytes)
    }

    /// Removes the file: the evaluation's outputs are written.
    pub fn remove(self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("{}: cannot remove", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}
