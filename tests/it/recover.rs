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
        ("corrupted index.redb", |d| std::fs::write(d.join("index.redb"), b"not redb").unwrap()),
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
        assert_eq!(steps, ["verify segments", "restore snapshot", "replay tail", "verify --deep"], "{name}");
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
    // A second backup; then damage the older snapshot only.
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
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
