//! The 2-D toy distributions of the flow-matching literature, generated from a seed with
//! [`Noise`] (so a seed always gives the same points): 50 000 train and 10 000 test points, from
//! two streams seeded by the first two outputs of `Noise::new(seed)`. Points are computed in `f64`
//! and stored as `f32`; labels are all 0 (unconditional).
//!
//! * **checkerboard** — the FFJORD construction (Grathwohl et al., ICLR 2019, `toy_data.py`, also
//!   used by the flow-matching papers and Meta's `flow_matching` examples):
//!   `x1 ~ U[−2, 2)`, `x2 = U[0, 1) − 2·B + (⌊x1⌋ mod 2)` with `B` a fair coin, point `= 2·(x1, x2)`.
//!   That is uniform on the 8 dark squares of a 4×4 board of 2×2 squares covering [−4, 4)², a
//!   square `(i, j)` (`i = ⌊x/2⌋, j = ⌊y/2⌋`) being dark when `i + j` is even.
//! * **moons** — scikit-learn's `make_moons` distribution: upper moon `(cos a, sin a)`, lower moon
//!   `(1 − cos a, 1/2 − sin a)`, plus Gaussian noise of std 0.05, then centred (minus `(1/2, 1/4)`)
//!   and scaled ×2, so it spans about [−3, 3] × [−1.5, 1.5] with noise std 0.1. Unlike
//!   `make_moons` (equally spaced `a`, exactly half the points per moon) each point picks its moon
//!   by a fair coin and `a ~ U[0, π)`: independent samples of the same distribution.
//! * **8gaussians** — FFJORD's `8gaussians` without its final division by 1.414: a centre chosen
//!   uniformly among `4·(cos kπ/4, sin kπ/4)`, `k = 0..7` (radius 4), plus Gaussian noise of
//!   std 0.5.

use std::f64::consts::PI;

use web_sampler::noise::Noise;

use super::{Dataset, DatasetName, Split};

pub(super) const TRAIN_LEN: usize = 50_000;
pub(super) const TEST_LEN: usize = 10_000;

/// Generates a 2-D dataset; `name` must be one of the 2-D sets (an image set gives empty splits).
pub(super) fn generate(name: DatasetName, seed: u64) -> Dataset {
    let mut root = Noise::new(seed);
    let train_seed = root.next_u64();
    let test_seed = root.next_u64();
    Dataset {
        name: name.name().into(),
        shape: [2, 1, 1],
        num_classes: 0,
        class_names: Vec::new(),
        train: split(name, TRAIN_LEN, &mut Noise::new(train_seed)),
        test: split(name, TEST_LEN, &mut Noise::new(test_seed)),
    }
}

fn split(name: DatasetName, len: usize, rng: &mut Noise) -> Split {
    let point: fn(&mut Noise) -> [f32; 2] = match name {
        DatasetName::Checkerboard => checkerboard,
        DatasetName::Moons => moons,
        DatasetName::EightGaussians => eight_gaussians,
        DatasetName::FashionMnist | DatasetName::Mnist => {
            return Split {
                x: Vec::new(),
                labels: Vec::new(),
                len: 0,
                dim: 2,
            }
        }
    };
    let x: Vec<f32> = (0..len).flat_map(|_| point(rng)).collect();
    Split {
        x,
        labels: vec![0; len],
        len,
        dim: 2,
    }
}

/// A fair coin: the top bit of the next 64.
fn coin(rng: &mut Noise) -> bool {
    rng.next_u64() >> 63 == 1
}

fn checkerboard(rng: &mut Noise) -> [f32; 2] {
    let x1 = rng.uniform() * 4.0 - 2.0;
    let x2 = rng.uniform() - if coin(rng) { 2.0 } else { 0.0 } + x1.floor().rem_euclid(2.0);
    [inside_square(2.0 * x1), inside_square(2.0 * x2)]
}

/// `v` (in a square `[2i, 2i + 2)`) as `f32`, kept inside the square when rounding to `f32` would
/// land on its upper edge.
fn inside_square(v: f64) -> f32 {
    let lower = 2.0 * (v / 2.0).floor();
    let rounded = v as f32;
    if f64::from(rounded) < lower + 2.0 {
        return rounded;
    }
    // The largest f32 below the edge (an even integer, so never zero here unless lower = −2).
    let edge = (lower + 2.0) as f32;
    if edge > 0.0 {
        f32::from_bits(edge.to_bits() - 1)
    } else if edge == 0.0 {
        -f32::from_bits(1)
    } else {
        f32::from_bits(edge.to_bits() + 1)
    }
}

fn moons(rng: &mut Noise) -> [f32; 2] {
    let upper = coin(rng);
    let a = PI * rng.uniform();
    let (x, y) = if upper {
        (a.cos(), a.sin())
    } else {
        (1.0 - a.cos(), 0.5 - a.sin())
    };
    let x = x + 0.05 * rng.gaussian();
    let y = y + 0.05 * rng.gaussian();
    [((x - 0.5) * 2.0) as f32, ((y - 0.25) * 2.0) as f32]
}

