// GroupNorm over position-major activations, with SiLU optionally fused.
//
// Dispatched by `Plan::group_norm` (`web-sampler/src/gpu/kernels.rs`). One workgroup per
// (row, group): the group's positions · channels / groups values are summed by the
// workgroup's invocations (each a strided part, then a tree in workgroup memory) twice — the
// mean, then the squared deviations from it (two passes in f32, as stable as the CPU path's f64
// sums to rounding) — and every value is written as (v − mean) / sqrt(variance + ε) · weight + bias,
// then SiLU when `activation` says so.
// Dispatch: one workgroup per (row, group), X · Y ≥ rows · groups (the index is
// group.y · X + group.x: beyond the device's limit per dimension, they spill into y).

// WORKGROUP, ACTIVATION_SILU and MAX_EXPONENT are shared constants, appended when the kernel is
// compiled (shaders/README.md).

struct GroupNormParams {
    rows: u32,
    positions: u32,
    channels: u32,
    groups: u32,
    activation: u32,
    epsilon: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: GroupNormParams;
// x: [rows, positions, channels]
@group(0) @binding(1) var<storage, read> x: array<f32>;
// weight: [channels]
@group(0) @binding(2) var<storage, read> weight: array<f32>;
// bias: [channels]
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// y: [rows, positions, channels]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, WORKGROUP>;

/// The sum of every invocation's `value`, for all of them.
fn workgroup_sum(local: u32, value: f32) -> f32 {
    partial[local] = value;
    workgroupBarrier();
    for (var half = WORKGROUP / 2u; half > 0u; half = half / 2u) {
        if (local < half) {
            partial[local] += partial[local + half];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = group.y * groups.x + group.x;
    if (index >= params.rows * params.groups) {
        return;
    }
    let row = index / params.groups;
    let g = index % params.groups;
    let per_group = params.channels / params.groups;
    let count = params.positions * per_group;
    let start = row * params.positions * params.channels + g * per_group;

    var sum = 0.0;
    for (var i = local; i < count; i += WORKGROUP) {
        sum += x[start + (i / per_group) * params.channels + i % per_group];
    }
    let mean = workgroup_sum(local, sum) / f32(count);
    var squares = 0.0;
    for (var i = local; i < count; i += WORKGROUP) {
        let d = x[start + (i / per_group) * params.channels + i % per_group] - mean;
        squares += d * d;
    }
    let inverse = 1.0 / sqrt(workgroup_sum(local, squares) / f32(count) + params.epsilon);
    for (var i = local; i < count; i += WORKGROUP) {
        let j = g * per_group + i % per_group;
        let at = start + (i / per_group) * params.channels + i % per_group;
        var v = (x[at] - mean) * inverse * weight[j] + bias[j];
        if (params.activation == ACTIVATION_SILU) {
            v = v / (1.0 + exp(min(-v, MAX_EXPONENT)));
        }
        y[at] = v;
    }
}
