//! Prints the GFLOP/s of the GEMM shapes of MiniLM's linear layers on this machine.
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
    for (m, k, n) in [
        (4096, 384, 1152),
        (4096, 384, 1536),
        (4096, 1536, 384),
        (4096, 384, 384),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0.0f32; m * n];
        pool.install(|| {
            matmul(
                &mut c,
                n,
                View::rows(&a, m, k, k),
                View::rows(&b, k, n, n),
                1.0,
                false,
                threads,
            );
            let reps = 5;
            let t = Instant::now();
            for _ in 0..reps {
                matmul(
                    &mut c,
                    n,
                    View::rows(&a, m, k, k),
                    View::rows(&b, k, n, n),
                    1.0,
                    false,
                    threads,
                );
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "gemm crate {m}x{k}x{n}: {:.1} GFLOP/s",
                2.0 * (m * k * n) as f64 / s / 1e9
            );
            let packed = vecstream_engine::cpu::packed::PackedMatrix::new(b.clone(), k, n);
            packed.matmul(&a, m, k, &mut c, n, threads);
            let t = Instant::now();
            for _ in 0..reps {
                packed.matmul(&a, m, k, &mut c, n, threads);
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "packed     {m}x{k}x{n}: {:.1} GFLOP/s",
                2.0 * (m * k * n) as f64 / s / 1e9
            );
        });
    }
}
