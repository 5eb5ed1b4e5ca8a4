//! Test support for the workspace's crates (this one's tests and the distiller's): a fresh
//! folder under the system's temporary directory, removed when dropped. Native only, with the
//! `testing` feature (or in this crate's tests).

use std::path::{Path, PathBuf};

pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `<tmp>/bns-<tag>-<pid>`, emptied if it exists.
    pub fn new(tag: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("bns-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder under the temporary directory");
        ScratchDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
