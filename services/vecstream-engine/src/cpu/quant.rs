//! int8 linear layers: weights quantised once per output column (symmetric, 7 bits),
//! activations per row at run time (asymmetric, 8 bits), products summed in i32.
//!
//! The AVX2 kernel multiplies unsigned activation bytes by signed weight bytes with
//! `vpmaddubsw`, which adds pairs into saturating i16. Weights are kept within ±63 so that
//! a pair (at most 2·255·63 = 32130) never saturates: the result is exact integer
//! arithmetic, and the only error is the rounding of the two quantisations.
//! Without AVX2 the same integer arithmetic runs in portable Rust.

use std::cell::RefCell;

use super::packed::{check_operands, par_row_blocks};
use multiversion::multiversion;

/// Rows of one register tile.
const MR: usize = 4;
/// Columns of one register tile (two registers of eight i32 lanes).
const NR: usize = 16;
/// Rows of A quantised and kept in L2 while every weight panel passes over them.
const MC: usize = 96;
/// Largest weight magnitude after quantisation (7 bits, see the module note).
const W_MAX: f32 = 63.0;

/// A `[k, n]` weight matrix quantised to i8 per column, packed for the kernel: 16-column
/// panels, inside a panel groups of 4 consecutive k per column (one i32 lane).
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    k: usize,
    n: usize,
    /// `k` rounded up to a multiple of 4 (zero weights in the padding).
    k4: usize,
    packed: Vec<i8>,
    /// Per column (padded to whole panels): the dequantisation scale.
    scale: Vec<f32>,
    /// Per column (padded): the sum of its quantised weights, for the activations' zero point.
    col_sum: Vec<i32>,
    simd: bool,
}

thread_local! {
    /// Quantised rows of A of the current task; grows once, reused by every call.
    static QUANT_A: RefCell<(Vec<u8>, Vec<f32>, Vec<i32>)> = const {
        RefCell::new((Vec::new(), Vec::new(), Vec::new()))
    };
}

impl QuantMatrix {
    /// Quantises `w` (`k × n`, row-major).
    pub fn new(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n);
        let k4 = k.div_ceil(4) * 4;
        let panels = n.div_ceil(NR);
        // Padded to whole panels so the epilogue always works on 16 columns.
        let mut scale = vec![1.0f32; panels * NR];
        for (c, s) in scale.iter_mut().enumerate().take(n) {
            let max = (0..k).map(|p| w[p * n + c].abs()).fold(0.0f32, f32::max);
            if max > 0.0 {
                *s = max / W_MAX;
            }
        }
        let quant = |p: usize, c: usize| -> i8 {
            (w[p * n + c] / scale[c]).round().clamp(-W_MAX, W_MAX) as i8
        };
        let mut col_sum = vec![0i32; panels * NR];
        for (c, sum) in col_sum.iter_mut().enumerate().take(n) {
            *sum = (0..k).map(|p| quant(p, c) as i32).sum();
        }
        let mut packed = vec![0i8; panels * k4 * NR];
        for j in 0..panels {
            for p in 0..k {
                for c in 0..NR.min(n - j * NR) {
                    let (quad, within) = (p / 4, p % 4);
                    packed[((j * k4 / 4 + quad) * NR + c) * 4 + within] = quant(p, j * NR + c);
                }
            }
        }
        Self {
            k,
            n,
            k4,
            packed,
            scale,
            col_sum,
            simd: simd_available(),
        }
    }

    /// `c[m × n] = a[m × k] · self` (row-major, `a` with row stride `lda`, `c` with `ldc`),
    /// split over the current rayon pool by rows.
    pub fn matmul(
        &self,
        a: &[f32],
        m: usize,
        lda: usize,
        c: &mut [f32],
        ldc: usize,
        threads: usize,
    ) {
        let (k, n) = (self.k, self.n);
        if m == 0 {
            return;
        }
        check_operands(a.len(), m, k, lda, c.len(), n, ldc);
        par_row_blocks(c, m, n, ldc, MR, threads, |r0, rows, c_block| {
            // Blocks of `MC` rows: quantised once, kept in L2 while every panel passes.
            for i0 in (0..rows).step_by(MC) {
                let mc = MC.min(rows - i0);
                self.block(
                    &a[(r0 + i0) * lda..],
                    mc,
                    lda,
                    &mut c_block[i0 * ldc..],
                    ldc,
                );
            }
        });
    }

    /// Quantises `m` rows of `a`, then runs every panel over them.
    fn block(&self, a: &[f32], m: usize, lda: usize, c: &mut [f32], ldc: usize) {
        let (k, k4, n) = (self.k, self.k4, self.n);
        QUANT_A.with_borrow_mut(|(aq, row_scale, row_zero)| {
            if aq.len() < m * k4 {
                aq.resize(m * k4, 0);
            }
            row_scale.resize(m, 0.0);
            row_zero.resize(m, 0);
            for r in 0..m {
                let (s, z) = quantize_row(&a[r * lda..r * lda + k], &mut aq[r * k4..(r + 1) * k4]);
                row_scale[r] = s;
                row_zero[r] = z;
            }
            let mut acc = [[0i32; NR]; MR];
            for j in 0..n.div_ceil(NR) {
                let panel = &self.packed[j * k4 * NR..(j + 1) * k4 * NR];
                let cols = NR.min(n - j * NR);
                for i in (0..m).step_by(MR) {
                    let rows = MR.min(m - i);
                    let a_tile = &aq[i * k4..(i + rows) * k4];
                    if self.simd {
                        // SAFETY: `simd` is set only after detecting AVX2; the kernel reads
                        // `rows` rows of `k4` bytes of `a_tile` and `k4 * 16` panel bytes,
                        // the lengths of those slices.
                        #[allow(unsafe_code)]
                        unsafe {
                            kernel_4x16(a_tile, k4, panel, rows, &mut acc)
                        };
                    } else {
                        portable_4x16(a_tile, k4, panel, rows, &mut acc);
                    }
                    let cols_of =
                        |v: &'_ [f32]| -> [f32; NR] { v[j * NR..][..NR].try_into().unwrap() };
                    let col_scale = cols_of(&self.scale);
                    let col_sum: [i32; NR] = self.col_sum[j * NR..][..NR].try_into().unwrap();
                    for (r, acc_r) in acc.iter().enumerate().take(rows) {
                        let mut tile = [0.0f32; NR];
                        dequantize(
                            acc_r,
                            row_scale[i + r],
                            row_zero[i + r],
                            &col_scale,
                            &col_sum,
                            &mut tile,
                        );
                        c[(i + r) * ldc + j * NR..][..cols].copy_from_slice(&tile[..cols]);
                    }
                }
            }
        });
    }
}

