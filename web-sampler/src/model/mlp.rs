//! The CPU forward of the MLP velocity network: input assembly (data, sinusoidal time embedding,
//! class embedding), dense layers with SiLU, in an order that is the same natively and in wasm.

use super::linear::linear;

/// Rows of a batch that go through the layers together: the activations of one chunk
/// (`CHUNK_ROWS × width` floats) stay in the L2 cache, and memory stays bounded for any batch.
/// Rows are independent, so chunking never changes a result.
const CHUNK_ROWS: usize = 64;

/// The scale of `t` inside the embedding of model files that do not state one (`time_scale` in
/// the spec): t ∈ [0, 1] spread like a step index in [0, 1000].
pub const DEFAULT_TIME_SCALE: f64 = 1000.0;
/// The longest period of the embedding's frequencies.
pub const MAX_PERIOD: f64 = 10000.0;

/// The frequencies `f_k = exp(−ln(10000)·k/(E/2))`, `k < E/2`, of a time embedding of size `dim`.
pub fn time_frequencies(dim: usize) -> Vec<f64> {
    let half = dim / 2;
    let log_max = libm::log(MAX_PERIOD);
    (0..half)
        .map(|k| libm::exp(-log_max * k as f64 / half as f64))
        .collect()
}

/// Sinusoidal embedding of the time `t`:
/// e(t) = [sin(s·t·f_k) for k < E/2, cos(s·t·f_k) for k < E/2], f_k = exp(−ln(10000)·k/(E/2)),
/// with the model's time scale `s`; computed in f64 with libm, stored as f32.
///
/// The argument is computed as `(s·t)·f_k`. For an odd `dim` the last value is 0 (model files
/// always have an even size).
pub fn time_embedding(t: f32, dim: usize, scale: f64) -> Vec<f32> {
    let mut embedding = vec![0.0; dim];
    write_time_embedding(t, scale, &mut embedding);
    embedding
}

/// [`time_embedding`] written into `out` (`dim = out.len()`).
pub(crate) fn write_time_embedding(t: f32, scale: f64, out: &mut [f32]) {
    let half = out.len() / 2;
    let scaled = scale * f64::from(t);
    let frequencies = time_frequencies(out.len());
    let (sines, rest) = out.split_at_mut(half);
    let cosines = &mut rest[..half];
    for ((sine, cosine), frequency) in sines.iter_mut().zip(cosines.iter_mut()).zip(frequencies) {
        let angle = scaled * frequency;
        *sine = libm::sin(angle) as f32;
        *cosine = libm::cos(angle) as f32;
    }
    if let Some(last) = rest.get_mut(half) {
        *last = 0.0;
    }
}

/// SiLU `v·σ(v) = v / (1 + e^{−v})`, with `libm::expf`.
#[inline]
pub(crate) fn silu(v: f32) -> f32 {
    v / (1.0 + libm::expf(-v))
}

/// One dense layer: `weight` `[out, in]` (PyTorch layout) and `bias` `[out]`.
#[derive(Clone, Debug)]
pub(crate) struct Layer {
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

impl Layer {
    fn fan_in(&self) -> usize {
        self.weight.len() / self.bias.len().max(1)
    }

    fn fan_out(&self) -> usize {
        self.bias.len()
    }
}

/// The network's weights in the shape the forward needs (checked when the model is built).
pub(crate) struct Network<'a> {
    pub(crate) data_dim: usize,
    pub(crate) time_embedding: usize,
    pub(crate) time_scale: f64,
    /// `[num_classes + 1, class_embedding]`; empty when unconditional.
    pub(crate) class_embedding: &'a [f32],
    pub(crate) class_width: usize,
    pub(crate) layers: &'a [Layer],
}

impl Network<'_> {
    /// The output of the network for `rows = t.len()` rows: `x` `[rows, D]`, `class` `[rows]`
    /// (rows of the class embedding, already range-checked; empty when unconditional), `out`
    /// `[rows, D]`.
    pub(crate) fn forward(&self, x: &[f32], t: &[f32], class: &[u32], out: &mut [f32]) {
        let d = self.data_dim;
        let input_width = d + self.time_embedding + self.class_width;
        let widest = self.layers.iter().map(Layer::fan_out).max().unwrap_or(0);
        let mut input = Vec::new();
        let mut front = Vec::new();
        let mut back = Vec::new();
        for (chunk_index, t_chunk) in t.chunks(CHUNK_ROWS).enumerate() {
            let first = chunk_index * CHUNK_ROWS;
            let rows = t_chunk.len();
            input.clear();
            input.resize(rows * input_width, 0.0);
            for (r, row) in input.chunks_exact_mut(input_width).enumerate() {
                let (data, rest) = row.split_at_mut(d);
                let (time, class_part) = rest.split_at_mut(self.time_embedding);
                data.copy_from_slice(&x[(first + r) * d..(first + r + 1) * d]);
                write_time_embedding(t_chunk[r], self.time_scale, time);
                if self.class_width > 0 {
                    let c = class[first + r] as usize;
                    let w = self.class_width;
                    class_part.copy_from_slice(&self.class_embedding[c * w..(c + 1) * w]);
                }
            }
            front.resize(rows * widest, 0.0);
            back.resize(rows * widest, 0.0);
            let last = self.layers.len() - 1;
            for (i, layer) in self.layers.iter().enumerate() {
                let source: &[f32] = if i == 0 {
                    &input
                } else {
                    &front[..rows * layer.fan_in()]
                };
                if i == last {
                    let target = &mut out[first * d..(first + rows) * d];
                    linear(source, &layer.weight, &layer.bias, layer.fan_in(), target);
                } else {
                    let target = &mut back[..rows * layer.fan_out()];
                    linear(source, &layer.weight, &layer.bias, layer.fan_in(), target);
                    for v in target.iter_mut() {
                        *v = silu(*v);
                    }
                    std::mem::swap(&mut front, &mut back);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_embedding_at_zero_is_sines_then_cosines() {
        let e = time_embedding(0.0, 8, 1000.0);
        assert_eq!(e, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(time_embedding(0.0, 2, 1000.0), [0.0, 1.0]);
        assert_eq!(time_embedding(0.5, 5, 1000.0)[4], 0.0);
    }

    #[test]
    fn time_embedding_values() {
        let t = 0.37f32;
        let e = time_embedding(t, 6, 1000.0);
        let tt = f64::from(t) * 1000.0;
        for k in 0..3 {
            let f = (-(10000f64.ln()) * k as f64 / 3.0).exp();
            assert!((f64::from(e[k]) - (tt * f).sin()).abs() < 1e-6, "sin {k}");
            assert!(
                (f64::from(e[3 + k]) - (tt * f).cos()).abs() < 1e-6,
                "cos {k}"
            );
        }
        // The first frequency is exactly 1.
        assert_eq!(e[0], libm::sin(tt) as f32);
        assert_eq!(e[3], libm::cos(tt) as f32);
    }

    #[test]
    fn silu_values() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((silu(-1.0) + 0.268_941_43).abs() < 1e-6);
        assert_eq!(silu(100.0), 100.0);
        assert_eq!(silu(-200.0), -0.0);
        assert!(silu(f32::NAN).is_nan());
    }
}
