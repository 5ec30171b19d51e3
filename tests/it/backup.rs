//! Backups to a repository directory and (point-in-time) restore.

use std::collections::BTreeMap;

use candlelog::event::Event;
use candlelog::log::LogReader;

use crate::support::{self, json, run, table_rows};

type Row = (i64, String, [u64; 6], i64);

/// The 4h rows an independent replay of `dir`'s log gives up to `lsn`.
fn replay_rows(dir: &std::path::Path, lsn: u64) -> Vec<Row> {
    let mut latest: BTreeMap<(i64, String), Row> = BTreeMap::new();
    LogReader::open(&dir.join("log"))
        .unwrap()
        .replay::<candlelog::Error>(candlelog::log::ChainPos::GENESIS, |meta, events| {
            if meta.header.last_lsn() <= lsn {
                for e in events {
                    if let Event::Candle(c) = e {
                        let f = [c.open, c.high, c.low, c.close, c.volume, c.quote_volume].map(|d| d.to_f64().to_bits());
                        latest.insert((c.open_time, c.symbol.to_string()), (c.open_time, c.symbol.to_string(), f, c.trades as i64));
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    latest.into_values().collect()
}

fn frames(dir: &std::path::Path) -> Vec<(u64, i64)> {
    run(dir, &["dump", "--json"])
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("frame").is_some())
        .map(|v| (v["last_lsn"].as_u64().unwrap(), v["commit_ms"].as_i64().unwrap()))
        .collect()
}

#[test]
fn point_in_time_restore_equals_an_independent_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    let fixtures = tmp.path().join("fixtures");
    support::gen_archives(&fixtures, 3, 3);
    assert_eq!(run(&dir, &["--segment-bytes", "4096", "import", "--group-files", "1", fixtures.to_str().unwrap()]).code, 0);
    let first = run(&dir, &["backup", "--to", repo.to_str().unwrap(), "--json"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(json(&first)[0]["segments_uploaded"].as_u64().unwrap() >= 2);
    // More data, then an incremental backup: only the new segments travel.
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let second = json(&run(&dir, &["backup", "--to", repo.to_str().unwrap(), "--json"]));
    assert_eq!(second[0]["segments_uploaded"], 1, "{second}");
    assert!(second[0]["segments_present"].as_u64().unwrap() >= 2);
    assert_eq!(run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap(), "--deep"]).code, 0);

    let mut all = frames(&dir);
    all.pop(); // the second backup's own Run record, committed after the copy
    assert!(all.len() >= 9, "{all:?}");
    for &(lsn, _) in [all[0], all[3], all[all.len() / 2], all[all.len() - 1]].iter() {
        let into = tmp.path().join(format!("at-{lsn}"));
        let r = run(
            &dir,
            &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--lsn", &lsn.to_string(), "--json"],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(json(&r)["head_lsn"], lsn);
        assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), replay_rows(&dir, lsn), "LSN {lsn}");
        assert_eq!(run(&into, &["verify", "--deep"]).code, 0);
    }
    // By time: the state as of a frame's commit time is exactly that frame's head.
    let (lsn, ms) = all[4];
    let at = jiff::Timestamp::from_millisecond(ms).unwrap().to_string();
    let into = tmp.path().join("as-of");
    let r = run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--as-of", &at, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(json(&r)["head_lsn"].as_u64().unwrap() >= lsn);
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), replay_rows(&dir, json(&r)["head_lsn"].as_u64().unwrap()));
}

#[test]
fn restore_refuses_a_non_empty_directory_and_survives_a_damaged_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    let into = tmp.path().join("into");
    std::fs::create_dir_all(&into).unwrap();
    std::fs::write(into.join("keep.txt"), "mine").unwrap();
    let r = run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(into.join("keep.txt")).unwrap(), "mine");

    // A damaged snapshot is skipped: the log alone rebuilds the same rows.
    support::flip_snapshot_byte(&repo, 0xFF);
    let v = run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap()]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(v.stdout.contains("blake3"), "{}", v.stdout);
    let r = run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--force", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep = json(&r);
    assert_eq!(rep["snapshot_lsn"], serde_json::Value::Null);
    let aside = rep["previous_moved_to"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(std::path::Path::new(aside).join("keep.txt")).unwrap(), "mine", "old contents kept");
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"));
}

