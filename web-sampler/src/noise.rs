//! The seeded Gaussian generator shared by every platform, so that a seed gives the same `x_0`
//! (and so the same samples) natively and in wasm.
//!
//! Uniform bits come from xoshiro256** (Blackman & Vigna, "Scrambled linear pseudorandom number
//! generators", ACM TOMS 2021; <https://prng.di.unimi.it/>), its 256-bit state filled from the
//! 64-bit seed with SplitMix64 as its authors recommend. Normals come from the Box–Muller
//! transform computed in `f64` with the `libm` crate (never the platform's libm), keeping the
//! second value of each pair for the next call. Everything is integer arithmetic or correctly
//! specified IEEE operations in a fixed order, so the numbers are bit-identical everywhere.

/// Seeded Gaussian generator: the same numbers on every platform (own PRNG + Box–Muller with libm).
#[derive(Clone, Debug)]
pub struct Noise {
    state: [u64; 4],
    /// The second normal of the last Box–Muller pair, not yet returned.
    spare: Option<f64>,
}

/// One step of SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): advances `state` and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Noise {
    /// A generator whose xoshiro256** state is four consecutive SplitMix64 outputs from `seed`
    /// (never all zero: SplitMix64 is a bijection of its counter, and four consecutive
    /// outputs cannot all be zero).
    pub fn new(seed: u64) -> Noise {
        let mut sm = seed;
        let state = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Noise { state, spare: None }
    }

    /// The next 64 random bits (xoshiro256**).
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform number in `[0, 1)`: the top 53 bits of [`next_u64`](Self::next_u64) times 2⁻⁵³.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal number (Box–Muller): each pair of uniforms `u1, u2` gives
    /// `r·cos(2πu2)` (returned) and `r·sin(2πu2)` (kept for the next call), `r = √(−2 ln(1−u1))`.
    pub fn gaussian(&mut self) -> f64 {
        if let Some(spare) = self.spare.take() {
            return spare;
        }
        // 1 − u1 is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let radius = libm::sqrt(-2.0 * libm::log(u1));
        let angle = 2.0 * core::f64::consts::PI * u2;
        self.spare = Some(radius * libm::sin(angle));
        radius * libm::cos(angle)
    }

    /// The next `len` standard normals, rounded to `f32`.
    pub fn gaussian_f32(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.gaussian() as f32).collect()
    }
}

/// x_0 for a batch: `batch` rows of `dim` standard normals from `Noise::new(seed)`, row-major (row i
/// depends only on seed and i, not on batch).
///
/// The rows are consecutive pieces of one stream, so a batch of `n` rows is the first `n` rows
/// of any larger batch with the same seed and `dim`.
pub fn gaussian_batch(seed: u64, batch: usize, dim: usize) -> Vec<f32> {
    Noise::new(seed).gaussian_f32(batch.saturating_mul(dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference() {
        // First output of SplitMix64 from state 0 (the reference C implementation).
        let mut state = 0u64;
        assert_eq!(splitmix64(&mut state), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn xoshiro256starstar_matches_reference() {
        // Outputs of the reference xoshiro256** from the state {1, 2, 3, 4}.
        let mut noise = Noise {
            state: [1, 2, 3, 4],
            spare: None,
        };
        let first: Vec<u64> = (0..4).map(|_| noise.next_u64()).collect();
        assert_eq!(first, [11520, 0, 1509978240, 1215971899390074240]);
    }

    #[test]
    fn first_values_are_pinned() {
        // Pinned so that any change to the generator (which would change every image) is noticed.
        let mut noise = Noise::new(42);
        let bits: Vec<u64> = (0..3).map(|_| noise.next_u64()).collect();
        assert_eq!(bits, PINNED_BITS_SEED_42);
        let normals = gaussian_batch(42, 1, 4);
        let normal_bits: Vec<u32> = normals.iter().map(|v| v.to_bits()).collect();
        assert_eq!(normal_bits, PINNED_NORMALS_SEED_42);
    }

    const PINNED_BITS_SEED_42: [u64; 3] = [
        1546998764402558742,
        6990951692964543102,
        12544586762248559009,
    ];
    const PINNED_NORMALS_SEED_42: [u32; 4] = [3197846860, 1049866562, 1068237318, 3207601956];

    #[test]
    fn uniform_is_in_unit_interval_with_53_bits() {
        let mut noise = Noise::new(7);
        for _ in 0..10_000 {
            let u = noise.uniform();
            assert!((0.0..1.0).contains(&u));
            assert_eq!((u * (1u64 << 53) as f64).fract(), 0.0);
        }
    }

    #[test]
    fn gaussian_moments() {
        let mut noise = Noise::new(2024);
        let n = 100_000;
        let samples: Vec<f64> = (0..n).map(|_| noise.gaussian()).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let skew = samples.iter().map(|v| (v - mean).powi(3)).sum::<f64>() / n as f64;
        let kurt = samples.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n as f64;
        // Standard errors at n = 1e5: mean 0.0032, variance 0.0045, skew 0.0077, kurtosis 0.03.
        assert!(mean.abs() < 0.015, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        assert!(skew.abs() < 0.04, "third moment {skew}");
        assert!((kurt - 3.0).abs() < 0.15, "fourth moment {kurt}");
        assert!(samples.iter().all(|v| v.is_finite()));
        // About 68.27% within one standard deviation.
        let within = samples.iter().filter(|v| v.abs() < 1.0).count() as f64 / n as f64;
        assert!((within - 0.6827).abs() < 0.01, "within one sigma {within}");
    }

    #[test]
    fn same_seed_same_numbers_other_seed_other_numbers() {
        let a = gaussian_batch(5, 3, 17);
        let b = gaussian_batch(5, 3, 17);
        let c = gaussian_batch(6, 3, 17);
        assert_eq!(a.len(), 51);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_ne!(a, c);
    }

    #[test]
    fn rows_do_not_depend_on_batch_size() {
        let dim = 7; // odd, so rows straddle Box–Muller pairs
        let small = gaussian_batch(9, 2, dim);
        let large = gaussian_batch(9, 5, dim);
        assert_eq!(small[..], large[..2 * dim]);
        assert!(gaussian_batch(9, 0, dim).is_empty());
    }

    #[test]
    fn gaussian_f32_continues_the_stream() {
        let mut whole = Noise::new(3);
        let all = whole.gaussian_f32(5);
        let mut split = Noise::new(3);
        let mut parts = split.gaussian_f32(3);
        parts.extend(split.gaussian_f32(2));
        assert_eq!(all, parts);
    }
}
