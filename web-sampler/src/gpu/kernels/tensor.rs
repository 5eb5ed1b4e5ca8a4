//! A tensor on the GPU (a buffer range with a shape and an encoding) and the shape checks the ops
//! make on their tensors.

use super::{Encoding, ORIGIN};
use crate::{Error, Result};

/// A tensor on the GPU: the row-major values of `shape` (4 bytes each, `f32` or `u32`, or for
/// half-precision weights 2 bytes each: see [`Encoding`]), stored in `buffer` from byte
/// `offset` on. A kernel binds it from its offset (which must then be a multiple of the
/// device's storage-offset alignment); a copy may start at any value.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    pub(super) buffer: wgpu::Buffer,
    /// Offset in bytes.
    pub(super) offset: u64,
    pub(super) shape: Vec<usize>,
    /// How the values are stored, and so which variant of a kernel reads them.
    pub(super) encoding: Encoding,
}

impl GpuTensor {
    /// A tensor of `shape` at the start of `buffer`; errors when the buffer is too small.
    pub fn new(buffer: &wgpu::Buffer, shape: &[usize]) -> Result<GpuTensor> {
        GpuTensor::at(buffer, 0, shape)
    }

    /// A tensor of `shape` from value `start` of `buffer` on; errors when the buffer is too
    /// small.
    pub fn at(buffer: &wgpu::Buffer, start: usize, shape: &[usize]) -> Result<GpuTensor> {
        let len = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let end = len
            .and_then(|len| start.checked_add(len.max(1)))
            .and_then(|end| end.checked_mul(4))
            .map(|end| end as u64);
        match end {
            Some(end) if end <= buffer.size() => Ok(GpuTensor {
                buffer: buffer.clone(),
                offset: 4 * start as u64,
                shape: shape.to_vec(),
                encoding: Encoding::F32,
            }),
            _ => Err(Error::new(
                ORIGIN,
                format!(
                    "a {shape:?} tensor from value {start} does not fit a buffer of {} bytes",
                    buffer.size()
                ),
            )),
        }
    }

    /// Half-precision weights of `shape` at the start of `buffer` (two bytes per value, read
    /// as `encoding`: [`Encoding::F16`] or [`Encoding::PackedF16`]); errors when the buffer is
    /// too small or the encoding is not a half one.
    pub fn halves(buffer: &wgpu::Buffer, shape: &[usize], encoding: Encoding) -> Result<GpuTensor> {
        if encoding == Encoding::F32 {
            return Err(Error::new(
                ORIGIN,
                "internal error: half-precision weights need a half encoding, not f32",
            ));
        }
        let len = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if len.is_none_or(|len| 2 * len.max(1) as u64 > buffer.size()) {
            return Err(Error::new(
                ORIGIN,
                format!(
                    "a {shape:?} tensor of {} values does not fit a buffer of {} bytes",
                    encoding.name(),
                    buffer.size()
                ),
            ));
        }
        Ok(GpuTensor {
            buffer: buffer.clone(),
            offset: 0,
            shape: shape.to_vec(),
            encoding,
        })
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// How the values are stored.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same values with another shape (as many of them).
    pub fn reshaped(&self, shape: &[usize]) -> Result<GpuTensor> {
        let len = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if len != Some(self.len()) {
            return Err(Error::new(
                ORIGIN,
                format!("a {:?} tensor cannot be seen as {shape:?}", self.shape),
            ));
        }
        Ok(GpuTensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Rows `start..start + count` of the outermost dimension (for a copy: the start need not
    /// be aligned for a binding).
    pub fn rows(&self, start: usize, count: usize) -> Result<GpuTensor> {
        let outer = self.shape.first().copied().unwrap_or(1);
        if start.checked_add(count).is_none_or(|end| end > outer) {
            return Err(Error::new(
                ORIGIN,
                format!(
                    "rows {start}..{} of a {:?} tensor",
                    start.saturating_add(count),
                    self.shape
                ),
            ));
        }
        let inner: usize = self.shape.iter().skip(1).product();
        let mut shape = self.shape.clone();
        if let Some(first) = shape.first_mut() {
            *first = count;
        }
        Ok(GpuTensor {
            buffer: self.buffer.clone(),
            offset: self.offset + self.encoding.value_bytes() * (start * inner) as u64,
            shape,
            encoding: self.encoding,
        })
    }

    /// Bytes a binding or a copy covers: the values, at least one (a binding cannot be empty),
    /// in whole 4-byte words.
    pub(super) fn bytes(&self) -> u64 {
        (self.encoding.value_bytes() * self.len().max(1) as u64).div_ceil(4) * 4
    }
}

/// Errors unless `tensor` has the shape `expected`.
pub(super) fn check_shape(tensor: &GpuTensor, expected: &[usize], what: &str) -> Result<()> {
    if tensor.shape != expected {
        return Err(Error::new(
            ORIGIN,
            format!(
                "{what}: the tensor is {:?}, {expected:?} is needed",
                tensor.shape
            ),
        ));
    }
    Ok(())
}

/// The dimensions of `tensor`, which must have `N` of them.
pub(super) fn dims<const N: usize>(tensor: &GpuTensor, what: &str) -> Result<[usize; N]> {
    <[usize; N]>::try_from(tensor.shape.as_slice()).map_err(|_| {
        Error::new(
            ORIGIN,
            format!(
                "{what}: the tensor is {:?}, {N} dimensions are needed",
                tensor.shape
            ),
        )
    })
}
