// One step of a non-stationary solver in its reduced form (`docs/MATH.md` §4):
// x_{i+1} = α_i·x_0 + Σ_{j≤i} β_ij·u_j, the coefficients read from a buffer.
//
// Dispatched by `Plan::ns_update` (`web-sampler/src/gpu/kernels.rs`), one invocation per value
// of `[samples, data]` (groups spill into y past 65535). Zero coefficients are skipped, as on
// the CPU path.

// WORKGROUP is a shared constant, appended when the kernel is compiled (shaders/README.md).

struct NsUpdateParams {
    /// samples × data.
    count: u32,
    /// The step i.
    step: u32,
    /// Values per row of `coefficients` (steps + 1).
    stride: u32,
    /// 1 to clamp the result to [−1, 1] (the last step of an image model).
    clamp_unit: u32,
}

@group(0) @binding(0) var<uniform> params: NsUpdateParams;
// coefficients: [steps, steps + 1], row i = α_i, β_i0, …, β_ii, then zeros
@group(0) @binding(1) var<storage, read> coefficients: array<f32>;
// x0: [samples, data]
@group(0) @binding(2) var<storage, read> x0: array<f32>;
// velocities: [steps, samples, data]
@group(0) @binding(3) var<storage, read> velocities: array<f32>;
// x: [samples, data], written with x_{i+1}
@group(0) @binding(4) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = id.y * groups.x * WORKGROUP + id.x;
    if (e >= params.count) {
        return;
    }
    let row = params.step * params.stride;
    var v = coefficients[row] * x0[e];
    for (var j = 0u; j <= params.step; j++) {
        let beta = coefficients[row + 1u + j];
        if (beta != 0.0) {
            v += beta * velocities[j * params.count + e];
        }
    }
    if (params.clamp_unit == 1u) {
        v = clamp(v, -1.0, 1.0);
    }
    x[e] = v;
}
