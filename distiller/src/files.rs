//! Writing output files so that an interrupted command never leaves a half-written file (the
//! runtime's [`web_sampler::atomic_write`], with the file named in the error).

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    web_sampler::atomic_write::write_atomically(path, bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
}
