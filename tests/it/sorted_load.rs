//! Issue 12: an import into a projection with no rows collects its rows and
//! inserts them sorted by key at the end; an import into one with rows
//! applies each commit sorted by key. Either way the table holds the newest
//! revision of every candle, exactly what a rebuild from the log gives.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{self, json, run, table_rows};

type Row = (i64, String, [u64; 6], i64);

/// The row the projection stores for a CSV line of `symbol`.
fn row_of(symbol: &str, line: &str) -> Row {
    let f: Vec<&str> = line.split(',').collect();
    let x = |i: usize| f[i].parse::<f64>().unwrap().to_bits();
    (f[0].parse().unwrap(), symbol.to_string(), [x(1), x(2), x(3), x(4), x(5), x(7)], f[8].parse().unwrap())
}

/// One changed volume: a revision of the candle at `at`.
fn revise(rows: &mut [String], at: usize, volume: &str) {
    let mut fields: Vec<String> = rows[at].split(',').map(str::to_string).collect();
    fields[5] = volume.into();
    rows[at] = fields.join(",");
}

fn add(expected: &mut BTreeMap<(i64, String), Row>, symbol: &str, rows: &[String]) {
    for r in rows {
        let row = row_of(symbol, r);
        expected.insert((row.0, row.1.clone()), row);
    }
}

fn import(dir: &Path, src: &Path) -> serde_json::Value {
    let r = run(dir, &["import", "--json", src.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    json(&r)
}

#[test]
fn issue_12_imports_into_an_empty_and_a_filled_projection_keep_the_newest_revision_in_key_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let db = dir.join("candles.sqlite");
    let mut expected = BTreeMap::new();

    // First import, into an empty store: two files hold REVUSDT's January
    // (path order: a/ then b/), the second with one candle changed; and
    // ZZZUSDT, read before AAAUSDT's rows would sort.
    let first = tmp.path().join("first");
    let (a, b) = (first.join("a"), first.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let rev = support::month_rows(3, 2024, 1);
    support::write_archive(&a, "REVUSDT", 2024, 1, &rev, true);
    let mut rev_b = rev.clone();
    revise(&mut rev_b, 40, "987654321");
    support::write_archive(&b, "REVUSDT", 2024, 1, &rev_b, true);
    let zzz = support::month_rows(4, 2024, 1);
    support::write_archive(&a, "ZZZUSDT", 2024, 1, &zzz, true);
    add(&mut expected, "REVUSDT", &rev_b);
    add(&mut expected, "ZZZUSDT", &zzz);
    let r = import(&dir, &first);
    assert_eq!(r["revisions"], 1, "{r}");
    assert_eq!(r["appended"], rev.len() * 2 + 1, "{r}");
    assert_eq!(table_rows(&db, "ohlcv_h4"), expected.values().cloned().collect::<Vec<_>>());

    // Second import, into the rows: a new month, a new symbol whose rows sort
    // between the others', and a revision of a stored candle.
    let second = tmp.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    let feb = support::month_rows(3, 2024, 2);
    support::write_archive(&second, "REVUSDT", 2024, 2, &feb, true);
    let mmm = support::month_rows(5, 2024, 1);
    support::write_archive(&second, "MMMUSDT", 2024, 1, &mmm, true);
    let mut zzz2 = zzz.clone();
    revise(&mut zzz2, 7, "424242424");
    support::write_archive(&second, "ZZZUSDT", 2024, 1, &zzz2, true);
    add(&mut expected, "REVUSDT", &feb);
    add(&mut expected, "MMMUSDT", &mmm);
    add(&mut expected, "ZZZUSDT", &zzz2);
    let r = import(&dir, &second);
    assert_eq!(r["revisions"], 1, "{r}");
    assert_eq!(r["appended"], feb.len() + mmm.len() + 1, "{r}");
    let table = table_rows(&db, "ohlcv_h4");
    assert_eq!(table, expected.values().cloned().collect::<Vec<_>>());
    let v = run(&dir, &["verify", "--deep"]);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);

    // The index and the projection agree with a rebuild from the log.
    let status = json(&run(&dir, &["status", "--json"]));
    assert_eq!(status["candles"], expected.len());
    assert_eq!(status["revisions"], 2);
    let r = run(&dir, &["rebuild"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(table_rows(&db, "ohlcv_h4"), table);
    assert_eq!(json(&run(&dir, &["status", "--json"]))["revisions"], 2);
}

#[test]
fn issue_12_an_import_killed_before_its_sorted_insert_is_caught_up_by_the_next_open() {
    // A store whose projection lags its log, as a kill -9 between the last
    // commit and the sorted insert leaves it: the next writer catches it up.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut expected = BTreeMap::new();
    for (k, sym) in ["BBBUSDT", "AAAUSDT"].iter().enumerate() {
        let rows = support::month_rows(k as u64 + 10, 2024, 3);
        support::write_archive(&src, sym, 2024, 3, &rows, true);
        add(&mut expected, sym, &rows);
    }
    import(&dir, &src);
    // Put the projection back to before the import: no rows, nothing applied.
    {
        let conn = rusqlite::Connection::open(dir.join("candles.sqlite")).unwrap();
        conn.execute_batch("DELETE FROM ohlcv_h4; DELETE FROM candlelog_state;").unwrap();
    }
    let r = run(&dir, &["status", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&dir, &["import", src.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), expected.values().cloned().collect::<Vec<_>>());
    let v = run(&dir, &["verify", "--deep"]);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
}

/// Issue 12: with one file per commit, each commit's index apply still runs
/// while the next file is planned (`Store::append_index_behind`). The next
/// files repeat the same month, identical, with one candle revised, and
/// reverted: each is de-duplicated against the commit before it, in flight
/// or applied, exactly as if the index were written in step.
#[test]
fn issue_12_each_file_is_deduplicated_against_the_commit_whose_index_apply_is_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let src = tmp.path().join("src");
    let rows = support::month_rows(6, 2024, 3);
    let mut revised = rows.clone();
    revise(&mut revised, 17, "123456789");
    // Path order: a (first), b (the same), c (one revised), d (the same again), e (reverted).
    for (sub, r) in [("a", &rows), ("b", &rows), ("c", &revised), ("d", &revised), ("e", &rows)] {
        let d = src.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        support::write_archive(&d, "INFUSDT", 2024, 3, r, true);
    }
    let r = run(&dir, &["import", "--json", "--group-files", "1", src.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = json(&r);
    let files: Vec<(u64, u64, u64)> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["appended"].as_u64().unwrap(), f["revisions"].as_u64().unwrap(), f["duplicates"].as_u64().unwrap()))
        .collect();
    let n = rows.len() as u64;
    assert_eq!(files, vec![(n, 0, 0), (0, 0, n), (1, 1, n - 1), (0, 0, n), (1, 1, n - 1)], "{r}");
    assert_eq!(r["appended"], n + 2, "{r}");
    let mut expected = BTreeMap::new();
    add(&mut expected, "INFUSDT", &rows);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), expected.values().cloned().collect::<Vec<_>>());
    let status = json(&run(&dir, &["status", "--json"]));
    assert_eq!((status["candles"].as_u64(), status["revisions"].as_u64()), (Some(n), Some(2)), "{status}");
    let v = run(&dir, &["verify", "--deep"]);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
}
