// Samples [B, C, H, W] in [−1, 1] as a grid picture of RGBA8 pixels for a canvas: `columns`
// tiles per row, GAP black pixels between tiles (alpha 0, as `sample::grid_picture`), grey for
// C = 1 and RGB for C = 3. A byte is round((v + 1)/2 · 255) of the clamped value.
//
// Dispatched by `Plan::pack_rgba` (`web-sampler/src/gpu/kernels.rs`), one invocation per pixel
// (groups spill into y past 65535).

// WORKGROUP is a shared constant, appended when the kernel is compiled (shaders/README.md).

struct PackRgbaParams {
    samples: u32,
    channels: u32,
    height: u32,
    width: u32,
    columns: u32,
    picture_width: u32,
    picture_height: u32,
    gap: u32,
}

@group(0) @binding(0) var<uniform> params: PackRgbaParams;
// x: [samples, channels, height, width]
@group(0) @binding(1) var<storage, read> x: array<f32>;
// rgba: [picture_height, picture_width], one pixel per u32 (R in the lowest byte)
@group(0) @binding(2) var<storage, read_write> rgba: array<u32>;

fn to_byte(v: f32) -> u32 {
    return u32(floor((clamp(v, -1.0, 1.0) + 1.0) * 0.5 * 255.0 + 0.5));
}

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = id.y * groups.x * WORKGROUP + id.x;
    if (e >= params.picture_width * params.picture_height) {
        return;
    }
    let py = e / params.picture_width;
    let px = e % params.picture_width;
    let tile_y = py / (params.height + params.gap);
    let tile_x = px / (params.width + params.gap);
    let y = py % (params.height + params.gap);
    let x_in_tile = px % (params.width + params.gap);
    let i = tile_y * params.columns + tile_x;
    if (y >= params.height || x_in_tile >= params.width || tile_x >= params.columns || i >= params.samples) {
        rgba[e] = 0u;
        return;
    }
    var pixel = 255u << 24u;
    for (var k = 0u; k < 3u; k++) {
        var channel = k;
        if (params.channels == 1u) {
            channel = 0u;
        }
        let v = x[((i * params.channels + channel) * params.height + y) * params.width + x_in_tile];
        pixel |= to_byte(v) << (8u * k);
    }
    rgba[e] = pixel;
}
