//! Real `kill -9` of the real binary at random moments during a long import,
//! many times: afterwards `verify --deep` passes, no candle reported committed
//! is missing, and no stale lock is left behind.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{self, Rng, json, run};

#[test]
fn kill_9_during_import_loses_nothing_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = tmp.path().join("fixtures");
    let total = support::gen_archives(&fixtures, 10, 12);
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["init"]).code, 0);

    // How long a full import takes here, to spread the kills across it.
    let probe = tmp.path().join("probe");
    let t = Instant::now();
    assert_eq!(run(&probe, &["--segment-bytes", "65536", "import", "--group-files", "3", fixtures.to_str().unwrap()]).code, 0);
    let full = t.elapsed().max(Duration::from_millis(50));

    let mut rng = Rng(0x5EED);
    let mut committed_lsn = 0u64;
    for round in 0..12 {
        let mut child = support::bin()
            .args([
                "--data-dir",
                dir.to_str().unwrap(),
                "-v",
                "--segment-bytes",
                "65536",
                "import",
                "--group-files",
                "3",
                fixtures.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let delay = full.mul_f64(rng.below(1000) as f64 / 1000.0);
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        for line in stderr.lines().filter(|l| l.contains("committed")) {
            if let Some(lsn) = line.split("lsn=").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse::<u64>().ok()) {
                committed_lsn = committed_lsn.max(lsn);
            }
        }
        let v = run(&dir, &["verify", "--deep", "--json"]);
        assert_eq!(v.code, 0, "round {round} (killed after {delay:?}): {}", v.stdout);
        let head = json(&v)["head_lsn"].as_u64().unwrap();
        assert!(head >= committed_lsn, "round {round}: LSN {committed_lsn} was reported committed but the log ends at {head}");
    }
    // The next writer gets the lock, truncates any torn tail, catches up, and completes.
    let r = run(&dir, &["--segment-bytes", "65536", "import", fixtures.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    let rows = support::table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    assert_eq!(rows.len() as u64, total);
    assert_eq!(rows, support::table_rows(&probe.join("candles.sqlite"), "ohlcv_h4"));
}
