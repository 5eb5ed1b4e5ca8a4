//! The one error type of the runtime: which input (file or source) and what is wrong with it.

use std::fmt;

/// An input that failed to load or validate. `origin` names the file (or the source, such as
/// `"<solver JSON>"`); `problem` says what is wrong, naming the field where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub origin: String,
    pub problem: String,
}

impl Error {
    pub fn new(origin: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.problem)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
