//! Every kernel of kernels/ on an OpenCL device (PoCL's CPU device in CI) against the Rust
//! CPU reference (`vecstream_engine::cpu::ops`, the engine's own code path), including odd
//! sizes, padding masks, sequence length 1 and the model's maximum length.
//!
//! Tolerance: max |kernel − reference| <= 1e-4 in fp32 (only the order of reductions and
//! exp/erf implementations differ); 2e-3 relative for the fp16 kernel (half rounding).

use vecstream_engine::cpu::ops;
use vecstream_kernels::opencl::Runner;

const EPS: f32 = 1e-12;
const TOL: f32 = 1e-4;
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

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn runner() -> Runner {
    let r = Runner::new().expect("an OpenCL device (PoCL: Debian pocl-opencl-icd)");
    eprintln!("OpenCL device: {}", r.device_name());
    r
}

#[test]
fn embed_layernorm_matches_the_reference() {
    let cl = runner();
    for (hidden, tokens) in [(384, 7), (37, 1), (129, 3)] {
        let (vocab, max_pos, types) = (50, MAX_LEN, 2);
        let word = values(vocab * hidden, 1, 1.0);
        let position = values(max_pos * hidden, 2, 0.5);
        let token_type = values(types * hidden, 3, 0.2);
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
                &word,
                &position,
                &token_type,
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
        let d = max_diff(&got, &want);
        assert!(d <= TOL, "hidden {hidden}: max diff {d}");
    }
}

#[test]
fn bias_gelu_matches_the_reference_in_fp32_and_fp16() {
    let cl = runner();
    for (rows, cols) in [(3, 1536), (5, 37), (1, 1)] {
        let x = values(rows * cols, 10, 4.0);
        let bias = values(cols, 11, 0.5);
        let got = cl.bias_gelu(&x, &bias).unwrap();
        let mut want = x.clone();
        ops::bias_gelu(&mut want, &bias);
        let d = max_diff(&got, &want);
        assert!(d <= TOL, "{rows}x{cols}: max diff {d}");

        let mut plus = x.clone();
        ops::add_bias(&mut plus, &bias);
        assert!(max_diff(&cl.add_bias(&x, &bias).unwrap(), &plus) <= TOL);

        let halves: Vec<u16> = x
            .iter()
            .map(|v| half::f16::from_f32(*v).to_bits())
            .collect();
        let got16: Vec<f32> = cl
            .bias_gelu_f16(&halves, &bias)
            .unwrap()
            .into_iter()
            .map(|b| half::f16::from_bits(b).to_f32())
            .collect();
        let mut want16: Vec<f32> = halves
            .iter()
            .map(|b| half::f16::from_bits(*b).to_f32())
            .collect();
        ops::bias_gelu(&mut want16, &bias);
        for (g, w) in got16.iter().zip(&want16) {
            assert!(
                (g - w).abs() <= 2e-3 * w.abs().max(1.0),
                "fp16 {rows}x{cols}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn masked_softmax_matches_the_reference_with_padding() {
    let cl = runner();
    let heads = 3;
    for (seq, lengths) in [
        (1, vec![1, 1]),
        (7, vec![7, 3]),
        (MAX_LEN, vec![MAX_LEN as i32, 1]),
        (300, vec![300, 129]),
    ] {
        let batch = lengths.len();
        let scale = 1.0 / 8.0;
        let scores = values(batch * heads * seq * seq, 20 + seq as u64, 6.0);
        let got = cl
            .masked_softmax(&scores, &lengths, heads, seq, scale)
            .unwrap();
        let mut want = scores.clone();
        for (r, row) in want.chunks_exact_mut(seq).enumerate() {
            let len = lengths[r / (heads * seq)] as usize;
            ops::scaled_softmax(&mut row[..len], len, scale);
            row[len..].fill(0.0);
        }
        let d = max_diff(&got, &want);
        assert!(d <= TOL, "seq {seq}: max diff {d}");
        // Each real row sums to one; padded keys get nothing.
        for row in got.chunks_exact(seq) {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "row sum {sum}");
        }
    }
}

#[test]
fn residual_layernorm_matches_the_reference() {
    let cl = runner();
    for (rows, hidden) in [(4, 384), (3, 37), (1, 1536)] {
        let x = values(rows * hidden, 30, 2.0);
        let y = values(rows * hidden, 31, 2.0);
        let bias = values(hidden, 32, 0.3);
        let gamma = values(hidden, 33, 1.0);
        let beta = values(hidden, 34, 0.2);
        let got = cl
            .residual_layernorm(&x, &y, &bias, &gamma, &beta, EPS)
            .unwrap();
        let mut want = x.clone();
        ops::bias_residual_layer_norm(&mut want, &y, &bias, &gamma, &beta, EPS);
        let d = max_diff(&got, &want);
        assert!(d <= TOL, "{rows}x{hidden}: max diff {d}");
    }
}

#[test]
fn pooling_and_normalisation_match_the_reference() {
    let cl = runner();
    for (seq, hidden, lengths) in [
        (5, 384, vec![5, 1, 3]),
        (1, 37, vec![1]),
        (MAX_LEN, 64, vec![MAX_LEN as i32, 2]),
    ] {
        let batch = lengths.len();
        let states = values(batch * seq * hidden, 40, 3.0);
        for (cls, normalize) in [(false, true), (true, true), (false, false)] {
            let got = cl
                .pool_normalize(&states, &lengths, seq, hidden, cls, normalize)
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
            let d = max_diff(&got, &want);
            assert!(
                d <= TOL,
                "seq {seq} cls {cls} normalize {normalize}: max diff {d}"
            );
        }
    }
}

#[test]
fn gemm_matches_the_reference() {
    let cl = runner();
    for (m, n, k, with_bias) in [(5, 7, 33, true), (1, 1, 1, false), (64, 384, 384, true)] {
        let a = values(m * k, 50, 1.0);
        let b = values(n * k, 51, 1.0);
        let bias = values(n, 52, 0.5);
        let got = cl
            .gemm_nt(&a, &b, with_bias.then_some(bias.as_slice()), m, n, k)
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
        let d = max_diff(&got, &want);
        assert!(d <= 1e-3, "{m}x{n}x{k}: max diff {d}");
    }
}
