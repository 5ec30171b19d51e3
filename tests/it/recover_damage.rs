//! Recover never makes damage worse (issue 10, part 6): every case drives the
//! real binary over a data directory with real flipped bytes or stray files,
//! without a repository unless the case says so.

use std::path::{Path, PathBuf};

use crate::support::{self, json, run, table_rows};

/// A data dir of 3 symbols × 3 months of 4h candles, one frame per file, in
/// small segments (several sealed ones and an active one).
fn prepared(tmp: &Path) -> (PathBuf, PathBuf) {
    let dir = tmp.join("data");
    let fixtures = tmp.join("fixtures");
    support::gen_archives(&fixtures, 3, 3);
    let r = run(&dir, &["--segment-bytes", "4096", "import", "--group-files", "1", fixtures.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(support::segments(&dir).len() >= 4, "{:?}", support::segments(&dir));
    (dir, fixtures)
}

fn recover(dir: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["recover", "--json"];
    args.extend_from_slice(extra);
    let r = run(dir, &args);
    assert!(r.code == 0 || r.code == 1, "{}\n{}", r.stdout, r.stderr);
    (r.code, json(&r))
}

fn head_lsn(dir: &Path) -> u64 {
    json(&run(dir, &["status", "--json"]))["head_lsn"].as_u64().unwrap()
}

/// Byte offsets of the frames of one segment, as `dump --json` lists them.
fn frame_offsets(dir: &Path, segment: &Path) -> Vec<u64> {
    run(dir, &["dump", "--json", segment.to_str().unwrap()])
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("frame").and_then(|f| f.as_u64()))
        .collect()
}

fn flip(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

fn health(dir: &Path) -> (i32, serde_json::Value) {
    let r = run(dir, &["health", "--json"]);
    (r.code, json(&r))
}

fn check<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v["checks"].as_array().unwrap().iter().find(|c| c["name"] == name)
}

fn rows(dir: &Path) -> Vec<(i64, String, [u64; 6], i64)> {
    table_rows(&dir.join("candles.sqlite"), "ohlcv_h4")
}

#[test]
fn a_damaged_sealed_segment_keeps_every_intact_frame_and_records_the_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, fixtures) = prepared(tmp.path());
    let truth = rows(&dir);
    let head = head_lsn(&dir);
    let seg = support::segments(&dir)[1].clone();
    let frames = frame_offsets(&dir, &seg);
    assert!(!frames.is_empty(), "{frames:?}");
    // A payload byte of the segment's first frame.
    flip(&seg, frames[0] + 60);
    assert_eq!(run(&dir, &["verify"]).code, 1);

    let (code, r) = recover(&dir, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["head_lsn"].as_u64(), Some(head), "every later segment is kept: {r:#}");
    let losses = r["losses"].as_array().unwrap();
    assert!(!losses.is_empty() && losses[0].as_str().unwrap().contains("LSN "), "{r:#}");
    // The loss is in the log, as an event.
    let dump = run(&dir, &["dump", "--json", seg.to_str().unwrap()]);
    assert!(dump.stdout.contains("\"event_format\":3"), "{}", dump.stdout);
    // The acknowledged candles the projection had are all still there; verify accepts them.
    assert_eq!(rows(&dir), truth);
    let v = run(&dir, &["verify", "--deep", "--json"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    // Health reports the loss, naming the series.
    let (code, h) = health(&dir);
    assert!(code >= 1, "{h:#}");
    let loss = check(&h, "loss").unwrap_or_else(|| panic!("{h:#}"));
    assert_eq!(loss["status"], "CRITICAL", "{h:#}");
    assert!(loss["message"].as_str().unwrap().contains("SYM"), "{h:#}");

    // A rebuild from the log alone no longer has the lost candles: health still says so.
    for f in ["candles.sqlite", "candles.sqlite-wal", "candles.sqlite-shm", "index.redb"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    assert_eq!(run(&dir, &["rebuild"]).code, 0);
    assert!(rows(&dir).len() < truth.len());
    assert_eq!(check(&health(&dir).1, "loss").unwrap()["status"], "CRITICAL");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);

    // Importing the same files again refills the lost candles: the loss is no longer reported.
    let r = run(&dir, &["import", fixtures.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(rows(&dir), truth);
    let (_, h) = health(&dir);
    assert_eq!(check(&h, "loss").unwrap()["status"], "OK", "{h:#}");
}

#[test]
fn a_stray_file_in_log_never_cuts_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = prepared(tmp.path());
    let truth = rows(&dir);
    let head = head_lsn(&dir);
    // A segment-like name far beyond the chain, and junk with other names.
    std::fs::write(dir.join("log").join("00000000000000000099.seg"), b"not a segment at all").unwrap();
    std::fs::write(dir.join("log").join("00000099.seg"), b"junk").unwrap();
    std::fs::write(dir.join("log").join("notes.txt"), b"junk").unwrap();
    let (code, r) = recover(&dir, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["head_lsn"].as_u64(), Some(head), "{r:#}");
    assert!(r["losses"].as_array().unwrap().is_empty(), "{r:#}");
    assert_eq!(r["repaired"].as_array().unwrap().len(), 3, "{r:#}");
    assert_eq!(rows(&dir), truth);
    for f in ["00000000000000000099.seg", "00000099.seg", "notes.txt"] {
        assert!(!dir.join("log").join(f).exists(), "{f} set aside");
    }
    let quarantined = r["quarantined"].as_array().unwrap();
    assert_eq!(quarantined.len(), 1, "{r:#}");
    assert!(Path::new(quarantined[0].as_str().unwrap()).join("00000000000000000099.seg").exists());
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn a_flipped_byte_in_the_active_segment_s_header_is_repaired_from_its_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = prepared(tmp.path());
    let truth = rows(&dir);
    let head = head_lsn(&dir);
    let active = support::segments(&dir).pop().unwrap();
    flip(&active, 40); // inside base_hash
    assert_eq!(run(&dir, &["verify"]).code, 1);
    let (code, r) = recover(&dir, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["head_lsn"].as_u64(), Some(head), "{r:#}");
    assert!(r["losses"].as_array().unwrap().is_empty(), "{r:#}");
    assert!(r["repaired"][0].as_str().unwrap().contains("header rebuilt"), "{r:#}");
    // The projection stays where it was: nothing was lost.
    assert_eq!(r["steps"][1]["detail"], "projection trusted: kept", "{r:#}");
    assert_eq!(rows(&dir), truth);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    // And the directory takes writes again.
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
}

/// A data directory restored from a pruned repository: its log starts after
/// segment 1, on `log/base.json` and `log/base.sqlite.zst`.
fn restored_from_pruned(tmp: &Path) -> (PathBuf, PathBuf) {
    let (dir, repo) = support::two_imports_one_backup(tmp);
    let tomorrow = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    assert_eq!(run(&dir, &["backup", "--prune-segments-before", &tomorrow]).code, 0);
    let into = tmp.join("restored");
    let r = run(&dir, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(into.join("log/base.json").is_file());
    (into, repo)
}

/// Every file under `dir`, with its bytes.
fn snapshot_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(snapshot_of(&p));
        } else if p.file_name().is_some_and(|n| n != "lock") {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_lost_or_damaged_log_base_comes_back_from_the_repository_or_nothing_changes() {
    type Damage = fn(&Path);
    let cases: Vec<(&str, Damage)> = vec![
        ("deleted base.json", |d| std::fs::remove_file(d.join("log/base.json")).unwrap()),
        ("damaged base.json", |d| std::fs::write(d.join("log/base.json"), b"{ not json").unwrap()),
        ("deleted base.sqlite.zst", |d| std::fs::remove_file(d.join("log/base.sqlite.zst")).unwrap()),
        ("flipped byte in base.sqlite.zst", |d| flip(&d.join("log/base.sqlite.zst"), 100)),
    ];
    for (name, damage) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, repo) = restored_from_pruned(tmp.path());
        let truth = rows(&dir);
        damage(&dir);
        // Without a repository: says what is missing, changes nothing, exit 1.
        let before = snapshot_of(&dir);
        let (code, r) = recover(&dir, &[]);
        assert_eq!(code, 1, "{name}: {r:#}");
        assert!(r["problems"][0].as_str().unwrap().contains("base"), "{name}: {r:#}");
        assert_eq!(snapshot_of(&dir), before, "{name}: nothing changed");
        // With one: the base comes back and the directory verifies.
        let (code, r) = recover(&dir, &["--from", repo.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {r:#}");
        assert!(dir.join("log/base.json").is_file() && dir.join("log/base.sqlite.zst").is_file(), "{name}");
        assert_eq!(rows(&dir), truth, "{name}");
        let v = run(&dir, &["verify", "--deep", "--json"]);
        assert_eq!(v.code, 0, "{name}: {}", v.stdout);
    }
}

#[test]
fn a_repository_holding_a_good_and_a_foreign_copy_of_a_segment_uses_the_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = prepared(tmp.path());
    let repo = tmp.path().join("repo");
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    // Another chain's segment 2, in the same repository.
    let other = tmp.path().join("other");
    let r = run(&other, &["--segment-bytes", "4096", "import", "--group-files", "1", support::shared_archives().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let other_repo = tmp.path().join("other-repo");
    assert_eq!(run(&other, &["backup", "--to", other_repo.to_str().unwrap()]).code, 0);
    let seg2 = |repo: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(repo.join("segments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("00000000000000000002-"))
            .collect()
    };
    let foreign = seg2(&other_repo).pop().expect("the other chain has a segment 2");
    std::fs::copy(&foreign, repo.join("segments").join(foreign.file_name().unwrap())).unwrap();
    assert_eq!(seg2(&repo).len(), 2);

    let truth = rows(&dir);
    let head = head_lsn(&dir);
    let local = support::segments(&dir)[1].clone();
    let offsets = frame_offsets(&dir, &local);
    flip(&local, offsets[0] + 60);
    let (code, r) = recover(&dir, &["--from", repo.to_str().unwrap()]);
    assert_eq!(code, 0, "{r:#}");
    assert!(r["losses"].as_array().unwrap().is_empty(), "the good copy was used: {r:#}");
    assert_eq!(r["replaced_segments"].as_array().unwrap().len(), 1, "{r:#}");
    assert_eq!(r["head_lsn"].as_u64(), Some(head));
    assert_eq!(rows(&dir), truth);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn recover_exits_1_when_it_sets_aside_a_segment_that_still_holds_readable_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = prepared(tmp.path());
    let segs = support::segments(&dir);
    assert!(segs.len() >= 5, "{segs:?}");
    // Two segments in a row gone, no repository: the ones after them are readable but
    // can no longer be placed on the chain.
    std::fs::remove_file(&segs[1]).unwrap();
    std::fs::remove_file(&segs[2]).unwrap();
    let (code, r) = recover(&dir, &[]);
    assert_eq!(code, 1, "{r:#}");
    assert!(r["problems"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().contains("not on the chain")), "{r:#}");
    // Set aside, never deleted.
    let q = Path::new(r["quarantined"][0].as_str().unwrap());
    assert!(q.join(segs[3].file_name().unwrap()).exists(), "{r:#}");
}
