// Single-head self-attention's output: the attention weights times the values (the last third
// of each position's qkv values), y[r, p, c] = Σ_k weights[r, p, k] · v[r, k, c].
//
// Dispatched by `Plan::attention_values` (`web-sampler/src/gpu/kernels.rs`).
// Dispatch: one invocation per value of `y`, in groups of WORKGROUP, spilling into y past the
// device's workgroups per dimension.

// WORKGROUP is a shared constant, appended when the kernel is compiled (shaders/README.md).

struct AttentionValuesParams {
    rows: u32,
    positions: u32,
    channels: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: AttentionValuesParams;
// weights: [rows, positions, positions]
@group(0) @binding(1) var<storage, read> weights: array<f32>;
// qkv: [rows, positions, 3 · channels]
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
// y: [rows, positions, channels]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = id.y * groups.x * WORKGROUP + id.x;
    let n = params.positions;
    let c = params.channels;
    if (e >= params.rows * n * c) {
        return;
    }
    let j = e % c;
    let position = e / c;
    let row = position / n;
    let w = position * n;
    let values = row * n * 3u * c + 2u * c + j;
    var sum = 0.0;
    for (var key = 0u; key < n; key++) {
        sum += weights[w + key] * qkv[values + key * 3u * c];
    }
    y[e] = sum;
}
