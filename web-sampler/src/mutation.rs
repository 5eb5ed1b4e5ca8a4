//! Hostile inputs for the loaders' fuzz tests (both crates'): seeded random edits of a valid
//! file, and hand-made safetensors headers. Not part of the API: native only, with the `testing`
//! feature.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::noise::Noise;

/// Random edits of a valid file: byte flips, truncations, insertions, a repeated slice, a huge
/// safetensors header length, and digits of the JSON header changed to huge numbers.
pub struct Mutator(pub Noise);

impl Mutator {
    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n.max(1) as u64) as usize
    }

    pub fn mutate(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut bytes = valid.to_vec();
        for _ in 0..1 + self.below(3) {
            let len = bytes.len().max(1);
            match self.below(7) {
                0 => {
                    let i = self.below(len);
                    if let Some(b) = bytes.get_mut(i) {
                        *b ^= 1 << self.below(8);
                    }
                }
                1 => bytes.truncate(self.below(len)),
                2 => {
                    let i = self.below(len);
                    let junk: Vec<u8> = (0..1 + self.below(16))
                        .map(|_| self.0.next_u64() as u8)
                        .collect();
                    bytes.splice(i.min(bytes.len())..i.min(bytes.len()), junk);
                }
                3 => {
                    let (a, b) = (self.below(len), self.below(len));
                    let (a, b) = (a.min(b).min(bytes.len()), a.max(b).min(bytes.len()));
                    let piece = bytes[a..b].to_vec();
                    bytes.splice(b..b, piece);
                }
                4 if bytes.len() >= 8 => {
                    let huge = [u64::MAX, 1 << 40, (bytes.len() as u64) * 2][self.below(3)];
                    bytes[..8].copy_from_slice(&huge.to_le_bytes());
                }
                5 => {
                    // A digit in the text becomes a run of nines (sizes, offsets, shapes).
                    let digits: Vec<usize> = (0..bytes.len().min(4096))
                        .filter(|&i| bytes[i].is_ascii_digit())
                        .collect();
                    if !digits.is_empty() {
                        let i = digits[self.below(digits.len())];
                        bytes.splice(i..i + 1, b"99999999999999999999".iter().copied());
                    }
                }
                _ => {
                    let i = self.below(len);
                    if let Some(b) = bytes.get_mut(i) {
                        *b = [b'{', b'}', b'"', b',', b':', b'[', b']', 0][self.below(8)];
                    }
                }
            }
        }
        bytes
    }
}

/// A safetensors file with this JSON header and `data` bytes after it.
fn safetensors(header: &str, data: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data, 0);
    bytes
}

/// Hostile safetensors headers: shapes whose product overflows, offsets past the end or
/// overlapping, a header length beyond the file, a non-object header.
pub fn hostile_safetensors() -> Vec<Vec<u8>> {
    let meta = r#""__metadata__":{"bns.model":"{\"format_version\":1}","bns.pairs":"{}"}"#;
    vec![
        safetensors(
            &format!(
                r#"{{{meta},"noise":{{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}}}"#
            ),
            16,
        ),
        safetensors(
            &format!(
                r#"{{{meta},"noise":{{"dtype":"F32","shape":[2,2],"data_offsets":[0,18446744073709551615]}}}}"#
            ),
            16,
        ),
        safetensors(
            &format!(
                r#"{{{meta},"a":{{"dtype":"F32","shape":[4],"data_offsets":[0,16]}},"b":{{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}}}"#
            ),
            24,
        ),
        safetensors(
            &format!(
                r#"{{{meta},"a":{{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}}}"#
            ),
            16,
        ),
        safetensors("[1,2,3]", 0),
        {
            let mut b = safetensors("{}", 0);
            b[..8].copy_from_slice(&(1u64 << 62).to_le_bytes());
            b
        },
        Vec::new(),
        vec![0; 7],
    ]
}

/// Cases per loader: `BNS_FUZZ_CASES`, default 2000.
pub fn cases() -> usize {
    std::env::var("BNS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// `cases()` mutations of `valid` (seeded by `seed`), then the hostile headers.
pub fn inputs(valid: Vec<u8>, seed: u64) -> impl Iterator<Item = Vec<u8>> {
    let mut mutator = Mutator(Noise::new(seed));
    (0..cases())
        .map(move |_| mutator.mutate(&valid))
        .chain(hostile_safetensors())
}

/// Runs `load` on every input; each must load or fail naming `origin`, without a panic, and
/// with `largest` (if given: the largest single allocation since it was zeroed, by the test's
/// allocator) at most `cap`. Returns (loaded, refused).
pub fn check<T, E: std::fmt::Display>(
    what: &str,
    origin: &str,
    inputs: impl Iterator<Item = Vec<u8>>,
    load: impl Fn(&[u8]) -> Result<T, E>,
    largest: Option<(&AtomicUsize, usize)>,
) -> (usize, usize) {
    let (mut loaded, mut refused) = (0, 0);
    for (i, input) in inputs.enumerate() {
        if let Some((counter, _)) = largest {
            counter.store(0, Ordering::Relaxed);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| load(&input)));
        match outcome {
            Err(_) => panic!("{what}: case {i} panicked ({} bytes of input)", input.len()),
            Ok(Ok(_)) => loaded += 1,
            Ok(Err(e)) => {
                let shown = e.to_string();
                assert!(
                    shown.contains(origin),
                    "{what}: case {i}: the error does not name the file: {shown}"
                );
                refused += 1;
            }
        }
        if let Some((counter, cap)) = largest {
            let size = counter.load(Ordering::Relaxed);
            assert!(
                size <= cap,
                "{what}: case {i} allocated {size} bytes at once ({} bytes of input)",
                input.len()
            );
        }
    }
    (loaded, refused)
}
