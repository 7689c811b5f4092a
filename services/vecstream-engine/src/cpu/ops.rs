//! Element-wise and row-wise kernels of the encoder, written so the compiler vectorises them
//! (no branches in the inner loops, no libm calls) and compiled for AVX-512, AVX2+FMA and the
//! baseline, picked at run time. These are also the CPU reference of the GPU kernels.

use multiversion::multiversion;

/// e^x for x in [-87, 88], relative error below 2e-7: range reduction by ln 2 and a
/// degree-6 polynomial, then 2^n through the exponent bits.
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Round to nearest without a libm call: adding 1.5 * 2^23 forces rounding of the fraction.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67 + r * (0.041_666_52 + r * (0.008_333_6 + r * 0.001_393_8)))));
    // The low mantissa bits of `shifted` hold n as an integer: no float-to-int conversion,
    // which keeps the loop vectorisable.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    p * scale
}

/// erf(x), absolute error below 1.5e-7 (Abramowitz & Stegun 7.1.26 with our exp).
#[inline(always)]
pub fn erf_approx(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_8) * t - 0.284_496_74) * t
            + 0.254_829_6)
            * t
            * exp_approx(-a * a);
    y.copysign(x)
}

/// Exact (erf) GELU, as BERT's `hidden_act = "gelu"`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_approx(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `y[r, c] = gelu(y[r, c] + bias[c])` for every row of `y` (`cols` wide).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
pub fn bias_gelu(y: &mut [f32], bias: &[f32]) {
    for row in y.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v = gelu(*v + *b);
        }
    }
}

/// `y[r, c] += bias[c]`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
pub fn add_bias(y: &mut [f32], bias: &[f32]) {
    for row in y.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += *b;
        }
    }
}

/// Lanes of the partial sums in [`sum_by_lanes`]: two AVX2 registers or one AVX-512.
const LANES: usize = 16;

/// Sum of `f` over `xs` with `LANES` independent accumulators. A plain `.sum()` is one serial
/// dependency chain the compiler may not reorder, so it stays scalar; this vectorises.
#[inline(always)]
fn sum_by_lanes(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += f(*v);
        }
    }
    acc.iter().sum::<f32>() + tail.iter().map(|v| f(*v)).sum::<f32>()
}

/// Maximum of `xs` (NaN-free input), vectorised like [`sum_by_lanes`].
#[inline(always)]
fn max_by_lanes(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = if *v > *a { *v } else { *a };
        }
    }
    acc.iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, v| if *v > m { *v } else { m })
}

