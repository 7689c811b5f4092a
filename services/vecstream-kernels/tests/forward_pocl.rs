//! A whole all-MiniLM-L6-v2 forward pass through the kernels on OpenCL (PoCL), with the
//! plain `gemm_nt` kernel standing in for cuBLAS, against the CPU backend of the engine:
//! cosine >= 0.9999 per text in fp32 and >= 0.999 in fp16 (weights and activations stored
//! as half, fp32 arithmetic; LayerNorm parameters and biases fp32, as the CUDA backend
//! keeps them). Texts of different lengths share one padded batch, so the masks of
//! attention and pooling matter.

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use vecstream_engine::{Engine, EngineConfig};
use vecstream_kernels::Activation;
use vecstream_kernels::opencl::Runner;

fn model_dir() -> PathBuf {
    let cache = std::env::var("VECSTREAM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vecstream"));
    cache.join("models/all-MiniLM-L6-v2")
}

struct Weights<'a>(SafeTensors<'a>);

impl Weights<'_> {
    /// A weight matrix in the activation type (the CUDA backend's fp16 path stores them
    /// as half too).
    fn matrix<T: Activation>(&self, name: &str) -> Vec<T> {
        self.get(name).into_iter().map(T::from_f32).collect()
    }

    fn get(&self, name: &str) -> Vec<f32> {
        let t = self
            .0
            .tensor(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let bytes = t.data();
        match t.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| vecstream_engine::tensor_io::f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            other => panic!("{name}: dtype {other:?}"),
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Rows `[rows, cols]` → columns `[cols, rows]`.
fn transpose<T: Activation>(m: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = vec![T::default(); m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forward_pass_through_the_kernels_matches_the_cpu_backend() {
    let dir = model_dir();
    assert!(
        dir.join("model.safetensors").exists(),
        "{} missing: run scripts/setup",
        dir.display()
    );
    let texts = [
        "Kafka stores streams of records in partitioned, replicated topics.",
        "a",
        "Bees tell each other where flowers are by dancing; the angle of the waggle run gives the direction relative to the sun.",
    ];
    let engine = Engine::start(EngineConfig::new(&dir)).expect("engine");
    let reference: Vec<Vec<f32>> = engine
        .embed(texts.iter().map(|t| t.to_string()).collect())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.vector)
        .collect();
    let ids: Vec<Vec<u32>> = engine
        .tokenizer()
        .encode_batch(&texts)
        .unwrap()
        .into_iter()
        .map(|e| e.ids)
        .collect();
    let cl = Runner::new().expect("an OpenCL device (PoCL)");
    for (precision, pooled, min_cosine) in [
        ("fp32", forward::<f32>(&cl, &dir, &ids), 0.9999),
        ("fp16", forward::<half::f16>(&cl, &dir, &ids), 0.999),
    ] {
        let hidden = reference[0].len();
        for (i, (got, want)) in pooled.chunks_exact(hidden).zip(&reference).enumerate() {
            let c = cosine(got, want);
            eprintln!(
                "{precision} text {i} ({} tokens): cosine {c:.7}",
                ids[i].len()
            );
            assert!(c >= min_cosine, "{precision} text {i}: cosine {c}");
        }
    }
}

/// The pooled, normalised vectors `[texts, hidden]` of all-MiniLM-L6-v2 for the token ids
/// of each text, with activations (and the matrices) stored as `T`.
fn forward<T: Activation>(cl: &Runner, dir: &std::path::Path, encoded: &[Vec<u32>]) -> Vec<f32> {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let hidden = config["hidden_size"].as_u64().unwrap() as usize;
    let heads = config["num_attention_heads"].as_u64().unwrap() as usize;
    let layers = config["num_hidden_layers"].as_u64().unwrap() as usize;
    let inter = config["intermediate_size"].as_u64().unwrap() as usize;
    let eps = config["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32;
    let head_dim = hidden / heads;
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let w = Weights(SafeTensors::deserialize(&bytes).unwrap());

    // One padded batch: [batch, seq] tokens, padding id 0 past each length.
    let batch = encoded.len();
    let seq = encoded.iter().map(|e| e.len()).max().unwrap();
    let lengths: Vec<i32> = encoded.iter().map(|e| e.len() as i32).collect();
    let mut ids = vec![0i32; batch * seq];
    for (b, e) in encoded.iter().enumerate() {
        for (t, id) in e.iter().enumerate() {
            ids[b * seq + t] = *id as i32;
        }
    }
    let positions: Vec<i32> = (0..batch * seq).map(|i| (i % seq) as i32).collect();
    let types = vec![0i32; batch * seq];
    let rows = batch * seq;

    let mut x = cl
        .embed_layernorm(
            &ids,
            &positions,
            &types,
            &w.matrix::<T>("embeddings.word_embeddings.weight"),
            &w.matrix::<T>("embeddings.position_embeddings.weight"),
            &w.matrix::<T>("embeddings.token_type_embeddings.weight"),
            &w.get("embeddings.LayerNorm.weight"),
            &w.get("embeddings.LayerNorm.bias"),
            eps,
        )
        .unwrap();
    let scale = 1.0 / (head_dim as f32).sqrt();
    for l in 0..layers {
        let p = |n: &str| format!("encoder.layer.{l}.{n}");
        let linear = |input: &[T], m: usize, k: usize, n: usize, name: &str, bias: bool| {
            let b = bias.then(|| w.get(&p(&format!("{name}.bias"))));
            cl.gemm_nt(
                input,
                &w.matrix::<T>(&p(&format!("{name}.weight"))),
                b.as_deref(),
                m,
                n,
                k,
            )
            .unwrap()
        };
        let q = linear(&x, rows, hidden, hidden, "attention.self.query", true);
        let k = linear(&x, rows, hidden, hidden, "attention.self.key", true);
        let v = linear(&x, rows, hidden, hidden, "attention.self.value", true);
        // Per sequence and head: scores = Q·Kᵀ, masked softmax, context = P·V.
        let head = |m: &[T], b: usize, h: usize| -> Vec<T> {
            (0..seq)
                .flat_map(|t| {
                    let start = (b * seq + t) * hidden + h * head_dim;
                    m[start..start + head_dim].to_vec()
                })
                .collect()
        };
        let mut scores = Vec::with_capacity(batch * heads * seq * seq);
        for b in 0..batch {
            for h in 0..heads {
                scores.extend(
                    cl.gemm_nt(&head(&q, b, h), &head(&k, b, h), None, seq, seq, head_dim)
                        .unwrap(),
                );
            }
        }
        let probs = cl
            .masked_softmax(&scores, &lengths, heads, seq, scale)
            .unwrap();
        let mut context = vec![T::default(); rows * hidden];
        for b in 0..batch {
            for h in 0..heads {
                let at = (b * heads + h) * seq * seq;
                let vt = transpose(&head(&v, b, h), seq, head_dim);
                let ctx = cl
                    .gemm_nt(&probs[at..at + seq * seq], &vt, None, seq, head_dim, seq)
                    .unwrap();
                for t in 0..seq {
                    let dst = (b * seq + t) * hidden + h * head_dim;
                    context[dst..dst + head_dim]
                        .copy_from_slice(&ctx[t * head_dim..(t + 1) * head_dim]);
                }
            }
        }
        let attn = linear(
            &context,
            rows,
            hidden,
            hidden,
            "attention.output.dense",
            false,
        );
        x = cl
            .residual_layernorm(
                &x,
                &attn,
                &w.get(&p("attention.output.dense.bias")),
                &w.get(&p("attention.output.LayerNorm.weight")),
                &w.get(&p("attention.output.LayerNorm.bias")),
                eps,
            )
            .unwrap();
        let up = linear(&x, rows, hidden, inter, "intermediate.dense", false);
        let up = cl
            .bias_gelu(&up, &w.get(&p("intermediate.dense.bias")))
            .unwrap();
        let down = linear(&up, rows, inter, hidden, "output.dense", false);
        x = cl
            .residual_layernorm(
                &x,
                &down,
                &w.get(&p("output.dense.bias")),
                &w.get(&p("output.LayerNorm.weight")),
                &w.get(&p("output.LayerNorm.bias")),
                eps,
            )
            .unwrap();
    }
    cl.pool_normalize(&x, &lengths, seq, hidden, false, true)
        .unwrap()
}
