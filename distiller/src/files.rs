//! Writing output files so that an interrupted command never leaves a half-written file (the
//! runtime's [`web_sampler::atomic_write`], with the file named in the error).

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    web_sampler::atomic_write::write_atomically(path, bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Writes named `f32` tensors `(name, shape, values)` and a metadata document `(key, json)` as
/// one safetensors file, atomically (checkpoints of training and distillation).
pub fn write_f32_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: (&str, &str),
) -> Result<()> {
    let tensors: Vec<web_sampler::tensor_file::TensorBytes> = tensors
        .iter()
        .map(|(name, shape, values)| {
            web_sampler::tensor_file::TensorBytes::f32s(name, shape.clone(), values)
        })
        .collect();
    let bytes = web_sampler::tensor_file::write(&tensors, metadata)
        .map_err(|problem| anyhow::anyhow!("{}: cannot encode: {problem}", path.display()))?;
    write_atomically(path, &bytes)
}
