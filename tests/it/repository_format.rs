//! The golden backup repository (format/repository.md,
//! format/vectors/repository/), tested both ways: the real binary reads the
//! frozen repository (verify, list, restore) and refuses each broken variant
//! derived from it as the spec says; and a backup written today from the same
//! log produces the same layout (object names, marker, manifest keys,
//! log-start.json).
//!
//! To (re)create the vectors after an intended format change:
//! `CANDLELOG_BLESS=1 cargo test --test main repository_format::repository_vectors_match_the_generator`
//! (the segments come from the segment vectors of tests/it/golden.rs, the
//! snapshots from the real projection and `snapshot::build` at fixed times).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candlelog::backup::marker::{Marker, write_marker};
use candlelog::backup::prune::{LOG_START, LogStart, write_log_start};
use candlelog::backup::{DirRepository, Repository, SnapshotManifest};
use candlelog::event::Candle;
use candlelog::store::ChainId;
use candlelog::store::{Paths, Store, StoreOptions};

use super::golden;
use crate::support::{self, json, run, table_rows};

// ---------------------------------------------------------------------------
// The fixed inputs of the golden repository (format/vectors/repository/README.md).

/// Snapshot A, at LSN 4 (the head of segment 1): 2026-01-22 16:00:07 UTC.
const SNAP_A_CREATED_MS: i64 = 1_769_097_607_000;
/// Snapshot B, at LSN 7 (the head of segment 2): 2026-01-22 20:00:10 UTC.
const SNAP_B_CREATED_MS: i64 = 1_769_112_010_000;
/// The pruned variant: `--prune-segments-before 2026-01-23` (midnight UTC) ...
const PRUNED_BEFORE_MS: i64 = 1_769_126_400_000;
/// ... run at 2026-01-23 01:05:00 UTC.
const PRUNED_AT_MS: i64 = 1_769_130_300_000;

const MARKER: &str = "candlelog-repository.json";
/// The format-1 marker (`valid/`, `pruned/`): no chain identity.
const MARKER_V1_BYTES: &[u8] = b"{\"format\": 1}\n";

/// The format-2 marker (`format2/`): the golden chain's identity, the end of
/// its first frame (LSN 1-2).
fn marker_v2_bytes() -> Vec<u8> {
    format!("{{\n  \"format\": 2,\n  \"chain\": {{\n    \"lsn\": 2,\n    \"hash\": \"{}\"\n  }}\n}}\n", golden::FRAME1_HASH_HEX)
        .into_bytes()
}

/// The format-3 marker (`format3/`): as format 2's, with format 3.
fn marker_v3_bytes() -> Vec<u8> {
    String::from_utf8(marker_v2_bytes()).unwrap().replace("\"format\": 2", "\"format\": 3").into_bytes()
}

/// The frozen repositories: two of format 1, one of format 2, one of format 3.
const VECTORS: [&str; 4] = ["valid", "pruned", "format2", "format3"];

fn marker_bytes(sub: &str) -> Vec<u8> {
    match sub {
        "format2" => marker_v2_bytes(),
        "format3" => marker_v3_bytes(),
        _ => MARKER_V1_BYTES.to_vec(),
    }
}

/// The snapshot object of `stem` in `sub`: format 3's B is a delta of A.
fn snapshot_file(sub: &str, stem: &str) -> String {
    if sub == "format3" && stem == SNAP_B { format!("{stem}.delta.zst") } else { format!("{stem}.sqlite.zst") }
}
const SEG1_OBJECT: &str = "segments/00000000000000000001-f50f20814b3c3dcc80bb751b730f390e1332c373dc7cc9f533805f4cae284f44.seg";
const SEG2_OBJECT: &str = "segments/00000000000000000002-621adf0bb8d2716dea3428704a3a102a2ba548860c3c52568528b8b12671e8a7.seg";
/// `row_digests` of a snapshot of the golden log at LSN 7 (format/repository.md, "Row digests").
const ROW_DIGEST_D1_AT_7: &str = "3cf01a4257c41aa3817c29db9c56a7dc364f3597bdfdb5167fad240567c0b309";
const ROW_DIGEST_H4_AT_7: &str = "45fe6b6e8bc70917b1f2ee0b9f3e10bf3c91d7cb72fcaa5e74d06930b44bbf19";
const SNAP_A: &str = "snapshots/00000000000000000004-1769097607000";
const SNAP_B: &str = "snapshots/00000000000000000007-1769112010000";

fn repository_dir() -> PathBuf {
    golden::vectors_dir().join("repository")
}

fn bless() -> bool {
    std::env::var("CANDLELOG_BLESS").is_ok_and(|v| v == "1")
}

// ---------------------------------------------------------------------------
// Generating the vectors.

/// A snapshot of the projection of `paths`' log, named and stamped as a
/// backup at `created_ms` would: the bytes `backup` uploads and its manifest.
/// The page-stable copy stays at `paths.root/snapshot-<created_ms>.sqlite`.
fn snapshot_of(paths: &Paths, created_ms: i64) -> (Vec<u8>, SnapshotManifest) {
    let raw = paths.root.join(format!("snapshot-{created_ms}.sqlite"));
    let _ = std::fs::remove_file(&raw);
    let store = Store::open(paths, StoreOptions::default()).unwrap();
    let applied = store.snapshot_projection(&raw).unwrap();
    drop(store);
    let name = format!("snapshots/{:020}-{created_ms}.sqlite.zst", applied.lsn);
    let mut pack = candlelog::snapshot::pack(&raw, applied.lsn, applied.hash, &name, created_ms).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut pack, &mut bytes).unwrap();
    let mut manifest = pack.manifest();
    // As `backup` records them: the digests of the log's rows at the snapshot's LSN.
    let digests = candlelog::store::log_digests_at(paths, applied.lsn).unwrap();
    manifest.row_digests = Some(candlelog::snapshot::row_digests_json(&digests));
    (bytes, manifest)
}

/// Publishes a snapshot as a backup of repository format `format` does.
fn put_snapshot(repo: &DirRepository, (bytes, manifest): &(Vec<u8>, SnapshotManifest), format: u32) {
    let manifest = &SnapshotManifest { format, ..manifest.clone() };
    repo.put(&manifest.file, bytes).unwrap();
    let json = serde_json::to_vec_pretty(manifest).unwrap();
    repo.put(&manifest.manifest_name(), &json).unwrap();
}

/// Snapshot B as a delta of A (format 3): the pages of B's page-stable copy
/// that differ from A's, as `backup` writes it.
fn delta_of(paths: &Paths, (a, b): (&SnapshotManifest, &SnapshotManifest)) -> (Vec<u8>, SnapshotManifest) {
    use candlelog::snapshot::pages::PageImage;
    let raw = |m: &SnapshotManifest| paths.root.join(format!("snapshot-{}.sqlite", m.created_ms));
    let (image_a, image_b) = (PageImage::scan(&raw(a)).unwrap(), PageImage::scan(&raw(b)).unwrap());
    let head: [u8; 32] =
        (0..32).map(|i| u8::from_str_radix(&b.head_hash[2 * i..2 * i + 2], 16).unwrap()).collect::<Vec<_>>().try_into().unwrap();
    let name = b.file.replace(".sqlite.zst", ".delta.zst");
    let parent = SnapshotManifest { format: 3, ..a.clone() };
    let mut pack = candlelog::snapshot::pack_delta(&raw(b), (&image_b, &image_a), &parent, (b.lsn, head), &name, b.created_ms).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut pack, &mut bytes).unwrap();
    let mut manifest = pack.manifest();
    manifest.row_digests = b.row_digests.clone();
    (bytes, manifest)
}

