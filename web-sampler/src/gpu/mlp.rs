//! The MLP velocity network on the GPU (the CPU forward is in `model/`): the one place of the
//! GPU path that knows the network is an MLP and reads its sizes.
//!
//! One evaluation of `R` rows: `embed` (x, the step's time-embedding row, the class rows →
//! input `[R, D + E_t + E_c]`), then `linear` for `layers.0` … `layers.{L}` with SiLU fused in all
//! but the last, alternating between two activation buffers; the last layer writes the output
//! `[R, D]`.

use super::kernels::{GpuTensor, Plan};
use super::network::{GpuNetwork, NetworkInput, NetworkRecorder};
use super::pool::Lease;
use super::{Gpu, ORIGIN};
use crate::model::{MlpSpec, Model};
use crate::{Error, Result};

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// An MLP's weights on the GPU.
pub(crate) struct GpuMlp {
    /// `[num_classes + 1, E_c]`; `[1, 0]` (one unused value) when unconditional.
    class_embedding: GpuTensor,
    layers: Vec<GpuLayer>,
    /// `D + E_t + E_c`, the width of `layers.0`'s input.
    input_width: usize,
}

struct GpuLayer {
    /// `[outputs, inner]`.
    weight: GpuTensor,
    /// `[outputs]`.
    bias: GpuTensor,
}

impl GpuLayer {
    fn outputs(&self) -> usize {
        self.bias.len()
    }
}

impl GpuMlp {
    /// Uploads the weights of `model`, an MLP of sizes `mlp`.
    pub(crate) fn upload(gpu: &Gpu, model: &Model, mlp: &MlpSpec) -> Result<GpuMlp> {
        let tensor = |name: &str| {
            model.tensor(name).ok_or_else(|| {
                Error::new(
                    ORIGIN,
                    format!("internal error: the model has no tensor {name}"),
                )
            })
        };
        let upload =
            |label: &str, values: &[f32], shape: &[usize]| gpu.tensor(label, values, shape);
        let spec = model.spec();
        let class_embedding = if spec.is_conditional() {
            upload(
                "class embedding",
                tensor("class_embedding.weight")?,
                &[spec.num_classes + 1, spec.class_embedding],
            )?
        } else {
            upload("class embedding", &[], &[1, 0])?
        };
        let mut layers = Vec::new();
        for (i, &(outputs, inner)) in mlp.layer_sizes(spec).iter().enumerate() {
            layers.push(GpuLayer {
                weight: gpu.weights(
                    "weight",
                    tensor(&format!("layers.{i}.weight"))?,
                    &[outputs, inner],
                    model.dtype(),
                )?,
                bias: upload("bias", tensor(&format!("layers.{i}.bias"))?, &[outputs])?,
            });
        }
        Ok(GpuMlp {
            class_embedding,
            layers,
            input_width: mlp.input_width(spec),
        })
    }
}

impl GpuNetwork for GpuMlp {
    fn values_per_row(&self) -> usize {
        self.layers
            .iter()
            .map(GpuLayer::outputs)
            .chain([self.input_width])
            .max()
            .unwrap_or(self.input_width)
    }

    fn recorder<'a>(&'a self, lease: &mut Lease<'_>, rows: usize) -> Box<dyn NetworkRecorder + 'a> {
        let widest = self.values_per_row();
        Box::new(MlpRecorder {
            mlp: self,
            input: lease.take("input", rows * self.input_width, STORAGE),
            activations: [
                lease.take("activations a", rows * widest, STORAGE),
                lease.take("activations b", rows * widest, STORAGE),
            ],
        })
    }
}

/// An MLP with its working buffers, sized for up to the rows it was made for.
struct MlpRecorder<'a> {
    mlp: &'a GpuMlp,
    /// The input rows `[rows, D + E_t + E_c]`.
    input: wgpu::Buffer,
    /// The hidden activations `[rows, W]`, written by the layers in turn.
    activations: [wgpu::Buffer; 2],
}

impl NetworkRecorder for MlpRecorder<'_> {
    fn record(&self, plan: &mut Plan, input: &NetworkInput<'_>, output: &GpuTensor) -> Result<()> {
        let rows = output.shape().first().copied().unwrap_or(0);
        let first = GpuTensor::new(&self.input, &[rows, self.mlp.input_width])?;
        plan.embed(
            input.x,
            input.time_embedding,
            input.time_row,
            input.classes,
            &self.mlp.class_embedding,
            &first,
        )?;
        let last = self.mlp.layers.len() - 1;
        let mut source = first;
        for (i, layer) in self.mlp.layers.iter().enumerate() {
            let target = if i == last {
                output.clone()
            } else {
                GpuTensor::new(&self.activations[i % 2], &[rows, layer.outputs()])?
            };
            plan.linear(&source, &layer.weight, &layer.bias, &target, i != last)?;
            source = target;
        }
        Ok(())
    }
}
