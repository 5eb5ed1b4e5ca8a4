//! Reading safetensors files as untrusted input: a guard against the header offsets that make the
//! safetensors crate overflow, and readable problem texts for files it refuses. Every
//! safetensors reader of the project (model, pairs, checkpoints, classifier) goes through here.

use safetensors::tensor::Metadata;
use safetensors::{SafeTensorError, SafeTensors};
use serde_json::Value;

/// Bytes of the little-endian header length that starts a safetensors file.
pub const LENGTH_PREFIX: usize = 8;

/// The header (length and metadata) of a safetensors file; the error is the problem alone.
pub fn read_metadata(bytes: &[u8]) -> Result<(usize, Metadata), String> {
    check_offsets_fit(bytes)?;
    SafeTensors::read_metadata(bytes).map_err(|e| describe_safetensors_error(&e, bytes.len()))
}

/// The whole file, its tensors checked against its size; the error is the problem alone.
pub fn open(bytes: &[u8]) -> Result<SafeTensors<'_>, String> {
    check_offsets_fit(bytes)?;
    SafeTensors::deserialize(bytes).map_err(|e| describe_safetensors_error(&e, bytes.len()))
}

/// Guards safetensors' own check `data end + 8 + header length == file length`, which
/// overflows (a panic in builds with overflow checks) for data offsets near `u64::MAX`: any
/// offset past the end of the file is rejected here first. Headers that do not parse are left
/// to safetensors, which reports them.
pub fn check_offsets_fit(bytes: &[u8]) -> std::result::Result<(), String> {
    let Some(prefix) = bytes.get(..LENGTH_PREFIX) else {
        return Ok(());
    };
    let mut length = [0u8; LENGTH_PREFIX];
    length.copy_from_slice(prefix);
    let header = usize::try_from(u64::from_le_bytes(length))
        .ok()
        .and_then(|n| bytes.get(LENGTH_PREFIX..LENGTH_PREFIX.checked_add(n)?));
    let Some(header) = header else {
        return Ok(());
    };
    let Ok(entries) = serde_json::from_slice::<serde_json::Map<String, Value>>(header) else {
        return Ok(());
    };
    let file_len = bytes.len() as u64;
    for (name, info) in &entries {
        let offsets = info.get("data_offsets").and_then(Value::as_array);
        for offset in offsets.into_iter().flatten().filter_map(Value::as_u64) {
            if offset > file_len {
                return Err(format!(
                    "not a valid safetensors file: tensor {name} has data offset {offset}, \
                     beyond the file's {file_len} bytes (truncated or corrupt)"
                ));
            }
        }
    }
    Ok(())
}

/// The problem text for a file that safetensors cannot read.
pub fn describe_safetensors_error(error: &SafeTensorError, file_len: usize) -> String {
    match error {
        SafeTensorError::HeaderTooSmall => format!(
            "not a safetensors file (truncated? {file_len} bytes, less than the 8-byte header \
             length): {error}"
        ),
        SafeTensorError::InvalidHeaderLength | SafeTensorError::HeaderTooLarge => format!(
            "not a safetensors file (truncated or corrupt: the header length does not fit the \
             file's {file_len} bytes): {error}"
        ),
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "truncated or corrupt safetensors file: its {file_len} bytes do not match the tensor \
             data its header declares: {error}"
        ),
        _ => format!("not a valid safetensors file (truncated or corrupt?): {error}"),
    }
}
