// Concatenation along channels: y = [a, b] at every position (a U-Net's activation, then the
// skip of its level).
//
// Dispatched by `Plan::concat` (`web-sampler/src/gpu/kernels.rs`).
// Dispatch: one invocation per value of `y`, in groups of WORKGROUP, spilling into y past the
// device's workgroups per dimension.

// WORKGROUP is a shared constant, appended when the kernel is compiled (shaders/README.md).

struct ConcatParams {
    count: u32,
    a_channels: u32,
    b_channels: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: ConcatParams;
// a: [rows, positions, a_channels]
@group(0) @binding(1) var<storage, read> a: array<f32>;
// b: [rows, positions, b_channels]
@group(0) @binding(2) var<storage, read> b: array<f32>;
// y: [rows, positions, a_channels + b_channels]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = id.y * groups.x * WORKGROUP + id.x;
    if (e >= params.count) {
        return;
    }
    let width = params.a_channels + params.b_channels;
    let position = e / width;
    let c = e % width;
    if (c < params.a_channels) {
        y[e] = a[position * params.a_channels + c];
    } else {
        y[e] = b[position * params.b_channels + (c - params.a_channels)];
    }
}
