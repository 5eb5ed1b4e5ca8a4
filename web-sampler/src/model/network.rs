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

    /// [`forward`](Self::forward) (the same bits in `out`), recording what
    /// [`input_vjp`](Self::input_vjp) needs; `None` for an architecture without a
    /// vector–Jacobian product (the U-Net's would cost a transposed convolution per layer and
    /// the group norms' backward: about twice its forward, as for the MLP).
    fn forward_recorded(
        &self,
        _x: &[f32],
        _t: &[f32],
        _class: &[u32],
        _out: &mut [f32],
    ) -> Option<Tape> {
        None
    }

    /// The vector–Jacobian product of the recorded forward with respect to its inputs (not its
    /// weights): for `grad_out` `[rows, D]` (∂L/∂out), adds nothing and writes `grad_x`
    /// `[rows, D]` (∂L/∂x) and `grad_t` `[rows]` (∂L/∂t, through the time embedding).
    fn input_vjp(&self, _tape: &Tape, _grad_out: &[f32], _grad_x: &mut [f32], _grad_t: &mut [f32]) {
    }
}

/// What a network's forward recorded for its vector–Jacobian product: the inputs' rows and
/// times, and the architecture's intermediate values (the MLP: each hidden layer's
/// pre-activation), in the order the architecture wrote them.
#[derive(Clone, Debug, Default)]
pub struct Tape {
    pub(crate) t: Vec<f32>,
    pub(crate) values: Vec<Vec<f32>>,
}
