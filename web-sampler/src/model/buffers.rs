//! Working buffers a thread keeps between calls of the CPU forwards (in thread-local slots), so
//! that a forward does not fault in fresh pages for its activations on every call.

/// `len` zeros in the buffer kept in `slot` (taken out: a nested use gets a fresh one; put it
/// back with `slot.set`).
pub(crate) fn reused(
    slot: &'static std::thread::LocalKey<std::cell::Cell<Vec<f32>>>,
    len: usize,
) -> Vec<f32> {
    let mut buffer = slot.take();
    buffer.clear();
    buffer.resize(len, 0.0);
    buffer
}

/// Gives `buffer` `len` values without clearing those it keeps (for a caller that writes every
/// value before reading it): a buffer reused between calls is not filled with zeros each time.
pub(crate) fn with_len(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    } else {
        buffer.truncate(len);
    }
    buffer
}

/// The first `len` values of `buffer`, which grows to hold them but never shrinks (for working
/// memory whose values are all written before they are read): a buffer used by calls of
/// several sizes is not filled with zeros again each time it grows back.
pub(crate) fn at_least(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// The most floats a thread keeps in one reused buffer (4 MiB): larger ones (a U-Net's im2col
/// at a large batch) are freed rather than held after the call.
const KEEP_LIMIT: usize = 1 << 20;

/// Puts `buffer` back into `slot` for the next [`reused`], unless it is larger than
/// [`KEEP_LIMIT`].
pub(crate) fn keep(
    slot: &'static std::thread::LocalKey<std::cell::Cell<Vec<f32>>>,
    buffer: Vec<f32>,
) {
    if buffer.capacity() <= KEEP_LIMIT {
        slot.set(buffer);
    }
}
