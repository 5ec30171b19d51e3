//! An S3-compatible server on loopback for the `s3://` tests: `s3s-fs`
//! (`cargo install s3s-fs@0.14.1 --features binary --locked`, which `.ci/run`
//! does), one per test, serving a fresh temporary directory with the bucket
//! `candlelog`. When it cannot start, a test fails under CI (`CI` set) and
//! elsewhere says SKIPPED on the real stderr.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket every server is started with.
pub const BUCKET: &str = "candlelog";
const ACCESS_KEY: &str = "AKIATEST";
const SECRET_KEY: &str = "secret-test-key";

/// A running `s3s-fs`; killed when dropped.
pub struct S3 {
    child: Child,
    pub endpoint: String,
    _root: tempfile::TempDir,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    /// The directory the server serves: `<root>/<bucket>/<key>` for each object.
    pub fn root(&self) -> &Path {
        self._root.path()
    }

    /// The `AWS_*` variables that point a client at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &self.endpoint),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

fn s3s_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("S3S_FS") {
        return Some(p.into());
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("s3s-fs"))
        .chain([Path::new(&home).join(".cargo/bin/s3s-fs")])
        .collect::<Vec<_>>();
    candidates.into_iter().find(|p| p.is_file())
}

/// The server could not start: a failure under CI, a visible skip elsewhere.
/// Written to the real stderr, past libtest's capture, so a passing run shows it.
fn cannot_start(test: &str, why: &str) -> Option<S3> {
    use std::io::Write;
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("the s3:// tests need an S3 server on loopback and CI is set: {why}");
    }
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {test}: {why} (set CI=1 to make this a failure)\n");
    None
}

/// Starts `s3s-fs` on a free loopback port; `test` names the caller in a SKIPPED line.
pub fn start(test: &str) -> Option<S3> {
    let Some(bin) = s3s_binary() else {
        return cannot_start(test, "s3s-fs is not installed (cargo install s3s-fs@0.14.1 --features binary --locked)");
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join(BUCKET)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return cannot_start(test, &format!("{} does not start: {e}", bin.display())),
    };
    let s3 = S3 { child, endpoint: format!("http://127.0.0.1:{port}"), _root: root };
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            return cannot_start(test, &format!("s3s-fs did not listen on port {port} within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(s3)
}
