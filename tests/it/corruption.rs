//! Real flipped bytes: every flip inside a committed structure (segment
//! header, frame, footer) — in a sealed segment or the active one — makes
//! `verify` exit 1 naming that segment and the offset where the damaged
//! structure starts; a writer refuses to open over damage.

use std::path::Path;

use candlelog::log::{SegmentEnd, scan_segment};

use crate::support::{self, Rng, json, run};

/// Start offsets of the structures of a pristine segment: header, frames, footer.
fn structures(seg: &Path, is_last: bool) -> Vec<u64> {
    let data = std::fs::read(seg).unwrap();
    let seq = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let scan = scan_segment(seg, seq, &data, is_last, None);
    assert!(scan.damage.is_empty(), "pristine segment is damaged: {:?}", scan.damage);
    let mut starts = vec![0];
    starts.extend(scan.frames.iter().map(|f| f.offset));
    if let SegmentEnd::Sealed(f) = scan.end {
        starts.push(f.footer_offset);
    }
    starts
}

fn containing(starts: &[u64], offset: u64) -> u64 {
    *starts.iter().rev().find(|&&s| s <= offset).unwrap()
}

fn pristine(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("pristine");
    let fixtures = tmp.join("fixtures");
    support::gen_archives(&fixtures, 2, 2);
    assert_eq!(run(&dir, &["--segment-bytes", "6000", "import", "--group-files", "1", fixtures.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let segs = support::segments(&dir);
    assert!(segs.len() >= 3, "want sealed segments and an active one, got {}", segs.len());
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    dir
}

#[test]
fn every_flipped_byte_is_reported_with_its_segment_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pristine(tmp.path());
    let segs = support::segments(&dir);
    let mut rng = Rng(0xC0FFEE);
    for case in 0..40 {
        let k = if case % 4 == 0 { segs.len() - 1 } else { rng.below(segs.len() as u64) as usize };
        let seg = &segs[k];
        let len = std::fs::metadata(seg).unwrap().len();
        let offset = rng.below(len);
        let starts = structures(seg, k + 1 == segs.len());
        let work = tmp.path().join(format!("case{case}"));
        support::copy_dir(&dir, &work);
        let target = work.join("log").join(seg.file_name().unwrap());
        let mut bytes = std::fs::read(&target).unwrap();
        bytes[offset as usize] ^= 1 + rng.below(255) as u8;
        std::fs::write(&target, &bytes).unwrap();

        let r = run(&work, &["verify", "--json"]);
        assert_eq!(r.code, 1, "case {case}: flip at {}:{offset} not detected: {}", seg.display(), r.stdout);
        let v = json(&r);
        let expected = containing(&starts, offset);
        let name = target.display().to_string();
        let problems = v["problems"].as_array().unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p["path"] == name.as_str() && p["offset"].as_u64().is_some_and(|o| o == expected || (expected == 0 && o < 80))),
            "case {case}: flip at {name}:{offset} (structure at {expected}) not reported there: {problems:#?}"
        );
        // The human output names file and offset too.
        let text = run(&work, &["verify"]);
        assert!(text.stdout.contains(&name), "case {case}: {}", text.stdout);
        // A writer refuses to build on a damaged log, and changes nothing.
        let before = std::fs::read(&target).unwrap();
        let w = run(&work, &["import", support::shared_archives().to_str().unwrap()]);
        if k + 1 == segs.len() {
            assert_eq!(w.code, 1, "case {case}: writer opened over damage in the active segment: {}", w.stderr);
        }
        assert_eq!(std::fs::read(&target).unwrap(), before, "case {case}: damaged segment was modified");
    }
}

