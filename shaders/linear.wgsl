// Dense layer y = act(x·Wᵀ + b), a tiled matrix multiply with the bias and the activation fused.
//
// Dispatched by `Plan::linear` (`web-sampler/src/gpu/kernels.rs`). Register tiling: a workgroup of
// THREADS × THREADS invocations computes a BLOCK × BLOCK block of `y` (BLOCK rows × BLOCK outputs),
// each invocation a PER_THREAD × PER_THREAD tile held in four vec4 accumulators, so every value
// loaded is used PER_THREAD times. Loads go straight to the storage buffers (cached). Measured on
// the CPU adapters (batch 64, NFE 8, Fashion-MNIST model): staging tiles through workgroup memory
// with barriers was 4× slower on lavapipe, and per-invocation arrays indexed in loops were 7×
// slower on SwiftShader than these named vec4s.
// Dispatch: (ceil(outputs / BLOCK), Y, Z) workgroups with Y · Z ≥ ceil(rows / BLOCK) (the row
// tile is group.z · Y + group.y: beyond the device's limit per dimension, the tiles spill into
// z; tiles past the last row store nothing).

/// Invocations per side of a workgroup.
const THREADS: u32 = 8u;
/// Rows (and outputs) each invocation computes (the code below is written out for 4).
const PER_THREAD: u32 = 4u;
/// Rows and outputs per workgroup: THREADS · PER_THREAD.
const BLOCK: u32 = 32u;
// ACTIVATION_SILU and MAX_EXPONENT are shared constants, appended when the kernel is
// compiled (shaders/README.md).

struct LinearParams {
    rows: u32,
    inner: u32,
    outputs: u32,
    activation: u32,
}

@group(0) @binding(0) var<uniform> params: LinearParams;
// x: [rows, inner]
@group(0) @binding(1) var<storage, read> x: array<f32>;
// The weights, read only through weight_at: for a model stored in half precision,
// web-sampler/src/gpu/kernels/weights.rs makes the f16 forms of this block.
// weights: begin
// weight: [outputs, inner] (the PyTorch layout)
@group(0) @binding(2) var<storage, read> weight: array<f32>;
fn weight_at(i: u32) -> f32 {
    return weight[i];
}
// weights: end
// bias: [outputs]
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// y: [rows, outputs]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(THREADS, THREADS, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
) {
    let first_row = (group.z * groups.y + group.y) * BLOCK + local.y * PER_THREAD;
    let first_output = group.x * BLOCK + local.x * PER_THREAD;
    // Start of each of the invocation's rows of x and of weight; edge invocations repeat the
    // last row or output (their results are not stored).
    let last_row = params.rows - 1u;
    let last_output = params.outputs - 1u;
    let x0 = min(first_row, last_row) * params.inner;
    let x1 = min(first_row + 1u, last_row) * params.inner;
    let x2 = min(first_row + 2u, last_row) * params.inner;
    let x3 = min(first_row + 3u, last_row) * params.inner;
    let w0 = min(first_output, last_output) * params.inner;
    let w1 = min(first_output + 1u, last_output) * params.inner;
    let w2 = min(first_output + 2u, last_output) * params.inner;
    let w3 = min(first_output + 3u, last_output) * params.inner;
    // sums_r holds row r's four outputs: no arrays, so no dynamic indexing for the compiler
    // to turn into memory.
    var sums0 = vec4<f32>();
    var sums1 = vec4<f32>();
    var sums2 = vec4<f32>();
    var sums3 = vec4<f32>();
    for (var k = 0u; k < params.inner; k++) {
        let w = vec4<f32>(weight_at(w0 + k), weight_at(w1 + k), weight_at(w2 + k), weight_at(w3 + k));
        sums0 += x[x0 + k] * w;
        sums1 += x[x1 + k] * w;
        sums2 += x[x2 + k] * w;
        sums3 += x[x3 + k] * w;
    }
    store(first_row, first_output, sums0);
    store(first_row + 1u, first_output, sums1);
    store(first_row + 2u, first_output, sums2);
    store(first_row + 3u, first_output, sums3);
}

/// Adds the bias, applies the activation and stores the four outputs of one row that exist.
fn store(row: u32, first_output: u32, sums: vec4<f32>) {
    if (row >= params.rows) {
        return;
    }
    for (var j = 0u; j < PER_THREAD; j++) {
        let output = first_output + j;
        if (output < params.outputs) {
            var v = sums[j] + bias[output];
            if (params.activation == ACTIVATION_SILU) {
                v = v / (1.0 + exp(min(-v, MAX_EXPONENT)));
            }
            y[row * params.outputs + output] = v;
        }
    }
}
