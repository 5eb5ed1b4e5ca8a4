//! Storage buffers kept between samples: a sample leases what it needs, and the lease gives it
//! all back when dropped, so repeated calls of one size allocate nothing.

use std::sync::{Mutex, PoisonError};

/// Free buffers by usage, reused when large enough.
#[derive(Default)]
pub(crate) struct Pool {
    free: Vec<wgpu::Buffer>,
}

/// Buffer sizes are rounded up to this (keeps reuse likely and satisfies copy alignment).
const GRANULE: u64 = 256;

/// Most buffers kept; beyond it the smallest are dropped.
const MAX_KEPT: usize = 32;

impl Pool {
    /// A buffer of at least `size` bytes with exactly `usage`: the smallest free one that fits,
    /// or a new one.
    fn take(
        &mut self,
        device: &wgpu::Device,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let size = size.max(4).div_ceil(GRANULE) * GRANULE;
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.usage() == usage && b.size() >= size && b.size() <= 2 * size)
            .min_by_key(|(_, b)| b.size())
            .map(|(i, _)| i);
        match best {
            Some(i) => self.free.swap_remove(i),
            None => device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            }),
        }
    }

    /// Returns buffers for later calls.
    fn give_back(&mut self, buffers: impl IntoIterator<Item = wgpu::Buffer>) {
        self.free.extend(buffers);
        if self.free.len() > MAX_KEPT {
            self.free.sort_by_key(|b| std::cmp::Reverse(b.size()));
            self.free.truncate(MAX_KEPT);
        }
    }

    /// Number of free buffers (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.free.len()
    }
}

/// Buffers leased from a [`Pool`] for one piece of work; dropping the lease gives them back.
pub(crate) struct Lease<'a> {
    device: &'a wgpu::Device,
    pool: &'a Mutex<Pool>,
    taken: Vec<wgpu::Buffer>,
}

impl<'a> Lease<'a> {
    /// An empty lease on `pool`, which allocates on `device` when it has no buffer that fits.
    pub(crate) fn new(device: &'a wgpu::Device, pool: &'a Mutex<Pool>) -> Lease<'a> {
        Lease {
            device,
            pool,
            taken: Vec::new(),
        }
    }

    /// A buffer for at least `values` values (4 bytes each, at least one) with exactly `usage`.
    pub(crate) fn take(
        &mut self,
        label: &str,
        values: usize,
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let buffer = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(self.device, label, 4 * values.max(1) as u64, usage);
        self.taken.push(buffer.clone());
        buffer
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .give_back(self.taken.drain(..));
    }
}