/// One row of a tile back to f32: `(acc − zero · Σw) · row_scale · col_scale`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn dequantize(
    acc: &[i32; NR],
    row_scale: f32,
    row_zero: i32,
    col_scale: &[f32; NR],
    col_sum: &[i32; NR],
    out: &mut [f32; NR],
) {
    for c in 0..NR {
        out[c] = (acc[c] - row_zero * col_sum[c]) as f32 * (row_scale * col_scale[c]);
    }
}

/// Quantises one row to u8 with its own scale and zero point, pads to `out.len()` with the
/// zero point, and returns `(scale, zero_point)`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn quantize_row(row: &[f32], out: &mut [u8]) -> (f32, i32) {
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    for &v in row {
        lo = if v < lo { v } else { lo };
        hi = if v > hi { v } else { hi };
    }
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let inv = 1.0 / scale;
    // Ties to even: one instruction with SSE4.1 and up, where `round` is a libm call.
    let zero = (-lo * inv).round_ties_even().clamp(0.0, 255.0);
    // Adding 1.5·2^23 rounds to an integer held in the low mantissa bits: no float-to-int
    // conversion, so the loop vectorises.
    const ROUND: f32 = 12_582_912.0;
    for (o, &v) in out.iter_mut().zip(row) {
        *o = ((v * inv + zero).clamp(0.0, 255.0) + ROUND).to_bits() as u8;
    }
    // Padding meets zero weights, so its value does not matter; the zero point keeps it tidy.
    out[row.len()..].fill(zero as u8);
    (scale, zero as i32)
}

fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The reference of the kernel: `acc[r][c] = Σ_p a[r, p] · panel[p, c]` in i32.
fn portable_4x16(a: &[u8], k4: usize, panel: &[i8], rows: usize, acc: &mut [[i32; NR]; MR]) {
    for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
        acc_r.fill(0);
        let row = &a[r * k4..(r + 1) * k4];
        for (q, quad) in row.chunks_exact(4).enumerate() {
            let b = &panel[q * NR * 4..(q + 1) * NR * 4];
            for (c, acc_c) in acc_r.iter_mut().enumerate() {
                for (x, w) in quad.iter().zip(&b[c * 4..c * 4 + 4]) {
                    *acc_c += *x as i32 * *w as i32;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2")]
unsafe fn kernel_4x16(a: &[u8], k4: usize, panel: &[i8], rows: usize, acc: &mut [[i32; NR]; MR]) {
    use std::arch::x86_64::*;
    debug_assert!((1..=MR).contains(&rows));
    debug_assert!(a.len() >= rows * k4 && panel.len() >= k4 * NR);
    let ones = _mm256_set1_epi16(1);
    let mut sum = [[_mm256_setzero_si256(); 2]; MR];
    // Rows past `rows` reuse the last valid row: harmless reads, results discarded.
    let row: [*const u8; MR] = std::array::from_fn(|r| a[r.min(rows - 1) * k4..].as_ptr());
    let bp = panel.as_ptr();
    for q in 0..k4 / 4 {
        unsafe {
            let b0 = _mm256_loadu_si256(bp.add(q * NR * 4) as *const __m256i);
            let b1 = _mm256_loadu_si256(bp.add(q * NR * 4 + 32) as *const __m256i);
            for (r, sum_r) in sum.iter_mut().enumerate() {
                let quad = (row[r].add(q * 4) as *const i32).read_unaligned();
                let av = _mm256_set1_epi32(quad);
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones);
                sum_r[0] = _mm256_add_epi32(sum_r[0], p0);
                sum_r[1] = _mm256_add_epi32(sum_r[1], p1);
            }
        }
    }
    for (acc_r, sum_r) in acc.iter_mut().zip(&sum) {
        unsafe {
            _mm256_storeu_si256(acc_r.as_mut_ptr() as *mut __m256i, sum_r[0]);
            _mm256_storeu_si256(acc_r.as_mut_ptr().add(8) as *mut __m256i, sum_r[1]);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code)]
unsafe fn kernel_4x16(_: &[u8], _: usize, _: &[i8], _: usize, _: &mut [[i32; NR]; MR]) {
    unreachable!("the int8 kernel is only enabled on x86_64 with AVX2")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let a = (0..m * k)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.05)
            .collect();
        let w = (0..k * n)
            .map(|i| ((i * 5 % 19) as f32 - 9.0) * 0.01)
            .collect();
        (a, w)
    }

    #[test]
    fn simd_kernel_equals_the_portable_one_bit_for_bit() {
        if !simd_available() {
            return;
        }
        let (k, n) = (37, 16);
        let (_, w) = inputs(1, k, n);
        let q = QuantMatrix::new(&w, k, n);
        let a: Vec<u8> = (0..MR * q.k4).map(|i| (i * 31 % 256) as u8).collect();
        for rows in 1..=MR {
            let (mut x, mut y) = ([[0; NR]; MR], [[0; NR]; MR]);
            portable_4x16(&a, q.k4, &q.packed, rows, &mut x);
            #[allow(unsafe_code)]
            // SAFETY: AVX2 checked above; slices sized for `rows` rows.
            unsafe {
                kernel_4x16(&a, q.k4, &q.packed, rows, &mut y)
            };
            assert_eq!(x[..rows], y[..rows]);
        }
    }

    #[test]
    fn int8_matmul_is_close_to_fp32_on_odd_shapes() {
        for (m, k, n) in [(1, 1, 1), (5, 7, 3), (13, 300, 37), (100, 384, 384)] {
            let (a, w) = inputs(m, k, n);
            let mut expected = vec![0.0f32; m * n];
            for r in 0..m {
                for c in 0..n {
                    expected[r * n + c] = (0..k).map(|p| a[r * k + p] * w[p * n + c]).sum();
                }
            }
            let q = QuantMatrix::new(&w, k, n);
            for threads in [1, 2] {
                let mut c = vec![f32::NAN; m * n];
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| q.matmul(&a, m, k, &mut c, n, threads));
                // Error bound: each product carries at most half a step of each quantiser.
                let bound = 0.02 * (k as f32).sqrt() + 1e-3;
                for (i, (x, y)) in c.iter().zip(&expected).enumerate() {
                    assert!((x - y).abs() <= bound, "{m}x{k}x{n} at {i}: {x} vs {y}");
                }
            }
        }
    }
}
