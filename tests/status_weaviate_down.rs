//! With Weaviate stopped, `vecstream status` names it and exits non-zero.
//!
//! Its own test binary: it stops the real Weaviate, so nothing may run beside it. Weaviate is
//! restarted afterwards, also when an assertion fails.

use vecstream_e2e::{describe, require_service, stack, vecstream};

struct RestartWeaviate;

impl Drop for RestartWeaviate {
    fn drop(&mut self) {
        let out = stack(&["up", "weaviate"]);
        assert!(
            out.status.success() || std::thread::panicking(),
            "restarting weaviate: {}",
            describe(&out)
        );
    }
}

#[test]
fn status_names_weaviate_when_it_is_down() {
    require_service("weaviate", 8080);
    let out = stack(&["down", "weaviate"]);
    assert!(out.status.success(), "{}", describe(&out));
    let _restart = RestartWeaviate;

    let out = vecstream(&["status", "--timeout", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("down: weaviate"), "{}", describe(&out));
    let weaviate_line = stdout
        .lines()
        .find(|l| l.starts_with("weaviate"))
        .expect("a weaviate line");
    assert!(weaviate_line.contains("DOWN"), "{weaviate_line}");
    for other in ["kafka", "registry", "temporal"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(other))
            .expect("a line per service");
        assert!(line.contains(" up "), "{line}");
    }
}
