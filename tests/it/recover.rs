//! `candlelog recover`: a corruption matrix, each case from the same data and
//! backup, ending in a comparison against the truth.

use std::path::{Path, PathBuf};

use crate::support::{self, json, run, table_rows};

/// A data dir with sealed segments and an active one, a backup, then more data.
fn prepared(tmp: &Path) -> (PathBuf, PathBuf) {
    let dir = tmp.join("data");
    let repo = tmp.join("repo");
    let fixtures = tmp.join("fixtures");
    support::gen_archives(&fixtures, 3, 3);
    assert_eq!(run(&dir, &["--segment-bytes", "4096", "import", "--group-files", "1", fixtures.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    (dir, repo)
}

/// Byte offsets of the frames of one segment, as `dump --json` lists them.
fn frame_offsets(dir: &Path, segment: &Path) -> Vec<u64> {
    run(dir, &["dump", "--json", segment.to_str().unwrap()])
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v.get("frame").and_then(|f| f.as_u64()))
        .collect()
}

fn recover(dir: &Path, repo: &Path) -> serde_json::Value {
    let r = run(dir, &["recover", "--from", repo.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    json(&r)
}

/// Files in `DIR/quarantine/*/` named `name`.
fn quarantined(dir: &Path, name: &str) -> usize {
    std::fs::read_dir(dir.join("quarantine")).into_iter().flatten().flatten().filter(|d| d.path().join(name).exists()).count()
}

#[test]
fn each_kind_of_damage_is_recovered_to_the_truth() {
    type Damage = fn(&Path);
    let cases: Vec<(&str, Damage)> = vec![
        ("flipped byte in a sealed segment", |d| {
            let seg = support::segments(d)[1].clone();
            let mut b = std::fs::read(&seg).unwrap();
            b[300] ^= 0x10;
            std::fs::write(&seg, b).unwrap();
        }),
        ("deleted sealed segment", |d| std::fs::remove_file(&support::segments(d)[2]).unwrap()),
        ("truncated sealed segment", |d| {
            let seg = support::segments(d)[0].clone();
            let len = std::fs::metadata(&seg).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(len / 2).unwrap();
        }),
        ("corrupted candles.sqlite", |d| std::fs::write(d.join("candles.sqlite"), b"garbage, not SQLite").unwrap()),
        ("deleted projection", |d| {
            for f in ["candles.sqlite", "candles.sqlite-wal", "candles.sqlite-shm"] {
                let _ = std::fs::remove_file(d.join(f));
            }
        }),
        ("deleted projection, a hot journal of another database left beside it", |d| {
            for f in ["candles.sqlite", "candles.sqlite-wal", "candles.sqlite-shm"] {
                let _ = std::fs::remove_file(d.join(f));
            }
            support::plant_foreign_companion(&d.join("candles.sqlite-journal"), "-journal");
        }),
        ("deleted projection, a WAL of another database left beside it", |d| {
            for f in ["candles.sqlite", "candles.sqlite-wal", "candles.sqlite-shm"] {
                let _ = std::fs::remove_file(d.join(f));
            }
            support::plant_foreign_companion(&d.join("candles.sqlite-wal"), "-wal");
        }),
        ("corrupted index.redb", |d| std::fs::write(d.join("index.redb"), b"not redb").unwrap()),
        // The index is caught up from the log beside the snapshot's restore.
        ("deleted projection and index.redb", |d| {
            for f in ["candles.sqlite", "candles.sqlite-wal", "candles.sqlite-shm", "index.redb"] {
                let _ = std::fs::remove_file(d.join(f));
            }
        }),
        ("torn tail of the active segment", |d| {
            use std::io::Write;
            let seg = support::segments(d).pop().unwrap();
            std::fs::OpenOptions::new().append(true).open(seg).unwrap().write_all(b"CLFR\x05\x00").unwrap();
        }),
    ];
    for (name, damage) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, repo) = prepared(tmp.path());
        let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
        let head = json(&run(&dir, &["status", "--json"]))["head_lsn"].clone();
        damage(&dir);
        let r = recover(&dir, &repo);
        assert_eq!(r["ok"], true, "{name}: {r:#}");
        assert_eq!(r["head_lsn"], head, "{name}: {r:#}");
        assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), truth, "{name}");
        assert_eq!(run(&dir, &["verify", "--deep"]).code, 0, "{name}");
        let steps: Vec<&str> = r["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        // A restored snapshot is anchored in the log: its audit is the tail's (recover_anchor.rs).
        let audit = if name.contains("projection") || name.contains("candles.sqlite") { "verify tail" } else { "verify --deep" };
        assert_eq!(steps, ["verify segments", "restore snapshot", "replay tail", audit], "{name}");
        for suffix in ["-journal", "-wal"] {
            if name.contains(&format!("{} of another", if suffix == "-wal" { "WAL" } else { "journal" })) {
                assert_eq!(quarantined(&dir, &format!("candles.sqlite{suffix}")), 1, "{name}: the {suffix} was set aside");
            }
        }
    }
}

#[test]
fn a_log_cut_at_a_frame_boundary_gets_its_lost_frames_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = prepared(tmp.path());
    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    // The last sealed segment loses its last frames and footer: a clean-looking cut.
    let segs = support::segments(&dir);
    // The newest segment holds only the backup's Run record; cut the one before it.
    let last_sealed = segs[segs.len() - 2].clone();
    let frames = frame_offsets(&dir, &last_sealed);
    assert!(frames.len() >= 2, "{frames:?}");
    std::fs::OpenOptions::new().write(true).open(&last_sealed).unwrap().set_len(frames[frames.len() - 1]).unwrap();
    assert_eq!(run(&dir, &["verify"]).code, 1, "lost frames are reported");
    let r = recover(&dir, &repo);
    let restored = r["fetched_segments"].as_array().unwrap().len() + r["replaced_segments"].as_array().unwrap().len();
    assert_eq!(restored, 1, "the cut segment came back from the repository: {r:#}");
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), truth);
}