fn segment_object(seq: u64, bytes: &[u8]) -> String {
    format!("segments/{seq:020}-{}.seg", blake3::hash(bytes).to_hex())
}

/// Writes `valid/`, `pruned/` (format 1) and `format2/` under `dest`.
fn generate(dest: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("log")).unwrap();
    let paths = Paths::new(&data, None);
    let seg1 = golden::sealed();
    let seg2 = golden::event_format_2();
    // Snapshot A when the log was segment 1; snapshot B after segment 2.
    std::fs::write(data.join("log/00000000000000000001.seg"), &seg1).unwrap();
    let snap_a = snapshot_of(&paths, SNAP_A_CREATED_MS);
    std::fs::write(data.join("log/00000000000000000002.seg"), &seg2).unwrap();
    let snap_b = snapshot_of(&paths, SNAP_B_CREATED_MS);

    let valid = DirRepository::open(&dest.join("valid")).unwrap();
    valid.put(MARKER, MARKER_V1_BYTES).unwrap();
    valid.put(&segment_object(1, &seg1), &seg1).unwrap();
    valid.put(&segment_object(2, &seg2), &seg2).unwrap();
    put_snapshot(&valid, &snap_a, 1);
    put_snapshot(&valid, &snap_b, 1);

    // valid/ as this build's backups write it: the marker records the chain's identity.
    let format2 = DirRepository::open(&dest.join("format2")).unwrap();
    let chain = ChainId { lsn: 2, hash: golden::FRAME1_HASH_HEX.into() };
    write_marker(&format2, &Marker { format: 2, chain: Some(chain) }).unwrap();
    format2.put(&segment_object(1, &seg1), &seg1).unwrap();
    format2.put(&segment_object(2, &seg2), &seg2).unwrap();
    put_snapshot(&format2, &snap_a, 2);
    put_snapshot(&format2, &snap_b, 2);

    // format2/ as this build's backups write it: snapshot B a delta of A.
    let format3 = DirRepository::open(&dest.join("format3")).unwrap();
    let chain = ChainId { lsn: 2, hash: golden::FRAME1_HASH_HEX.into() };
    write_marker(&format3, &Marker { format: 3, chain: Some(chain) }).unwrap();
    format3.put(&segment_object(1, &seg1), &seg1).unwrap();
    format3.put(&segment_object(2, &seg2), &seg2).unwrap();
    put_snapshot(&format3, &snap_a, 3);
    put_snapshot(&format3, &delta_of(&paths, (&snap_a.1, &snap_b.1)), 3);

    // As `backup --prune-segments-before 2026-01-23` leaves it: segment 1 is
    // committed before the date and no snapshot needs it (it ends at the
    // oldest snapshot's LSN); segment 2 is the newest and always kept.
    let pruned = DirRepository::open(&dest.join("pruned")).unwrap();
    pruned.put(MARKER, MARKER_V1_BYTES).unwrap();
    write_log_start(
        &pruned,
        &LogStart {
            format: 1,
            first_seq: 2,
            first_lsn: 5,
            base_hash: golden::SEG1_HEAD_HEX.into(),
            pruned_before_ms: PRUNED_BEFORE_MS,
            pruned_at_ms: PRUNED_AT_MS,
        },
    )
    .unwrap();
    pruned.put(&segment_object(2, &seg2), &seg2).unwrap();
    put_snapshot(&pruned, &snap_a, 1);
    put_snapshot(&pruned, &snap_b, 1);
}

fn names(dir: &Path) -> Vec<String> {
    support::tree_files(dir).into_iter().map(|(n, _)| n).collect()
}

fn manifest_json(dir: &Path, stem: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.json"))).unwrap()).unwrap()
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn repository_vectors_match_the_generator() {
    let dir = repository_dir();
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path());
    if bless() {
        // Frozen snapshot bytes are never reblessed by accident: only the
        // repositories that are missing (a new vector) are written.
        for sub in VECTORS.iter().filter(|sub| !dir.join(sub).exists()) {
            support::copy_dir(&tmp.path().join(sub), &dir.join(sub));
        }
        return;
    }
    for sub in VECTORS {
        let (frozen, fresh) = (dir.join(sub), tmp.path().join(sub));
        assert_eq!(names(&frozen), names(&fresh), "{sub}: the generator now writes other object names");
        for ((name, a), (_, b)) in support::tree_files(&frozen).into_iter().zip(support::tree_files(&fresh)) {
            if name.starts_with("snapshots/") {
                continue; // below: the SQLite bytes hold the time they were made
            }
            assert!(a == b, "{sub}/{name}: the code now writes different bytes than the frozen vector (a format change?)");
        }
        // A snapshot's bytes differ from run to run (candlelog_state.updated_ms);
        // everything else in its manifest is fixed.
        for stem in [SNAP_A, SNAP_B] {
            let (mut a, mut b) = (manifest_json(&frozen, stem), manifest_json(&fresh, stem));
            for m in [&mut a, &mut b] {
                for k in ["file_bytes", "file_blake3", "raw_bytes", "raw_blake3", "candlelog_version"] {
                    m.as_object_mut().unwrap().remove(k).unwrap_or_else(|| panic!("{sub}/{stem}.json has no {k}"));
                }
                // A delta names the database it applies to, which holds the time it was made too.
                m.as_object_mut().unwrap().remove("parent_raw_blake3");
                if sub == "format3" {
                    m.as_object_mut().unwrap().remove("row_digests").unwrap_or_else(|| panic!("{sub}/{stem}.json: no row_digests"));
                }
            }
            if sub == "format3" {
                assert_eq!(a, b, "{sub}/{stem}.json");
                continue;
            }
            // The frozen manifests predate `row_digests` (readers take them without it);
            // today's carry the digests of the golden log's rows at their LSN.
            let digests = b.as_object_mut().unwrap().remove("row_digests").unwrap_or_else(|| panic!("{sub}/{stem}.json: no row_digests"));
            let tables: Vec<&String> = digests.as_object().unwrap().keys().collect();
            assert_eq!(tables, ["ohlcv_d1", "ohlcv_h4"], "{sub}/{stem}.json");
            assert_eq!(a, b, "{sub}/{stem}.json");
        }
    }
    // A few tens of KB in all.
    let total: usize = support::tree_files(&dir).iter().map(|(_, b)| b.len()).sum();
    assert!(total < 64 * 1024, "format/vectors/repository holds {total} bytes");
}

// ---------------------------------------------------------------------------
// Reading: the frozen repository is what the spec says, and the binary reads it.

