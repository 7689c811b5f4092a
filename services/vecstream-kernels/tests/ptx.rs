//! Every kernel compiles to PTX for sm_80 and sm_90 with NVRTC from PyPI (installed into
//! the stack's venv by `compose/local/stack install`): no GPU, no CUDA toolkit.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn every_kernel_compiles_to_ptx_for_sm80_and_sm90() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cache = std::env::var("VECSTREAM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vecstream"));
    let python = cache.join("venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup (compose/local/stack install)",
        python.display()
    );
    let out = std::env::temp_dir().join(format!("vecstream-ptx-{}", std::process::id()));
    let run = Command::new(&python)
        .arg(root.join("kernels/compile_ptx.py"))
        .args(["--arch", "sm_80", "--arch", "sm_90", "--out"])
        .arg(&out)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for arch in ["sm_80", "sm_90"] {
        let ptx =
            std::fs::read_to_string(out.join(format!("vecstream_kernels.{arch}.ptx"))).unwrap();
        let target = format!(".target {arch}");
        assert!(ptx.contains(&target), "{arch}: no {target}");
        for name in vecstream_kernels::entry_points() {
            assert!(
                ptx.contains(&format!(".entry {name}(")),
                "{arch}: {name} missing"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
