// Dense layer y = act(x·Wᵀ + b), a tiled matrix multiply with the bias and the activation fused.
//
// Dispatched by `gpu::kernels::linear`. Register tiling: a workgroup of THREADS × THREADS
// invocations computes a BLOCK × BLOCK block of `y` (BLOCK rows × BLOCK outputs), each invocation
// a PER_THREAD × PER_THREAD tile accumulated in registers, so every value loaded is used
// PER_THREAD times. Loads go straight to the storage buffers (cached): on lavapipe a version that
// staged tiles through workgroup memory with barriers was 4× slower.
// Edge invocations clamp their loads to the last row/output and skip the store.
// Dispatch: (ceil(outputs / BLOCK), ceil(rows / BLOCK), 1) workgroups.

/// Invocations per side of a workgroup.
const THREADS: u32 = 8u;
/// Rows (and outputs) each invocation computes.
const PER_THREAD: u32 = 4u;
/// Rows and outputs per workgroup: THREADS · PER_THREAD.
const BLOCK: u32 = 32u;
/// `Params.activation`: no activation.
const ACTIVATION_NONE: u32 = 0u;
/// `Params.activation`: SiLU v·σ(v).
const ACTIVATION_SILU: u32 = 1u;
/// SiLU's exponent is clamped here so that e^{−v} stays finite (v / (1 + e^80) is −0 in f32 anyway).
const MAX_EXPONENT: f32 = 80.0;

struct Params {
    rows: u32,
    inner: u32,
    outputs: u32,
    activation: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// x: [rows, inner]
@group(0) @binding(1) var<storage, read> x: array<f32>;
// weight: [outputs, inner] (the PyTorch layout)
@group(0) @binding(2) var<storage, read> weight: array<f32>;
// bias: [outputs]
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// y: [rows, outputs]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(THREADS, THREADS, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
) {
    let first_row = group.y * BLOCK + local.y * PER_THREAD;
    let first_output = group.x * BLOCK + local.x * PER_THREAD;
    var sums: array<array<f32, PER_THREAD>, PER_THREAD>;
    var row_base: array<u32, PER_THREAD>;
    var out_base: array<u32, PER_THREAD>;
    for (var i = 0u; i < PER_THREAD; i++) {
        row_base[i] = min(first_row + i, params.rows - 1u) * params.inner;
        out_base[i] = min(first_output + i, params.outputs - 1u) * params.inner;
    }
    for (var k = 0u; k < params.inner; k++) {
        var xs: array<f32, PER_THREAD>;
        var ws: array<f32, PER_THREAD>;
        for (var i = 0u; i < PER_THREAD; i++) {
            xs[i] = x[row_base[i] + k];
            ws[i] = weight[out_base[i] + k];
        }
        for (var i = 0u; i < PER_THREAD; i++) {
            for (var j = 0u; j < PER_THREAD; j++) {
                sums[i][j] += xs[i] * ws[j];
            }
        }
    }
    for (var i = 0u; i < PER_THREAD; i++) {
        let row = first_row + i;
        for (var j = 0u; j < PER_THREAD; j++) {
            let output = first_output + j;
            if (row < params.rows && output < params.outputs) {
                var v = sums[i][j] + bias[output];
                if (params.activation == ACTIVATION_SILU) {
                    v = v / (1.0 + exp(min(-v, MAX_EXPONENT)));
                }
                y[row * params.outputs + output] = v;
            }
        }
    }
}
