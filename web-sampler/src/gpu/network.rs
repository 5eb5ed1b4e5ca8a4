//! The velocity network on the GPU, behind one trait: what [`sample`](super::sample) needs from
//! any architecture — its weights uploaded once per model, the size of its largest buffer (which
//! bounds the batch), and one evaluation recorded into a [`Plan`]. Its implementations are the
//! MLP (`mlp.rs`) and the U-Net (`unet.rs`); the device keeps the network of the last model
//! used, by model id.

use std::sync::Arc;

use super::kernels::{GpuTensor, Plan};
use super::mlp::GpuMlp;
use super::pool::Lease;
use super::unet::GpuUnet;
use super::{Gpu, ORIGIN};
use crate::model::{Architecture, Model};
use crate::{Error, Result};

/// A velocity network's weights on the GPU, uploaded by its architecture's own `upload`, which
/// takes the architecture's spec (see [`upload`]).
pub(crate) trait GpuNetwork: wgpu::WasmNotSendSync {
    /// Values per network row in the largest buffer an evaluation binds, its output `[rows, D]`
    /// included: [`chunk_size`](super::sample::chunk_size) bounds the batch by it.
    fn values_per_row(&self) -> usize;

    /// What records evaluations of up to `rows` rows: the weights, and the working buffers an
    /// evaluation needs, taken from `lease`.
    fn recorder<'a>(&'a self, lease: &mut Lease<'_>, rows: usize) -> Box<dyn NetworkRecorder + 'a>;
}

/// Records evaluations of a [`GpuNetwork`] into plans.
pub(crate) trait NetworkRecorder {
    /// One evaluation of the network, `input` → `output` `[rows, D]` (for a data-predicting
    /// model, the prediction x̂1; the caller turns it into a velocity).
    fn record(&self, plan: &mut Plan, input: &NetworkInput<'_>, output: &GpuTensor) -> Result<()>;
}

/// The input of one network evaluation.
pub(crate) struct NetworkInput<'a> {
    /// The noisy states `[samples, D]`; row r of the evaluation takes sample r mod samples (the
    /// guided batch is every sample twice: conditional rows, then unconditional ones).
    pub x: &'a GpuTensor,
    /// One time-embedding row per solver step, `[steps, E_t]` (computed on the CPU).
    pub time_embedding: &'a GpuTensor,
    /// The row of `time_embedding` this evaluation's time is.
    pub time_row: usize,
    /// The class label of each row, `[rows]` (u32; the null class in unconditional rows).
    pub classes: &'a GpuTensor,
}

/// The network of the last model used on a device.
pub(crate) struct CachedNetwork {
    /// The model id.
    id: String,
    network: Arc<dyn GpuNetwork>,
}

/// The model's network on `gpu`, uploaded on first use and kept for the next calls.
pub(crate) fn cached(gpu: &Gpu, model: &Model) -> Result<Arc<dyn GpuNetwork>> {
    let mut cached = gpu
        .model
        .lock()
        .map_err(|_| Error::new(ORIGIN, "internal error: the model cache is poisoned"))?;
    if let Some(hit) = cached.as_ref().filter(|c| c.id == model.id()) {
        return Ok(Arc::clone(&hit.network));
    }
    *cached = None; // free the old weights first
    let network = upload(gpu, model)?;
    *cached = Some(CachedNetwork {
        id: model.id().to_string(),
        network: Arc::clone(&network),
    });
    Ok(network)
}

/// The model's weights in the GPU network of its architecture (every architecture runs on the
/// GPU path).
// In wasm the GPU objects are neither Send nor Sync (one thread); natively they are both, and
// the `Arc` lets the device be shared between threads.
#[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
fn upload(gpu: &Gpu, model: &Model) -> Result<Arc<dyn GpuNetwork>> {
    Ok(match &model.spec().architecture {
        Architecture::Mlp(mlp) => Arc::new(GpuMlp::upload(gpu, model, mlp)?),
        Architecture::Unet(unet) => Arc::new(GpuUnet::upload(gpu, model, unet)?),
    })
}
