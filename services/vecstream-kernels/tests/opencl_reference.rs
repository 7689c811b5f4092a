//! Every kernel of kernels/ on an OpenCL device (PoCL's CPU device in CI) against the Rust
//! CPU reference (`vecstream_engine::cpu::ops`, the engine's own code path), in both
//! precisions, including odd sizes, padding masks, sequence length 1 and the model's
//! maximum length.
//!
//! Tolerance: |kernel − reference| <= tol · max(|reference|, 1), with tol = 1e-4 in fp32
//! (only the order of reductions and the exp/erf implementations differ) and 2e-3 in fp16.
//! In fp16 the inputs are rounded to half first and the reference runs in fp32 on the
//! rounded values, so the test measures the kernels' own rounding (outputs stored as half).

use half::f16;
use vecstream_engine::cpu::ops;
use vecstream_kernels::Activation;
use vecstream_kernels::opencl::Runner;

const EPS: f32 = 1e-12;
/// The longest sequence the engine runs (MiniLM's max_seq_length).
const MAX_LEN: usize = 256;

/// Deterministic pseudo-random values in [-scale, scale].
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// `v` in the storage type `T`.
fn store<T: Activation>(v: &[f32]) -> Vec<T> {
    v.iter().map(|x| T::from_f32(*x)).collect()
}

/// `v` widened back to fp32.
fn widen<T: Activation>(v: &[T]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

/// `v` rounded to `T`: what the kernel reads.
fn rounded<T: Activation>(v: &[f32]) -> Vec<f32> {
    widen(&store::<T>(v))
}

fn tolerance<T: Activation>() -> f32 {
    if T::KERNEL_SUFFIX.is_empty() {
        1e-4
    } else {
        2e-3
    }
}

fn precision<T: Activation>() -> &'static str {
    if T::KERNEL_SUFFIX.is_empty() {
        "fp32"
    } else {
        "fp16"
    }
}

/// Asserts every element is within the precision's tolerance; returns the worst relative
/// error for the log.
fn assert_close<T: Activation>(got: &[f32], want: &[f32], what: &str) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let tol = tolerance::<T>();
    let mut worst = 0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        assert!(
            err <= tol,
            "{} {what}: element {i}: {g} vs {w} (tolerance {tol})",
            precision::<T>()
        );
        worst = worst.max(err);
    }
    eprintln!("{} {what}: worst error {worst:.2e}", precision::<T>());
    worst
}

fn runner() -> Runner {
    let r = Runner::new().expect("an OpenCL device (PoCL: Debian pocl-opencl-icd)");
    eprintln!("OpenCL device: {}", r.device_name());
    r
}

fn embed_layernorm_case<T: Activation>(cl: &Runner) {
    for (hidden, tokens) in [(384, 7), (37, 1), (129, 3)] {
        let (vocab, max_pos, types) = (50, MAX_LEN, 2);
        let word = rounded::<T>(&values(vocab * hidden, 1, 1.0));
        let position = rounded::<T>(&values(max_pos * hidden, 2, 0.5));
        let token_type = rounded::<T>(&values(types * hidden, 3, 0.2));
        let gamma = values(hidden, 4, 1.0);
        let beta = values(hidden, 5, 0.1);
        let ids: Vec<i32> = (0..tokens).map(|t| ((t * 17 + 3) % vocab) as i32).collect();
        let pos: Vec<i32> = (0..tokens).map(|t| (t * 37 % max_pos) as i32).collect();
        let tys: Vec<i32> = (0..tokens).map(|t| (t % types) as i32).collect();
        let got = cl
            .embed_layernorm(
                &ids,
                &pos,
                &tys,
                &store::<T>(&word),
                &store::<T>(&position),
                &store::<T>(&token_type),
                &gamma,
                &beta,
                EPS,
            )
            .unwrap();
        let mut want = Vec::with_capacity(tokens * hidden);
        for t in 0..tokens {
            let (w, p, y) = (ids[t] as usize, pos[t] as usize, tys[t] as usize);
            want.extend((0..hidden).map(|i| {
                word[w * hidden + i] + position[p * hidden + i] + token_type[y * hidden + i]
            }));
        }
        ops::layer_norm(&mut want, &gamma, &beta, EPS);
        assert_close::<T>(
            &widen(&got),
            &want,
            &format!("embed_layernorm hidden {hidden}"),
        );
    }
}

#[test]
fn embed_layernorm_matches_the_reference() {
    let cl = runner();
    embed_layernorm_case::<f32>(&cl);
    embed_layernorm_case::<f16>(&cl);
}

fn bias_gelu_case<T: Activation>(cl: &Runner) {
    for (rows, cols) in [(3, 1536), (5, 37), (1, 1)] {
        let x = rounded::<T>(&values(rows * cols, 10, 4.0));
        let bias = values(cols, 11, 0.5);
        let got = cl.bias_gelu(&store::<T>(&x), &bias).unwrap();
        let mut want = x.clone();
        ops::bias_gelu(&mut want, &bias);
        assert_close::<T>(&widen(&got), &want, &format!("bias_gelu {rows}x{cols}"));

        let got = cl.add_bias(&store::<T>(&x), &bias).unwrap();
        let mut want = x.clone();
        ops::add_bias(&mut want, &bias);
        assert_close::<T>(&widen(&got), &want, &format!("add_bias {rows}x{cols}"));
    }
}

