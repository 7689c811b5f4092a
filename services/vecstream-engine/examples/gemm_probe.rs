//! Prints the machine's FMA peak and the rates of MiniLM's linear-layer GEMM shapes with
//! the `gemm` crate, our packed fp32 kernel and our int8 kernel.
//!
//!     cargo run -p vecstream-engine --release --example gemm_probe [THREADS]
use std::time::Instant;
use vecstream_engine::cpu::gemm::{View, matmul};

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    println!(
        "fma peak on {threads} thread(s): {:.1} GFLOP/s",
        pool.install(|| fma_peak(threads))
    );
    for (m, k, n) in [
        (4096, 384, 1152),
        (4096, 384, 1536),
        (4096, 1536, 384),
        (4096, 384, 384),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0.0f32; m * n];
        let packed = vecstream_engine::cpu::packed::PackedMatrix::new(b.clone(), k, n);
        let quant = vecstream_engine::cpu::quant::QuantMatrix::new(&b, k, n);
        let flops = 2.0 * (m * k * n) as f64;
        pool.install(|| {
            let gemm_crate = rate(flops, || {
                matmul(
                    &mut c,
                    n,
                    View::rows(&a, m, k, k),
                    View::rows(&b, k, n, n),
                    1.0,
                    false,
                    threads,
                )
            });
            println!("gemm crate {m}x{k}x{n}: {gemm_crate:.1} GFLOP/s");
            let ours = rate(flops, || packed.matmul(&a, m, k, &mut c, n, threads));
            println!("packed     {m}x{k}x{n}: {ours:.1} GFLOP/s");
            let int8 = rate(flops, || quant.matmul(&a, m, k, &mut c, n, threads));
            println!("int8       {m}x{k}x{n}: {int8:.1} GOP/s");
        });
    }
}

/// G(FL)OP/s of `run`, which does `flops` operations: one warm-up, then the mean of 5 runs.
fn rate(flops: f64, mut run: impl FnMut()) -> f64 {
    const REPS: usize = 5;
    run();
    let t = Instant::now();
    for _ in 0..REPS {
        run();
    }
    flops / (t.elapsed().as_secs_f64() / REPS as f64) / 1e9
}

/// GFLOP/s of back-to-back independent FMAs on every thread: the ceiling a GEMM can reach.
fn fma_peak(threads: usize) -> f64 {
    use rayon::prelude::*;
    const ITERS: usize = 50_000_000;
    let t = Instant::now();
    let sink: f32 = (0..threads)
        .into_par_iter()
        .map(|_| fma_chains(ITERS))
        .sum();
    let s = t.elapsed().as_secs_f64();
    assert!(sink.is_finite());
    // Per iteration: 12 registers × 8 lanes × 2 flops.
    (threads * ITERS * 12 * 8 * 2) as f64 / s / 1e9
}

#[cfg(target_arch = "x86_64")]
fn fma_chains(iters: usize) -> f32 {
    if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
        return 0.0;
    }
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run(iters: usize) -> f32 {
        use std::arch::x86_64::*;
        let mut acc = [_mm256_set1_ps(0.0); 12];
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut out = [0.0f32; 8];
        let mut total = _mm256_setzero_ps();
        for x in acc {
            total = _mm256_add_ps(total, x);
        }
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), total) };
        out.iter().sum()
    }
    // SAFETY: AVX2 and FMA were detected above.
    #[allow(unsafe_code)]
    unsafe {
        run(iters)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_chains(_: usize) -> f32 {
    0.0
}
