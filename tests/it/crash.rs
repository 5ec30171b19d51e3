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

/// Issue 10, part 3: a `kill -9` during the first run on a new directory
/// (creating the directory, the lock, the log, the index and the projection)
/// leaves either nothing or whole files: readers find nothing damaged, and the
/// next writer neither fails nor has anything to quarantine. Kills are spread
/// over the first run and up to 300 ms after its start.
#[test]
fn kill_9_during_the_first_run_never_bricks_a_new_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let archives = support::shared_archives();
    let import = |dir: &std::path::Path| run(dir, &["import", archives.to_str().unwrap()]);
    let probe = tmp.path().join("probe");
    let t = Instant::now();
    assert_eq!(import(&probe).code, 0);
    // Most kills land inside the first run (index and projection creation come
    // first), the rest spread up to 300 ms.
    let first_run = t.elapsed().mul_f64(1.5).min(Duration::from_millis(300));
    let expected = support::table_rows(&probe.join("candles.sqlite"), "ohlcv_h4");
    let rounds = 32u32;
    for round in 0..rounds {
        let dir = tmp.path().join(format!("d{round}"));
        let span = if round % 4 == 3 { Duration::from_millis(300) } else { first_run };
        let delay = span.mul_f64(f64::from(round) / f64::from(rounds));
        let mut child = support::bin()
            .arg("--data-dir")
            .arg(&dir)
            .args(["import", archives.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        if dir.is_dir() {
            // Nothing half-made: a reader finds at most files not created yet.
            let v = run(&dir, &["verify", "--json"]);
            assert_eq!(v.code, 0, "round {round} (killed after {delay:?}): verify right after the kill: {}", v.stdout);
        }
        let r = import(&dir);
        assert_eq!(r.code, 0, "round {round} (killed after {delay:?}): the next writer failed: {}", r.stderr);
        assert!(!r.stderr.contains("damaged"), "round {round}: the next writer found damage: {}", r.stderr);
        assert!(!dir.join("quarantine").exists(), "round {round}: the next writer quarantined something: {}", r.stderr);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(left.is_empty(), "round {round}: stale temporaries left behind: {left:?}");
        let v = run(&dir, &["verify", "--deep"]);
        assert_eq!(v.code, 0, "round {round}: {}", v.stdout);
        assert_eq!(support::table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), expected, "round {round}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// What a killed creation leaves (a temporary of a process that is gone, and
/// SQLite's companions of it) and the work files of a killed backup or
/// rebuild are removed by the next writer; a live process's temporary is left
/// alone.
#[test]
fn the_next_writer_removes_temporaries_of_a_killed_creation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(dir.join("log")).unwrap();
    // A pid that ran and is gone.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = [
        format!(".index.redb.tmp-{dead}"),
        format!(".candles.sqlite.tmp-{dead}"),
        format!(".candles.sqlite.tmp-{dead}-wal"),
        format!(".candles.sqlite.tmp-{dead}-journal"),
        // A killed backup's copy of the projection, a killed rebuild's base snapshot.
        format!(".snapshot-{dead}.sqlite"),
        format!(".snapshot-{dead}.sqlite-journal"),
        format!(".base-{dead}.sqlite"),
    ];
    for n in &stale {
        std::fs::write(dir.join(n), b"half made").unwrap();
    }
    let live = format!(".index.redb.tmp-{}", std::process::id());
    std::fs::write(dir.join(&live), b"in progress").unwrap();
    let r = run(&dir, &["init"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for n in &stale {
        assert!(!dir.join(n).exists(), "{n} was left behind");
    }
    assert!(dir.join(&live).exists(), "a live process's temporary was removed");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}
