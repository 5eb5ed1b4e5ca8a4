// Per-row transposition y[r] = x[r mod samples]ᵀ: a sample's [C, H·W] values to the U-Net's
// position-major [H·W, C] activations (row r takes sample r mod samples: the guided batch runs
// every sample twice), and the network's output back.
//
// Dispatched by `Plan::transpose` (`web-sampler/src/gpu/kernels.rs`).
// Dispatch: one invocation per value of `y`, in groups of WORKGROUP, spilling into y past the
// device's workgroups per dimension.

// WORKGROUP is a shared constant, appended when the kernel is compiled (shaders/README.md).

struct TransposeParams {
    count: u32,
    samples: u32,
    a: u32,
    b: u32,
}

@group(0) @binding(0) var<uniform> params: TransposeParams;
// x: [samples, a, b]
@group(0) @binding(1) var<storage, read> x: array<f32>;
// y: [rows, b, a]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = id.y * groups.x * WORKGROUP + id.x;
    if (e >= params.count) {
        return;
    }
    let per_row = params.a * params.b;
    let row = e / per_row;
    let j = (e % per_row) / params.a;
    let i = e % params.a;
    y[e] = x[(row % params.samples) * per_row + i * params.b + j];
}
