//! Safetensors files: the one reader, which treats the bytes as untrusted input, and the one
//! writer. Every safetensors file of the project (model, pairs, classifier, training checkpoint,
//! `bns truth`'s progress) is read through [`TensorFile`]; all but the model file are written by
//! [`write`] (the model file builds its header itself, so that its bytes, and so its id, are
//! fixed by this crate rather than by the safetensors crate).
//!
//! Reading guards against what the safetensors crate lets through or panics on: a header that
//! names a tensor (or a `__metadata__` key) twice, which it would silently resolve to the last
//! one, and data offsets near `u64::MAX`, which overflow its size check. Every problem is a
//! readable text naming the tensor or key; nothing panics. The rules a file must follow:
//! `FORMATS.md` §0.

use std::collections::HashSet;
use std::fmt;

use safetensors::tensor::{Dtype, Metadata, TensorView};
use safetensors::{SafeTensorError, SafeTensors};
use serde::de::{DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::versioned_json::MetadataFormat;

/// Bytes of the little-endian header length that starts a safetensors file.
pub const LENGTH_PREFIX: usize = 8;

/// A safetensors file whose header has been checked: every tensor lies inside the data, no name
/// appears twice, sizes match dtypes and shapes, and the data ends at the end of the file. The
/// tensors are decoded on request, each checked for its dtype, shape and finiteness.
pub struct TensorFile<'a> {
    metadata: Metadata,
    data: &'a [u8],
}

impl<'a> TensorFile<'a> {
    /// Checks the header of `bytes`; the error is the problem alone (the caller names the file).
    pub fn parse(bytes: &'a [u8]) -> Result<TensorFile<'a>, String> {
        check_header(bytes)?;
        let (header_len, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| describe_safetensors_error(&e, bytes.len()))?;
        let data = bytes
            .get(LENGTH_PREFIX.saturating_add(header_len)..)
            .unwrap_or_default();
        Ok(TensorFile { metadata, data })
    }

    /// The versioned document `format` describes, from the `__metadata__` entry under its key:
    /// the key present, then the version, then the fields of `T`.
    pub fn metadata_document<T: DeserializeOwned>(
        &self,
        format: &MetadataFormat,
    ) -> Result<T, String> {
        let entries = self.metadata.metadata().as_ref();
        let text = entries
            .and_then(|entries| entries.get(format.key))
            .ok_or_else(|| format.describe_missing(entries.is_some()))?;
        format.parse(text)
    }

    /// The values of `F32` tensor `name` of shape `shape`, all finite.
    pub fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let values: Vec<f32> = words(self.raw(name, Dtype::F32, shape)?)
            .map(f32::from_le_bytes)
            .collect();
        check_finite(name, &values)?;
        Ok(values)
    }

    /// The values of floating-point tensor `name` of shape `shape`, stored as `F32` or as
    /// `F16` (widened to `f32`, which is exact), all finite, with the dtype they were stored in.
    pub fn floats(&self, name: &str, shape: &[usize]) -> Result<(Vec<f32>, Dtype), String> {
        let dtype = match self.metadata.info(name).map(|info| info.dtype) {
            Some(Dtype::F16) => Dtype::F16,
            Some(Dtype::F32) | None => Dtype::F32,
            Some(other) => {
                return Err(format!(
                    "tensor {name} has dtype {other}, expected F32 or F16"
                ))
            }
        };
        let values: Vec<f32> = if dtype == Dtype::F16 {
            self.raw(name, Dtype::F16, shape)?
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()
        } else {
            words(self.raw(name, Dtype::F32, shape)?)
                .map(f32::from_le_bytes)
                .collect()
        };
        check_finite(name, &values)?;
        Ok((values, dtype))
    }

    /// The values of `U32` tensor `name` of shape `shape`.
    pub fn u32s(&self, name: &str, shape: &[usize]) -> Result<Vec<u32>, String> {
        Ok(words(self.raw(name, Dtype::U32, shape)?)
            .map(u32::from_le_bytes)
            .collect())
    }

    /// Refuses tensors other than `expected`, naming them (sorted), followed by `context`
    /// (e.g. `" (not part of this mlp model)"`).
    pub fn check_no_other_tensors<S: AsRef<str>>(
        &self,
        expected: &[S],
        context: &str,
    ) -> Result<(), String> {
        let mut extra: Vec<String> = self
            .metadata
            .offset_keys()
            .into_iter()
            .filter(|name| !expected.iter().any(|known| known.as_ref() == name))
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        extra.sort();
        Err(format!(
            "unexpected tensor{} {}{context}",
            if extra.len() == 1 { "" } else { "s" },
            extra.join(", ")
        ))
    }

