// In-place addition y += x, with x broadcast over positions when it has one position per row
// (the per-channel shift of a residual block's time embedding; the residual itself has them all).
//
// Dispatched by `Plan::add` (`web-sampler/src/gpu/kernels.rs`).
// Dispatch: one invocation per value of `y`, in groups of WORKGROUP, spilling into y past the
// device's workgroups per dimension.

// WORKGROUP is a shared constant, appended when the kernel is compiled (shaders/README.md).

struct AddParams {
    count: u32,
    positions: u32,
    channels: u32,
    x_positions: u32,
}

@group(0) @binding(0) var<uniform> params: AddParams;
// x: [rows, x_positions, channels] (x_positions = positions or 1)
@group(0) @binding(1) var<storage, read> x: array<f32>;
// y: [rows, positions, channels]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = id.y * groups.x * WORKGROUP + id.x;
    if (e >= params.count) {
        return;
    }
    let per_row = params.positions * params.channels;
    let row = e / per_row;
    let p = (e % per_row) / params.channels;
    let c = e % params.channels;
    y[e] += x[(row * params.x_positions + p % params.x_positions) * params.channels + c];
}
