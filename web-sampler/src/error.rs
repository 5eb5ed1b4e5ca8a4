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

/// `x` as a message quotes it: `1e308` and `1e-300` in exponent form, not their ~300 digits;
/// `2.5`, `16` and `0` as themselves.
pub fn number_in_message(x: f64) -> String {
    if x.is_finite() && x != 0.0 && !(1e-4..1e6).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_messages_are_short() {
        assert_eq!(number_in_message(1e308), "1e308");
        assert_eq!(number_in_message(-1e308), "-1e308");
        assert_eq!(number_in_message(1e-300), "1e-300");
        assert_eq!(number_in_message(1234567.0), "1.234567e6");
        assert_eq!(number_in_message(999999.0), "999999");
        assert_eq!(number_in_message(2.5), "2.5");
        assert_eq!(number_in_message(0.0), "0");
        assert_eq!(number_in_message(f64::INFINITY), "inf");
        assert_eq!(number_in_message(f64::NAN), "NaN");
    }
}
