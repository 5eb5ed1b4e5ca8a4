// 2-D convolution (3×3 or 1×1, stride 1 or 2, padding kernel / 2) with the bias fused: an
// implicit GEMM over position-major activations.
//
// Dispatched by `Plan::conv2d` (`web-sampler/src/gpu/kernels.rs`). The GEMM is
// `y[m, o] = bias[o] + Σ_{ky, kx, c} x[m's input (c, ky, kx)] · weight[o, c, ky, kx]` with
// `m = (row, output position)`; the im2col matrix is never stored: each input is read from `x`
// at its position, zero beyond the borders. Register tiling as in `linear.wgsl`, with a larger
// block: a workgroup of THREADS_X × THREADS_Y invocations computes BLOCK_POSITIONS positions ×
// BLOCK_OUTPUTS outputs of `y`, each invocation POSITIONS consecutive positions × OUTPUTS
// outputs in named vec4 accumulators (two per position), so every input loaded is used OUTPUTS
// times and every weight POSITIONS times. Loads go straight to the storage buffers.
//
// Measured on the CPU adapters (the 3×3 convolutions of the default U-Net, BENCHMARKS.md):
// this block (6 × 8) against the former 4 × 4 one is ~1.5× faster on lavapipe and ~1.4× on
// SwiftShader. Staging tiles of inputs and weights through workgroup memory with barriers was
// ~1.5× slower than the 4 × 4 block on lavapipe and ~1.3× on SwiftShader (both load workgroup
// memory lane by lane, as they do storage). Eight or more positions per invocation are faster
// still on lavapipe (16 × 8: ~2.2×), but SwiftShader then takes ~20 s to compile the kernel.
// Dispatch: (ceil(outputs / BLOCK_OUTPUTS), Y, Z) workgroups with
// Y · Z ≥ ceil(rows · out positions / BLOCK_POSITIONS) (the position tile is
// group.z · Y + group.y: beyond the device's limit per dimension, the tiles spill into z).

/// Invocations along the outputs and along the positions.
const THREADS_X: u32 = 4u;
const THREADS_Y: u32 = 16u;
/// Positions and outputs each invocation computes (the code below is written out for 6 × 8).
const POSITIONS: u32 = 6u;
const OUTPUTS: u32 = 8u;
/// Positions per workgroup: THREADS_Y · POSITIONS.
const BLOCK_POSITIONS: u32 = 96u;
/// Outputs per workgroup: THREADS_X · OUTPUTS.
const BLOCK_OUTPUTS: u32 = 32u;

