//! GEMM against a weight matrix packed once at load time, with an AVX2+FMA 6×16 register
//! micro-kernel (the shape of the linear layers: activations `[tokens, in]` times weights
//! `[in, out]`). Packing turns every 16-column panel of the weights into one contiguous
//! stream, so the kernel reads B sequentially and keeps 12 accumulators in registers.
//! Dispatch, decided once per matrix at load time: with AVX-512F the `gemm` crate's AVX-512
//! micro-kernels (twice the lanes of ours) run on the unpacked weights; with AVX2+FMA only,
//! our packed kernel (on AVX2 it matches or beats the `gemm` crate, see `examples/gemm_probe`);
//! without either, the `gemm` crate's portable path.

use rayon::prelude::*;

use super::gemm::{View, matmul};

const MR: usize = 6;
const NR: usize = 16;
/// Depth of one pass over a B panel: 16 columns × 256 rows = 16 KiB, stays in L1.
const KC: usize = 256;
/// Rows of A per L2 block: 96 × 256 floats = 96 KiB.
const MC: usize = 96;

/// A `[k, n]` row-major weight matrix, packed in 16-column panels (zero-padded).
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    /// Panel `j` holds rows `0..k` of columns `16j..16j+16`, 16 floats per row.
    panels: Vec<f32>,
    /// The plain matrix, for the fallback path.
    plain: Vec<f32>,
    simd: bool,
}

impl PackedMatrix {
    /// Packs `w` (`k × n`, row-major).
    pub fn new(w: Vec<f32>, k: usize, n: usize) -> Self {
        Self::build(w, k, n, simd_available())
    }

    /// `simd` picks our packed kernel (needs AVX2+FMA) over the `gemm` crate.
    fn build(w: Vec<f32>, k: usize, n: usize, simd: bool) -> Self {
        assert_eq!(w.len(), k * n);
        let panels_n = n.div_ceil(NR);
        let mut panels = Vec::new();
        if simd {
            panels = vec![0.0; panels_n * k * NR];
            for j in 0..panels_n {
                for p in 0..k {
                    for c in 0..NR.min(n - j * NR) {
                        panels[(j * k + p) * NR + c] = w[p * n + j * NR + c];
                    }
                }
            }
        }
        // The fallback needs the plain layout; the packed path never reads it.
        let plain = if simd { Vec::new() } else { w };
        Self {
            k,
            n,
            panels,
            plain,
            simd,
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
        if !self.simd {
            matmul(
                c,
                ldc,
                View::rows(a, m, k, lda),
                View::rows(&self.plain, k, n, n),
                1.0,
                false,
                threads,
            );
            return;
        }
        par_row_blocks(c, m, n, ldc, MR, threads, |r0, rows, c_block| {
            self.block(&a[r0 * lda..], rows, lda, c_block, ldc)
        });
    }

    /// One thread's rows. Loop order after BLIS: a block of `MC` rows of A (L2) meets one
    /// 16-column panel of B at a time (L1), tile by tile.
    fn block(&self, a: &[f32], m: usize, lda: usize, c: &mut [f32], ldc: usize) {
        let (k, n) = (self.k, self.n);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            for ic in (0..m).step_by(MC) {
                let ic_end = (ic + MC).min(m);
                for j in 0..n.div_ceil(NR) {
                    let panel = &self.panels[(j * k + k0) * NR..(j * k + k0 + kc) * NR];
                    let cols = NR.min(n - j * NR);
                    for i in (ic..ic_end).step_by(MR) {
                        let rows = MR.min(ic_end - i);
                        let a_tile = &a[i * lda + k0..];
                        let c_tile = &mut c[i * ldc + j * NR..];
                        // SAFETY: `simd` was set only after detecting AVX2 and FMA; the kernel
                        // reads `rows` rows of `kc` floats of `a_tile` (row stride `lda`),
                        // `kc × 16` panel floats, and touches `rows × cols` of `c_tile` (row
                        // stride `ldc`), inside the slices as asserted by `matmul`.
                        #[allow(unsafe_code)]
                        unsafe {
                            kernel_6x16(a_tile, lda, panel, kc, c_tile, ldc, rows, cols, k0 > 0)
                        };
                    }
                }
            }
        }
    }
}

