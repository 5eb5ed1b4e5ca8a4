//! JSON documents that carry a `format_version`: the one reader of every versioned format of the
//! project (model spec, solver file, pairs, classifier, training checkpoint, `bns truth`'s
//! progress). The version is read and checked before any other field, so that a file of another
//! version is refused for its version rather than for a field it happens to lack or spell
//! differently.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use serde_json::Value;

/// What is wrong with a versioned document, before it is worded for its format.
#[derive(Debug)]
pub enum Problem {
    /// The text is not JSON (serde's message with line and column).
    InvalidJson(serde_json::Error),
    /// The JSON is not an object.
    NotAnObject,
    /// The object has no `format_version` (and the format has no version for that case).
    NoVersion,
    /// `format_version` is there but not a non-negative whole number.
    VersionNotWhole(Value),
    /// `format_version` is a version this build does not read.
    UnknownVersion(u64),
    /// The version is right but the fields are not (serde's message with line and column).
    InvalidFields(serde_json::Error),
}

/// Parses `text` as a document of format version `version`: JSON, an object, its
/// `format_version` (or `unversioned` when it has none, for files written before the field
/// existed) equal to `version`, then the fields of `T`. `T` may or may not have a
/// `format_version` field of its own.
pub fn read<T: DeserializeOwned>(
    text: &str,
    version: u32,
    unversioned: Option<u32>,
) -> Result<T, Problem> {
    /// Only the version; serde skips every other field without building it, so sniffing the
    /// version of a large document allocates nothing but the version itself.
    #[derive(Deserialize)]
    struct Version {
        format_version: Option<Value>,
    }
    // (serde would also fill a struct from an array, so an object is checked for first.)
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => Problem::NotAnObject,
            Err(e) => Problem::InvalidJson(e),
        });
    }
    let sniffed: Version = serde_json::from_str(text).map_err(Problem::InvalidJson)?;
    let found = match sniffed.format_version {
        None => unversioned.map(u64::from).ok_or(Problem::NoVersion)?,
        Some(v) => v.as_u64().ok_or(Problem::VersionNotWhole(v))?,
    };
    if found != u64::from(version) {
        return Err(Problem::UnknownVersion(found));
    }
    // Then straight into the typed fields (serde's errors carry line and column). Skipping
    // fields in the sniff checks only the structure, so text that is not JSON in a value (a
    // number out of range) may first show here.
    serde_json::from_str(text).map_err(|e| match e.classify() {
        Category::Syntax | Category::Eof => Problem::InvalidJson(e),
        Category::Data | Category::Io => Problem::InvalidFields(e),
    })
}

/// `fields` (a struct without a `format_version` field of its own) as compact JSON with
/// `"format_version": version` first.
pub fn write<T: Serialize>(version: u32, fields: &T) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Versioned<'a, T> {
        format_version: u32,
        #[serde(flatten)]
        fields: &'a T,
    }
    serde_json::to_string(&Versioned {
        format_version: version,
        fields,
    })
}

/// A versioned document stored as JSON under a key of a safetensors file's `__metadata__`, and
/// how its problems are worded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataFormat {
    /// What the file is, in errors: `"model"` gives "not a model file?" and "unknown model format
    /// version 2".
    pub kind: &'static str,
    /// The `__metadata__` key, e.g. `"bns.model"`.
    pub key: &'static str,
    /// The version this build reads and writes.
    pub version: u32,
    /// Who reads it, in errors: `"this runtime"` or `"this build"`.
    pub reader: &'static str,
    /// Appended to the unknown-version error, e.g. `"; recompute the pairs with …"` (or empty).
    pub advice: &'static str,
    /// The version of a document without `format_version` (files written before it existed);
    /// `None` refuses such a document.
    pub unversioned: Option<u32>,
}

impl MetadataFormat {
    /// Reads the document `text` found under [`key`](Self::key); the error is the problem alone.
    pub fn parse<T: DeserializeOwned>(&self, text: &str) -> Result<T, String> {
        read(text, self.version, self.unversioned).map_err(|p| self.describe(&p))
    }

    /// The problem text for `problem`.
    pub fn describe(&self, problem: &Problem) -> String {
        let document = format!("metadata {:?}", self.key);
        match problem {
            Problem::InvalidJson(e) => format!("{document} is not valid JSON: {e}"),
            Problem::NotAnObject => format!("{document} is not a JSON object"),
            Problem::NoVersion => format!("{document} has no format_version"),
            Problem::VersionNotWhole(v) => {
                format!("{document}: format_version must be a non-negative integer, got {v}")
            }
            Problem::UnknownVersion(v) => format!(
                "unknown {} format version {v} ({} reads version {}){}",
                self.kind, self.reader, self.version, self.advice
            ),
            Problem::InvalidFields(e) => {
                format!("{document} is not a valid {} description: {e}", self.kind)
            }
        }
    }

    /// The problem text for a file whose `__metadata__` is missing (`entries` is `None`) or has
    /// no [`key`](Self::key).
    pub fn describe_missing(&self, has_metadata: bool) -> String {
        if has_metadata {
            format!(
                "__metadata__ has no {:?} key (not a {} file?)",
                self.key, self.kind
            )
        } else {
            format!(
                "the file has no __metadata__ (a {} file keeps its description under the key {:?})",
                self.kind, self.key
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Fields {
        size: u32,
    }

    const FORMAT: MetadataFormat = MetadataFormat {
        kind: "test",
        key: "bns.test",
        version: 2,
        reader: "this build",
        advice: "; make a new one",
        unversioned: None,
    };

    fn problem(text: &str) -> String {
        FORMAT.parse::<Fields>(text).unwrap_err()
    }

    #[test]
    fn the_version_is_checked_before_the_fields() {
        assert_eq!(
            FORMAT.parse::<Fields>(r#"{"format_version": 2, "size": 3}"#),
            Ok(Fields { size: 3 })
        );
        assert_eq!(
            problem(r#"{"format_version": 3, "length": 3}"#),
            "unknown test format version 3 (this build reads version 2); make a new one"
        );
        assert_eq!(
            problem(r#"{"size": 3}"#),
            "metadata \"bns.test\" has no format_version"
        );
        assert!(problem(r#"{"format_version": "2"}"#).contains("non-negative integer"));
        assert!(problem(r#"{"format_version": -2}"#).contains("non-negative integer"));
        assert!(problem("[2]").contains("not a JSON object"));
        assert!(problem("{").starts_with("metadata \"bns.test\" is not valid JSON"));
        let fields = problem(r#"{"format_version": 2}"#);
        assert!(
            fields.contains("not a valid test description") && fields.contains("size"),
            "{fields}"
        );
    }

    #[test]
    fn an_unversioned_document_can_be_read_as_a_version() {
        let old = MetadataFormat {
            unversioned: Some(2),
            ..FORMAT
        };
        assert_eq!(
            old.parse::<Fields>(r#"{"size": 4}"#),
            Ok(Fields { size: 4 })
        );
        let older = MetadataFormat {
            unversioned: Some(1),
            ..FORMAT
        };
        assert!(older
            .parse::<Fields>(r#"{"size": 4}"#)
            .unwrap_err()
            .contains("unknown test format version 1"));
    }

    #[test]
    fn written_documents_start_with_their_version_and_read_back() {
        let text = write(2, &Fields { size: 5 }).unwrap();
        assert_eq!(text, r#"{"format_version":2,"size":5}"#);
        assert_eq!(FORMAT.parse::<Fields>(&text), Ok(Fields { size: 5 }));
    }
}
