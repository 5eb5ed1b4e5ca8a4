//! `--psnr-cache FILE` of `bns distill` and `bns eval`: the PSNR figures (mean and population
//! standard deviation over the test split of a pairs file) measured for solver tables, kept so
//! that the same table is not run on the same pairs twice. On a U-Net on a CPU that is hours:
//! each distillation measures every classical solver at its NFE (to name the best), and the
//! evaluation then wants the same figures for its tables. `bns pipeline` gives both
//! `<out>/psnr-cache.json`.
//!
//! A figure is a pure function of the model, the pairs file, the guidance and the table (the
//! runtime's CPU path gives the same bits whatever the threads or the batch), so an entry is
//! keyed by the model's id, the pairs file's SHA-256, the guidance and the SHA-256 of the
//! table's JSON, and one file serves several models and pairs. Values keep their exact bits.
//! Two processes may share a file: a figure not in memory is looked for in the file as it is
//! then, and each write reads the file again and adds its entries (written atomically), so a
//! race can lose an entry (it is measured again), never corrupt the file.
//! FORMATS.md §5.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use web_sampler::model::{sha256_hex, Model};
use web_sampler::solver::NsTable;

use crate::files::write_atomically;
use crate::metrics::{mean_std, solver_psnr};
use crate::pairs::PairsView;

const FORMAT_VERSION: u32 = 1;

/// What the file holds.
#[derive(Serialize, Deserialize)]
struct Contents {
    format_version: u32,
    /// `[mean, std]` as `f64::to_bits`, by key.
    psnr: BTreeMap<String, [u64; 2]>,
}

/// The cache of one model's figures on the test split of one pairs file at one guidance, kept
/// in a file or (without one) in memory only.
pub struct PsnrCache {
    file: Option<PathBuf>,
    /// What every key of this model, pairs file and guidance starts with.
    prefix: String,
    entries: Mutex<BTreeMap<String, [u64; 2]>>,
}

