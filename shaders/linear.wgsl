// Dense layer y = act(x·Wᵀ + b), a tiled matrix multiply with the bias and the activation fused.
//
// Dispatched by `gpu::kernels::linear`. One workgroup computes a TILE × TILE block of `y`
// (TILE rows × TILE outputs); the inner dimension is walked TILE values at a time through
// workgroup memory. Dispatch: (ceil(outputs / TILE), ceil(rows / TILE), 1) workgroups.

/// Rows and outputs per workgroup, and inner-dimension values per step.
const TILE: u32 = 16u;
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

var<workgroup> x_tile: array<array<f32, TILE>, TILE>;      // [row][k]
var<workgroup> weight_tile: array<array<f32, TILE>, TILE>; // [output][k]

@compute @workgroup_size(TILE, TILE, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
) {
    let row = group.y * TILE + local.y;
    let output = group.x * TILE + local.x;
    // The weight row this invocation loads (its tile is indexed [output][k]).
    let load_output = group.x * TILE + local.y;
    var sum = 0.0;
    for (var k0 = 0u; k0 < params.inner; k0 += TILE) {
        let k = k0 + local.x;
        var xv = 0.0;
        if (row < params.rows && k < params.inner) {
            xv = x[row * params.inner + k];
        }
        x_tile[local.y][local.x] = xv;
        var wv = 0.0;
        if (load_output < params.outputs && k < params.inner) {
            wv = weight[load_output * params.inner + k];
        }
        weight_tile[local.y][local.x] = wv;
        workgroupBarrier();
        for (var j = 0u; j < TILE; j++) {
            sum += x_tile[local.y][j] * weight_tile[local.x][j];
        }
        workgroupBarrier();
    }
    if (row < params.rows && output < params.outputs) {
        var v = sum + bias[output];
        if (params.activation == ACTIVATION_SILU) {
            v = v / (1.0 + exp(min(-v, MAX_EXPONENT)));
        }
        y[row * params.outputs + output] = v;
    }
}
