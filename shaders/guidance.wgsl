// The guided velocity of one solver step from the network's output for the doubled batch:
// u = (1+w)·u(x, t, c) − w·u(x, t, ∅), where for a data-predicting network each pass is first
// turned into a velocity, u = (x̂1 − x)/max(1 − t, 0.05). The result is written into the
// solver's velocity slot for this step.
//
// Dispatched by `Plan::guidance` (`web-sampler/src/gpu/kernels.rs`), one invocation per value
// of `[samples, data]` (groups spill into y past 65535).

// WORKGROUP is a shared constant, appended when the kernel is compiled (shaders/README.md).

struct GuidanceParams {
    /// samples × data: the values of one pass.
    count: u32,
    /// 1 when the network ran the doubled batch (conditional rows, then unconditional ones).
    guided: u32,
    /// 1 when the network predicts x̂1 rather than the velocity.
    data_prediction: u32,
    /// Offset of this step's slot in `velocities`, in values.
    slot_offset: u32,
    /// 1 + w.
    conditional_weight: f32,
    /// w.
    unconditional_weight: f32,
    /// 1 / max(1 − t, 0.05), computed in f32 as the CPU path does.
    inverse_remaining: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: GuidanceParams;
// network: [passes · samples, data], passes = 2 when guided, else 1
@group(0) @binding(1) var<storage, read> network: array<f32>;
// x: [samples, data], the state the network was evaluated at
@group(0) @binding(2) var<storage, read> x: array<f32>;
// velocities: [steps, samples, data]
@group(0) @binding(3) var<storage, read_write> velocities: array<f32>;

fn as_velocity(output: f32, state: f32) -> f32 {
    if (params.data_prediction == 1u) {
        return (output - state) * params.inverse_remaining;
    }
    return output;
}

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = id.y * groups.x * WORKGROUP + id.x;
    if (e >= params.count) {
        return;
    }
    let state = x[e];
    var u = as_velocity(network[e], state);
    if (params.guided == 1u) {
        let unconditional = as_velocity(network[params.count + e], state);
        u = params.conditional_weight * u - params.unconditional_weight * unconditional;
    }
    velocities[params.slot_offset + e] = u;
}