#[test]
fn drill_restores_checks_and_reports_the_rto_and_fails_on_a_damaged_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    assert_eq!(
        run(&dir, &["--segment-bytes", "4096", "import", "--group-files", "1", support::shared_archives().to_str().unwrap()]).code,
        0
    );
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    let r = run(&dir, &["drill", "--from", repo.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!(v["ok"], true);
    // The backup's own Run record and its anchor come after what it copied, then the drill's.
    assert_eq!(v["restored_lsn"].as_u64().unwrap() + 3, json(&run(&dir, &["status", "--json"]))["head_lsn"].as_u64().unwrap());
    assert!(v["rto_ms"].as_u64().is_some() && v["tables_compared"] == 1);
    let steps: Vec<&str> = v["restore_steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(steps[..3], ["verify segments", "restore snapshot", "replay tail"], "{v:#}");
    assert!(["verify tail", "verify --deep"].contains(&steps[3]), "{v:#}");
    // More data committed after the backup: the drill compares at the backup's LSN.
    assert_eq!(
        run(
            &dir,
            &[
                "import",
                support::shared_klines_json().to_str().unwrap(),
                "--format",
                "klines-json",
                "--symbol",
                "SKRUSDT",
                "--interval",
                "4h"
            ]
        )
        .code,
        0
    );
    assert_eq!(run(&dir, &["drill", "--from", repo.to_str().unwrap()]).code, 0);
    // Each drill is in the log's history as a format-2 Run record.
    let dump = run(&dir, &["dump", "--events", "--json"]).stdout;
    let drills = dump.lines().filter(|l| l.contains("\"kind\":\"drill\"")).count();
    assert_eq!(drills, 2, "{dump}");

    let seg = std::fs::read_dir(repo.join("segments")).unwrap().map(|e| e.unwrap().path()).next().unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    b[200] ^= 0x01;
    std::fs::write(&seg, &b).unwrap();
    let r = run(&dir, &["drill", "--from", repo.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(json(&r)["problems"][0].as_str().unwrap().contains("restore failed"), "{}", r.stdout);
}

#[test]
fn kill_9_during_backup_leaves_a_repository_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    let fixtures = tmp.path().join("fixtures");
    support::gen_archives(&fixtures, 8, 12);
    assert_eq!(run(&dir, &["--segment-bytes", "8192", "import", "--group-files", "2", fixtures.to_str().unwrap()]).code, 0);
    // A first complete backup of part of it, then more data for the killed ones to copy.
    let t = std::time::Instant::now();
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    let full = t.elapsed().max(std::time::Duration::from_millis(20));
    let mut rng = support::Rng(0xBAC);
    for round in 0..8 {
        assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
        let mut child = support::bin()
            .args(["--data-dir", dir.to_str().unwrap(), "backup", "--to", repo.to_str().unwrap(), "--snapshot"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(rng.below(1000) as f64 / 1000.0));
        let _ = child.kill();
        let _ = child.wait();
        let v = run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap(), "--deep"]);
        assert_eq!(v.code, 0, "round {round}: {}", v.stdout);
    }
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    // After the killed ones, a backup that completes is followed by a delta of it (issue 12):
    // whatever a kill left (a delta without its manifest, page hashes of an older one) is never built on.
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let r = run(&dir, &["backup", "--to", repo.to_str().unwrap(), "--snapshot", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(support::json(&r)[0]["snapshot"]["parent"].is_string(), "{}", r.stdout);
    let v = run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap(), "--deep"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    let into = tmp.path().join("restored");
    assert_eq!(run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap()]).code, 0);
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"));
}

#[test]
fn configured_repositories_get_backups_and_keep_their_newest_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (a, b) = (tmp.path().join("fast"), tmp.path().join("second"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("candlelog.toml"),
        format!(
            "[[backup.repositories]]\npath = {:?}\nkeep_days = 0\n\n[[backup.repositories]]\npath = {:?}\n",
            a.to_str().unwrap(),
            b.to_str().unwrap()
        ),
    )
    .unwrap();
    for i in 0..3 {
        let f = tmp.path().join(format!("f{i}"));
        support::gen_archives(&f, 1, i + 1);
        assert_eq!(run(&dir, &["import", f.to_str().unwrap()]).code, 0);
        let r = run(&dir, &["backup"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let snaps = |repo: &std::path::Path| {
        std::fs::read_dir(repo.join("snapshots"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().to_str().unwrap().ends_with(".json"))
            .count()
    };
    assert_eq!(snaps(&a), 1, "keep_days = 0 keeps only the newest snapshot");
    assert_eq!(snaps(&b), 3, "no retention: every snapshot kept");
    for repo in [&a, &b] {
        assert_eq!(run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap(), "--deep"]).code, 0);
        let into = tmp.path().join(format!("r-{}", repo.file_name().unwrap().to_str().unwrap()));
        assert_eq!(run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap()]).code, 0);
        assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"));
    }
}

#[test]
fn a_backup_is_recorded_in_the_log_as_an_event_format_2_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap(), "--to", "/dev/null/not-a-dir"]).code, 1, "one repository failed");
    let lines: Vec<serde_json::Value> =
        run(&dir, &["dump", "--events", "--json"]).stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let frames: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("frame").is_some()).collect();
    // Frames of candles and import runs stay format 1; the backup run's frame holds the
    // snapshot's anchor too (event format 6): the snapshot's LSN, raw bytes and checks.
    assert!(frames[..frames.len() - 1].iter().all(|f| f["event_format"] == 1), "{frames:?}");
    assert_eq!(frames.last().unwrap()["event_format"], 6);
    let anchor = lines.iter().rev().find_map(|v| v.get("anchor")).expect("an anchor event");
    let manifest = std::fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    assert_eq!(
        (&anchor["lsn"], &anchor["raw_blake3"], &anchor["raw_bytes"]),
        (&manifest["lsn"], &manifest["raw_blake3"], &manifest["raw_bytes"])
    );
    assert_eq!(anchor["checks"], 3, "quick_check and indexes against tables passed on the copy");
    let run_event = lines.iter().rev().find_map(|v| v.get("run")).unwrap();
    assert_eq!(run_event["kind"], "backup");
    let outcomes = run_event["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0]["status"], "ok");
    assert_eq!(outcomes[1]["status"], "failed");
    // ... and in the run report beside the sync reports.
    let report = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("backup-"))
        .expect("DIR/runs/backup-<stamp>.json");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["repositories"][0]["repository"], repo.to_str().unwrap());
    assert!(report["repositories"][0]["segments_uploaded"].as_u64().unwrap() >= 1);
    assert_eq!(report["failures"][0]["repository"], "/dev/null/not-a-dir");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    assert_eq!(run(&dir, &["rebuild"]).code, 0);
}