/// In place: `row = (row - mean) / sqrt(var + eps) * g + b`.
#[inline(always)]
fn layer_norm_row(row: &mut [f32], g: &[f32], b: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum_by_lanes(row, |v| v) / n;
    let var = sum_by_lanes(row, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(g).zip(b) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// LayerNorm of every row of `x` (`g.len()` wide).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
pub fn layer_norm(x: &mut [f32], g: &[f32], b: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(g.len()) {
        layer_norm_row(row, g, b, eps);
    }
}

/// The residual step of a transformer block: `x = LayerNorm(x + y + bias)`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
pub fn bias_residual_layer_norm(
    x: &mut [f32],
    y: &[f32],
    bias: &[f32],
    g: &[f32],
    b: &[f32],
    eps: f32,
) {
    let h = g.len();
    for (xr, yr) in x.chunks_exact_mut(h).zip(y.chunks_exact(h)) {
        for ((xv, yv), bv) in xr.iter_mut().zip(yr).zip(bias) {
            *xv += *yv + *bv;
        }
        layer_norm_row(xr, g, b, eps);
    }
}

/// Softmax of each row of `scores` (`cols` wide) after multiplying by `scale`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
pub fn scaled_softmax(scores: &mut [f32], cols: usize, scale: f32) {
    for row in scores.chunks_exact_mut(cols) {
        let max = max_by_lanes(row) * scale;
        // Exponentiate first, sum after: a running sum would serialise the exp loop.
        for v in row.iter_mut() {
            *v = exp_approx(*v * scale - max);
        }
        let inv = 1.0 / sum_by_lanes(row, |v| v);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Mean of the rows of `x` (`out.len()` wide) into `out`.
pub fn mean_rows(x: &[f32], out: &mut [f32]) {
    let h = out.len();
    out.fill(0.0);
    let rows = x.len() / h;
    for row in x.chunks_exact(h) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += *v;
        }
    }
    let inv = 1.0 / rows.max(1) as f32;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// Scales `v` to unit L2 norm (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_fp32_precision() {
        let mut worst = 0.0f64;
        let mut x = -80.0f32;
        while x < 80.0 {
            let rel = ((exp_approx(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_approx(-200.0), exp_approx(-87.0), "clamped, never NaN");
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        // erf via f64 series for the reference.
        fn erf64(x: f64) -> f64 {
            let mut sum = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while term.abs() > 1e-17 && n < 200.0 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        }
        let mut x = -6.0f32;
        while x < 6.0 {
            let reference = 0.5 * x as f64 * (1.0 + erf64(x as f64 / std::f64::consts::SQRT_2));
            assert!((gelu(x) as f64 - reference).abs() < 2e-6, "gelu({x})");
            x += 0.01;
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let mut s = vec![1.0, 2.0, 3.0, -1.0, -1.0, -1.0];
        scaled_softmax(&mut s, 3, 0.5);
        assert!((s[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(s[0] < s[1] && s[1] < s[2]);
        assert!((s[3] - 1.0 / 3.0).abs() < 1e-6);
        let e = (0.5f64).exp();
        let expected = e * e / (1.0 + e + e * e);
        assert!((s[2] as f64 - expected).abs() < 1e-6);
    }

    #[test]
    fn softmax_matches_f64_on_rows_longer_than_the_lanes() {
        let cols = 37;
        let mut s: Vec<f32> = (0..2 * cols)
            .map(|i| ((i * 13 % 29) as f32) * 0.3 - 4.0)
            .collect();
        let input = s.clone();
        scaled_softmax(&mut s, cols, 0.7);
        for (row, got) in input.chunks(cols).zip(s.chunks(cols)) {
            let max = row.iter().fold(f64::MIN, |m, v| m.max(*v as f64 * 0.7));
            let exps: Vec<f64> = row.iter().map(|v| (*v as f64 * 0.7 - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            for (e, g) in exps.iter().zip(got) {
                assert!((e / sum - *g as f64).abs() < 1e-6, "{g} vs {}", e / sum);
            }
        }
    }

    #[test]
    fn layer_norm_normalises_each_row() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0];
        layer_norm(&mut x, &[1.0; 4], &[0.0; 4], 1e-12);
        assert!(x[..4].iter().sum::<f32>().abs() < 1e-5);
        let var = x[..4].iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!((var - 1.0).abs() < 1e-4);
        assert!(
            x[4..].iter().all(|v| v.abs() < 1e-3),
            "constant row → zeros"
        );
    }

    #[test]
    fn residual_step_adds_before_normalising() {
        let mut x = vec![1.0, 0.0];
        bias_residual_layer_norm(
            &mut x,
            &[0.0, 2.0],
            &[0.0, 1.0],
            &[1.0, 1.0],
            &[0.5, 0.5],
            0.0,
        );
        // x + y + bias = [1, 3] → normalised [-1, 1] → + 0.5
        assert!(
            (x[0] + 0.5).abs() < 1e-6 && (x[1] - 1.5).abs() < 1e-6,
            "{x:?}"
        );
    }

    #[test]
    fn pooling_helpers() {
        let mut out = vec![0.0; 2];
        mean_rows(&[1.0, 2.0, 3.0, 4.0], &mut out);
        assert_eq!(out, vec![2.0, 3.0]);
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
    }
}
