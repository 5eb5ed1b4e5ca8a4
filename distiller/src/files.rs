//! Writing output files so that an interrupted command never leaves a half-written file (the
//! runtime's [`web_sampler::atomic_write`], with the file named in the error), and naming an
//! input file by its contents.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    web_sampler::atomic_write::write_atomically(path, bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// The SHA-256 of the file at `path`, in hex (the hash of a model's id): what a result measured
/// on that file records, so that it is reused only for the same contents.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(web_sampler::model::sha256_hex(&bytes))
}
