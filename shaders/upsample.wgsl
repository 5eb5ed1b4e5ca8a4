// Nearest-neighbour ×2 upsampling of position-major activations: output (y, x) is input
// (y / 2, x / 2).
//
// Dispatched by `Plan::upsample` (`web-sampler/src/gpu/kernels.rs`).
// Dispatch: one invocation per value of `y`, in groups of WORKGROUP, spilling into y past the
// device's workgroups per dimension.

// WORKGROUP is a shared constant, appended when the kernel is compiled (shaders/README.md).

struct UpsampleParams {
    count: u32,
    height: u32,
    width: u32,
    channels: u32,
}

@group(0) @binding(0) var<uniform> params: UpsampleParams;
// x: [rows, height · width, channels]
@group(0) @binding(1) var<storage, read> x: array<f32>;
// y: [rows, 2 · height · 2 · width, channels]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = id.y * groups.x * WORKGROUP + id.x;
    if (e >= params.count) {
        return;
    }
    let c = e % params.channels;
    let position = e / params.channels;
    let out_width = 2u * params.width;
    let out_positions = 4u * params.height * params.width;
    let row = position / out_positions;
    let p = position % out_positions;
    let source = (p / out_width / 2u) * params.width + (p % out_width) / 2u;
    y[e] = x[(row * params.height * params.width + source) * params.channels + c];
}