/// A copy of `format/vectors/repository/<sub>` to run commands on.
fn copy_of(sub: &str, tmp: &Path) -> PathBuf {
    let to = tmp.join(sub);
    support::copy_dir(&repository_dir().join(sub), &to);
    to
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The projection row of a candle, as `support::table_rows` reads it.
fn row(c: &Candle) -> (i64, String, [u64; 6], i64) {
    let f = [c.open, c.high, c.low, c.close, c.volume, c.quote_volume].map(|d| d.to_f64().to_bits());
    (c.open_time, c.symbol.to_string(), f, c.trades as i64)
}

fn h4_rows(upto_lsn: u64) -> Vec<(i64, String, [u64; 6], i64)> {
    let mut v = vec![row(&golden::candle1()), row(&golden::candle2())];
    if upto_lsn >= 5 {
        v.push(row(&golden::candle5()));
    }
    v
}

/// The spec's checks, computed with blake3 and zstd directly rather than
/// through candlelog: names, marker, manifests, chain positions.
#[test]
fn golden_repository_follows_the_spec() {
    let dir = repository_dir();
    for sub in VECTORS {
        let root = dir.join(sub);
        assert_eq!(std::fs::read(root.join(MARKER)).unwrap(), marker_bytes(sub), "{sub}");
        // Segment objects: byte for byte the segment vectors, named by seq and blake3.
        let segs: Vec<String> = names(&root).into_iter().filter(|n| n.starts_with("segments/")).collect();
        let expected: Vec<&str> = if sub == "pruned" { vec![SEG2_OBJECT] } else { vec![SEG1_OBJECT, SEG2_OBJECT] };
        assert_eq!(segs, expected, "{sub}");
        for name in &segs {
            let bytes = std::fs::read(root.join(name)).unwrap();
            assert_eq!(name.as_str(), segment_object(if name == SEG1_OBJECT { 1 } else { 2 }, &bytes));
            let vector = if name == SEG1_OBJECT { "sealed.seg" } else { "event_format_2.seg" };
            assert_eq!(bytes, std::fs::read(golden::vectors_dir().join(vector)).unwrap(), "{sub}/{name} is {vector}");
        }
        // Manifests: every field, and the file they describe.
        let mut raw_a = Vec::new();
        for (stem, lsn, head, created) in
            [(SNAP_A, 4, golden::SEG1_HEAD_HEX, SNAP_A_CREATED_MS), (SNAP_B, 7, golden::SEG2_SEALED_HEAD_HEX, SNAP_B_CREATED_MS)]
        {
            let m = manifest_json(&root, stem);
            let mut expected_keys = vec![
                "candlelog_version",
                "created_ms",
                "file",
                "file_blake3",
                "file_bytes",
                "format",
                "head_hash",
                "lsn",
                "raw_blake3",
                "raw_bytes",
                "rows",
            ];
            if sub == "format3" {
                expected_keys.push("row_digests");
                if stem == SNAP_B {
                    expected_keys.extend(["parent", "parent_raw_blake3"]);
                }
            }
            assert_eq!(keys(&m), expected_keys.iter().map(|k| k.to_string()).collect(), "{sub}/{stem}.json");
            assert_eq!(
                m["format"],
                match sub {
                    "format2" => 2,
                    "format3" => 3,
                    _ => 1,
                }
            );
            assert_eq!(m["lsn"], lsn);
            assert_eq!(m["head_hash"], head);
            assert_eq!(m["file"], snapshot_file(sub, stem));
            assert_eq!(m["created_ms"], created);
            assert_eq!(m["rows"], serde_json::json!({"ohlcv_d1": 1, "ohlcv_h4": if lsn >= 5 { 3 } else { 2 }}));
            let file = std::fs::read(root.join(snapshot_file(sub, stem))).unwrap();
            assert_eq!(m["file_bytes"], file.len());
            assert_eq!(m["file_blake3"], blake3::hash(&file).to_hex().as_str());
            let raw = match m.get("parent") {
                // A delta: its pages written over its parent's database (format/repository.md, "Delta snapshots").
                Some(parent) => {
                    assert_eq!(parent, &format!("{SNAP_A}.sqlite.zst"));
                    assert_eq!(m["parent_raw_blake3"], blake3::hash(&raw_a).to_hex().as_str());
                    apply_delta_by_the_spec(&raw_a, &zstd::bulk::decompress(&file, 1 << 20).unwrap())
                }
                None => zstd::bulk::decompress(&file, 1 << 20).unwrap(),
            };
            if stem == SNAP_A {
                raw_a = raw.clone();
            }
            assert_eq!(m["raw_bytes"], raw.len());
            assert_eq!(m["raw_blake3"], blake3::hash(&raw).to_hex().as_str());
            assert!(raw.starts_with(b"SQLite format 3\0"));
            // The SQLite file holds the rows at its LSN and says where it stands on the chain.
            let db = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(db.path(), &raw).unwrap();
            assert_eq!(table_rows(db.path(), "ohlcv_h4"), h4_rows(lsn));
            assert_eq!(table_rows(db.path(), "ohlcv_d1"), [row(&golden::candle3())]);
            let conn = rusqlite::Connection::open(db.path()).unwrap();
            let state: (i64, String) =
                conn.query_row("SELECT applied_lsn, head_hash FROM candlelog_state", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            assert_eq!(state, (lsn as i64, head.to_string()));
        }
        // Nothing else: no temporaries, no strays.
        let mut all = names(&root);
        all.retain(|n| !n.starts_with("segments/") && !n.starts_with("snapshots/"));
        let expected: Vec<&str> = if sub == "pruned" { vec![MARKER, LOG_START] } else { vec![MARKER] };
        assert_eq!(all, expected, "{sub}");
    }
    let start: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("pruned").join(LOG_START)).unwrap()).unwrap();
    assert_eq!(
        start,
        serde_json::json!({"format": 1, "first_seq": 2, "first_lsn": 5, "base_hash": golden::SEG1_HEAD_HEX,
            "pruned_before_ms": PRUNED_BEFORE_MS, "pruned_at_ms": PRUNED_AT_MS})
    );
}

/// A delta stream applied to its parent's database as format/repository.md
/// describes it, without candlelog's code: header, then (page number, page).
fn apply_delta_by_the_spec(parent: &[u8], delta: &[u8]) -> Vec<u8> {
    assert_eq!(&delta[..8], b"CLDELTA1");
    let u64_at = |at: usize| u64::from_le_bytes(delta[at..at + 8].try_into().unwrap());
    let page_size = u32::from_le_bytes(delta[8..12].try_into().unwrap()) as usize;
    let (page_count, changed) = (u64_at(12) as usize, u64_at(20) as usize);
    assert_eq!(delta.len(), 28 + changed * (8 + page_size), "nothing after the last page");
    let mut out = parent.to_vec();
    out.resize(page_count * page_size, 0);
    for k in 0..changed {
        let at = 28 + k * (8 + page_size);
        let no = u64_at(at) as usize;
        out[no * page_size..(no + 1) * page_size].copy_from_slice(&delta[at + 8..at + 8 + page_size]);
    }
    out
}

#[test]
fn golden_repository_verifies_lists_and_restores() {
    // Format 1 and 2 (still read) and format 3 read the same.
    for sub in ["valid", "format2", "format3"] {
        verifies_lists_and_restores(sub);
    }
}

