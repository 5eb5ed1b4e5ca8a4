//! SiLU, the activation of both networks (the MLP's hidden layers, the U-Net's blocks and
//! embedding), and the exponential under it: plain IEEE `f32` operations, so the same bits
//! natively and in wasm (FORMATS.md §1.3).

/// SiLU `v·σ(v) = v / (1 + e^{−v})`, with [`exp`].
#[inline(always)]
pub(crate) fn silu(v: f32) -> f32 {
    v / (1.0 + exp(-v))
}

/// [`silu`] of every value, in place: a loop the compiler vectorizes, built for AVX2 where the
/// CPU has it (8 lanes instead of SSE2's 4; an AVX-512F build measured no faster). Lanes run over values and the operations are the
/// scalar ones, unfused, so every build gives the scalar function's bits.
pub(crate) fn silu_in_place(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        unsafe { silu_avx2(values) };
        return;
    }
    values.iter_mut().for_each(|v| *v = silu(*v));
}

/// [`silu_in_place`] compiled for AVX2.
///
/// # Safety
/// Only where the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn silu_avx2(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = silu(*v));
}

/// `e^a` in `f32` with plain IEEE operations only (no branches, no platform maths), so that a
/// loop of it vectorizes and gives the same bits natively and in wasm; relative error within
/// 2·`f32::EPSILON` (Cephes' `expf`: `a = k·ln 2 + r`, `|r| ≤ ln 2 / 2`, a degree-7 polynomial in
/// `r`, times `2^k`). Below −87.33 it is 0 and above 88.37 infinite (where `2^k` would leave
/// the normal range); NaN stays NaN.
#[inline(always)]
pub fn exp(a: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    /// 1.5·2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    const HIGHEST: f32 = 88.376_26;
    const LOWEST: f32 = -87.336_55;
    let clamped = a.clamp(LOWEST, HIGHEST);
    let k = (clamped * LOG2_E + ROUND) - ROUND;
    let r = (clamped - k * LN2_HIGH) - k * LN2_LOW;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let p = (p * (r * r) + r) + 1.0;
    // 2^k from the bits of k + 127 + 2²³ (exact: k is a whole number in [−126, 128]), whose
    // low bits are k + 127: shifted into the exponent, the rest falls off. The same bits as
    // `(k as i32 + 127) << 23`, without the saturating conversion, which does not vectorize well.
    let scale = f32::from_bits((k + (127.0 + 8_388_608.0)).to_bits() << 23);
    let e = p * scale;
    let e = if a > HIGHEST { f32::INFINITY } else { e };
    let e = if a < LOWEST { 0.0 } else { e };
    if a.is_nan() {
        a
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::Noise;

    #[test]
    fn silu_in_place_gives_the_scalar_bits() {
        let mut noise = Noise::new(5);
        let mut values: Vec<f32> = noise.gaussian_f32(4099).iter().map(|v| v * 30.0).collect();
        values.extend([
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            88.3,
            88.4,
            -87.3,
            -87.4,
            -200.0,
            f32::MIN_POSITIVE,
            -f32::MAX,
            f32::MAX,
        ]);
        let expected: Vec<u32> = values.iter().map(|&v| silu(v).to_bits()).collect();
        silu_in_place(&mut values);
        let got: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn the_power_of_two_comes_from_the_bits_of_k() {
        // Every k the clamped exponent can round to, and one beyond each end.
        for k in -127..=128 {
            let kf = k as f32;
            let from_bits = (kf + (127.0 + 8_388_608.0)).to_bits() << 23;
            assert_eq!(from_bits, ((k + 127) << 23) as u32, "k = {k}");
        }
    }

    #[test]
    fn silu_values() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((silu(-1.0) + 0.268_941_43).abs() < 1e-6);
        assert_eq!(silu(100.0), 100.0);
        assert_eq!(silu(-200.0), -0.0);
        assert!(silu(f32::NAN).is_nan());
    }

    #[test]
    fn exp_is_within_two_epsilons_of_the_exact_value() {
        let mut a = -87.3f32;
        while a < 88.3 {
            let exact = libm::exp(f64::from(a));
            let got = f64::from(exp(a));
            let ulp = f64::from(f32::EPSILON) * exact;
            assert!(
                (got - exact).abs() <= 2.0 * ulp,
                "exp({a}) = {got}, exact {exact}"
            );
            a += 0.0137;
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }
}
