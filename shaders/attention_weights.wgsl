// Single-head self-attention's weights: softmax over keys of (q · k) / sqrt(channels), per row
// and query position; queries and keys are the first two thirds of each position's qkv values.
//
// Dispatched by `Plan::attention_weights` (`web-sampler/src/gpu/kernels.rs`). One invocation
// per (row, query) writes its row of scores, then turns it into the softmax in place (minus the
// largest score before the exponential, as the CPU path).
// Dispatch: one invocation per (row, query), in groups of WORKGROUP, spilling into y past the
// device's workgroups per dimension.

// WORKGROUP is a shared constant, appended when the kernel is compiled (shaders/README.md).

struct AttentionWeightsParams {
    rows: u32,
    positions: u32,
    channels: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> params: AttentionWeightsParams;
// qkv: [rows, positions, 3 · channels]
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
// weights: [rows, positions, positions]
@group(0) @binding(2) var<storage, read_write> weights: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = id.y * groups.x * WORKGROUP + id.x;
    if (e >= params.rows * params.positions) {
        return;
    }
    let n = params.positions;
    let c = params.channels;
    let row = e / n;
    let query = qkv_start(row, e % n);
    let out = e * n;
    var largest = 0.0;
    for (var key = 0u; key < n; key++) {
        let k = qkv_start(row, key) + c;
        var dot = 0.0;
        for (var j = 0u; j < c; j++) {
            dot += qkv[query + j] * qkv[k + j];
        }
        let score = dot * params.scale;
        weights[out + key] = score;
        largest = select(max(largest, score), score, key == 0u);
    }
    var sum = 0.0;
    for (var key = 0u; key < n; key++) {
        let v = exp(weights[out + key] - largest);
        weights[out + key] = v;
        sum += v;
    }
    for (var key = 0u; key < n; key++) {
        weights[out + key] = weights[out + key] / sum;
    }
}

/// The index of the first qkv value of `position` in `row`.
fn qkv_start(row: u32, position: u32) -> u32 {
    return (row * params.positions + position) * 3u * params.channels;
}
