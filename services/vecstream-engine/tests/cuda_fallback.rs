//! The `cuda` build on a machine without a GPU or driver (CI, this machine): `--backend auto`
//! embeds on the CPU, `--backend cuda` is a clear error naming what is missing, and nothing
//! panics (cudarc would, were the libraries not checked first). Run with
//! `cargo test -p vecstream-engine --features cuda --test cuda_fallback` (`make test` does).
#![cfg(feature = "cuda")]

use std::path::PathBuf;

use vecstream_engine::{BackendChoice, BackendKind, Engine, EngineConfig, Precision};

fn model_dir() -> PathBuf {
    let cache = std::env::var("VECSTREAM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vecstream"));
    cache.join("models/all-MiniLM-L6-v2")
}

#[test]
fn without_a_gpu_auto_uses_the_cpu_and_cuda_is_a_clear_error() {
    let has_driver = std::path::Path::new("/proc/driver/nvidia").exists();
    let mut cfg = EngineConfig::new(model_dir());
    cfg.backend = BackendChoice::Cuda;
    match Engine::start(cfg.clone()) {
        Ok(engine) => assert!(
            has_driver,
            "CUDA selected without a driver: {:?}",
            engine.info()
        ),
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("cuda"), "{message}");
            assert!(
                message.contains("libcuda")
                    || message.contains("device")
                    || message.contains("loader path"),
                "{message}"
            );
        }
    }
    cfg.backend = BackendChoice::Auto;
    let engine = Engine::start(cfg.clone()).expect("auto starts on any machine");
    if !has_driver {
        assert_eq!(engine.info().backend, BackendKind::Cpu);
    }
    if has_driver {
        return;
    }
    // fp16 is a CUDA precision: without a GPU it is refused, saying why, not run in fp32.
    cfg.precision = Precision::Fp16;
    let message = Engine::start(cfg.clone())
        .expect_err("fp16 without a GPU")
        .to_string();
    assert!(
        message.contains("fp16") && message.contains("CUDA") && message.contains("libcuda"),
        "{message}"
    );
    // int8 is a CPU precision: auto runs it there.
    cfg.precision = Precision::Int8;
    let engine = Engine::start(cfg).expect("int8 on the CPU");
    assert_eq!(engine.info().backend, BackendKind::Cpu);
    assert_eq!(engine.info().precision, Precision::Int8);
}