fn eight_gaussians(rng: &mut Noise) -> [f32; 2] {
    let k = (rng.next_u64() >> 61) as f64;
    let a = k * PI / 4.0;
    let x = 4.0 * a.cos() + 0.5 * rng.gaussian();
    let y = 4.0 * a.sin() + 0.5 * rng.gaussian();
    [x as f32, y as f32]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load, DataSources, DatasetSource, ImageFolderOptions};

    const TOY: [DatasetName; 3] = [
        DatasetName::Checkerboard,
        DatasetName::Moons,
        DatasetName::EightGaussians,
    ];

    fn points(split: &Split) -> impl Iterator<Item = (f64, f64)> + '_ {
        split
            .x
            .chunks_exact(2)
            .map(|p| (f64::from(p[0]), f64::from(p[1])))
    }

    fn all_points(data: &Dataset) -> Vec<(f64, f64)> {
        points(&data.train).chain(points(&data.test)).collect()
    }

    #[test]
    fn shapes_counts_and_labels() {
        for name in TOY {
            let data = load(
                &DatasetSource::Named(name),
                &DataSources::default(),
                &ImageFolderOptions::default(),
                1,
            )
            .unwrap();
            assert_eq!(data.name, name.name());
            assert_eq!(data.shape, [2, 1, 1]);
            assert_eq!(data.num_classes, 0);
            assert!(data.class_names.is_empty());
            for (split, len) in [(&data.train, TRAIN_LEN), (&data.test, TEST_LEN)] {
                assert_eq!((split.len, split.dim), (len, 2));
                assert_eq!(split.x.len(), 2 * len);
                assert_eq!(split.labels, vec![0; len]);
                assert!(split.x.iter().all(|v| v.is_finite()));
            }
        }
    }

    #[test]
    fn deterministic_in_the_seed() {
        for name in TOY {
            let a = generate(name, 42);
            let b = generate(name, 42);
            let c = generate(name, 43);
            assert_eq!(a.train.x, b.train.x, "{name:?}");
            assert_eq!(a.test.x, b.test.x, "{name:?}");
            assert_ne!(a.train.x, c.train.x, "{name:?}");
            assert_ne!(a.test.x, c.test.x, "{name:?}");
            // Train and test come from different streams.
            assert_ne!(a.train.x[..2 * TEST_LEN], a.test.x[..], "{name:?}");
        }
    }

    #[test]
    fn checkerboard_is_uniform_on_the_dark_squares() {
        let all = all_points(&generate(DatasetName::Checkerboard, 5));
        let mut counts = [[0usize; 4]; 4];
        for &(x, y) in &all {
            assert!(
                (-4.0..4.0).contains(&x) && (-4.0..4.0).contains(&y),
                "({x}, {y})"
            );
            let (i, j) = ((x / 2.0).floor() as i64, (y / 2.0).floor() as i64);
            assert_eq!((i + j).rem_euclid(2), 0, "({x}, {y}) is in a light square");
            counts[(i + 2) as usize][(j + 2) as usize] += 1;
        }
        let expected = all.len() as f64 / 8.0;
        for (i, column) in counts.iter().enumerate() {
            for (j, &count) in column.iter().enumerate() {
                if (i + j) % 2 == 0 {
                    assert!(
                        (count as f64 - expected).abs() < 0.05 * expected,
                        "{counts:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn inside_square_never_reaches_the_upper_edge() {
        for edge in [-2.0f64, 0.0, 2.0, 4.0] {
            let just_below = edge - 1e-12;
            let v = inside_square(just_below);
            assert!(
                f64::from(v) < edge && f64::from(v) >= edge - 2.0,
                "{edge} → {v}"
            );
            assert!(f64::from(v) > edge - 1e-6);
        }
        assert_eq!(inside_square(-4.0), -4.0);
        assert_eq!(inside_square(1.25), 1.25);
    }

    #[test]
    fn moons_lie_on_two_half_circles() {
        let all = all_points(&generate(DatasetName::Moons, 5));
        let (mut upper, mut lower) = (0usize, 0usize);
        let (mut sum_x, mut sum_y) = (0.0, 0.0);
        for &(x, y) in &all {
            assert!(x.abs() < 3.8 && y.abs() < 2.3, "({x}, {y})");
            sum_x += x;
            sum_y += y;
            // Upper moon: radius 2 around (−1, −0.5), y above its centre; lower: around (1, 0.5).
            let on_upper = ((x + 1.0).hypot(y + 0.5) - 2.0).abs() < 0.7 && y > -1.2;
            let on_lower = ((x - 1.0).hypot(y - 0.5) - 2.0).abs() < 0.7 && y < 1.2;
            assert!(on_upper || on_lower, "({x}, {y}) is on neither moon");
            if y > 0.5 {
                upper += 1;
            }
            if y < -0.5 {
                lower += 1;
            }
        }
        let n = all.len() as f64;
        assert!((sum_x / n).abs() < 0.03 && (sum_y / n).abs() < 0.03);
        assert!(
            (upper as f64 - lower as f64).abs() < 0.03 * n,
            "{upper} vs {lower}"
        );
    }

    #[test]
    fn eight_gaussians_surround_eight_centres() {
        let all = all_points(&generate(DatasetName::EightGaussians, 5));
        let mut counts = [0usize; 8];
        let mut sum_square_distance = 0.0;
        for &(x, y) in &all {
            let k = ((y.atan2(x) / (PI / 4.0)).round() as i64).rem_euclid(8) as usize;
            let a = k as f64 * PI / 4.0;
            let distance = (x - 4.0 * a.cos()).hypot(y - 4.0 * a.sin());
            assert!(distance < 3.0, "({x}, {y}) is far from every centre");
            sum_square_distance += distance * distance;
            counts[k] += 1;
        }
        let expected = all.len() as f64 / 8.0;
        assert!(
            counts
                .iter()
                .all(|&c| (c as f64 - expected).abs() < 0.05 * expected),
            "{counts:?}"
        );
        // E|noise|² = 2·0.5² = 0.5.
        let mean_square = sum_square_distance / all.len() as f64;
        assert!((mean_square - 0.5).abs() < 0.02, "{mean_square}");
    }
}
