//! A bounds-checked front of the `gemm` crate (runtime-dispatched AVX-512 / AVX2+FMA kernels).

use gemm::Parallelism;

/// A matrix view: `rows × cols` elements of `data`, element `(r, c)` at `r * rs + c * cs`.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix with row stride `ld`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose of a row-major `cols × rows` matrix with row stride `ld`.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: 1,
            cs: ld,
        }
    }

    fn check(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(
                last < self.data.len(),
                "{what}: view reaches {last}, buffer holds {}",
                self.data.len()
            );
        }
    }
}

/// `dst = scale * a · b` (or `dst += scale * a · b` when `accumulate`), `dst` row-major
/// `a.rows × b.cols` with row stride `ld_dst`.
pub fn matmul(
    dst: &mut [f32],
    ld_dst: usize,
    a: View<'_>,
    b: View<'_>,
    scale: f32,
    accumulate: bool,
    threads: usize,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    a.check("lhs");
    b.check("rhs");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ld_dst + n <= dst.len(), "dst too small");
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every element the kernel touches inside the three
    // slices; `dst` is borrowed mutably, so it cannot alias `a` or `b`.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld_dst as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_including_odd_sizes_and_transposes() {
        for (m, k, n) in [(1, 1, 1), (7, 13, 5), (33, 64, 17), (130, 96, 200)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.1)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 13) as f32 - 6.0) * 0.1)
                .collect();
            let expected = naive(&a, &b, m, k, n);
            for threads in [1, 2] {
                let mut c = vec![0.0; m * n];
                matmul(
                    &mut c,
                    n,
                    View::rows(&a, m, k, k),
                    View::rows(&b, k, n, n),
                    1.0,
                    false,
                    threads,
                );
                for (x, y) in c.iter().zip(&expected) {
                    assert!((x - y).abs() < 1e-4, "{m}x{k}x{n}");
                }
            }
            // b given as its transpose (n × k row-major), as attention reads K.
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let mut c = vec![1.0; m * n];
            matmul(
                &mut c,
                n,
                View::rows(&a, m, k, k),
                View::transposed(&bt, k, n, k),
                2.0,
                true,
                1,
            );
            for (x, y) in c.iter().zip(&expected) {
                assert!((x - (1.0 + 2.0 * y)).abs() < 1e-3);
            }
        }
    }
}
