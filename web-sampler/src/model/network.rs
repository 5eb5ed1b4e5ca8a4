//! The seam every velocity network goes through on the CPU: its weights as a list of tensors
//! (names and shapes from [`ModelSpec::tensor_shapes`](super::ModelSpec::tensor_shapes)) and a
//! forward for a batch. [`Model`](super::Model) checks the inputs, runs the forward and turns
//! the network's output into a velocity; an architecture only implements this trait (the MLP
//! in `mlp.rs`, the U-Net in `unet/forward.rs`).

use std::fmt::Debug;

/// A velocity network's CPU forward, over weights already checked against its spec.
///
/// Implementations must be deterministic on every platform: a fixed summation order, `libm`
/// for transcendentals, and row `i` of the output depending only on row `i` of the inputs, bit
/// for bit, whatever the batch size.
pub trait VelocityNetwork: Debug + Send + Sync {
    /// The weights, one slice per tensor, in [`ModelSpec::tensor_shapes`] order.
    ///
    /// [`ModelSpec::tensor_shapes`]: super::ModelSpec::tensor_shapes
    fn tensors(&self) -> Vec<&[f32]>;

    /// The network's output (the velocity, or `x̂1` for data-predicting models) for
    /// `rows = t.len()` rows: `x` `[rows, D]`, `t` `[rows]`, `class` `[rows]` (rows of the class
    /// embedding, already range-checked; empty when unconditional), `out` `[rows, D]`.
    fn forward(&self, x: &[f32], t: &[f32], class: &[u32], out: &mut [f32]);
}
