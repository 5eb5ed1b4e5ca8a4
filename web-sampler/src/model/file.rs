//! Reading and writing the model file: one safetensors file whose `__metadata__` holds the
//! [`ModelSpec`] as JSON under [`MODEL_METADATA_KEY`], with every tensor of
//! [`ModelSpec::tensor_shapes`] as little-endian `F32`, or every one as `F16` (a model stored in
//! half precision: read, its values are widened to `f32`, exactly).
//!
//! Reading goes through [`TensorFile`] (the bytes are untrusted) and the versioned-JSON reader:
//! every failure is an [`Error`] naming the file and the field or tensor, never a panic. Writing is canonical (the metadata as a single key, the spec
//! as compact JSON, the tensors in `tensor_shapes` order), so the same model always gives the
//! same bytes and so the same id.

use safetensors::tensor::Dtype;
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

/// How a model file stores its weights: every tensor in one dtype.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightDtype {
    /// IEEE binary32, `"F32"`: the weights as trained.
    #[default]
    F32,
    /// IEEE binary16, `"F16"`: half the bytes; the values are the `f32` weights rounded to the
    /// nearest `f16` (ties to even), and widen back to `f32` exactly.
    F16,
}

impl WeightDtype {
    /// The safetensors dtype name, `"F32"` or `"F16"`.
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "F32",
            WeightDtype::F16 => "F16",
        }
    }

    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::F16 => 2,
        }
    }
}

/// The spec, the tensors (widened to `f32`) and the weights' dtype of a model file, validated.
pub(crate) fn parse(bytes: &[u8], origin: &str) -> Result<(ModelSpec, NamedTensors, WeightDtype)> {
    let fail = |problem: String| Error::new(origin, problem);
    let file = TensorFile::parse(bytes).map_err(fail)?;
    let spec: ModelSpec = file.metadata_document(&MODEL_FORMAT).map_err(fail)?;
    spec.validate()
        .map_err(|problem| fail(format!("invalid model description: {problem}")))?;
    let expected = spec.tensor_shapes();
    let mut tensors = Vec::with_capacity(expected.len());
    // The dtype of the first tensor, which every other must share.
    let mut stored: Option<(WeightDtype, &str)> = None;
    for (name, shape) in &expected {
        let (values, dtype) = file.floats(name, shape).map_err(fail)?;
        let dtype = if dtype == Dtype::F16 {
            WeightDtype::F16
        } else {
            WeightDtype::F32
        };
        match stored {
            None => stored = Some((dtype, name)),
            Some((first, first_name)) if first != dtype => {
                return Err(fail(format!(
                    "tensor {name} is {} but tensor {first_name} is {}: a model stores every \
                     tensor in one dtype",
                    dtype.name(),
                    first.name()
                )))
            }
            Some(_) => {}
        }
        tensors.push((name.clone(), values));
    }
    let names: Vec<&str> = expected.iter().map(|(name, _)| name.as_str()).collect();
    let context = format!(" (not part of this {} model)", spec.architecture);
    file.check_no_other_tensors(&names, &context)
        .map_err(fail)?;
    Ok((spec, tensors, stored.map_or(WeightDtype::F32, |(d, _)| d)))
}

/// The little-endian `F16` bytes of `values`, each rounded to the nearest `f16` (exact for
/// values that are `f16` already, as a half-precision model's are): the file's and the GPU
/// buffers' layout.
pub(crate) fn f16_le_bytes(values: &[f32]) -> impl Iterator<Item = u8> + '_ {
    values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
}

/// The tensor's values rounded to the nearest `f16` (ties to even); refused, naming the tensor
/// and the value, when one lies beyond `f16`'s range (±65504) and would become infinite.
pub(crate) fn round_to_f16(name: &str, values: &[f32]) -> std::result::Result<Vec<f32>, String> {
    values
        .iter()
        .enumerate()
        .map(|(index, &v)| {
            let rounded = half::f16::from_f32(v);
            if rounded.is_finite() {
                Ok(rounded.to_f32())
            } else {
                Err(format!(
                    "tensor {name} has the value {v} at index {index}, beyond the range of f16 \
                     (±65504): this model cannot be stored in half precision"
                ))
            }
        })
        .collect()
}

/// Writes the canonical file of `spec` and its `tensors` (in `tensor_shapes` order, with the
/// shapes of `tensor_shapes`) to `sink`, piece by piece, each value stored as `dtype` (for
/// `F16`, the values must be `f16` values already: see [`round_to_f16`]).
pub(crate) fn write(
    spec: &ModelSpec,
    tensors: &[(String, &[f32])],
    dtype: WeightDtype,
    sink: &mut dyn FnMut(&[u8]),
) {
    let spec_json = serde_json::to_string(spec).expect("a ModelSpec always serializes to JSON");
    let mut header = String::from("{\"__metadata__\":{");
    header.push_str(&Value::from(MODEL_METADATA_KEY).to_string());
    header.push(':');
    header.push_str(&Value::from(spec_json).to_string());
    header.push('}');
    let shapes = spec.tensor_shapes();
    let mut offset = 0usize;
    for ((name, values), (_, shape)) in tensors.iter().zip(&shapes) {
        let end = offset + dtype.bytes() * values.len();
        header.push(',');
        header.push_str(&Value::from(name.as_str()).to_string());
        header.push_str(&format!(":{{\"dtype\":\"{}\",\"shape\":", dtype.name()));
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
            match dtype {
                WeightDtype::F32 => buffer.extend(piece.iter().flat_map(|v| v.to_le_bytes())),
                WeightDtype::F16 => buffer.extend(f16_le_bytes(piece)),
            }
            sink(&buffer);
        }
    }
}