#[test]
fn bias_gelu_and_add_bias_match_the_reference() {
    let cl = runner();
    bias_gelu_case::<f32>(&cl);
    bias_gelu_case::<f16>(&cl);
}

fn masked_softmax_case<T: Activation>(cl: &Runner) {
    let heads = 3;
    for (seq, lengths) in [
        (1, vec![1, 1]),
        (7, vec![7, 3]),
        (MAX_LEN, vec![MAX_LEN as i32, 1]),
        (300, vec![300, 129]),
    ] {
        let batch = lengths.len();
        let scale = 1.0 / 8.0;
        let scores = rounded::<T>(&values(batch * heads * seq * seq, 20 + seq as u64, 6.0));
        let got = widen(
            &cl.masked_softmax(&store::<T>(&scores), &lengths, heads, seq, scale)
                .unwrap(),
        );
        let mut want = scores.clone();
        for (r, row) in want.chunks_exact_mut(seq).enumerate() {
            let len = lengths[r / (heads * seq)] as usize;
            ops::scaled_softmax(&mut row[..len], len, scale);
            row[len..].fill(0.0);
        }
        assert_close::<T>(&got, &want, &format!("masked_softmax seq {seq}"));
        // Each real row sums to one; padded keys get exactly nothing.
        for (r, row) in got.chunks_exact(seq).enumerate() {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < tolerance::<T>() / 2.0, "row sum {sum}");
            let len = lengths[r / (heads * seq)] as usize;
            assert!(row[len..].iter().all(|p| *p == 0.0));
        }
    }
}

#[test]
fn masked_softmax_matches_the_reference_with_padding() {
    let cl = runner();
    masked_softmax_case::<f32>(&cl);
    masked_softmax_case::<f16>(&cl);
}

fn residual_layernorm_case<T: Activation>(cl: &Runner) {
    for (rows, hidden) in [(4, 384), (3, 37), (1, 1536)] {
        let x = rounded::<T>(&values(rows * hidden, 30, 2.0));
        let y = rounded::<T>(&values(rows * hidden, 31, 2.0));
        let bias = values(hidden, 32, 0.3);
        let gamma = values(hidden, 33, 1.0);
        let beta = values(hidden, 34, 0.2);
        let got = cl
            .residual_layernorm(&store::<T>(&x), &store::<T>(&y), &bias, &gamma, &beta, EPS)
            .unwrap();
        let mut want = x.clone();
        ops::bias_residual_layer_norm(&mut want, &y, &bias, &gamma, &beta, EPS);
        assert_close::<T>(
            &widen(&got),
            &want,
            &format!("residual_layernorm {rows}x{hidden}"),
        );
    }
}

#[test]
fn residual_layernorm_matches_the_reference() {
    let cl = runner();
    residual_layernorm_case::<f32>(&cl);
    residual_layernorm_case::<f16>(&cl);
}

fn pool_normalize_case<T: Activation>(cl: &Runner) {
    for (seq, hidden, lengths) in [
        (5, 384, vec![5, 1, 3]),
        (1, 37, vec![1]),
        (MAX_LEN, 64, vec![MAX_LEN as i32, 2]),
    ] {
        let batch = lengths.len();
        let states = rounded::<T>(&values(batch * seq * hidden, 40, 3.0));
        for (cls, normalize) in [(false, true), (true, true), (false, false)] {
            let got = cl
                .pool_normalize(&store::<T>(&states), &lengths, seq, hidden, cls, normalize)
                .unwrap();
            let mut want = vec![0f32; batch * hidden];
            for (b, out) in want.chunks_exact_mut(hidden).enumerate() {
                let len = if cls { 1 } else { lengths[b] as usize };
                let start = b * seq * hidden;
                ops::mean_rows(&states[start..start + len * hidden], out);
                if normalize {
                    ops::l2_normalize(out);
                }
            }
            // The pooled output is fp32 in both precisions: only reduction order differs.
            assert_close::<f32>(
                &got,
                &want,
                &format!(
                    "pool over {} states, seq {seq} cls {cls} normalize {normalize}",
                    precision::<T>()
                ),
            );
        }
    }
}

#[test]
fn pooling_and_normalisation_match_the_reference() {
    let cl = runner();
    pool_normalize_case::<f32>(&cl);
    pool_normalize_case::<f16>(&cl);
}

fn gemm_case<T: Activation>(cl: &Runner) {
    for (m, n, k, with_bias) in [(5, 7, 33, true), (1, 1, 1, false), (64, 384, 384, true)] {
        let a = rounded::<T>(&values(m * k, 50, 1.0));
        let b = rounded::<T>(&values(n * k, 51, 1.0));
        let bias = values(n, 52, 0.5);
        let got = cl
            .gemm_nt(
                &store::<T>(&a),
                &store::<T>(&b),
                with_bias.then_some(bias.as_slice()),
                m,
                n,
                k,
            )
            .unwrap();
        let mut want = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[j * k + p] as f64)
                    .sum();
                want[i * n + j] = dot as f32 + if with_bias { bias[j] } else { 0.0 };
            }
        }
        assert_close::<T>(&widen(&got), &want, &format!("gemm {m}x{n}x{k}"));
    }
}

#[test]
fn gemm_matches_the_reference() {
    let cl = runner();
    gemm_case::<f32>(&cl);
    gemm_case::<f16>(&cl);
}