/// The operand checks of `c[m × n] = a[m × k] · W` that make the kernels' reads and writes
/// stay inside `a` and `c` (row strides `lda`, `ldc`).
pub(super) fn check_operands(
    a_len: usize,
    m: usize,
    k: usize,
    lda: usize,
    c_len: usize,
    n: usize,
    ldc: usize,
) {
    assert!(lda >= k && ldc >= n);
    assert!((m - 1) * lda + k <= a_len, "a too small");
    assert!((m - 1) * ldc + n <= c_len, "c too small");
}

/// Runs `block(first_row, rows, c_rows)` over blocks of `c`'s `m` rows on the current rayon
/// pool: whole `tile`-row multiples, a few blocks per thread for balance.
pub(super) fn par_row_blocks(
    c: &mut [f32],
    m: usize,
    n: usize,
    ldc: usize,
    tile: usize,
    threads: usize,
    block: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    let rows_per_task = (m.div_ceil(threads.max(1) * 2)).div_ceil(tile) * tile;
    c[..(m - 1) * ldc + n]
        .par_chunks_mut(rows_per_task * ldc)
        .enumerate()
        .for_each(|(t, c_block)| {
            let r0 = t * rows_per_task;
            block(r0, rows_per_task.min(m - r0), c_block)
        });
}

/// AVX2 and FMA: what our kernel needs.
fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether our kernel is the best choice here (see the module docs).
fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx2_fma() && !std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_6x16(
    a: &[f32],
    lda: usize,
    panel: &[f32],
    kc: usize,
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    debug_assert!((1..=MR).contains(&rows) && (1..=NR).contains(&cols));
    debug_assert!(panel.len() >= kc * NR && a.len() > (rows - 1) * lda + kc - 1);
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let bp = panel.as_ptr();
    // Rows past `rows` reuse the last valid row: harmless reads, results discarded.
    let row: [*const f32; MR] = std::array::from_fn(|r| a[r.min(rows - 1) * lda..].as_ptr());
    for p in 0..kc {
        unsafe {
            let b0 = _mm256_loadu_ps(bp.add(p * NR));
            let b1 = _mm256_loadu_ps(bp.add(p * NR + 8));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*row[r].add(p));
                acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
            }
        }
    }
    if cols == NR {
        let cp = c.as_mut_ptr();
        for (r, acc_r) in acc.iter().enumerate().take(rows) {
            unsafe {
                let dst = cp.add(r * ldc);
                let (mut v0, mut v1) = (acc_r[0], acc_r[1]);
                if accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(dst));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(dst.add(8)));
                }
                _mm256_storeu_ps(dst, v0);
                _mm256_storeu_ps(dst.add(8), v1);
            }
        }
    } else {
        let mut tile = [0.0f32; NR];
        for (r, acc_r) in acc.iter().enumerate().take(rows) {
            unsafe {
                _mm256_storeu_ps(tile.as_mut_ptr(), acc_r[0]);
                _mm256_storeu_ps(tile.as_mut_ptr().add(8), acc_r[1]);
            }
            let dst = &mut c[r * ldc..r * ldc + cols];
            for (d, t) in dst.iter_mut().zip(&tile) {
                *d = if accumulate { *d + t } else { *t };
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code, clippy::too_many_arguments)]
unsafe fn kernel_6x16(
    _: &[f32],
    _: usize,
    _: &[f32],
    _: usize,
    _: &mut [f32],
    _: usize,
    _: usize,
    _: usize,
    _: bool,
) {
    unreachable!("packed path is only enabled on x86_64 with AVX2+FMA")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_matches_the_gemm_crate_on_odd_shapes() {
        for (m, k, n) in [
            (1, 1, 1),
            (5, 7, 3),
            (6, 16, 16),
            (13, 300, 37),
            (100, 384, 1152),
            (37, 1536, 384),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.05)
                .collect();
            let w: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 19) as f32 - 9.0) * 0.05)
                .collect();
            let mut expected = vec![0.0; m * n];
            matmul(
                &mut expected,
                n,
                View::rows(&a, m, k, k),
                View::rows(&w, k, n, n),
                1.0,
                false,
                1,
            );
            // Our kernel wherever the CPU can run it, whatever `new` would pick here.
            let packed = PackedMatrix::build(w, k, n, avx2_fma());
            for threads in [1, 2] {
                let mut c = vec![f32::NAN; m * n];
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| packed.matmul(&a, m, k, &mut c, n, threads));
                for (i, (x, y)) in c.iter().zip(&expected).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                        "{m}x{k}x{n} at {i}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