fn verifies_lists_and_restores(sub: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = copy_of(sub, tmp.path());
    for deep in [false, true] {
        let mut args = vec!["backup", "verify", "--from", s(&repo), "--json"];
        if deep {
            args.push("--deep");
        }
        let r = run(tmp.path(), &args);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let v = json(&r);
        assert_eq!(
            (v["ok"].as_bool(), v["segments"].as_u64(), v["snapshots"].as_u64(), v["first_lsn"].as_u64(), v["head_lsn"].as_u64()),
            (Some(true), Some(2), Some(2), Some(1), Some(7))
        );
        assert_eq!(v["problems"], serde_json::json!([]));
    }
    let r = run(tmp.path(), &["backup", "list", "--from", s(&repo), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    let listed: Vec<(u64, String)> =
        v["segments"].as_array().unwrap().iter().map(|x| (x["seq"].as_u64().unwrap(), x["object"].as_str().unwrap().into())).collect();
    assert_eq!(listed, [(1, SEG1_OBJECT.to_string()), (2, SEG2_OBJECT.to_string())]);
    let snaps: Vec<&str> = v["snapshots"].as_array().unwrap().iter().map(|m| m["file"].as_str().unwrap()).collect();
    assert_eq!(snaps, [snapshot_file(sub, SNAP_A), snapshot_file(sub, SNAP_B)]);
    assert!(v["log_start"].is_null());

    // Restore: the head, then cuts at LSN 5 (snapshot A, then replay) and 3 (the log alone).
    for (cut, head_lsn, head_hash, snapshot_lsn, segments) in [
        (None, 7, golden::SEG2_SEALED_HEAD_HEX, Some(7), 2),
        (Some(5), 5, golden::SEG2_HEAD_HEX, Some(4), 2),
        (Some(4), 4, golden::SEG1_HEAD_HEX, Some(4), 1),
        (Some(3), 2, golden::FRAME1_HASH_HEX, None, 1),
    ] {
        let into = tmp.path().join(format!("restored-{cut:?}"));
        let mut args = vec!["restore".to_string(), "--from".into(), s(&repo).into(), "--into".into(), s(&into).into(), "--json".into()];
        if let Some(lsn) = cut {
            args.extend(["--lsn".to_string(), lsn.to_string()]);
        }
        let r = run(tmp.path(), &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r.code, 0, "{cut:?}: {}", r.stderr);
        let v = json(&r);
        assert_eq!(v["head_lsn"], head_lsn, "{cut:?}");
        assert_eq!(v["head_hash"], head_hash, "{cut:?}");
        assert_eq!(v["snapshot_lsn"].as_u64(), snapshot_lsn, "{cut:?}");
        assert_eq!(v["segments"], segments, "{cut:?}");
        assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), h4_rows(head_lsn), "{cut:?}");
        if head_lsn >= 3 {
            assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_d1"), [row(&golden::candle3())], "{cut:?}");
        } else {
            assert_eq!(ohlcv_tables(&into.join("candles.sqlite")), ["ohlcv_h4"], "{cut:?}: no 1d candle yet");
        }
        // Whole segments come back byte for byte; a cut one ends at its last kept frame.
        let restored = std::fs::read(into.join("log/00000000000000000001.seg")).unwrap();
        let sealed = std::fs::read(golden::vectors_dir().join("sealed.seg")).unwrap();
        if head_lsn >= 4 {
            assert_eq!(restored, sealed);
        } else {
            assert_eq!(restored, &sealed[..golden::FRAME2_OFFSET as usize]);
        }
    }
    // The restored data directory is a working one: the next event continues the chain.
    let into = tmp.path().join("restored-None");
    let r = run(&into, &["status", "--json"]);
    assert_eq!(json(&r)["head_lsn"], 7, "{}", r.stdout);
    assert_eq!(run(&into, &["verify", "--deep"]).code, 0);
}