struct Conv2dParams {
    rows: u32,
    inputs: u32,
    outputs: u32,
    height: u32,
    width: u32,
    out_height: u32,
    out_width: u32,
    kernel: u32,
    stride: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Conv2dParams;
// x: [rows, height · width, inputs]
@group(0) @binding(1) var<storage, read> x: array<f32>;
// The weights, read only through weight_at: for a model stored in half precision,
// web-sampler/src/gpu/kernels/weights.rs makes the f16 forms of this block.
// weights: begin
// weight: [outputs, inputs, kernel, kernel] (the PyTorch layout)
@group(0) @binding(2) var<storage, read> weight: array<f32>;
fn weight_at(i: u32) -> f32 {
    return weight[i];
}
// weights: end
// bias: [outputs]
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// y: [rows, out_height · out_width, outputs]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

/// The start in `x` of the inputs that output position `m` reads at kernel offset (ky, kx), and
/// whether that input is inside the picture (else the start is 0 and the inputs count as zeros).
fn tap(m: u32, ky: u32, kx: u32) -> vec2<u32> {
    let out_positions = params.out_height * params.out_width;
    let row = m / out_positions;
    let p = m % out_positions;
    let pad = params.kernel / 2u;
    // The input's coordinates plus the padding, so that they stay unsigned.
    let iy = (p / params.out_width) * params.stride + ky;
    let ix = (p % params.out_width) * params.stride + kx;
    let inside = iy >= pad && ix >= pad && iy < params.height + pad && ix < params.width + pad;
    let start = ((row * params.height + iy - pad) * params.width + ix - pad) * params.inputs;
    return select(vec2<u32>(0u, 0u), vec2<u32>(start, 1u), inside);
}

@compute @workgroup_size(THREADS_X, THREADS_Y, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
) {
    let m_count = params.rows * params.out_height * params.out_width;
    let tile = group.z * groups.y + group.y;
    if (tile * BLOCK_POSITIONS >= m_count) {
        return;
    }
    let first_m = tile * BLOCK_POSITIONS + local.y * POSITIONS;
    let first_output = group.x * BLOCK_OUTPUTS + local.x * OUTPUTS;
    // Edge invocations repeat the last position or output (their results are not stored): the
    // positions through min, the weights by clamping the index to the last weight.
    let last_m = m_count - 1u;
    let k = params.kernel;
    let taps = k * k;
    let fan_in = params.inputs * taps;
    let last_weight = params.outputs * fan_in - 1u;
    let first_weight = min(first_output, params.outputs - 1u) * fan_in;
    // lo_p and hi_p hold position p's outputs 0–3 and 4–7: no arrays, so no dynamic indexing
    // for the compiler to turn into memory.
    var lo0 = vec4<f32>();
    var hi0 = vec4<f32>();
    var lo1 = vec4<f32>();
    var hi1 = vec4<f32>();
    var lo2 = vec4<f32>();
    var hi2 = vec4<f32>();
    var lo3 = vec4<f32>();
    var hi3 = vec4<f32>();
    var lo4 = vec4<f32>();
    var hi4 = vec4<f32>();
    var lo5 = vec4<f32>();
    var hi5 = vec4<f32>();
    for (var ky = 0u; ky < k; ky++) {
        for (var kx = 0u; kx < k; kx++) {
            let t0 = tap(min(first_m, last_m), ky, kx);
            let t1 = tap(min(first_m + 1u, last_m), ky, kx);
            let t2 = tap(min(first_m + 2u, last_m), ky, kx);
            let t3 = tap(min(first_m + 3u, last_m), ky, kx);
            let t4 = tap(min(first_m + 4u, last_m), ky, kx);
            let t5 = tap(min(first_m + 5u, last_m), ky, kx);
            let in0 = t0.y == 1u;
            let in1 = t1.y == 1u;
            let in2 = t2.y == 1u;
            let in3 = t3.y == 1u;
            let in4 = t4.y == 1u;
            let in5 = t5.y == 1u;
            let offset = ky * k + kx;
            for (var c = 0u; c < params.inputs; c++) {
                // Output j's weight at (c, ky, kx) is at `at + j · fan_in`.
                let at = first_weight + c * taps + offset;
                let wlo = vec4<f32>(
                    weight_at(at),
                    weight_at(min(at + fan_in, last_weight)),
                    weight_at(min(at + 2u * fan_in, last_weight)),
                    weight_at(min(at + 3u * fan_in, last_weight)),
                );
                let whi = vec4<f32>(
                    weight_at(min(at + 4u * fan_in, last_weight)),
                    weight_at(min(at + 5u * fan_in, last_weight)),
                    weight_at(min(at + 6u * fan_in, last_weight)),
                    weight_at(min(at + 7u * fan_in, last_weight)),
                );
                let x0 = select(0.0, x[t0.x + c], in0);
                lo0 += x0 * wlo;
                hi0 += x0 * whi;
                let x1 = select(0.0, x[t1.x + c], in1);
                lo1 += x1 * wlo;
                hi1 += x1 * whi;
                let x2 = select(0.0, x[t2.x + c], in2);
                lo2 += x2 * wlo;
                hi2 += x2 * whi;
                let x3 = select(0.0, x[t3.x + c], in3);
                lo3 += x3 * wlo;
                hi3 += x3 * whi;
                let x4 = select(0.0, x[t4.x + c], in4);
                lo4 += x4 * wlo;
                hi4 += x4 * whi;
                let x5 = select(0.0, x[t5.x + c], in5);
                lo5 += x5 * wlo;
                hi5 += x5 * whi;
            }
        }
    }
    let second = first_output + 4u;
    store(first_m, first_output, lo0);
    store(first_m, second, hi0);
    store(first_m + 1u, first_output, lo1);
    store(first_m + 1u, second, hi1);
    store(first_m + 2u, first_output, lo2);
    store(first_m + 2u, second, hi2);
    store(first_m + 3u, first_output, lo3);
    store(first_m + 3u, second, hi3);
    store(first_m + 4u, first_output, lo4);
    store(first_m + 4u, second, hi4);
    store(first_m + 5u, first_output, lo5);
    store(first_m + 5u, second, hi5);
}

/// Adds the bias and stores those of the four outputs from `first_output` of position `m` that
/// exist.
fn store(m: u32, first_output: u32, sums: vec4<f32>) {
    if (m >= params.rows * params.out_height * params.out_width) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let output = first_output + j;
        if (output < params.outputs) {
            y[m * params.outputs + output] = sums[j] + bias[output];
        }
    }
}