#[test]
fn a_flip_in_the_last_frame_of_the_active_segment_is_damage_not_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let seg = support::segments(&dir).pop().unwrap();
    let starts = structures(&seg, true);
    let last = *starts.last().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let len = bytes.len();
    for offset in [last as usize + 1, last as usize + 5, last as usize + 45, len - 1] {
        let mut b = bytes.clone();
        b[offset] ^= 0x40;
        std::fs::write(&seg, &b).unwrap();
        let r = run(&dir, &["verify", "--json"]);
        assert_eq!(r.code, 1, "flip at {offset}: {}", r.stdout);
        assert_eq!(json(&r)["problems"][0]["offset"], last);
        let w = run(&dir, &["import", support::shared_archives().to_str().unwrap()]);
        assert_eq!(w.code, 1, "{}", w.stderr);
        assert_eq!(std::fs::read(&seg).unwrap(), b, "the damaged frame must not be truncated away");
    }
    bytes.truncate(len);
    std::fs::write(&seg, &bytes).unwrap();
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn a_missing_sealed_segment_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pristine(tmp.path());
    let segs = support::segments(&dir);
    std::fs::remove_file(&segs[1]).unwrap();
    let r = run(&dir, &["verify", "--json"]);
    assert_eq!(r.code, 1);
    let v = json(&r);
    assert!(v["problems"].as_array().unwrap().iter().any(|p| p["kind"] == "missing_segment"), "{v}");
}

/// Issue 10, part 8: a writer checks the chain it extends. A flipped byte in
/// a frame of a *sealed* segment (which the writer used not to read) makes
/// import, init-then-import and rebuild refuse with the recover hint, and
/// nothing is appended on top of the damage.
#[test]
fn writers_refuse_to_extend_a_damaged_sealed_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pristine(tmp.path());
    let segs = support::segments(&dir);
    let sealed = &segs[0];
    let starts = structures(sealed, false);
    let frame = starts[1];
    let mut bytes = std::fs::read(sealed).unwrap();
    bytes[frame as usize + 60] ^= 0x04; // inside the first frame's payload
    std::fs::write(sealed, &bytes).unwrap();
    let before: Vec<Vec<u8>> = support::segments(&dir).iter().map(|p| std::fs::read(p).unwrap()).collect();
    for args in [&["import", support::shared_archives().to_str().unwrap()][..], &["init"]] {
        let r = run(&dir, args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(&format!("byte offset {frame}")), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("candlelog recover --from REPO"), "{args:?}: {}", r.stderr);
    }
    let after: Vec<Vec<u8>> = support::segments(&dir).iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(before, after, "nothing appended or truncated");
    // health's integrity check runs the same walk: CRITICAL, naming the offset.
    let h = run(&dir, &["health", "--json"]);
    assert_eq!(h.code, 2, "{}", h.stdout);
    let integrity = json(&h)["checks"].as_array().unwrap().iter().find(|c| c["name"] == "integrity").unwrap().clone();
    assert_eq!(integrity["status"], "CRITICAL", "{integrity}");
    assert!(integrity["message"].as_str().unwrap().contains(&format!("byte offset {frame}")), "{integrity}");
}

