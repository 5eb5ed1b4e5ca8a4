//! Reading and writing the model file: one safetensors file whose `__metadata__` holds the
//! [`ModelSpec`] as JSON under [`MODEL_METADATA_KEY`], with every tensor of
//! [`ModelSpec::tensor_shapes`] as little-endian `F32`.
//!
//! Reading treats the bytes as untrusted: every failure is an [`Error`] naming the file and the
//! field or tensor, never a panic. Writing is canonical (the metadata as a single key, the spec
//! as compact JSON, the tensors in `tensor_shapes` order), so the same model always gives the
//! same bytes and so the same id.

use safetensors::tensor::{Dtype, Metadata};
use serde_json::Value;

use super::spec::{ModelSpec, MODEL_FORMAT_VERSION, MODEL_METADATA_KEY};
use crate::error::{Error, Result};
use crate::tensor_file::{self, LENGTH_PREFIX};

/// Named tensor values, in [`ModelSpec::tensor_shapes`] order.
pub(crate) type NamedTensors = Vec<(String, Vec<f32>)>;

/// The spec and the tensors of a model file, validated.
pub(crate) fn parse(bytes: &[u8], origin: &str) -> Result<(ModelSpec, NamedTensors)> {
    let fail = |problem: String| Error::new(origin, problem);
    let (header_len, metadata) = tensor_file::read_metadata(bytes).map_err(fail)?;
    let spec = read_spec(&metadata).map_err(fail)?;
    let data_start = LENGTH_PREFIX.saturating_add(header_len);
    let data = bytes.get(data_start..).unwrap_or_default();

    let expected = spec.tensor_shapes();
    let mut tensors = Vec::with_capacity(expected.len());
    for (name, shape) in expected.iter() {
        let info = metadata
            .info(name)
            .ok_or_else(|| fail(format!("missing tensor {name}")))?;
        if info.dtype != Dtype::F32 {
            return Err(fail(format!(
                "tensor {name} has dtype {}, expected F32",
                info.dtype
            )));
        }
        if info.shape != *shape {
            return Err(fail(format!(
                "tensor {name} has shape {:?}, expected {shape:?}",
                info.shape
            )));
        }
        let (start, end) = info.data_offsets;
        let raw = data
            .get(start..end)
            .ok_or_else(|| fail(format!("tensor {name} lies outside the file")))?;
        let values = decode_f32(raw);
        check_finite(name, &values).map_err(fail)?;
        tensors.push((name.clone(), values));
    }
    let mut extra: Vec<String> = metadata
        .offset_keys()
        .into_iter()
        .filter(|name| !expected.iter().any(|(known, _)| known == name))
        .collect();
    if !extra.is_empty() {
        extra.sort();
        return Err(fail(format!(
            "unexpected tensor{} {} (not part of this {} model)",
            if extra.len() == 1 { "" } else { "s" },
            extra.join(", "),
            spec.architecture
        )));
    }
    Ok((spec, tensors))
}

/// The spec in the metadata, version-checked and validated.
fn read_spec(metadata: &Metadata) -> std::result::Result<ModelSpec, String> {
    let entries = metadata.metadata().as_ref().ok_or_else(|| {
        format!(
            "the file has no __metadata__ (a BNS model file describes its network under the \
             key {MODEL_METADATA_KEY:?})"
        )
    })?;
    let json = entries.get(MODEL_METADATA_KEY).ok_or_else(|| {
        format!("__metadata__ has no {MODEL_METADATA_KEY:?} key (not a BNS model file?)")
    })?;
    let value: Value = serde_json::from_str(json)
        .map_err(|e| format!("metadata {MODEL_METADATA_KEY:?} is not valid JSON: {e}"))?;
    let version = value
        .get("format_version")
        .ok_or_else(|| format!("metadata {MODEL_METADATA_KEY:?} has no format_version"))?;
    match version.as_u64() {
        Some(v) if v == u64::from(MODEL_FORMAT_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "unknown model format version {v} (this runtime reads version \
                 {MODEL_FORMAT_VERSION})"
            ))
        }
        None => {
            return Err(format!(
                "metadata {MODEL_METADATA_KEY:?}: format_version must be a non-negative \
                 integer, got {version}"
            ))
        }
    }
    let spec: ModelSpec = serde_json::from_value(value).map_err(|e| {
        format!("metadata {MODEL_METADATA_KEY:?} is not a valid model description: {e}")
    })?;
    spec.validate()
        .map_err(|problem| format!("invalid model description: {problem}"))?;
    Ok(spec)
}

/// Little-endian `f32` values (the length is a multiple of 4: checked by safetensors).
fn decode_f32(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// An error naming the first non-finite value of a tensor.
pub(crate) fn check_finite(name: &str, values: &[f32]) -> std::result::Result<(), String> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(format!(
            "tensor {name} has a non-finite value ({}) at index {index}",
            values[index]
        )),
    }
}

/// Writes the canonical file of `spec` and its `tensors` (in `tensor_shapes` order, with the
/// shapes of `tensor_shapes`) to `sink`, piece by piece.
pub(crate) fn write(spec: &ModelSpec, tensors: &[(String, &[f32])], sink: &mut dyn FnMut(&[u8])) {
    let spec_json = serde_json::to_string(spec).expect("a ModelSpec always serializes to JSON");
    let mut header = String::from("{\"__metadata__\":{");
    header.push_str(&Value::from(MODEL_METADATA_KEY).to_string());
    header.push(':');
    header.push_str(&Value::from(spec_json).to_string());
    header.push('}');
    let shapes = spec.tensor_shapes();
    let mut offset = 0usize;
    for ((name, values), (_, shape)) in tensors.iter().zip(&shapes) {
        let end = offset + 4 * values.len();
        header.push(',');
        header.push_str(&Value::from(name.as_str()).to_string());
        header.push_str(":{\"dtype\":\"F32\",\"shape\":");
        header.push_str(&Value::from(shape.clone()).to_string());
        header.push_str(&format!(",\"data_offsets\":[{offset},{end}]}}"));
        offset = end;
    }
    header.push('}');
    // Pad with spaces so that the tensor data starts 8-byte aligned (as safetensors writes it).
    while header.len() % LENGTH_PREFIX != 0 {
        header.push(' ');
    }
    sink(&(header.len() as u64).to_le_bytes());
    sink(header.as_bytes());
    let mut buffer = Vec::with_capacity(4 * 4096);
    for (_, values) in tensors {
        for piece in values.chunks(4096) {
            buffer.clear();
            buffer.extend(piece.iter().flat_map(|v| v.to_le_bytes()));
            sink(&buffer);
        }
    }
}
