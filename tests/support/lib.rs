//! Helpers shared by the end-to-end tests: the stack's config, the binary, unique names.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

use vecstream_config::{Config, LoadOptions};

pub mod pipeline;

/// The configuration the tests use: defaults (the local stack) plus `VECSTREAM_*` env.
pub fn config() -> Config {
    Config::load(&LoadOptions::default())
        .expect("test configuration loads")
        .0
}

/// A name unique to this test run, e.g. for ids and collections.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{nanos:x}{:x}", std::process::id())
}

/// The stack cache (`VECSTREAM_CACHE`, default `~/.cache/vecstream`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VECSTREAM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME is set")).join(".cache/vecstream")
        })
}

/// The Python of the stack's venv, with the stock clients (confluent-kafka, openai,
/// openlineage-python) that the tests drive.
pub fn venv_python() -> PathBuf {
    let python = cache_dir().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup (compose/local/stack install)",
        python.display()
    );
    python
}

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `vecstream` binary: `VECSTREAM_BIN`, or the one built next to this test binary.
pub fn vecstream_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VECSTREAM_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/vecstream
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target layout")
        .join("vecstream");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p vecstream`) or set VECSTREAM_BIN",
        bin.display()
    );
    bin
}

/// The test reviewers' keys, made once per test process with `vecstream review keygen`:
/// `e2e` (what every `vecstream` command of the tests signs with) and `e2e-second`; the
/// workers the tests start trust both (`authorized`), `outsider` is trusted by none.
#[derive(Debug)]
pub struct ReviewKeys {
    pub key: PathBuf,
    pub second: PathBuf,
    pub outsider: PathBuf,
    pub authorized: PathBuf,
}

pub fn review_keys() -> &'static ReviewKeys {
    static KEYS: std::sync::OnceLock<ReviewKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(unique("vecstream-e2e-keys-"));
        std::fs::create_dir_all(&dir).unwrap();
        let keygen = |name: &str| {
            let path = dir.join(format!("{name}.key"));
            let out = Command::new(vecstream_bin())
                .args(["review", "keygen", "--name", name, "--out"])
                .arg(&path)
                .output()
                .expect("vecstream runs");
            assert!(out.status.success(), "keygen {name}: {}", describe(&out));
            (path, String::from_utf8(out.stdout).unwrap())
        };
        let (key, first) = keygen("e2e");
        let (second, second_line) = keygen("e2e-second");
        let (outsider, _) = keygen("outsider");
        let authorized = dir.join("authorized_keys");
        std::fs::write(
            &authorized,
            format!("# e2e reviewers\n{first}{second_line}"),
        )
        .unwrap();
        ReviewKeys {
            key,
            second,
            outsider,
            authorized,
        }
    })
}

/// `cmd` with the test reviewers' keys (unless the test's environment sets its own).
fn with_review_keys(cmd: &mut Command) -> &mut Command {
    let keys = review_keys();
    if std::env::var_os("VECSTREAM_REVIEW_KEY").is_none() {
        cmd.env("VECSTREAM_REVIEW_KEY", &keys.key);
    }
    if std::env::var_os("VECSTREAM_REVIEW_AUTHORIZED_KEYS").is_none() {
        cmd.env("VECSTREAM_REVIEW_AUTHORIZED_KEYS", &keys.authorized);
    }
    cmd
}

/// Runs `vecstream` with `args` and returns its output.
pub fn vecstream(args: &[&str]) -> Output {
    with_review_keys(&mut Command::new(vecstream_bin()))
        .args(args)
        .env("VECSTREAM_TELEMETRY_LOG_LEVEL", "warn")
        .output()
        .expect("vecstream runs")
}

/// `--set` pairs for `sets`, then `args`: a command line with the test's configuration.
pub fn with_sets<'a>(sets: &'a [String], args: &[&'a str]) -> Vec<&'a str> {
    let mut all: Vec<&str> = Vec::new();
    for s in sets {
        all.extend(["--set", s.as_str()]);
    }
    all.extend(args);
    all
}

/// Runs `vecstream` with the test's `sets` and `args`; panics with its output unless it
/// succeeds; returns its stdout.
pub fn cli_ok(sets: &[String], args: &[&str]) -> String {
    let out = vecstream(&with_sets(sets, args));
    assert!(
        out.status.success(),
        "vecstream {args:?}\n{}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `reindex status ID --json`, or `None` while no worker answers queries.
pub fn reindex_progress(sets: &[String], id: &str) -> Option<serde_json::Value> {
    let out = vecstream(&with_sets(sets, &["reindex", "status", id, "--json"]));
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Runs the stack script.
/// Stops a service of the stack and starts it again when dropped (also when the test
/// fails): `let _down = ServiceDown::stop("weaviate");`.
#[derive(Debug)]
pub struct ServiceDown(&'static str);

impl ServiceDown {
    /// Stops `service` (`kafka`, `registry`, `temporal`, `weaviate`).
    pub fn stop(service: &'static str) -> Self {
        let out = stack(&["down", service]);
        assert!(out.status.success(), "{}", describe(&out));
        Self(service)
    }
}

impl Drop for ServiceDown {
    fn drop(&mut self) {
        let out = stack(&["up", self.0]);
        assert!(
            out.status.success() || std::thread::panicking(),
            "restarting {}: {}",
            self.0,
            describe(&out)
        );
    }
}

pub fn stack(args: &[&str]) -> Output {
    Command::new(repo_root().join("compose/local/stack"))
        .args(args)
        .output()
        .expect("stack script runs")
}

/// Stdout and stderr of a command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Panics with a useful message when `service` is not reachable on `port`.
pub fn require_service(service: &str, port: u16) {
    let up = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        std::time::Duration::from_secs(2),
    )
    .is_ok();
    assert!(
        up,
        "{service} is not listening on 127.0.0.1:{port}: start the stack with `compose/local/stack up` (or `make test`)"
    );
}

/// A `vecstream run …` child process; killed if the test ends early.
#[derive(Debug)]
pub struct Running {
    child: Child,
    log: PathBuf,
}

/// The status code of `GET <path>` on `127.0.0.1:<port>`, if it answers (plain HTTP/1.0,
/// usable inside and outside an async runtime).
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

impl Running {
    pub fn start(component: &str, port: u16, sets: &[String], log_dir: &std::path::Path) -> Self {
        Self::start_with(component, port, &[], sets, log_dir)
    }

    /// [`Running::start`] with global flags before the `--set`s (e.g. `--config FILE`).
    pub fn start_with(
        component: &str,
        port: u16,
        flags: &[&str],
        sets: &[String],
        log_dir: &std::path::Path,
    ) -> Self {
        let log = log_dir.join(format!("{component}-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(vecstream_bin());
        with_review_keys(&mut cmd);
        cmd.args(flags);
        cmd.args(["--metrics-addr", &format!("127.0.0.1:{port}")]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        let child = cmd
            .args(["run", component])
            .env("VECSTREAM_TELEMETRY_LOG_LEVEL", "info")
            .env("VECSTREAM_TELEMETRY_LOG_FORMAT", "text")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("vecstream run starts");
        Self { child, log }
    }

    /// `vecstream serve --addr 127.0.0.1:<port>` with `flags` (and `--set`s); returns once
    /// `/readyz` answers 200.
    pub fn serve(port: u16, flags: &[&str], sets: &[String], log_dir: &std::path::Path) -> Self {
        let log = log_dir.join(format!("serve-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(vecstream_bin());
        for s in sets {
            cmd.args(["--set", s]);
        }
        let child = cmd
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .args(flags)
            .env("VECSTREAM_TELEMETRY_LOG_LEVEL", "info")
            .env("VECSTREAM_TELEMETRY_LOG_FORMAT", "text")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("vecstream serve starts");
        let mut running = Self { child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http_status(port, "/readyz") == Some(200) {
                return running;
            }
            if let Some(status) = running.child.try_wait().unwrap() {
                panic!("vecstream serve exited {status:?}\n{}", running.log());
            }
            assert!(
                Instant::now() < deadline,
                "serve not ready in 60 s\n{}",
                running.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the process dies mid-work, as in a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log();
                assert!(status.success(), "exit {status:?} after SIGTERM\n{log}");
                return log;
            }
            assert!(Instant::now() < deadline, "no exit 60 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
