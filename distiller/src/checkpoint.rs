//! What the checkpoints of `bns train` and `bns distill` share: the file next to the output
//! (`<output>.ckpt`), its encoding (named `f32` tensors plus a versioned metadata document whose
//! `run` holds the settings), and reading it back: a file that cannot be read or parsed, or that
//! comes from a run with other settings, is refused naming the file. What the tensors are is
//! each command's own.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use web_sampler::tensor_file::{self, TensorBytes, TensorFile};
use web_sampler::versioned_json::{self, MetadataFormat};

use crate::files::write_atomically;

/// The checkpoint of a run writing `output`: `<output>.ckpt`, next to it.
pub fn checkpoint_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".ckpt");
    PathBuf::from(name)
}

/// Minutes since `instant`: a checkpoint is also due once `--checkpoint-minutes` of them have
/// passed since the last one.
pub fn minutes_since(instant: Instant) -> f64 {
    instant.elapsed().as_secs_f64() / 60.0
}

/// Refuses a `--checkpoint-minutes` that is not a number of minutes ≥ 0.
pub fn check_checkpoint_minutes(minutes: f64) -> Result<()> {
    if minutes.is_nan() || minutes < 0.0 {
        bail!(
            "--checkpoint-minutes must be a number of minutes ≥ 0 (0: every step), not {minutes}"
        );
    }
    Ok(())
}

/// Writes `tensors` (`name`, `shape`, values) and `meta` (a document of `format`) to `path`
/// atomically.
pub fn save<M: Serialize>(
    path: &Path,
    format: &MetadataFormat,
    meta: &M,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<()> {
    let tensors: Vec<TensorBytes> = tensors
        .iter()
        .map(|(name, shape, values)| TensorBytes::f32s(name, shape.clone(), values))
        .collect();
    let json = versioned_json::write(format.version, meta)?;
    let bytes = tensor_file::write(&tensors, (format.key, &json)).map_err(|problem| {
        anyhow!(
            "{}: cannot encode the {}: {problem}",
            path.display(),
            format.kind
        )
    })?;
    write_atomically(path, &bytes)
}

/// The bytes of the checkpoint at `path`, to resume from.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "{}: cannot read the checkpoint to resume from (run without --resume to start afresh)",
            path.display()
        )
    })
}

/// The tensors and the metadata of a checkpoint read from `path` (`bytes`), refused unless its
/// metadata is a `format` document whose run (`run_of`) equals `run`.
pub fn parse<'a, M: DeserializeOwned, R: PartialEq + Serialize>(
    path: &Path,
    bytes: &'a [u8],
    format: &MetadataFormat,
    run: &R,
    run_of: impl Fn(&M) -> &R,
) -> Result<(TensorFile<'a>, M)> {
    let origin = path.display();
    let invalid = |problem: String| anyhow!("{origin}: not a valid {} ({problem})", format.kind);
    let file = TensorFile::parse(bytes).map_err(invalid)?;
    let meta: M = file.metadata_document(format).map_err(invalid)?;
    if run_of(&meta) != run {
        bail!(
            "{origin}: the checkpoint is from another run (its settings: {}); resume with the same \
             settings or delete it",
            serde_json::to_string(run_of(&meta))?
        );
    }
    Ok((file, meta))
}
