//! Writing pictures: PNG files (written to a temporary file, then renamed) and scatter plots of
//! 2-D samples.

use std::path::Path;

use anyhow::{Context, Result};
use web_sampler::sample::Picture;

use crate::files::write_atomically;

/// Saves an RGBA picture as a PNG file, atomically.
pub fn save_png(path: &Path, picture: &Picture) -> Result<()> {
    let mut bytes = Vec::new();
    let encode = |bytes: &mut Vec<u8>| -> Result<()> {
        let mut encoder = png::Encoder::new(bytes, picture.width as u32, picture.height as u32);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&picture.rgba)?;
        writer.finish()?;
        Ok(())
    };
    encode(&mut bytes).with_context(|| format!("{}: cannot encode PNG", path.display()))?;
    write_atomically(path, &bytes)
}

/// A square scatter plot of points `[N, 2]` on a white background, the view fitted to [−L, L]²
/// where L covers every point (at least 1).
pub fn scatter_picture(points: &[f32], size: usize) -> Picture {
    let limit = points.iter().fold(
        1.0f32,
        |m, v| if v.is_finite() { m.max(v.abs()) } else { m },
    ) * 1.05;
    let mut rgba = vec![255u8; size * size * 4];
    for p in points.chunks_exact(2) {
        let px = ((p[0] / limit + 1.0) * 0.5 * (size - 1) as f32).round();
        let py = ((1.0 - (p[1] / limit + 1.0) * 0.5) * (size - 1) as f32).round();
        if !(px.is_finite() && py.is_finite()) {
            continue;
        }
        for dy in -1i64..=1 {
            for dx in -1i64..=1 {
                let (x, y) = (px as i64 + dx, py as i64 + dy);
                if x >= 0 && y >= 0 && (x as usize) < size && (y as usize) < size {
                    let o = (y as usize * size + x as usize) * 4;
                    rgba[o..o + 3].copy_from_slice(&[31, 92, 160]);
                }
            }
        }
    }
    Picture {
        width: size,
        height: size,
        rgba,
    }
}

/// The picture enlarged `factor` times with nearest-neighbour sampling (pixels stay sharp).
pub fn upscale(picture: &Picture, factor: usize) -> Picture {
    let factor = factor.max(1);
    let (width, height) = (picture.width * factor, picture.height * factor);
    let mut rgba = vec![0u8; width * height * 4];
    for y in 0..height {
        for x in 0..width {
            let from = ((y / factor) * picture.width + x / factor) * 4;
            let to = (y * width + x) * 4;
            rgba[to..to + 4].copy_from_slice(&picture.rgba[from..from + 4]);
        }
    }
    Picture {
        width,
        height,
        rgba,
    }
}