#[test]
fn an_older_bad_snapshot_does_not_stop_a_newer_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = prepared(tmp.path());
    // A second backup, full (a delta would be built on the older one); then damage the older snapshot only.
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap(), "--full-snapshot"]).code, 0);
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(".zst"))
        .collect();
    snaps.sort();
    assert_eq!(snaps.len(), 2);
    std::fs::write(&snaps[0], b"bad").unwrap();
    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    std::fs::write(dir.join("candles.sqlite"), b"garbage").unwrap();
    let r = recover(&dir, &repo);
    let newest_lsn: u64 = snaps[1].file_name().unwrap().to_str().unwrap()[..20].parse().unwrap();
    assert_eq!(r["snapshot_lsn"], newest_lsn, "{r:#}");
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), truth);
}

#[test]
fn the_newest_segment_cut_at_a_frame_boundary_is_extended_from_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = prepared(tmp.path());
    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    let mut segs = support::segments(&dir);
    // Lose the active segment (only the backup's Run record) and the end of the sealed one before it.
    std::fs::remove_file(segs.pop().unwrap()).unwrap();
    let newest = segs.pop().unwrap();
    let frames = frame_offsets(&dir, &newest);
    assert!(frames.len() >= 2, "{frames:?}");
    std::fs::OpenOptions::new().write(true).open(&newest).unwrap().set_len(frames[frames.len() - 1]).unwrap();
    let r = recover(&dir, &repo);
    assert_eq!(r["fetched_segments"].as_array().unwrap().len(), 1, "{r:#}");
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), truth);
}