/// SQLite's varint at `b[at..]`: (value, bytes).
fn sqlite_varint(b: &[u8], at: usize) -> (u64, usize) {
    let mut v = 0u64;
    for i in 0..9 {
        let x = b[at + i];
        if i == 8 {
            return ((v << 8) | u64::from(x), 9);
        }
        v = (v << 7) | u64::from(x & 0x7f);
        if x & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    unreachable!()
}

/// Lowers by one the first key column of the first entry of index `index`
/// of the SQLite file `db` (its smallest entry, so the index stays in
/// order), writing the page's bytes in place: the entry no longer matches its
/// row. Returns the byte offset written.
fn lower_first_index_entry(db: &Path, index: &str) -> u64 {
    let (page_size, root): (i64, i64) = {
        let c = rusqlite::Connection::open(db).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        let page_size = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        let root = c.query_row("SELECT rootpage FROM sqlite_master WHERE name = ?1", [index], |r| r.get(0)).unwrap();
        (page_size, root)
    };
    let mut bytes = std::fs::read(db).unwrap();
    let page = |n: i64| ((n - 1) * page_size) as usize;
    let u16_at = |b: &[u8], at: usize| usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
    // Down the leftmost path to a leaf.
    let mut pgno = root;
    loop {
        let p = page(pgno);
        match bytes[p] {
            0x0a => break,
            0x02 => {
                let cell = p + u16_at(&bytes, p + 12);
                pgno = i64::from(u32::from_be_bytes(bytes[cell..cell + 4].try_into().unwrap()));
            }
            t => panic!("page {pgno} of {index} has type {t:#x}"),
        }
    }
    let p = page(pgno);
    let cell = p + u16_at(&bytes, p + 8);
    let (_, n) = sqlite_varint(&bytes, cell);
    let payload = cell + n;
    let (header_len, n) = sqlite_varint(&bytes, payload);
    let (serial, _) = sqlite_varint(&bytes, payload + n);
    let field = payload + header_len as usize;
    let len = match serial {
        1..=4 => serial as usize,
        5 => 6,
        6 => 8,
        s if s >= 13 && s % 2 == 1 => ((s - 13) / 2) as usize,
        s => panic!("serial type {s}"),
    };
    // The field minus one: a big-endian integer or the text's bytes, with borrow.
    for at in (field..field + len).rev() {
        let (v, borrow) = bytes[at].overflowing_sub(1);
        bytes[at] = v;
        if !borrow {
            break;
        }
    }
    std::fs::write(db, &bytes).unwrap();
    field as u64
}

/// Issue 12: `verify --deep` no longer runs `PRAGMA integrity_check`; an index
/// entry that disagrees with its row (a real byte changed in the index's page,
/// which `quick_check` does not see) is still found, for the primary key's
/// index and for the symbol index, and named.
#[test]
fn issue_12_an_index_entry_that_differs_from_its_row_is_found_by_verify_deep() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fixtures = tmp.path().join("fixtures");
    support::gen_archives(&fixtures, 3, 3);
    assert_eq!(run(&dir, &["import", fixtures.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    for index in ["sqlite_autoindex_ohlcv_h4_1", "idx_ohlcv_h4_symbol"] {
        let work = tmp.path().join(index);
        support::copy_dir(&dir, &work);
        let db = work.join("candles.sqlite");
        lower_first_index_entry(&db, index);
        only_integrity_check_sees(&db, "missing from index");
        let r = run(&work, &["verify", "--deep", "--json"]);
        assert_eq!(r.code, 1, "{index}: {}\n{}", r.stdout, r.stderr);
        let v = json(&r);
        let problems = v["problems"].as_array().unwrap();
        assert!(
            problems.iter().any(|p| p["kind"] == "integrity_check"
                && p["path"].as_str().unwrap().ends_with("candles.sqlite")
                && p["message"].as_str().unwrap().contains(index)),
            "{index}: {v:#}"
        );
        // The rows are untouched: only the index is blamed.
        assert!(problems.iter().all(|p| p["kind"] == "integrity_check"), "{index}: {v:#}");
        assert_eq!(run(&work, &["verify"]).code, 0, "{index}: the shallow verify reads no index");
    }
}

/// Moves the first row of `ohlcv_h4` to a new rowid, its values unchanged,
/// while index `index` is left out of the schema (`PRAGMA writable_schema`),
/// then puts the index back: it lacks the moved row's entry and keeps a stale
/// one for its old rowid, with as many entries as the table has rows.
fn move_a_row_behind_an_index(db: &Path, index: &str) {
    type Schema = (String, String, String, i64, Option<String>);
    let c = rusqlite::Connection::open(db).unwrap();
    let entry: Schema = c
        .query_row("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master WHERE name = ?1", [index], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap();
    c.execute_batch("PRAGMA writable_schema = ON").unwrap();
    assert_eq!(c.execute("DELETE FROM sqlite_master WHERE name = ?1", [index]).unwrap(), 1);
    drop(c);
    // A new connection reads the schema without the index: the move leaves it as it was.
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(
        "BEGIN;
         CREATE TEMP TABLE moved AS SELECT * FROM ohlcv_h4 WHERE rowid = (SELECT min(rowid) FROM ohlcv_h4);
         DELETE FROM ohlcv_h4 WHERE rowid = (SELECT min(rowid) FROM ohlcv_h4);
         INSERT INTO ohlcv_h4 SELECT * FROM moved;
         COMMIT;
         PRAGMA writable_schema = ON;",
    )
    .unwrap();
    c.execute(
        "INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![entry.0, entry.1, entry.2, entry.3, entry.4],
    )
    .unwrap();
    let version: i64 = c.query_row("PRAGMA schema_version", [], |r| r.get(0)).unwrap();
    c.execute_batch(&format!("PRAGMA schema_version = {}; PRAGMA writable_schema = OFF;", version + 1)).unwrap();
}

/// The damage at `db` is one `quick_check` cannot see and `integrity_check`
/// reports as `finding`: a real index-vs-table mismatch, not a torn page.
fn only_integrity_check_sees(db: &std::path::Path, finding: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    let quick: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
    assert_eq!(quick, "ok", "{}: the damage is one quick_check cannot see", db.display());
    let full: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert!(full.contains(finding), "{}: integrity_check should report {finding:?}: {full}", db.display());
}

/// Issue 12: an index that lacks a row's entry and holds a stale one instead
/// (same count, every entry in order, every row as the log says; made with
/// `PRAGMA writable_schema`, not by flipping bytes) passes `quick_check` but
/// not `integrity_check`, and `verify --deep` names the index. Guards the
/// structure audit's scans folded inside SQLite (src/projection/fold.rs): the
/// rowid of every entry must reach the digests on both sides.
#[test]
fn issue_12_an_index_lacking_a_rows_entry_is_found_by_verify_deep() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = support::imported_dir(tmp.path(), 3, 2);
    let index = "idx_ohlcv_h4_symbol";
    let db = dir.join("candles.sqlite");
    move_a_row_behind_an_index(&db, index);
    only_integrity_check_sees(&db, &format!("missing from index {index}"));
    let r = run(&dir, &["verify", "--deep", "--json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    let problems = v["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["kind"] == "integrity_check" && p["message"].as_str().unwrap().contains(index)), "{v:#}");
    // The rows still say what the log says: only the index is blamed.
    assert!(problems.iter().all(|p| p["kind"] == "integrity_check"), "{v:#}");
    // REINDEX, as the message says, repairs it.
    rusqlite::Connection::open(&db).unwrap().execute_batch(&format!("REINDEX {index}")).unwrap();
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

/// Issue 12: `verify --deep` checks every candle's invariants on its compact
/// path (candle parts, no `Candle` built) as the full decoder's path did. A
/// candle whose high lies below its close, in a frame whose hash is whole
/// (the log writer trusts its caller), is reported at its LSN: in a frame of
/// candles only (the compact path) and in a frame that also holds a run (the
/// full decoder's path).
#[test]
fn issue_12_an_invalid_candle_in_a_whole_frame_is_found_by_verify_deep() {
    use candlelog::event::{Candle, Decimal, Event, Interval, Run, RunKind, Symbol};
    use candlelog::log::LogWriter;

    let tmp = tempfile::tempdir().unwrap();
    let dir = support::imported_dir(tmp.path(), 2, 1);
    let candle = |k: i64, high: &str| {
        let d = |s: &str| Decimal::parse(s).unwrap();
        let open_time = 1_767_225_600_000 + k * 14_400_000;
        Event::Candle(Candle {
            symbol: Symbol::parse("ZZZUSDT").unwrap(),
            interval: Interval::H4,
            open_time,
            close_time: open_time + 14_400_000 - 1,
            open: d("1.0"),
            high: d(high),
            low: d("0.8"),
            close: d("1.5"),
            volume: d("10"),
            quote_volume: d("12"),
            trades: 3,
            taker_buy_volume: d("5"),
            taker_buy_quote_volume: d("6"),
        })
    };
    let run_record = Event::Run(Run { kind: RunKind::Import, id: "t".into(), started_ms: 1, ended_ms: 2, outcomes: vec![] });
    let (first, second) = {
        let (mut w, _) = LogWriter::open(&dir.join("log"), Default::default()).unwrap();
        let a = w.append(&[candle(0, "1.6"), candle(1, "1.4"), candle(2, "1.5")]).unwrap();
        let b = w.append(&[candle(3, "1.2"), run_record]).unwrap();
        (a[0].header.first_lsn, b[0].header.first_lsn)
    };
    let r = run(&dir, &["verify", "--deep", "--json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    let problems = v["problems"].as_array().unwrap();
    let invalid: Vec<(u64, &str)> = problems.iter().map(|p| (p["lsn"].as_u64().unwrap(), p["message"].as_str().unwrap())).collect();
    assert_eq!(invalid.len(), 2, "{v:#}");
    assert!(problems.iter().all(|p| p["kind"] == "invalid_candle"), "{v:#}");
    for ((lsn, message), want) in invalid.iter().zip([first + 1, second]) {
        assert_eq!(*lsn, want, "{v:#}");
        assert!(message.contains("ZZZUSDT 4h") && message.contains("field high"), "{message}");
    }
    // Every event of both frames was decoded and counted.
    assert_eq!(v["events"].as_u64().unwrap(), second + 1, "{v:#}");
}
