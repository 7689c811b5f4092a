//! `vecstream run worker` serves /healthz, /readyz and /metrics, takes workflow tasks
//! (proved by `vecstream status --workflow`), and stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vecstream_e2e::{describe, require_service, unique, vecstream, vecstream_bin};

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    // A tiny HTTP/1.0 client keeps this test free of another dependency.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text))
}

#[test]
fn worker_serves_health_takes_workflows_and_stops_on_sigterm() {
    require_service("temporal", 7233);
    let queue = unique("e2e-worker-queue-");
    let set_queue = format!("temporal.cpu_task_queue={queue}");
    let addr = "127.0.0.1:19464";
    let mut worker = Command::new(vecstream_bin())
        .args([
            "--metrics-addr",
            addr,
            "--set",
            &set_queue,
            "run",
            "worker",
            "--queue",
            "cpu",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("worker starts");

    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        match http_get(addr, "/readyz") {
            Some((200, body)) => break body,
            _ if Instant::now() > deadline => {
                let _ = worker.kill();
                panic!(
                    "worker not ready in 60 s: {}",
                    describe(&worker.wait_with_output().unwrap())
                );
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert!(ready.contains(&format!("worker:{queue}: ready")), "{ready}");
    assert_eq!(http_get(addr, "/healthz").map(|r| r.0), Some(200));
    let metrics = http_get(addr, "/metrics").expect("metrics").1;
    assert!(metrics.contains("vecstream_build_info"), "{metrics}");

    let out = vecstream(&[
        "--set",
        &set_queue,
        "status",
        "--workflow",
        "--timeout",
        "30",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("health workflow: pong: status"),
        "{}",
        describe(&out)
    );

    let kill = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = worker.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "worker exits 0 after SIGTERM: {}",
        describe(&out)
    );
}
