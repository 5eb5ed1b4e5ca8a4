//! Ground truth past one machine: `bns truth --shard K/N` solves the K-th of N parts of the pairs,
//! and `bns pairs merge` joins the parts into the file one run would have made.
//!
//! Pair `i`'s noise depends only on the seed and `i`, and a run solves its pairs in batches of
//! `--batch` that start at multiples of it. A shard is a run of whole batches: with `B` batches in
//! all, shard `K` of `N` solves batches `⌊(K−1)·B/N⌋ .. ⌊K·B/N⌋`. Its batches are the very batches
//! of the single run, so the merged file equals the single run's byte for byte except the
//! wall-clock `seconds` (the sum of the shards').
//!
//! A shard file is a pairs file whose metadata has a `shard` object ([`ShardMeta`]): the run's
//! `train`, `validation` and `test` (of the whole run) and its tensors hold only rows `start..end`.
//! [`Pairs::load`] refuses such a file (its splits are the whole run's), so nothing but
//! [`merge`] reads it. The `shard` object's keys: `FORMATS.md` §3.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use crate::pairs::{Pairs, PairsMeta};

/// `--shard K/N`: part `K` of `N` (1 ≤ K ≤ N), as a Slurm array index or a Kubernetes
/// completion index + 1 gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// `K`, from 1.
    pub index: usize,
    /// `N`.
    pub of: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Shard, String> {
        let usage = || format!("expected K/N with 1 ≤ K ≤ N (e.g. 2/8), got {text:?}");
        let (k, n) = text.split_once('/').ok_or_else(usage)?;
        let (index, of) = match (k.trim().parse::<usize>(), n.trim().parse::<usize>()) {
            (Ok(k), Ok(n)) => (k, n),
            _ => return Err(usage()),
        };
        if index == 0 || index > of {
            return Err(usage());
        }
        Ok(Shard { index, of })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.of)
    }
}

impl Shard {
    /// The pairs of this shard among `count` solved in batches of `batch`; `None` if there are
    /// fewer batches than shards (some shard would be empty).
    pub fn rows(&self, count: usize, batch: usize) -> Option<Range<usize>> {
        let batches = count.div_ceil(batch.max(1));
        if self.of > batches {
            return None;
        }
        // (K − 1)·B and K·B fit in u128 whatever the sizes.
        let edge = |k: usize| ((k as u128 * batches as u128) / self.of as u128) as usize;
        let start = edge(self.index - 1) * batch;
        let end = (edge(self.index) * batch).min(count);
        Some(start..end)
    }
}

/// The `shard` object of a shard file's metadata: which part of which run it holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardMeta {
    /// `K` of `--shard K/N`.
    pub index: usize,
    /// `N`.
    pub of: usize,
    /// First pair held (its index in the whole run).
    pub start: usize,
    /// One past the last pair held.
    pub end: usize,
    /// The run's `--batch`.
    pub batch: usize,
    /// The run's `--class` (absent: the default cycle through the classes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<u32>,
}

impl ShardMeta {
    /// Checks the range against the run's `count` pairs; returns the rows held.
    pub fn validate(&self, count: usize) -> std::result::Result<usize, String> {
        let shard = Shard {
            index: self.index,
            of: self.of,
        };
        if self.index == 0 || self.index > self.of || self.batch == 0 {
            return Err(format!(
                "shard {}/{} of batch {} is not a shard",
                self.index, self.of, self.batch
            ));
        }
        match shard.rows(count, self.batch) {
            Some(rows) if rows == (self.start..self.end) => Ok(rows.len()),
            _ => Err(format!(
                "shard {shard} holds pairs {}..{}, which is not shard {shard} of {count} pairs in \
                 batches of {}",
                self.start, self.end, self.batch
            )),
        }
    }
}