/// `prepared`, then candles committed after the backup: the active segment's
/// tail holds frames no repository has.
fn prepared_with_tail(tmp: &Path) -> (PathBuf, PathBuf) {
    let (dir, repo) = prepared(tmp);
    let more = tmp.join("more");
    support::gen_archives(&more, 4, 4);
    let r = run(&dir, &["import", "--group-files", "100", more.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(json(&r)["appended"].as_u64().unwrap() > 0);
    (dir, repo)
}

fn flip(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

fn newest(repo: &Path, suffix: &str) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    v.sort();
    v.pop().unwrap()
}

#[test]
fn damage_to_the_active_tail_the_files_a_snapshot_or_a_manifest_is_recovered_to_the_truth() {
    type Damage = fn(&Path, &Path);
    // (case, damage, events lost: the active segment's last frame is the import's Run record)
    let cases: Vec<(&str, Damage, u64)> = vec![
        (
            "flipped byte in the active segment's last frame",
            |d, _| {
                let seg = support::segments(d).pop().unwrap();
                let last = *frame_offsets(d, &seg).last().unwrap();
                flip(&seg, last + 45);
            },
            // The frame is lost but recorded as a loss in its place: the head stays.
            0,
        ),
        (
            "active segment truncated inside its last frame",
            |d, _| {
                let seg = support::segments(d).pop().unwrap();
                let last = *frame_offsets(d, &seg).last().unwrap();
                std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(last + 50).unwrap();
            },
            1,
        ),
        (
            "flipped byte inside candles.sqlite",
            |d, _| {
                let p = d.join("candles.sqlite");
                let len = std::fs::metadata(&p).unwrap().len();
                flip(&p, len / 2 + 100);
            },
            0,
        ),
        (
            "index.redb truncated to half",
            |d, _| {
                let p = d.join("index.redb");
                let len = std::fs::metadata(&p).unwrap().len();
                std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len / 2).unwrap();
            },
            0,
        ),
        (
            "flipped byte in the snapshot, projection lost",
            |d, repo| {
                let s = newest(repo, ".sqlite.zst");
                let len = std::fs::metadata(&s).unwrap().len();
                flip(&s, len / 2);
                std::fs::remove_file(d.join("candles.sqlite")).unwrap();
            },
            0,
        ),
        (
            "truncated manifest, projection lost",
            |d, repo| {
                let m = newest(repo, ".json");
                let len = std::fs::metadata(&m).unwrap().len();
                std::fs::OpenOptions::new().write(true).open(&m).unwrap().set_len(len / 2).unwrap();
                std::fs::remove_file(d.join("candles.sqlite")).unwrap();
            },
            0,
        ),
    ];
    for (name, damage, lost) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, repo) = prepared_with_tail(tmp.path());
        let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
        let head = json(&run(&dir, &["status", "--json"]))["head_lsn"].as_u64().unwrap();
        damage(&dir, &repo);
        let r = run(&dir, &["recover", "--from", repo.to_str().unwrap(), "--json"]);
        assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout, r.stderr);
        let r = json(&r);
        assert_eq!(r["head_lsn"].as_u64().unwrap(), head - lost, "{name}: {r:#}");
        assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), truth, "{name}");
        assert_eq!(run(&dir, &["verify", "--deep"]).code, 0, "{name}");
    }
}

/// redb keeps no page checksums, so a flipped byte inside a record is only
/// found by comparing with the log: `verify --deep` checks every cursor (where
/// the next sync starts) against the replayed series.
#[test]
fn a_flipped_byte_in_a_cursor_is_found_by_verify_deep_and_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo) = prepared(tmp.path());
    let status = json(&run(&dir, &["status", "--json"]));
    let series = status["series"].as_array().unwrap().iter().find(|s| s["symbol"] == "SKRUSDT").unwrap().clone();
    let (first, last) = (series["first_open"].as_i64().unwrap(), series["last_open"].as_i64().unwrap());
    let mut pattern = first.to_le_bytes().to_vec();
    pattern.extend(last.to_le_bytes());
    let index = dir.join("index.redb");
    let mut bytes = std::fs::read(&index).unwrap();
    let hits: Vec<usize> = (0..bytes.len() - pattern.len()).filter(|&i| bytes[i..i + pattern.len()] == pattern[..]).collect();
    assert!(!hits.is_empty(), "the cursor's bytes are in the file");
    for i in &hits {
        bytes[i + 9] ^= 0x01; // last_open's second byte: 256 ms off
    }
    std::fs::write(&index, &bytes).unwrap();
    let v = run(&dir, &["verify", "--deep", "--json"]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    let problems = json(&v)["problems"].as_array().unwrap().clone();
    assert!(problems.iter().any(|p| p["kind"] == "index_cursors" && p["message"].as_str().unwrap().contains("SKRUSDT")), "{problems:?}");
    let r = recover(&dir, &repo);
    assert_eq!(r["ok"], true, "{r:#}");
    let after = json(&run(&dir, &["status", "--json"]));
    let fixed = after["series"].as_array().unwrap().iter().find(|s| s["symbol"] == "SKRUSDT").unwrap().clone();
    assert_eq!(fixed["last_open"].as_i64().unwrap(), last);
}

/// A writer opening a directory whose projection was deleted by hand, its WAL
/// left behind, builds a new projection from the log without applying that
/// WAL to it: the WAL is set aside first.
#[test]
fn a_wal_left_beside_a_deleted_projection_is_set_aside_not_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = prepared(tmp.path());
    let truth = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    for f in ["candles.sqlite", "candles.sqlite-wal", "candles.sqlite-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    support::plant_foreign_companion(&dir.join("candles.sqlite-wal"), "-wal");
    let r = run(&dir, &["rebuild"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(quarantined(&dir, "candles.sqlite-wal"), 1);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), truth);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}
