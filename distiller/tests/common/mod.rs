//! What the integration tests that run the `bns` binary share: running it, and a scratch folder
//! that is removed afterwards.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the `bns` binary of this build with `args`.
pub fn bns(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bns"))
        .args(args)
        .output()
        .expect("bns runs")
}

/// A fresh folder `<temp>/bns-<suite>-<name>-<pid>`, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(suite: &str, name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("bns-{suite}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// `name` in the folder, as text for a command line.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