impl PsnrCache {
    /// No file: the figures measured are kept in memory only, for the life of this handle.
    pub fn none() -> PsnrCache {
        PsnrCache {
            file: None,
            prefix: String::new(),
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    /// The cache in `file` (none yet is an empty one) for `model_id`, the pairs file of SHA-256
    /// `pairs_id` and guidance `w`. A file that is not a PSNR cache is refused, naming it.
    pub fn open(file: &Path, model_id: &str, pairs_id: &str, w: f64) -> Result<PsnrCache> {
        let cache = PsnrCache {
            file: Some(file.to_path_buf()),
            prefix: format!("model {model_id} pairs {pairs_id} w {w} table "),
            entries: Mutex::new(BTreeMap::new()),
        };
        *cache.entries.lock().unwrap() = read(file)?;
        Ok(cache)
    }

    /// The mean and standard deviation of `table`'s PSNR on `test`: kept, or measured (and kept).
    pub fn psnr(
        &self,
        model: &Model,
        table: &NsTable,
        test: &PairsView,
        w: f64,
    ) -> Result<(f64, f64)> {
        let key = self.key(table);
        if let Some(kept) = self.kept(&key)? {
            return Ok(kept);
        }
        let (mean, std) = mean_std(&solver_psnr(model, table, test, w)?);
        self.keep(key, [mean.to_bits(), std.to_bits()])?;
        Ok((mean, std))
    }

    /// The figures kept under `key`: in memory, else in the file as it is now (another process
    /// sharing it may have measured them since it was read).
    fn kept(&self, key: &str) -> Result<Option<(f64, f64)>> {
        let mut entries = self.entries.lock().unwrap();
        if !entries.contains_key(key) {
            if let Some(file) = &self.file {
                for (k, v) in read(file)? {
                    entries.entry(k).or_insert(v);
                }
            }
        }
        Ok(entries
            .get(key)
            .map(|[mean, std]| (f64::from_bits(*mean), f64::from_bits(*std))))
    }

    fn key(&self, table: &NsTable) -> String {
        format!("{}{}", self.prefix, table_sha256(table))
    }

    /// Adds an entry, and writes the file again with what it holds now (another process may
    /// have added entries since it was read) and this cache's entries.
    fn keep(&self, key: String, value: [u64; 2]) -> Result<()> {
        let mut entries = self.entries.lock().unwrap();
        entries.insert(key, value);
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut merged = read(file)?;
        merged.extend(entries.iter().map(|(k, v)| (k.clone(), *v)));
        let contents = Contents {
            format_version: FORMAT_VERSION,
            psnr: merged,
        };
        let json = serde_json::to_vec_pretty(&contents).context("encoding the PSNR cache")?;
        write_atomically(file, &json)
    }
}

/// The SHA-256 of `table`'s JSON, in hex: what names a table in this cache and in `bns eval`'s
/// partial file.
pub fn table_sha256(table: &NsTable) -> String {
    sha256_hex(&serde_json::to_vec(table).unwrap_or_default())
}

/// The entries of the cache `file`; none when it does not exist.
fn read(file: &Path) -> Result<BTreeMap<String, [u64; 2]>> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", file.display())),
    };
    let contents: Contents = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{}: not a PSNR cache (FORMATS.md §5); remove it or name another file",
            file.display()
        )
    })?;
    if contents.format_version != FORMAT_VERSION {
        bail!(
            "{}: a PSNR cache of format version {}, this bns reads version {FORMAT_VERSION}",
            file.display(),
            contents.format_version
        );
    }
    Ok(contents.psnr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::distill::tests::tiny_model_and_pairs;
    use crate::pairs::Pairs;
    use web_sampler::grid::Grid;
    use web_sampler::scratch::ScratchDir;
    use web_sampler::solver::Method;

    #[test]
    fn kept_figures_come_back_bit_for_bit_for_their_model_pairs_and_guidance_only() {
        let scratch = ScratchDir::new("psnr-cache");
        let dir = scratch.path();
        let (model_path, pairs_path) = tiny_model_and_pairs(dir);
        let model = Model::load(&model_path).unwrap();
        let pairs = Pairs::load(&pairs_path).unwrap();
        let test = pairs.test();
        let file = dir.join("psnr-cache.json");
        let euler = Method::Euler.build(4, Grid::Uniform).unwrap();
        let midpoint = Method::Midpoint.build(4, Grid::Uniform).unwrap();
        let measured = mean_std(&solver_psnr(&model, &euler, &test, 0.0).unwrap());

        let first = PsnrCache::open(&file, model.id(), "p1", 0.0).unwrap();
        assert_eq!(first.psnr(&model, &euler, &test, 0.0).unwrap(), measured);
        // Another handle on the same file (another process) adds its own entry; both stay, and
        // the first handle finds it in the file (here changed to 7 and 3 dB, so it was not
        // measured again).
        let second = PsnrCache::open(&file, model.id(), "p1", 0.0).unwrap();
        second.psnr(&model, &midpoint, &test, 0.0).unwrap();
        second
            .keep(second.key(&midpoint), [7.0f64.to_bits(), 3.0f64.to_bits()])
            .unwrap();
        assert_eq!(
            first.psnr(&model, &midpoint, &test, 0.0).unwrap(),
            (7.0, 3.0)
        );
        first
            .keep(first.key(&euler), [1.0f64.to_bits(), 2.0f64.to_bits()])
            .unwrap();
        let reopened = PsnrCache::open(&file, model.id(), "p1", 0.0).unwrap();
        assert_eq!(reopened.entries.lock().unwrap().len(), 2);
        // Kept, not measured: the entry changed above comes back as it is.
        assert_eq!(
            reopened.psnr(&model, &euler, &test, 0.0).unwrap(),
            (1.0, 2.0)
        );
        // Other pairs or another guidance: measured.
        for other in [
            PsnrCache::open(&file, model.id(), "p2", 0.0).unwrap(),
            PsnrCache::open(&file, model.id(), "p1", 1.5).unwrap(),
        ] {
            assert_eq!(other.psnr(&model, &euler, &test, 0.0).unwrap(), measured);
        }
        // No file: measured, nothing written.
        assert_eq!(
            PsnrCache::none().psnr(&model, &euler, &test, 0.0).unwrap(),
            measured
        );

        // A file that is not a cache is refused by name.
        let bad = dir.join("bad.json");
        std::fs::write(&bad, b"{\"format_version\": 1}").unwrap();
        let message = format!(
            "{:#}",
            PsnrCache::open(&bad, model.id(), "p1", 0.0).err().unwrap()
        );
        assert!(
            message.contains("bad.json") && message.contains("not a PSNR cache"),
            "{message}"
        );
    }
}
