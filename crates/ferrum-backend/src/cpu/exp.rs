//! `exp` in plain f32 arithmetic (Cody–Waite range reduction and Cephes' degree-6 polynomial),
//! so that a loop of them vectorizes: libm's `expf` is a call per element, and the softmax of
//! attention and the SiLU of every MLP take one per score or per activation. Within 2 ulp of the
//! exact value; the same bits on every CPU (no fused multiply-add), so the portable and AVX2
//! paths of a kernel stay bit-identical.

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split so that n·LN2_HI is exact for the n that occur
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding and subtracting it rounds to the nearest integer (ties to even).
const ROUND: f32 = 12_582_912.0;
/// Below this `exp` is subnormal (2⁻¹²⁶): return 0, which a softmax weight or a sigmoid's
/// denominator does not notice.
const MIN_X: f32 = -87.336_55;
/// Above this `exp` overflows f32.
const MAX_X: f32 = 88.376_26;

#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(MIN_X, MAX_X);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_2e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    // 2ⁿ by its bits; n ∈ [-126, 127] after the clamp (n = 128 only at MAX_X's last ulp)
    let two_n = f32::from_bits((((n as i32) + 127).clamp(1, 254) as u32) << 23);
    let y = e * two_n;
    if x < MIN_X {
        0.0
    } else if x > MAX_X {
        f32::INFINITY
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::exp;

    #[test]
    fn within_two_ulp_of_exact_over_the_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            let ulp =
                (f32::from_bits((want as f32).to_bits() + 1) as f64 - want as f32 as f64).abs();
            worst = worst.max((got - want).abs() / ulp);
            x += 0.000_731;
        }
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }
}
