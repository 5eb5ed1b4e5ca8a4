// 2-D convolution (3×3 or 1×1, stride 1 or 2, padding kernel / 2) with the bias fused: an
// implicit GEMM over position-major activations.
//
// Dispatched by `Plan::conv2d` (`web-sampler/src/gpu/kernels.rs`). The GEMM is
// `y[m, o] = bias[o] + Σ_{c, ky, kx} x[m's input (c, ky, kx)] · weight[o, c, ky, kx]` with
// `m = (row, output position)`; the im2col matrix is never stored: each input is read from `x`
// at its position, zero beyond the borders. Register tiling as in `linear.wgsl`: a workgroup of
// THREADS × THREADS invocations computes a BLOCK × BLOCK block of `y` (BLOCK positions × BLOCK
// outputs), each invocation PER_THREAD × PER_THREAD values in four vec4 accumulators.
// Dispatch: (ceil(outputs / BLOCK), Y, Z) workgroups with Y · Z ≥ ceil(rows · out positions /
// BLOCK) (the position tile is group.z · Y + group.y: beyond the device's limit per dimension,
// the tiles spill into z).

/// Invocations per side of a workgroup.
const THREADS: u32 = 8u;
/// Positions (and outputs) each invocation computes (the code below is written out for 4).
const PER_THREAD: u32 = 4u;
/// Positions and outputs per workgroup: THREADS · PER_THREAD.
const BLOCK: u32 = 32u;

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

/// Where one output position reads its inputs: the start of its row's input, the top-left
/// input it covers (may be −1: padding).
struct Origin {
    row_start: u32,
    iy: i32,
    ix: i32,
}

fn origin(m: u32) -> Origin {
    let out_positions = params.out_height * params.out_width;
    let row = m / out_positions;
    let p = m % out_positions;
    let pad = i32(params.kernel / 2u);
    let oy = i32(p / params.out_width);
    let ox = i32(p % params.out_width);
    return Origin(
        row * params.height * params.width * params.inputs,
        oy * i32(params.stride) - pad,
        ox * i32(params.stride) - pad,
    );
}

/// The start of the inputs of `o` at kernel offset (ky, kx) in `x` and whether it is inside
/// the picture (else the start is 0 and the inputs count as zeros).
fn tap(o: Origin, ky: i32, kx: i32) -> vec2<u32> {
    let iy = o.iy + ky;
    let ix = o.ix + kx;
    let inside = iy >= 0 && ix >= 0 && iy < i32(params.height) && ix < i32(params.width);
    let start = o.row_start + (u32(max(iy, 0)) * params.width + u32(max(ix, 0))) * params.inputs;
    return select(vec2<u32>(0u, 0u), vec2<u32>(start, 1u), inside);
}

@compute @workgroup_size(THREADS, THREADS, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
) {
    let m_count = params.rows * params.out_height * params.out_width;
    let tile = group.z * groups.y + group.y;
    if (tile * BLOCK >= m_count) {
        return;
    }
    let first_m = tile * BLOCK + local.y * PER_THREAD;
    let first_output = group.x * BLOCK + local.x * PER_THREAD;
    // Edge invocations repeat the last position or output (their results are not stored).
    let last_m = m_count - 1u;
    let last_output = params.outputs - 1u;
    let o0 = origin(min(first_m, last_m));
    let o1 = origin(min(first_m + 1u, last_m));
    let o2 = origin(min(first_m + 2u, last_m));
    let o3 = origin(min(first_m + 3u, last_m));
    let k = params.kernel;
    let taps = k * k;
    let fan_in = params.inputs * taps;
    let w0 = min(first_output, last_output) * fan_in;
    let w1 = min(first_output + 1u, last_output) * fan_in;
    let w2 = min(first_output + 2u, last_output) * fan_in;
    let w3 = min(first_output + 3u, last_output) * fan_in;
    var sums0 = vec4<f32>();
    var sums1 = vec4<f32>();
    var sums2 = vec4<f32>();
    var sums3 = vec4<f32>();
    for (var ky = 0u; ky < k; ky++) {
        for (var kx = 0u; kx < k; kx++) {
            let t0 = tap(o0, i32(ky), i32(kx));
            let t1 = tap(o1, i32(ky), i32(kx));
            let t2 = tap(o2, i32(ky), i32(kx));
            let t3 = tap(o3, i32(ky), i32(kx));
            let in0 = t0.y == 1u;
            let in1 = t1.y == 1u;
            let in2 = t2.y == 1u;
            let in3 = t3.y == 1u;
            let offset = ky * k + kx;
            for (var c = 0u; c < params.inputs; c++) {
                let at = c * taps + offset;
                let w = vec4<f32>(weight_at(w0 + at), weight_at(w1 + at), weight_at(w2 + at), weight_at(w3 + at));
                sums0 += select(0.0, x[t0.x + c], in0) * w;
                sums1 += select(0.0, x[t1.x + c], in1) * w;
                sums2 += select(0.0, x[t2.x + c], in2) * w;
                sums3 += select(0.0, x[t3.x + c], in3) * w;
            }
        }
    }
    store(first_m, first_output, sums0);
    store(first_m + 1u, first_output, sums1);
    store(first_m + 2u, first_output, sums2);
    store(first_m + 3u, first_output, sums3);
}

/// Adds the bias and stores the four outputs of position `m` that exist.
fn store(m: u32, first_output: u32, sums: vec4<f32>) {
    if (m >= params.rows * params.out_height * params.out_width) {
        return;
    }
    for (var j = 0u; j < PER_THREAD; j++) {
        let output = first_output + j;
        if (output < params.outputs) {
            y[m * params.outputs + output] = sums[j] + bias[output];
        }
    }
}