#[test]
fn snapshot_every_skips_young_snapshots_but_never_the_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("candlelog.toml"),
        format!("[[backup.repositories]]\npath = {:?}\nsnapshot_every = \"1h\"\n", repo.to_str().unwrap()),
    )
    .unwrap();
    let fixtures = tmp.path().join("fixtures");
    support::gen_archives(&fixtures, 2, 2);
    assert_eq!(run(&dir, &["import", fixtures.to_str().unwrap()]).code, 0);
    let first = json(&run(&dir, &["backup", "--json"]));
    assert!(first[0]["snapshot"]["lsn"].as_u64().is_some(), "the first backup takes one: {first}");
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let r = run(&dir, &["backup", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let second = json(&r);
    assert!(second[0]["snapshot"].is_null(), "{second}");
    assert!(second[0]["snapshot_skipped"].as_str().unwrap().contains("younger than snapshot_every"), "{second}");
    assert!(second[0]["segments_uploaded"].as_u64().unwrap() >= 1, "segments still go up: {second}");
    // Named with --to (as the shipped cron line and unit do), the listed repository keeps its spacing.
    let third = json(&run(&dir, &["backup", "--to", &format!("{}/", repo.display()), "--json"]));
    assert!(third[0]["snapshot"].is_null() && third[0]["snapshot_skipped"].is_string(), "{third}");
    // The restore replays what the skipped snapshot would have held.
    let into = tmp.path().join("restored");
    let r = run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["snapshot_lsn"], first[0]["snapshot"]["lsn"]);
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"));
    // A bad duration is a clear configuration error.
    std::fs::write(
        dir.join("candlelog.toml"),
        format!("[[backup.repositories]]\npath = {:?}\nsnapshot_every = \"weekly\"\n", repo.to_str().unwrap()),
    )
    .unwrap();
    let r = run(&dir, &["backup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("snapshot_every"), "{}", r.stderr);
}

/// A nightly backup counts the segments a repository holds from the record it
/// keeps (`DIR/backup-pages/*.segments`) instead of reading its whole log, but
/// only while the repository still lists them: one deleted there goes up again.
#[test]
fn segments_known_to_a_repository_are_recorded_and_a_lost_one_goes_up_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    let fixtures = tmp.path().join("fixtures");
    support::gen_archives(&fixtures, 2, 2);
    assert_eq!(run(&dir, &["--segment-bytes", "4096", "import", "--group-files", "1", fixtures.to_str().unwrap()]).code, 0);
    let backup = || {
        let r = run(&dir, &["backup", "--to", repo.to_str().unwrap(), "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        json(&r)
    };
    let first = backup();
    let uploaded = first[0]["segments_uploaded"].as_u64().unwrap();
    assert!(uploaded >= 3, "{first}");
    let record = std::fs::read_dir(dir.join("backup-pages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "segments"))
        .expect("a record of the segments the repository holds");
    let lines = std::fs::read_to_string(&record).unwrap();
    assert_eq!(lines.lines().count() as u64, uploaded, "{lines}");
    // The repository loses segment 2; the record still names it.
    let lost = repo.join(lines.lines().nth(1).unwrap().split(' ').nth(3).unwrap());
    std::fs::remove_file(&lost).unwrap();
    let second = backup();
    assert_eq!(second[0]["segments_uploaded"], 2, "the lost one and the one this backup sealed: {second}");
    assert!(lost.exists());
    // A record that cannot be read is no record: every segment is read and matched again.
    std::fs::write(&record, "not a record\n").unwrap();
    let third = backup();
    assert_eq!(third[0]["segments_uploaded"], 1, "{third}");
    assert_eq!(third[0]["segments_present"].as_u64(), Some(uploaded + 1), "{third}");
    assert_eq!(std::fs::read_to_string(&record).unwrap().lines().count() as u64, uploaded + 2);
    assert_eq!(run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap(), "--deep"]).code, 0);
}

/// Issue 12, target 6: a night's backup carries the log's row digests from the
/// last snapshot this directory published (its sums kept beside the page
/// hashes, proven by that snapshot's anchor in the log) instead of replaying
/// the whole log, and publishes what the whole replay gives (`backup verify
/// --deep` recomputes it from the segments). A revision inside an anchored
/// series, or kept sums the anchor does not prove, take the whole replay; a
/// projection that drifted is refused either way.
#[test]
fn a_nights_log_digests_are_carried_from_the_last_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    let import = |f: &std::path::Path| assert_eq!(run(&dir, &["import", f.to_str().unwrap()]).code, 0);
    let backup = || {
        let r = run(&dir, &["-vv", "backup", "--to", repo.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stderr.contains("the log's digests carried from the last snapshot")
    };
    let verified = || {
        let r = run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap(), "--deep"]);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    };
    let months = |n: u8| {
        let f = tmp.path().join(format!("months-{n}"));
        support::gen_archives(&f, 3, n);
        import(&f);
    };
    months(2);
    assert!(!backup(), "nothing kept yet: the whole log");
    months(3);
    assert!(backup(), "a month after the anchored snapshot is carried");
    verified();
    // Kept sums that do not finish to the anchor's digests are not used.
    let sums = std::fs::read_dir(dir.join("backup-pages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "sums"))
        .unwrap();
    let text = std::fs::read_to_string(&sums).unwrap();
    let lane = text.split('"').find(|w| w.len() == 32 && w.chars().all(|c| c.is_ascii_hexdigit())).unwrap().to_string();
    let other = format!("{:032x}", u128::from_str_radix(&lane, 16).unwrap() ^ 1);
    std::fs::write(&sums, text.replacen(&lane, &other, 1)).unwrap();
    months(4);
    assert!(!backup(), "sums the anchor does not prove");
    verified();
    months(5);
    assert!(backup());
    // A drifted projection is refused with the digests carried as with them replayed.
    months(6);
    rusqlite::Connection::open(dir.join("candles.sqlite"))
        .unwrap()
        .execute_batch("UPDATE ohlcv_h4 SET volume = volume + 1 WHERE rowid = 3")
        .unwrap();
    let r = run(&dir, &["-vv", "backup", "--to", repo.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("the log's digests carried") && r.stderr.contains("differ from the log"), "{}", r.stderr);
    assert_eq!(run(&dir, &["rebuild"]).code, 0);
    // A revision of a candle the last snapshot holds: its old row is not at hand.
    let f = tmp.path().join("revision");
    let mut rows = support::month_rows(1, 2024, 1);
    let mut fields: Vec<String> = rows[10].split(',').map(str::to_string).collect();
    fields[5].push('1');
    rows[10] = fields.join(",");
    std::fs::create_dir_all(&f).unwrap();
    support::write_archive(&f, "SYM0USDT", 2024, 1, &rows, true);
    import(&f);
    assert!(!backup(), "a revision inside the span takes the whole replay");
    verified();
}

/// Issue 12, target 6: with `snapshot_tail_percent`, a spaced repository still
/// takes a snapshot once the log since its newest one holds that share of it,
/// so a restore's replay stays bounded; below it a backup uploads segments only.
#[test]
fn snapshot_tail_percent_takes_a_snapshot_once_the_tail_is_that_share_of_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&dir).unwrap();
    let config = |percent: u32| {
        let text = format!(
            "[[backup.repositories]]\npath = {:?}\nsnapshot_every = \"30d\"\nsnapshot_tail_percent = {percent}\n",
            repo.to_str().unwrap()
        );
        std::fs::write(dir.join("candlelog.toml"), text).unwrap();
    };
    config(60);
    let months = |n: u8| {
        let f = tmp.path().join(format!("months-{n}"));
        support::gen_archives(&f, 4, n);
        assert_eq!(run(&dir, &["import", f.to_str().unwrap()]).code, 0);
    };
    months(2);
    let first = json(&run(&dir, &["backup", "--json"]));
    let first_lsn = first[0]["snapshot"]["lsn"].as_u64().expect("the first backup takes one");
    // One more month of the 4 symbols: half as many events again, under 60 %.
    months(3);
    let second = json(&run(&dir, &["backup", "--json"]));
    assert!(second[0]["snapshot"].is_null(), "{second}");
    let why = second[0]["snapshot_skipped"].as_str().unwrap();
    assert!(why.contains("younger than snapshot_every") && why.contains("snapshot_tail_percent (60 %"), "{why}");
    assert!(second[0]["segments_uploaded"].as_u64().unwrap() >= 1, "segments still go up: {second}");
    // `backup list` says how far the repository's log reaches past its newest snapshot.
    let list = json(&run(&dir, &["backup", "list", "--from", repo.to_str().unwrap(), "--json"]));
    let (head, after) = (list["log_head"]["lsn"].as_u64().unwrap(), list["events_after_newest_snapshot"].as_u64().unwrap());
    assert!(after >= 700 && head == first_lsn + after, "{list}");
    assert!(why.contains(&format!("has {after} events of log after it")), "{why} {list}");
    // A fourth month: the tail since the snapshot is now about the whole of it.
    months(4);
    let third = json(&run(&dir, &["backup", "--json"]));
    let third_lsn = third[0]["snapshot"]["lsn"].as_u64().unwrap_or_else(|| panic!("the tail is over 60 %: {third}"));
    assert!(third_lsn >= first_lsn * 16 / 10, "{first_lsn} → {third_lsn}");
    let into = tmp.path().join("restored");
    let r = run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["snapshot_lsn"].as_u64(), Some(third_lsn));
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"));
    // A damaged newest segment is named, and the listing goes on.
    let newest = std::fs::read_dir(repo.join("segments")).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&newest, bytes).unwrap();
    let r = run(&dir, &["backup", "list", "--from", repo.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let list = json(&r);
    assert!(list["log_head"].is_null() && list["log_head_error"].as_str().unwrap().contains("blake3"), "{list}");
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 2, "{list}");
    // Not a percentage: a clear configuration error, nothing written.
    config(101);
    let r = run(&dir, &["backup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("snapshot_tail_percent = 101 is not a percentage from 0"), "{}", r.stderr);
}

/// Issue 10, part 1: `restore --force` into a live data directory takes its
/// writer lock first (75, naming the holder, nothing moved) and holds it
/// until the new directory is in place.
#[test]
fn restore_force_into_a_live_directory_waits_for_no_writer_and_moves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let repo = tmp.path().join("repo");
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    let before = support::segments(&dir);
    // A writer holds the live directory (as a running import would).
    let lock = std::fs::OpenOptions::new().read(true).write(true).open(dir.join("lock")).unwrap();
    lock.try_lock().unwrap();
    std::fs::write(dir.join("lock"), "4242").unwrap();
    let r = run(tmp.path(), &["restore", "--from", repo.to_str().unwrap(), "--into", dir.to_str().unwrap(), "--force"]);
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("pid 4242"), "{}", r.stderr);
    assert_eq!(support::segments(&dir), before, "nothing moved");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        !leftovers.iter().any(|n| n.to_string_lossy().contains(".restore-") || n.to_string_lossy().contains(".replaced-")),
        "{leftovers:?}"
    );
    drop(lock);
    let r = run(tmp.path(), &["restore", "--from", repo.to_str().unwrap(), "--into", dir.to_str().unwrap(), "--force", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(json(&r)["previous_moved_to"].as_str().unwrap().contains("data.replaced-"));
    let v = run(&dir, &["verify", "--deep"]);
    assert_eq!(v.code, 0, "verify --deep of the restored directory: {}{}", v.stdout, v.stderr);
}

/// Issue 10, part 8: a point past the repository's newest frame is refused
/// (exit 2) with the newest restorable point, not quietly restored as the head.
#[test]
fn restore_beyond_the_repository_head_is_refused_with_the_newest_point() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let repo = tmp.path().join("repo");
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    let head = json(&run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap(), "--json"]))["head_lsn"].as_u64().unwrap();
    let into = tmp.path().join("restored");
    let r =
        run(tmp.path(), &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--lsn", &(head + 1).to_string()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("the newest point it can restore is LSN {head}")), "{}", r.stderr);
    assert!(!into.exists());
    let tomorrow = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let r = run(tmp.path(), &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--as-of", &tomorrow]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // The head itself is a fine point.
    let r = run(
        tmp.path(),
        &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--lsn", &head.to_string(), "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["head_lsn"], head);
}

/// A process id that is surely gone: a child that has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Issue 10, part 9: the next run removes what a killed restore or backup
/// left (`.DIR.restore-<pid>`, `.<object>.tmp-<pid>`), and symbolic links
/// inside a repository are never followed.
#[test]
fn leftovers_of_killed_runs_are_removed_and_repository_symlinks_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let repo = tmp.path().join("repo");
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);

    let pid = dead_pid();
    let stale_object = repo.join(format!("segments/.00000000000000000009-x.seg.tmp-{pid}"));
    std::fs::write(&stale_object, b"half an upload").unwrap();
    let live_object = repo.join(format!("segments/.00000000000000000009-x.seg.tmp-{}", std::process::id()));
    std::fs::write(&live_object, b"a backup of a process still running").unwrap();
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    assert!(!stale_object.exists(), "a killed backup's temporary object is removed");
    assert!(live_object.exists(), "a running process's temporary object is left alone");

    let stale_restore = tmp.path().join(format!(".restored.restore-{pid}"));
    std::fs::create_dir_all(stale_restore.join("log")).unwrap();
    let into = tmp.path().join("restored");
    assert_eq!(run(tmp.path(), &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap()]).code, 0);
    assert!(!stale_restore.exists(), "a killed restore's half-built copy is removed");

    // A repository whose segments/ is a symbolic link to elsewhere: refused, naming the link.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::rename(repo.join("segments"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, repo.join("segments")).unwrap();
    let v = run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap()]);
    assert_eq!(v.code, 1, "{}{}", v.stdout, v.stderr);
    assert!(format!("{}{}", v.stdout, v.stderr).contains("symbolic link"), "{}{}", v.stdout, v.stderr);
}