    /// The raw bytes of tensor `name`, checked for dtype and shape.
    fn raw(&self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<&'a [u8], String> {
        let info = self
            .metadata
            .info(name)
            .ok_or_else(|| format!("missing tensor {name}"))?;
        if info.dtype != dtype {
            return Err(format!(
                "tensor {name} has dtype {}, expected {dtype}",
                info.dtype
            ));
        }
        if info.shape != shape {
            return Err(format!(
                "tensor {name} has shape {:?}, expected {shape:?}",
                info.shape
            ));
        }
        let (start, end) = info.data_offsets;
        self.data
            .get(start..end)
            .ok_or_else(|| format!("tensor {name} lies outside the file"))
    }
}

/// Four-byte little-endian words (the length is a multiple of 4: checked by safetensors).
fn words(raw: &[u8]) -> impl Iterator<Item = [u8; 4]> + '_ {
    raw.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]])
}

/// An error naming the first non-finite value of a tensor.
pub fn check_finite(name: &str, values: &[f32]) -> Result<(), String> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(format!(
            "tensor {name} has a non-finite value ({}) at index {index}",
            values[index]
        )),
    }
}

/// One tensor to write: its name, dtype, shape and little-endian bytes.
pub struct TensorBytes<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl<'a> TensorBytes<'a> {
    /// An `F32` tensor.
    pub fn f32s(name: &'a str, shape: Vec<usize>, values: &[f32]) -> TensorBytes<'a> {
        TensorBytes {
            name,
            dtype: Dtype::F32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A `U32` tensor.
    pub fn u32s(name: &'a str, shape: Vec<usize>, values: &[u32]) -> TensorBytes<'a> {
        TensorBytes {
            name,
            dtype: Dtype::U32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// The bytes of a safetensors file holding `tensors` and one `__metadata__` entry `(key, JSON)`,
/// laid out by the safetensors crate (tensors ordered by alignment, then name). The error is
/// the problem alone, naming the tensor whose bytes do not fit its shape.
pub fn write(tensors: &[TensorBytes], metadata: (&str, &str)) -> Result<Vec<u8>, String> {
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
            .map_err(|e| format!("tensor {}: {e}", t.name))?;
        views.push((t.name, view));
    }
    let metadata =
        std::collections::HashMap::from([(metadata.0.to_string(), metadata.1.to_string())]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

/// The checks that come before safetensors' own: no tensor or `__metadata__` key named twice,
/// and no data offset beyond the end of the file. The latter guards safetensors' check `data
/// end + 8 + header length == file length`, which overflows (a panic in builds with overflow
/// checks) for offsets near `u64::MAX`. Headers that do not parse are left to safetensors,
/// which reports them.
fn check_header(bytes: &[u8]) -> Result<(), String> {
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
    let Ok(Header(entries)) = serde_json::from_slice::<Header>(header) else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    for entry in &entries {
        let (name, twice) = match entry {
            Entry::Metadata(_) => ("__metadata__", "__metadata__".to_string()),
            Entry::Tensor(name, _) => (name.as_str(), format!("tensor {name}")),
        };
        if !seen.insert(name) {
            return Err(format!(
                "not a valid safetensors file: the header names {twice} twice"
            ));
        }
    }
    for entry in &entries {
        if let Entry::Metadata(Keys(keys)) = entry {
            let mut seen = HashSet::new();
            if let Some(key) = keys.iter().find(|key| !seen.insert(key.as_str())) {
                return Err(format!(
                    "not a valid safetensors file: the header names __metadata__ key {key:?} \
                     twice"
                ));
            }
        }
    }
    let file_len = bytes.len() as u64;
    for entry in &entries {
        let Entry::Tensor(name, info) = entry else {
            continue;
        };
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

/// The entries of a header in file order, repeated names kept (a JSON map would drop them).
struct Header(Vec<Entry>);

enum Entry {
    /// `__metadata__` with its keys in file order.
    Metadata(Keys),
    Tensor(String, Value),
}

/// The keys of a JSON object in file order (`null` for none).
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a safetensors header (a JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if name == "__metadata__" {
                        let keys: Option<Keys> = map.next_value()?;
                        entries.push(Entry::Metadata(keys.unwrap_or(Keys(Vec::new()))));
                    } else {
                        entries.push(Entry::Tensor(name, map.next_value()?));
                    }
                }
                Ok(Header(entries))
            }
        }
        deserializer.deserialize_map(HeaderVisitor)
    }
}

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }
        deserializer.deserialize_map(KeysVisitor)
    }
}

/// The problem text for a file that safetensors cannot read.
fn describe_safetensors_error(error: &SafeTensorError, file_len: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with this header text and `data` after it.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    fn problem(bytes: &[u8]) -> String {
        TensorFile::parse(bytes).err().expect("should be refused")
    }

    #[test]
    fn written_files_read_back() {
        let tensors = [
            TensorBytes::f32s("x", vec![2, 2], &[1.0, -2.0, 0.5, 3.0]),
            TensorBytes::u32s("labels", vec![2], &[7, 9]),
        ];
        let bytes = write(&tensors, ("bns.test", "{\"format_version\":1}")).unwrap();
        let file = TensorFile::parse(&bytes).unwrap();
        assert_eq!(file.f32s("x", &[2, 2]).unwrap(), [1.0, -2.0, 0.5, 3.0]);
        assert_eq!(file.u32s("labels", &[2]).unwrap(), [7, 9]);
        assert_eq!(file.f32s("y", &[1]).unwrap_err(), "missing tensor y");
        assert_eq!(
            file.f32s("x", &[4]).unwrap_err(),
            "tensor x has shape [2, 2], expected [4]"
        );
        assert_eq!(
            file.f32s("labels", &[2]).unwrap_err(),
            "tensor labels has dtype U32, expected F32"
        );
        assert!(file.check_no_other_tensors(&["x", "labels"], "").is_ok());
        assert_eq!(
            file.check_no_other_tensors(&["x"], " (here)").unwrap_err(),
            "unexpected tensor labels (here)"
        );
        // The bytes are the safetensors crate's.
        let views = tensors.iter().map(|t| {
            (
                t.name,
                TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap(),
            )
        });
        let metadata = std::collections::HashMap::from([(
            "bns.test".to_string(),
            "{\"format_version\":1}".to_string(),
        )]);
        assert_eq!(
            bytes,
            safetensors::serialize(views, Some(metadata)).unwrap()
        );
        // A shape that does not fit the bytes is refused, naming the tensor.
        let bad = [TensorBytes::f32s("x", vec![3], &[1.0])];
        assert!(write(&bad, ("k", "{}")).unwrap_err().contains("tensor x"));
    }

    #[test]
    fn non_finite_values_are_refused() {
        let tensors = [TensorBytes::f32s("w", vec![3], &[0.0, f32::NAN, 1.0])];
        let bytes = write(&tensors, ("k", "{}")).unwrap();
        assert_eq!(
            TensorFile::parse(&bytes)
                .unwrap()
                .f32s("w", &[3])
                .unwrap_err(),
            "tensor w has a non-finite value (NaN) at index 1"
        );
    }

    #[test]
    fn a_name_given_twice_is_refused() {
        let twice = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let shown = problem(&file(twice, &[0; 8]));
        assert!(shown.contains("tensor a twice"), "{shown}");
        let key_twice = r#"{"__metadata__":{"bns.model":"{}","bns.model":"{}"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let shown = problem(&file(key_twice, &[0; 4]));
        assert!(
            shown.contains("__metadata__ key \"bns.model\" twice"),
            "{shown}"
        );
        let metadata_twice = r#"{"__metadata__":{},"__metadata__":{},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        assert!(problem(&file(metadata_twice, &[0; 4])).contains("__metadata__ twice"));
        // Once each is fine.
        let once = r#"{"__metadata__":{"bns.model":"{}"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        assert!(TensorFile::parse(&file(once, &[0; 4])).is_ok());
    }

    #[test]
    fn offsets_beyond_the_file_are_refused() {
        let header = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#;
        assert!(problem(&file(header, &[])).contains("beyond the file"));
        assert!(problem(b"short").contains("not a safetensors file"));
        assert!(problem(&file("{nope", &[])).contains("not a valid safetensors file"));
    }

    #[test]
    fn the_metadata_document_is_found_and_versioned() {
        let format = MetadataFormat {
            kind: "test",
            key: "bns.test",
            version: 1,
            reader: "this build",
            advice: "",
            unversioned: None,
        };
        let tensors = [TensorBytes::f32s("x", vec![1], &[1.0])];
        let good = write(&tensors, ("bns.test", r#"{"format_version":1}"#)).unwrap();
        let value: Value = TensorFile::parse(&good)
            .unwrap()
            .metadata_document(&format)
            .unwrap();
        assert_eq!(value["format_version"], 1);
        let other = write(&tensors, ("bns.other", "{}")).unwrap();
        let shown = TensorFile::parse(&other)
            .unwrap()
            .metadata_document::<Value>(&format)
            .unwrap_err();
        assert_eq!(
            shown,
            "__metadata__ has no \"bns.test\" key (not a test file?)"
        );
        let none = file(
            r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            &[0; 4],
        );
        let shown = TensorFile::parse(&none)
            .unwrap()
            .metadata_document::<Value>(&format)
            .unwrap_err();
        assert!(shown.contains("no __metadata__"), "{shown}");
    }
}
