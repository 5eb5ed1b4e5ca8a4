// The network's input rows: concat(x, time embedding, class embedding).
//
// Dispatched by `Plan::embed` (`web-sampler/src/gpu/kernels.rs`). Row r of the input takes
// sample r mod `samples` (the guided batch runs every sample twice: conditional rows, then
// unconditional ones), the time embedding row `time_row` (computed on the CPU in f64, one row
// per solver step, so that it equals the CPU path's exactly) and the class embedding row
// `classes[r]`.
// Dispatch: one invocation per value of `input`, in groups of WORKGROUP, spilling into y past
// the device's workgroups per dimension (65535 by default).

// WORKGROUP is a shared constant, appended when the kernel is compiled (shaders/README.md).

struct EmbedParams {
    rows: u32,
    samples: u32,
    data: u32,
    time_width: u32,
    class_width: u32,
    time_row: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: EmbedParams;
// x: [samples, data]
@group(0) @binding(1) var<storage, read> x: array<f32>;
// time_embedding: [steps, time_width]
@group(0) @binding(2) var<storage, read> time_embedding: array<f32>;
// classes: [rows] (u32 labels; the null class is the last row of class_embedding)
@group(0) @binding(3) var<storage, read> classes: array<u32>;
// class_embedding: [num_classes + 1, class_width] (one unused value when unconditional)
@group(0) @binding(4) var<storage, read> class_embedding: array<f32>;
// input: [rows, data + time_width + class_width]
@group(0) @binding(5) var<storage, read_write> input: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = id.y * groups.x * WORKGROUP + id.x;
    let width = params.data + params.time_width + params.class_width;
    if (e >= params.rows * width) {
        return;
    }
    let r = e / width;
    let c = e % width;
    var v: f32;
    if (c < params.data) {
        v = x[(r % params.samples) * params.data + c];
    } else if (c < params.data + params.time_width) {
        v = time_embedding[params.time_row * params.time_width + (c - params.data)];
    } else {
        let k = c - params.data - params.time_width;
        v = class_embedding[classes[r] * params.class_width + k];
    }
    input[e] = v;
}
