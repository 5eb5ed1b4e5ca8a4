// A U-Net's conditioning vector per row: SiLU(time + class_table[classes[r]]) (the class term
// only for class-conditional models), the input of every residual block's embedding projection.
//
// Dispatched by `Plan::condition` (`web-sampler/src/gpu/kernels.rs`).
// Dispatch: one invocation per value of `y`, in groups of WORKGROUP, spilling into y past the
// device's workgroups per dimension.

// WORKGROUP and MAX_EXPONENT are shared constants, appended when the kernel is compiled
// (shaders/README.md).

struct ConditionParams {
    count: u32,
    width: u32,
    conditional: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: ConditionParams;
// time: [1, width] (the time-embedding MLP's output)
@group(0) @binding(1) var<storage, read> time: array<f32>;
// classes: [rows] (u32 labels; the null class is the last row of class_table)
@group(0) @binding(2) var<storage, read> classes: array<u32>;
// class_table: [num_classes + 1, width] (unread when unconditional)
@group(0) @binding(3) var<storage, read> class_table: array<f32>;
// y: [rows, width]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = id.y * groups.x * WORKGROUP + id.x;
    if (e >= params.count) {
        return;
    }
    let j = e % params.width;
    var v = time[j];
    if (params.conditional == 1u) {
        v += class_table[classes[e / params.width] * params.width + j];
    }
    y[e] = v / (1.0 + exp(min(-v, MAX_EXPONENT)));
}
