//! Reading and writing the model file: one safetensors file whose `__metadata__` holds the
//! [`ModelSpec`] as JSON under [`MODEL_METADATA_KEY`], with every tensor of
//! [`ModelSpec::tensor_shapes`] as little-endian `F32`.
//!
//! Reading goes through [`TensorFile`] (the bytes are untrusted) and the versioned-JSON reader:
//! every failure is an [`Error`] naming the file and the field or tensor, never a panic. Writing is canonical (the metadata as a single key, the spec
//! as compact JSON, the tensors in `tensor_shapes` order), so the same model always gives the
//! same bytes and so the same id.

use serde_json::Value;

use super::spec::{ModelSpec, MODEL_FORMAT_VERSION, MODEL_METADATA_KEY};
use crate::error::{Error, Result};
pub(crate) use crate::tensor_file::check_finite;
use crate::tensor_file::{TensorFile, LENGTH_PREFIX};
use crate::versioned_json::MetadataFormat;

/// The model spec as a versioned document in the file's `__metadata__`.
const MODEL_FORMAT: MetadataFormat = MetadataFormat {
    kind: "model",
    key: MODEL_METADATA_KEY,
    version: MODEL_FORMAT_VERSION,
    reader: "this runtime",
    advice: "",
    unversioned: None,
};

/// Named tensor values, in [`ModelSpec::tensor_shapes`] order.
pub(crate) type NamedTensors = Vec<(String, Vec<f32>)>;

/// The spec and the tensors of a model file, validated.
pub(crate) fn parse(bytes: &[u8], origin: &str) -> Result<(ModelSpec, NamedTensors)> {
    let fail = |problem: String| Error::new(origin, problem);
    let file = TensorFile::parse(bytes).map_err(fail)?;
    let spec: ModelSpec = file.metadata_document(&MODEL_FORMAT).map_err(fail)?;
    spec.validate()
        .map_err(|problem| fail(format!("invalid model description: {problem}")))?;
    let expected = spec.tensor_shapes();
    let mut tensors = Vec::with_capacity(expected.len());
    for (name, shape) in &expected {
        let values = file.f32s(name, shape).map_err(fail)?;
        tensors.push((name.clone(), values));
    }
    let names: Vec<&str> = expected.iter().map(|(name, _)| name.as_str()).collect();
    let context = format!(" (not part of this {} model)", spec.architecture);
    file.check_no_other_tensors(&names, &context)
        .map_err(fail)?;
    Ok((spec, tensors))
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
