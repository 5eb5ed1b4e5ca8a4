//! The MLP's vector–Jacobian product with respect to its inputs `x` and `t` (not its weights):
//! what BNS distillation needs to differentiate a loss through the sampling loop while the
//! network stays frozen.
//!
//! The forward is recorded (each hidden layer's pre-activation `z_l`); the backward then runs
//! the layers in reverse: `g ← g·W_l` through a dense layer (the transposed weights packed for
//! the same kernel as the forward), `g ← g ⊙ SiLU'(z_l)` through an activation, with
//! `SiLU'(z) = σ(z)·(1 + z·(1 − σ(z)))`. The input's gradient splits like the input: the data
//! part is `∂L/∂x`; the time-embedding part, dotted with the embedding's derivative
//! ([`write_time_embedding_derivative`]), is `∂L/∂t`; the class part is dropped (classes are
//! not differentiated).

use super::super::activation::{exp, silu};
use super::super::embedding::{write_time_embedding, write_time_embedding_derivative};
use super::super::linear::PackedLinear;
use super::super::network::Tape;
use super::Mlp;

/// `SiLU'(z) = σ(z)·(1 + z·(1 − σ(z)))`, σ with the forward's [`exp`].
#[inline(always)]
fn silu_derivative(z: f32) -> f32 {
    let sigmoid = 1.0 / (1.0 + exp(-z));
    sigmoid * (1.0 + z * (1.0 - sigmoid))
}

/// The forward of all `rows = t.len()` rows at once (rows are independent, so `out` has the
/// bits of [`Mlp::forward`]'s), keeping each hidden layer's pre-activation in the tape.
pub(super) fn forward_recorded(
    mlp: &Mlp,
    x: &[f32],
    t: &[f32],
    class: &[u32],
    out: &mut [f32],
) -> Tape {
    let rows = t.len();
    let d = mlp.data_dim;
    let input_width = d + mlp.time_embedding + mlp.class_width;
    let mut input = vec![0.0f32; rows * input_width];
    for (r, row) in input.chunks_exact_mut(input_width).enumerate() {
        let (data, rest) = row.split_at_mut(d);
        let (time, class_part) = rest.split_at_mut(mlp.time_embedding);
        data.copy_from_slice(&x[r * d..(r + 1) * d]);
        write_time_embedding(t[r], mlp.time_scale, time);
        if mlp.class_width > 0 {
            let (c, w) = (class[r] as usize, mlp.class_width);
            class_part.copy_from_slice(&mlp.class_embedding[c * w..(c + 1) * w]);
        }
    }
    let last = mlp.layers.len() - 1;
    let mut pre_activations = Vec::with_capacity(last);
    let mut activation = input;
    for (i, layer) in mlp.layers.iter().enumerate() {
        if i == last {
            layer.packed.forward(&activation, out);
        } else {
            let mut z = vec![0.0f32; rows * layer.fan_out()];
            layer.packed.forward(&activation, &mut z);
            activation = z.iter().map(|&v| silu(v)).collect();
            pre_activations.push(z);
        }
    }
    Tape {
        t: t.to_vec(),
        values: pre_activations,
    }
}

/// `grad_x` `[rows, D]` and `grad_t` `[rows]` from `grad_out` `[rows, D]` (see the module).
pub(super) fn input_vjp(
    mlp: &Mlp,
    tape: &Tape,
    grad_out: &[f32],
    grad_x: &mut [f32],
    grad_t: &mut [f32],
) {
    let rows = tape.t.len();
    let d = mlp.data_dim;
    let transposed = mlp.transposed.get_or_init(|| {
        mlp.layers
            .iter()
            .map(|layer| {
                let (fan_in, fan_out) = (layer.fan_in(), layer.fan_out());
                let mut weight_t = vec![0.0f32; fan_in * fan_out];
                for o in 0..fan_out {
                    for i in 0..fan_in {
                        weight_t[i * fan_out + o] = layer.weight[o * fan_in + i];
                    }
                }
                PackedLinear::new(&weight_t, &vec![0.0; fan_in], fan_out)
            })
            .collect()
    });
    let mut grad = grad_out.to_vec();
    for (l, layer_t) in transposed.iter().enumerate().rev() {
        if l < tape.values.len() {
            // Through the activation after layer l.
            for (g, &z) in grad.iter_mut().zip(&tape.values[l]) {
                *g *= silu_derivative(z);
            }
        }
        let mut below = vec![0.0f32; rows * layer_t.fan_out()];
        layer_t.forward(&grad, &mut below);
        grad = below;
    }
    let input_width = d + mlp.time_embedding + mlp.class_width;
    let mut derivative = vec![0.0f64; mlp.time_embedding];
    for (r, row) in grad.chunks_exact(input_width).enumerate() {
        grad_x[r * d..(r + 1) * d].copy_from_slice(&row[..d]);
        write_time_embedding_derivative(tape.t[r], mlp.time_scale, &mut derivative);
        let dt: f64 = row[d..d + mlp.time_embedding]
            .iter()
            .zip(&derivative)
            .map(|(&g, &e)| f64::from(g) * e)
            .sum();
        grad_t[r] = dt as f32;
    }
}
