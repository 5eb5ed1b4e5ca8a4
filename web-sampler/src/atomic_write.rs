//! Writing a file so that an interrupted write never leaves a half-written file: the bytes go to
//! a temporary file in the same folder, which is synced and then renamed over the target. Every
//! file the project writes (models, solvers, pairs, checkpoints, pictures, the site) goes
//! through here. Native only: the browser writes no files.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary sibling of `path` used while writing it (`.<name>.tmp-<pid>`), or `None` when
/// the path names no file.
pub fn temporary_path(path: &Path) -> Option<PathBuf> {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name()?);
    name.push(format!(".tmp-{}", std::process::id()));
    Some(path.with_file_name(name))
}

/// Writes `bytes` to `path` atomically; on failure the temporary file is removed and `path` is
/// left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_path(path).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}