/// Joins the shards of one run (in any order) into its pairs. Refuses shards of different
/// runs (model, data shape, guidance, tolerances, seed, splits, batch, class or shard count),
/// a shard given twice and a missing shard, each error naming the files.
pub fn merge(shards: &[(PathBuf, Pairs)]) -> Result<Pairs> {
    let Some((first_path, first)) = shards.first() else {
        bail!("no shards to merge");
    };
    let part = |path: &Path, pairs: &Pairs| -> Result<ShardMeta> {
        pairs.meta.shard.clone().ok_or_else(|| {
            anyhow!(
                "{}: holds a whole ground truth, not a shard; only `bns truth --shard K/N` files \
                 are merged",
                path.display()
            )
        })
    };
    let reference = part(first_path, first)?;
    let run =
        |meta: &PairsMeta, shard: &ShardMeta| {
            // Everything that must agree, as text for the message.
            format!(
            "model {}, data shape {:?}, guidance {}, rtol {:e}, atol {:e}, seed {}, {} training + \
             {} validation + {} test pairs, batch {}, class {}, {} shards",
            meta.model_id,
            meta.data_shape,
            meta.guidance,
            meta.rtol,
            meta.atol,
            meta.seed,
            meta.train,
            meta.validation,
            meta.test,
            shard.batch,
            shard.class.map_or_else(|| "(cycle)".into(), |c| c.to_string()),
            shard.of
        )
        };
    let expected = run(&first.meta, &reference);
    let mut by_index: Vec<Option<&(PathBuf, Pairs)>> = vec![None; reference.of];
    for entry in shards {
        let (path, pairs) = entry;
        let shard = part(path, pairs)?;
        let this = run(&pairs.meta, &shard);
        if this != expected {
            bail!(
                "{} and {} are shards of different runs:\n  {}\n  {}",
                first_path.display(),
                path.display(),
                expected,
                this
            );
        }
        let slot = &mut by_index[shard.index - 1];
        if let Some((other, _)) = slot {
            bail!(
                "shard {}/{} is given twice: {} and {}",
                shard.index,
                shard.of,
                other.display(),
                path.display()
            );
        }
        *slot = Some(entry);
    }
    let missing: Vec<String> = (1..=reference.of)
        .filter(|k| by_index[k - 1].is_none())
        .map(|k| format!("{k}/{}", reference.of))
        .collect();
    if !missing.is_empty() {
        bail!(
            "cannot merge: shard{} {} of this run {} missing (given: {})",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            shards
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let count = first.meta.train + first.meta.validation + first.meta.test;
    let mut merged = Pairs {
        noise: Vec::new(),
        truth: Vec::new(),
        labels: Vec::new(),
        meta: PairsMeta {
            shard: None,
            mean_nfe: 0.0,
            seconds: 0.0,
            ..first.meta.clone()
        },
    };
    let mut nfe_rows = 0u64;
    for (_, pairs) in by_index.into_iter().flatten() {
        // Each shard's rows were checked against its range when it was loaded; the ranges of
        // shards 1..N of one run tile 0..count.
        merged.noise.extend_from_slice(&pairs.noise);
        merged.truth.extend_from_slice(&pairs.truth);
        merged.labels.extend_from_slice(&pairs.labels);
        // The shard's mean NFE is its Σ NFE·rows / rows: the sum is an integer, recovered exactly.
        let rows = pairs.len() as f64;
        nfe_rows += (pairs.meta.mean_nfe * rows).round() as u64;
        merged.meta.seconds += pairs.meta.seconds;
    }
    merged.meta.mean_nfe = nfe_rows as f64 / count.max(1) as f64;
    merged
        .validate()
        .map_err(|problem| anyhow!("the merged pairs are inconsistent: {problem}"))?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_whole_batches_that_tile_the_run() {
        for (count, batch, of) in [
            (640, 64, 3),
            (10, 4, 3),
            (7, 1, 7),
            (100, 64, 2),
            (65, 64, 2),
        ] {
            let mut next = 0;
            for index in 1..=of {
                let rows = Shard { index, of }.rows(count, batch).unwrap();
                assert_eq!(rows.start, next, "{count} {batch} {index}/{of}");
                assert_eq!(rows.start % batch, 0);
                assert!(!rows.is_empty());
                next = rows.end;
            }
            assert_eq!(next, count);
        }
        // More shards than batches: some would be empty.
        assert_eq!(Shard { index: 1, of: 3 }.rows(10, 8), None);
    }

    #[test]
    fn shard_flags_parse_or_say_what_is_expected() {
        assert_eq!("2/8".parse(), Ok(Shard { index: 2, of: 8 }));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "-1/3", ""] {
            let message = bad.parse::<Shard>().unwrap_err();
            assert!(message.contains("expected K/N"), "{bad}: {message}");
        }
    }
}