fn ohlcv_tables(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ohlcv_%' ORDER BY name").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn golden_pruned_repository_verifies_and_restores_with_a_log_base() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = copy_of("pruned", tmp.path());
    let r = run(tmp.path(), &["backup", "verify", "--from", s(&repo), "--deep", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!(
        (v["segments"].as_u64(), v["snapshots"].as_u64(), v["first_lsn"].as_u64(), v["head_lsn"].as_u64()),
        (Some(1), Some(2), Some(5), Some(7))
    );
    let r = run(tmp.path(), &["backup", "list", "--from", s(&repo), "--json"]);
    let v = json(&r);
    assert_eq!(v["log_start"]["first_seq"], 2);
    assert_eq!(v["segments"].as_array().unwrap().len(), 1);

    for (cut, head_lsn, snapshot_lsn, base) in [(None, 7, 7, SNAP_B), (Some(5), 5, 4, SNAP_A)] {
        let into = tmp.path().join(format!("restored-{cut:?}"));
        let mut args = vec!["restore".to_string(), "--from".into(), s(&repo).into(), "--into".into(), s(&into).into(), "--json".into()];
        if let Some(lsn) = cut {
            args.extend(["--lsn".to_string(), lsn.to_string()]);
        }
        let r = run(tmp.path(), &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r.code, 0, "{cut:?}: {}", r.stderr);
        let v = json(&r);
        assert_eq!(
            (v["head_lsn"].as_u64(), v["snapshot_lsn"].as_u64(), v["segments"].as_u64()),
            (Some(head_lsn), Some(snapshot_lsn), Some(1))
        );
        assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), h4_rows(head_lsn), "{cut:?}");
        // The log starts at segment 2; the snapshot it starts from is kept byte for byte as its base.
        assert!(!into.join("log/00000000000000000001.seg").exists());
        assert_eq!(
            std::fs::read(into.join("log/base.sqlite.zst")).unwrap(),
            std::fs::read(repo.join(format!("{base}.sqlite.zst"))).unwrap()
        );
        let b: serde_json::Value = serde_json::from_slice(&std::fs::read(into.join("log/base.json")).unwrap()).unwrap();
        assert_eq!(
            (b["first_seq"].as_u64(), b["first_lsn"].as_u64(), b["base_hash"].as_str()),
            (Some(2), Some(5), Some(golden::SEG1_HEAD_HEX))
        );
        assert_eq!(b["snapshot"], manifest_json(&repo, base));
        // The chain's identity, which the pruned log no longer holds: a format-1
        // repository records none, so it is where its log starts.
        assert_eq!(b["chain"], serde_json::json!({"lsn": 4, "hash": golden::SEG1_HEAD_HEX}));
    }
    // Before the log start: refused, naming the earliest point it can restore.
    let into = tmp.path().join("too-early");
    let r = run(tmp.path(), &["restore", "--from", s(&repo), "--into", s(&into), "--lsn", "3"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("its log starts at LSN 5") && r.stderr.contains("the earliest point it can restore is LSN 4"),
        "{}",
        r.stderr
    );
    assert!(!into.exists());
}

// ---------------------------------------------------------------------------
// Reading broken variants: each is refused as format/repository.md, "What
// readers must refuse", says. Derived at test time from a copy of the golden
// repository; the files under format/ are never modified.

fn flip(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[offset] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

fn edit_manifest(repo: &Path, stem: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut m = manifest_json(repo, stem);
    edit(&mut m);
    std::fs::write(repo.join(format!("{stem}.json")), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// `second.seg` (segment 2 of the same chain, but active: not sealed) as a segment object.
fn unsealed_segment_2(repo: &Path) -> String {
    let bytes = std::fs::read(golden::vectors_dir().join("second.seg")).unwrap();
    let name = segment_object(2, &bytes);
    std::fs::write(repo.join(&name), bytes).unwrap();
    name
}

/// What `restore` must do with a broken variant.
enum Restore {
    /// Refused: exit code, and what stderr names.
    Refused(i32, Vec<String>),
    /// Restored anyway, without what was refused: head LSN, snapshot LSN
    /// used, and what the warnings on stderr name.
    Restored(u64, Option<u64>, Vec<String>),
}

/// Breaks a copy of the golden repository; returns what verify must then name.
type Damage = Box<dyn Fn(&Path) -> Vec<String>>;

struct Case {
    name: &'static str,
    base: &'static str,
    damage: Damage,
    /// `backup verify` (and `--deep`): exit codes and what the output names.
    verify: i32,
    verify_deep: i32,
    verify_says: Vec<String>,
    restore: Restore,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn cases() -> Vec<Case> {
    let b_file = format!("{SNAP_B}.sqlite.zst");
    let b_json = format!("{SNAP_B}.json");
    vec![
        Case {
            name: "a flipped byte in a segment",
            base: "valid",
            damage: Box::new(|r| {
                flip(&r.join(SEG2_OBJECT), 300);
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![
                format!("{SEG2_OBJECT}: blake3 differs from its name"),
                format!("snapshot {SNAP_B}.sqlite.zst: its head hash at LSN 7 is not on the segments' chain"),
            ],
            restore: Restore::Refused(1, vec![format!("{SEG2_OBJECT}: blake3 differs from its name")]),
        },
        Case {
            name: "a segment that is not sealed",
            base: "valid",
            damage: Box::new(|r| {
                std::fs::remove_file(r.join(SEG2_OBJECT)).unwrap();
                let name = unsealed_segment_2(r);
                vec![format!("{name} at byte offset 218: unsealed")]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![],
            restore: Restore::Refused(1, strings(&["byte offset 218"])),
        },
        Case {
            name: "a missing segment",
            base: "valid",
            damage: Box::new(|r| {
                std::fs::remove_file(r.join(SEG1_OBJECT)).unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: strings(&["segment 1 is missing (next is 2)"]),
            restore: Restore::Refused(1, strings(&["segment 1 is missing (found 2 next)"])),
        },
        Case {
            name: "a second object for one segment that does not continue the chain (passed over)",
            base: "valid",
            damage: Box::new(|r| {
                let name = unsealed_segment_2(r);
                vec![format!("{name}: passed over: a copy of segment 2 that does not continue this repository's chain (unsealed")]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![],
            restore: Restore::Restored(7, Some(7), strings(&["passed over"])),
        },
        Case {
            name: "two objects for one segment that both continue the chain (two histories)",
            base: "valid",
            damage: Box::new(|r| {
                let bytes = golden::second_sealed();
                std::fs::write(r.join(segment_object(2, &bytes)), bytes).unwrap();
                vec!["each continues the chain: the repository holds two different histories".into()]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![],
            restore: Restore::Refused(1, strings(&["the repository holds two different histories"])),
        },
        Case {
            name: "another chain's segment 1 instead of the chain's (format 2: the marker's identity)",
            base: "format2",
            damage: Box::new(|r| {
                std::fs::remove_file(r.join(SEG1_OBJECT)).unwrap();
                let bytes = golden::foreign_sealed();
                let name = segment_object(1, &bytes);
                std::fs::write(r.join(&name), bytes).unwrap();
                vec![format!("{name} at byte offset 80: foreign_chain: a segment of another chain")]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![],
            restore: Restore::Refused(1, strings(&["foreign_chain: a segment of another chain", "LSN 2 hash 18dbb734"])),
        },
        Case {
            name: "another chain's segment 1 beside the chain's (format 2: passed over)",
            base: "format2",
            damage: Box::new(|r| {
                let bytes = golden::foreign_sealed();
                let name = segment_object(1, &bytes);
                std::fs::write(r.join(&name), bytes).unwrap();
                vec![format!("{name}: passed over: a copy of segment 1 that does not continue this repository's chain (foreign_chain")]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![],
            restore: Restore::Restored(7, Some(7), strings(&["passed over"])),
        },
        Case {
            name: "a manifest over 64 KiB (issue 10: refused before it is parsed)",
            base: "valid",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["padding"] = "x".repeat(70_000).into());
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("{SNAP_B}.json: larger than the 65536 bytes such an object may hold")],
            restore: Restore::Restored(7, Some(4), vec![format!("{SNAP_B}.json: larger than the 65536 bytes")]),
        },
        Case {
            name: "a segment name that is not what backups write (upper-case hash)",
            base: "valid",
            damage: Box::new(|r| {
                let upper = SEG2_OBJECT.replace(".seg", "").to_uppercase().replace("SEGMENTS/", "segments/") + ".seg";
                std::fs::rename(r.join(SEG2_OBJECT), r.join(upper)).unwrap();
                // Not a segment object, so ignored: the repository ends at segment 1.
                vec!["up to LSN 4".into(), format!("snapshot {SNAP_B}.sqlite.zst: its head hash at LSN 7 is not on the segments' chain")]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![],
            restore: Restore::Restored(4, Some(4), vec![]),
        },
        Case {
            name: "a marker of repository format 4",
            base: "valid",
            damage: Box::new(|r| {
                std::fs::write(r.join(MARKER), "{\"format\": 4}\n").unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: strings(&["uses repository format 4; this build reads formats 1 to 3: upgrade candlelog"]),
            restore: Restore::Refused(1, strings(&["uses repository format 4; this build reads formats 1 to 3: upgrade candlelog"])),
        },
        Case {
            name: "no marker",
            base: "valid",
            damage: Box::new(|r| {
                std::fs::remove_file(r.join(MARKER)).unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: strings(&["is not a candlelog backup repository (no candlelog-repository.json)"]),
            restore: Restore::Refused(1, strings(&["is not a candlelog backup repository (no candlelog-repository.json)"])),
        },
        Case {
            name: "a marker without a format number",
            base: "valid",
            damage: Box::new(|r| {
                std::fs::write(r.join(MARKER), "{\"version\": 1}\n").unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: strings(&["candlelog-repository.json has no format number"]),
            restore: Restore::Refused(1, strings(&["candlelog-repository.json has no format number"])),
        },
        Case {
            name: "a marker that is not JSON",
            base: "valid",
            damage: Box::new(|r| {
                std::fs::write(r.join(MARKER), "1\n2\n").unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: strings(&["candlelog-repository.json: trailing characters"]),
            restore: Restore::Refused(1, strings(&["candlelog-repository.json: trailing characters"])),
        },
        Case {
            name: "a manifest whose file_blake3 is wrong",
            base: "valid",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["file_blake3"] = "00".repeat(32).into());
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("snapshot {b_file}: size or blake3 differs from its manifest")],
            restore: Restore::Restored(7, Some(4), vec![b_file.clone(), "size or blake3 differs from its manifest".into()]),
        },
        Case {
            name: "a manifest whose file_bytes is wrong",
            base: "valid",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["file_bytes"] = (m["file_bytes"].as_u64().unwrap() + 1).into());
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("snapshot {b_file}: size or blake3 differs from its manifest")],
            restore: Restore::Restored(7, Some(4), vec![b_file.clone()]),
        },
        Case {
            name: "a manifest whose raw_blake3 is wrong",
            base: "valid",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["raw_blake3"] = "00".repeat(32).into());
                vec![]
            }),
            verify: 0,
            verify_deep: 1,
            verify_says: vec![format!("snapshot {b_file}: decompressed bytes differ from the manifest")],
            restore: Restore::Restored(7, Some(4), vec![b_file.clone(), "decompressed bytes differ from the manifest".into()]),
        },
        Case {
            name: "a manifest whose raw_bytes is wrong",
            base: "valid",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["raw_bytes"] = (m["raw_bytes"].as_u64().unwrap() - 1).into());
                vec![]
            }),
            verify: 0,
            verify_deep: 1,
            verify_says: vec![format!("snapshot {b_file}: decompressed bytes differ from the manifest")],
            restore: Restore::Restored(7, Some(4), vec![b_file.clone(), "decompressed bytes differ from the manifest".into()]),
        },
        Case {
            name: "a flipped byte in a snapshot",
            base: "valid",
            damage: Box::new(|r| {
                flip(&r.join(format!("{SNAP_B}.sqlite.zst")), 100);
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("snapshot {b_file}: size or blake3 differs from its manifest")],
            restore: Restore::Restored(7, Some(4), vec![b_file.clone()]),
        },
        Case {
            name: "a snapshot that is not on the segments' chain",
            base: "valid",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["head_hash"] = golden::SEG1_HEAD_HEX.into());
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("snapshot {b_file}: its head hash at LSN 7 is not on the segments' chain")],
            restore: Restore::Restored(7, Some(4), vec![b_file.clone(), "not on the log's chain".into()]),
        },
        Case {
            name: "a manifest naming a path outside the repository",
            base: "valid",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["file"] = "../outside.sqlite.zst".into());
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("{b_json}: file name \"../outside.sqlite.zst\" refused: a manifest describes {b_file}")],
            restore: Restore::Restored(7, Some(4), vec![b_json.clone(), "refused".into()]),
        },
        Case {
            name: "a manifest naming another object (a segment)",
            base: "valid",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["file"] = SEG1_OBJECT.into());
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("{b_json}: file name \"{SEG1_OBJECT}\" refused")],
            restore: Restore::Restored(7, Some(4), vec![b_json.clone()]),
        },
        Case {
            name: "a manifest of repository format 4",
            base: "valid",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["format"] = 4.into());
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("{b_json}: written in repository format 4 (this build reads 1 to 3); upgrade candlelog")],
            restore: Restore::Restored(7, Some(4), vec![b_json.clone()]),
        },
        Case {
            name: "a manifest whose LSN is not its name's",
            base: "valid",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["lsn"] = 5.into());
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("{b_json}: its lsn 5 differs from the LSN in its name; refused")],
            restore: Restore::Restored(7, Some(4), vec![b_json.clone()]),
        },
        Case {
            name: "a manifest that is not JSON (cut in half)",
            base: "valid",
            damage: Box::new(|r| {
                let p = r.join(format!("{SNAP_B}.json"));
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() / 2]).unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("{b_json}: EOF while parsing")],
            restore: Restore::Restored(7, Some(4), vec![b_json.clone()]),
        },
        Case {
            name: "a manifest name that is not a manifest name",
            base: "valid",
            damage: Box::new(|r| {
                std::fs::copy(r.join(format!("{SNAP_B}.json")), r.join("snapshots/latest.json")).unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: strings(&["snapshots/latest.json: not a manifest name (snapshots/<lsn:020>-<created_ms>.json); refused"]),
            restore: Restore::Restored(7, Some(7), strings(&["snapshots/latest.json"])),
        },
        Case {
            name: "a snapshot without its manifest (a backup killed before publishing it)",
            base: "valid",
            damage: Box::new(|r| {
                std::fs::remove_file(r.join(format!("{SNAP_B}.json"))).unwrap();
                vec!["ok: 2 segment(s) up to LSN 7, 1 snapshot(s)".into()]
            }),
            verify: 0,
            verify_deep: 0,
            verify_says: vec![],
            restore: Restore::Restored(7, Some(4), vec![]),
        },
        Case {
            name: "hidden temporaries and stray names (ignored)",
            base: "valid",
            damage: Box::new(|r| {
                std::fs::write(r.join(".candlelog-repository.json.tmp-77"), "{\"format\": 2}\n").unwrap();
                std::fs::write(r.join(format!("segments/.00000000000000000003-{}.seg.tmp-77", "ab".repeat(32))), b"junk").unwrap();
                std::fs::write(r.join("segments/README"), b"not a segment").unwrap();
                std::fs::write(r.join("snapshots/.00000000000000000009-1769112099000.json.tmp-77"), b"{").unwrap();
                std::fs::write(r.join("snapshots/00000000000000000009-1769112099000.sqlite.zst"), b"unreferenced").unwrap();
                vec!["ok: 2 segment(s) up to LSN 7, 2 snapshot(s)".into()]
            }),
            verify: 0,
            verify_deep: 0,
            verify_says: vec![],
            restore: Restore::Restored(7, Some(7), vec![]),
        },
        Case {
            name: "log-start.json of format 4",
            base: "pruned",
            damage: Box::new(|r| {
                let p = r.join(LOG_START);
                let s = std::fs::read_to_string(&p).unwrap().replace("\"format\": 1", "\"format\": 4");
                std::fs::write(p, s).unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: strings(&["log-start.json: format 4 or start 2/5 not understood"]),
            restore: Restore::Refused(1, strings(&["log-start.json: format 4 or start 2/5 not understood"])),
        },
        Case {
            name: "a flipped byte in a delta snapshot object",
            base: "format3",
            damage: Box::new(|r| {
                flip(&r.join(format!("{SNAP_B}.delta.zst")), 40);
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("snapshot {SNAP_B}.delta.zst: size or blake3 differs from its manifest")],
            restore: Restore::Restored(7, Some(4), vec![format!("snapshot {SNAP_B}.delta.zst: size or blake3 differs from its manifest")]),
        },
        Case {
            name: "a delta whose parent is gone (its manifest deleted)",
            base: "format3",
            damage: Box::new(|r| {
                std::fs::remove_file(r.join(format!("{SNAP_A}.json"))).unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!(
                "snapshot {SNAP_B}.delta.zst: its parent {SNAP_A}.sqlite.zst is missing (no readable manifest describes it); it cannot be restored"
            )],
            restore: Restore::Restored(7, None, vec![format!("snapshot {SNAP_B}.delta.zst: its parent {SNAP_A}.sqlite.zst is missing")]),
        },
        Case {
            name: "a delta naming another database as its parent (parent_raw_blake3)",
            base: "format3",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["parent_raw_blake3"] = "ab".repeat(32).into());
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("snapshot {SNAP_B}.delta.zst: its parent {SNAP_A}.sqlite.zst holds another database")],
            restore: Restore::Restored(7, Some(4), vec![format!("its parent {SNAP_A}.sqlite.zst holds another database")]),
        },
        Case {
            name: "a delta in a manifest of format 2",
            base: "format3",
            damage: Box::new(|r| {
                edit_manifest(r, SNAP_B, |m| m["format"] = 2.into());
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!(
                "{SNAP_B}.json: snapshot {SNAP_B}.delta.zst: a delta (parent and parent_raw_blake3, both) exists from repository format 3 on"
            )],
            restore: Restore::Restored(7, Some(4), vec![format!("{SNAP_B}.json")]),
        },
        Case {
            name: "log-start.json with an upper-case base_hash",
            base: "pruned",
            damage: Box::new(|r| {
                let p = r.join(LOG_START);
                let s = std::fs::read_to_string(&p).unwrap().replace(golden::SEG1_HEAD_HEX, &golden::SEG1_HEAD_HEX.to_uppercase());
                std::fs::write(p, s).unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: strings(&["log-start.json: base_hash", "is not 64 lowercase hex digits"]),
            restore: Restore::Refused(1, strings(&["is not 64 lowercase hex digits"])),
        },
        Case {
            name: "log-start.json whose base is not the first segment's",
            base: "pruned",
            damage: Box::new(|r| {
                let p = r.join(LOG_START);
                let s = std::fs::read_to_string(&p).unwrap().replace(golden::SEG1_HEAD_HEX, &"00".repeat(32));
                std::fs::write(p, s).unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![format!("{SEG2_OBJECT} at byte offset 32: chain_break")],
            restore: Restore::Refused(1, strings(&["byte offset 32"])),
        },
        Case {
            name: "a pruned repository without its log-start.json",
            base: "pruned",
            damage: Box::new(|r| {
                std::fs::remove_file(r.join(LOG_START)).unwrap();
                vec![]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: strings(&["segment 1 is missing (next is 2)"]),
            restore: Restore::Refused(1, strings(&["segment 1 is missing (found 2 next)"])),
        },
        Case {
            name: "a snapshot before the log start",
            base: "pruned",
            damage: Box::new(|r| {
                let stem = "snapshots/00000000000000000003-1769097606000";
                std::fs::copy(r.join(format!("{SNAP_A}.sqlite.zst")), r.join(format!("{stem}.sqlite.zst"))).unwrap();
                let mut m = manifest_json(r, SNAP_A);
                m["lsn"] = 3.into();
                m["file"] = format!("{stem}.sqlite.zst").into();
                std::fs::write(r.join(format!("{stem}.json")), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
                vec![format!("snapshot {stem}.sqlite.zst: at LSN 3, before the log start (LSN 5)")]
            }),
            verify: 1,
            verify_deep: 1,
            verify_says: vec![],
            restore: Restore::Restored(7, Some(7), vec![]),
        },
        Case {
            name: "a segment below the log start (left by a killed prune; ignored)",
            base: "pruned",
            damage: Box::new(|r| {
                std::fs::copy(repository_dir().join("valid").join(SEG1_OBJECT), r.join(SEG1_OBJECT)).unwrap();
                vec!["ok: 1 segment(s) up to LSN 7, 2 snapshot(s)".into()]
            }),
            verify: 0,
            verify_deep: 0,
            verify_says: vec![],
            restore: Restore::Restored(7, Some(7), vec![]),
        },
    ]
}

#[test]
fn broken_variants_are_refused_as_the_spec_says() {
    for case in cases() {
        let name = case.name;
        let tmp = tempfile::tempdir().unwrap();
        let repo = copy_of(case.base, tmp.path());
        let mut says = (case.damage)(&repo);
        says.extend(case.verify_says.iter().cloned());
        for (deep, code) in [(false, case.verify), (true, case.verify_deep)] {
            let mut args = vec!["backup", "verify", "--from", s(&repo)];
            if deep {
                args.push("--deep");
            }
            let r = run(tmp.path(), &args);
            let out = format!("{}{}", r.stdout, r.stderr);
            assert_eq!(r.code, code, "{name}: verify (deep {deep}):\n{out}");
            if code == 0 && !deep {
                assert!(r.stdout.starts_with("ok: "), "{name}: {out}");
            }
            // A failing verify names what it refuses; a passing one says "ok".
            for x in says.iter().filter(|x| (code != 0) != x.starts_with("ok: ")) {
                assert!(out.contains(x.as_str()), "{name}: verify (deep {deep}) must say {x:?}:\n{out}");
            }
        }
        let into = tmp.path().join("restored");
        let r = run(tmp.path(), &["restore", "--from", s(&repo), "--into", s(&into), "--json"]);
        match &case.restore {
            Restore::Refused(code, what) => {
                assert_eq!(r.code, *code, "{name}: restore:\n{}{}", r.stdout, r.stderr);
                for x in what {
                    assert!(r.stderr.contains(x.as_str()), "{name}: restore must say {x:?}:\n{}", r.stderr);
                }
                assert!(!into.exists(), "{name}: nothing is moved into place");
            }
            Restore::Restored(head, snapshot, what) => {
                assert_eq!(r.code, 0, "{name}: restore:\n{}", r.stderr);
                let v = json(&r);
                assert_eq!((v["head_lsn"].as_u64(), v["snapshot_lsn"].as_u64()), (Some(*head), *snapshot), "{name}: {v}\n{}", r.stderr);
                for x in what {
                    assert!(r.stderr.contains(x.as_str()), "{name}: restore must warn {x:?}:\n{}", r.stderr);
                }
                assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), h4_rows(*head), "{name}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Writing: a backup taken today from the golden log has the golden layout.

/// A data directory whose log is the golden log (segments 1 and 2, LSN 1-7),
/// its projection rebuilt by the real binary.
fn golden_data_dir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("data");
    std::fs::create_dir_all(dir.join("log")).unwrap();
    for (seq, vector) in [(1, "sealed.seg"), (2, "event_format_2.seg")] {
        std::fs::copy(golden::vectors_dir().join(vector), dir.join(format!("log/{seq:020}.seg"))).unwrap();
    }
    let r = run(&dir, &["rebuild", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["head_lsn"], 7);
    dir
}

#[test]
fn a_backup_written_today_has_the_golden_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = golden_data_dir(tmp.path());
    let new = tmp.path().join("new");
    let r = run(&dir, &["backup", "--to", s(&new), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = &json(&r)[0];
    assert_eq!((report["segments_uploaded"].as_u64(), report["segments_present"].as_u64()), (Some(2), Some(0)), "{report}");

    let golden = repository_dir().join("format2");
    // The marker, byte for byte: format 3, the golden chain's identity.
    assert_eq!(std::fs::read(new.join(MARKER)).unwrap(), std::fs::read(repository_dir().join("format3").join(MARKER)).unwrap());
    // The segment objects: the same names and bytes.
    let segs = |root: &Path| -> Vec<(String, Vec<u8>)> {
        support::tree_files(root).into_iter().filter(|(n, _)| n.starts_with("segments/")).collect()
    };
    assert_eq!(segs(&new), segs(&golden));
    // One snapshot at the head, named after its LSN and creation time, with
    // exactly the golden manifest's keys and the same chain position and rows.
    let all = names(&new);
    let snaps: Vec<&String> = all.iter().filter(|n| n.starts_with("snapshots/")).collect();
    assert_eq!(snaps.len(), 2, "{all:?}");
    let manifest_name = snaps.iter().find(|n| n.ends_with(".json")).unwrap();
    let stem = manifest_name.strip_suffix(".json").unwrap();
    let mut m = manifest_json(&new, stem);
    let g = manifest_json(&golden, SNAP_B);
    // The frozen manifest predates `row_digests`; a backup records the digests
    // of the golden log's rows at LSN 7 (format/repository.md, "Row digests").
    let digests = m.as_object_mut().unwrap().remove("row_digests").unwrap();
    assert_eq!(digests, serde_json::json!({"ohlcv_d1": ROW_DIGEST_D1_AT_7, "ohlcv_h4": ROW_DIGEST_H4_AT_7}));
    assert_eq!(keys(&m), keys(&g));
    assert_eq!(*stem, format!("snapshots/{:020}-{}", 7, m["created_ms"]));
    assert_eq!(m["file"], format!("{stem}.sqlite.zst"));
    assert!(snaps.contains(&&format!("{stem}.sqlite.zst")), "{snaps:?}");
    assert_eq!(m["format"], 3);
    for k in ["lsn", "head_hash", "rows"] {
        assert_eq!(m[k], g[k], "{k}");
    }
    let file = std::fs::read(new.join(format!("{stem}.sqlite.zst"))).unwrap();
    assert_eq!(
        (m["file_bytes"].as_u64(), m["file_blake3"].as_str()),
        (Some(file.len() as u64), Some(blake3::hash(&file).to_hex().as_str()))
    );
    // Only these objects: no temporaries left behind.
    assert_eq!(all.len(), 1 + 2 + 2, "{all:?}");
    assert!(all.iter().all(|n| !n.split('/').any(|p| p.starts_with('.'))), "{all:?}");
    // What it wrote reads back as the golden repository does.
    let v = json(&run(tmp.path(), &["backup", "verify", "--from", s(&new), "--deep", "--json"]));
    assert_eq!((v["ok"].as_bool(), v["segments"].as_u64(), v["head_lsn"].as_u64()), (Some(true), Some(2), Some(7)), "{v}");

    // The next backup (the log now holds the first one's Run record and anchor, LSN 8-9)
    // is a delta of the first snapshot, with the golden delta's keys.
    let r = run(&dir, &["backup", "--to", s(&new), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = &json(&r)[0]["snapshot"];
    assert_eq!(d["parent"], m["file"], "{d}");
    assert_eq!(d["lsn"], 9, "{d}");
    assert!(d["file"].as_str().unwrap().ends_with(".delta.zst"), "{d}");
    let stem = d["file"].as_str().unwrap().strip_suffix(".delta.zst").unwrap();
    assert_eq!(keys(&manifest_json(&new, stem)), keys(&manifest_json(&repository_dir().join("format3"), SNAP_B)));
    let v = json(&run(tmp.path(), &["backup", "verify", "--from", s(&new), "--deep", "--json"]));
    assert_eq!((v["ok"].as_bool(), v["snapshots"].as_u64(), v["head_lsn"].as_u64()), (Some(true), Some(2), Some(9)), "{v}");
}

#[test]
fn a_prune_today_leaves_the_golden_pruned_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = golden_data_dir(tmp.path());
    let repo = copy_of("valid", tmp.path());
    // Segment 1 is committed before 2026-01-23 and ends at the oldest snapshot (LSN 4).
    let r = run(&dir, &["backup", "--to", s(&repo), "--snapshot", "--prune-segments-before", "2026-01-23", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = &json(&r)[0];
    assert_eq!((report["segments_uploaded"].as_u64(), report["segments_present"].as_u64()), (Some(0), Some(2)), "{report}");
    assert_eq!(report["pruned"]["pruned"], serde_json::json!([SEG1_OBJECT]));
    assert_eq!(report["pruned"]["first_seq"], 2);

    let golden = repository_dir().join("pruned");
    let segs = |root: &Path| -> Vec<String> { names(root).into_iter().filter(|n| n.starts_with("segments/")).collect() };
    assert_eq!(segs(&repo), segs(&golden));
    // The format-1 marker was upgraded by the backup: format 3 with the identity its segment 1 holds.
    assert_eq!(std::fs::read(repo.join(MARKER)).unwrap(), marker_v3_bytes());
    // log-start.json: the golden one, but for the time the prune ran and its format (2 now).
    let read = |root: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(root.join(LOG_START)).unwrap()).unwrap() };
    let (mut today, mut frozen) = (read(&repo), read(&golden));
    assert_eq!(keys(&today), keys(&frozen));
    assert!(today["pruned_at_ms"].as_i64().unwrap() > PRUNED_AT_MS);
    assert_eq!((today["format"].as_u64(), frozen["format"].as_u64()), (Some(3), Some(1)));
    for k in ["pruned_at_ms", "format"] {
        today.as_object_mut().unwrap().remove(k);
        frozen.as_object_mut().unwrap().remove(k);
    }
    assert_eq!(today, frozen);
    // The golden snapshots are still there, beside the one this backup took.
    for stem in [SNAP_A, SNAP_B] {
        for ext in [".json", ".sqlite.zst"] {
            let name = format!("{stem}{ext}");
            assert_eq!(std::fs::read(repo.join(&name)).unwrap(), std::fs::read(golden.join(&name)).unwrap(), "{name}");
        }
    }
    let v = json(&run(tmp.path(), &["backup", "verify", "--from", s(&repo), "--json"]));
    assert_eq!((v["ok"].as_bool(), v["first_lsn"].as_u64(), v["snapshots"].as_u64()), (Some(true), Some(5), Some(3)), "{v}");
}

#[test]
fn writers_and_recover_refuse_what_readers_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = golden_data_dir(tmp.path());

    // A repository of a newer format: backup writes nothing into it, recover reads nothing from it.
    let newer = copy_of("valid", tmp.path());
    std::fs::write(newer.join(MARKER), "{\"format\": 4}\n").unwrap();
    let before = support::tree_files(&newer);
    let r = run(&dir, &["backup", "--to", s(&newer)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("error: backup to {}: {} uses repository format 4", s(&newer), s(&newer))), "{}", r.stderr);
    assert_eq!(support::tree_files(&newer), before, "nothing written");
    let r = run(&dir, &["recover", "--from", s(&newer)]);
    assert_eq!(r.code, 1, "a repository this build cannot read is a failure, not a usage error (issue 9): {}", r.stderr);
    assert!(r.stderr.contains("uses repository format 4; this build reads formats 1 to 3: upgrade candlelog"), "{}", r.stderr);

    // A repository holding another history's segment 2: backup refuses to add a second one.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join("segments")).unwrap();
    std::fs::copy(repository_dir().join("valid").join(MARKER), other.join(MARKER)).unwrap();
    std::fs::copy(repository_dir().join("valid").join(SEG1_OBJECT), other.join(SEG1_OBJECT)).unwrap();
    let theirs = unsealed_segment_2(&other);
    let before = support::tree_files(&other);
    let r = run(&dir, &["backup", "--to", s(&other)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("holds {theirs} as segment 2, but this log's segment 2 is {SEG2_OBJECT}")), "{}", r.stderr);
    assert_eq!(support::tree_files(&other), before, "nothing written");
}
