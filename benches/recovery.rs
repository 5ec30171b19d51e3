//! Recovery benchmark driver (run once per size, timed step by step; not
//! criterion), for issue 12's targets 4 and 5. Per size: a store of SYMBOLS
//! 4h series, a backup taken before the last tenth of the candles (the tail),
//! then a day more and an incremental backup whose snapshot is removed (so
//! recovery replays the tail); then, RUNS times, interleaved:
//! - `recover` after the projection is destroyed (snapshot + tail replay +
//!   deep verify), each step timed;
//! - the replaced system's way: `PRAGMA integrity_check` of the newest backup
//!   file, then copying it over (which loses every candle after it); that file
//!   has SQLite's default 4 KiB pages, as the replaced system's database had
//!   (candlelog's projection has 16 KiB, on which `integrity_check` is slower);
//! - `zstd -d` of the snapshot file (the CLI when `zstd` is on PATH, else the
//!   zstd crate's streaming decoder, said so in the output) against
//!   `snapshot::unpack_to` of the same file (hashes checked, written durably),
//!   and `zstd -d` followed by an `fdatasync` of what it wrote (the same
//!   durability: `zstd -d` leaves its output in the page cache); which of the
//!   two goes first alternates from run to run;
//! - `verify --deep` of the recovered directory against `PRAGMA
//!   integrity_check` alone of its projection (the same bundled SQLite), and
//!   of a copy of it with 4 KiB pages (printed beside it).
//!
//! - before that, NIGHTS (3) nightly backups after one more day each
//!   (SYMBOLS × 6 4h candles), to a repository taking full snapshots (the way
//!   before issue 12), one taking delta snapshots and one spaced (a snapshot
//!   once the log since the last is 2 % of it), interleaved, then a restore
//!   from the last two (target 6). NIGHTS=7 ends the 1 M and 3 M runs on a
//!   night the spaced repository sent only its segment.
//!
//! Each timed step starts after a `sync` and a pause (SETTLE_MS, 2000), so none
//! pays for the writes of the one before: on a virtual disk the host can still be
//! writing them back after `sync` returns, and a restore right after the heavy
//! steps took 0.77–0.85 s where a calm disk gives 0.31 s (3 M).
//! Medians are printed with the ratios the issue asks for (of the medians, and
//! the median of each run's ratio: a run's pair runs back to back), and the load average.
//!
//! `cargo bench --bench recovery` runs 1 M, 3 M and 10 M candles (2,000
//! symbols). Env: SIZES (comma-separated candle counts, e.g. `SIZES=100000`),
//! SYMBOLS (2000), RUNS (3), NIGHTS (3), SETTLE_MS (2000), KEEP_DIR (keep the stores there for profiling).

use std::path::Path;
use std::time::Instant;

use candlelog::backup::{DeltaPolicy, DirRepository, Repository, SnapshotPolicy, backup, backup_with};
use candlelog::event::{Candle, Decimal, Event, Interval, Symbol};
use candlelog::ops::recover::recover;
use candlelog::store::{Paths, Store, StoreOptions, init};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn candles(symbols: u64, from: u64, to: u64) -> Vec<Event> {
    const H4: i64 = 4 * 3_600_000;
    let base = 1_577_836_800_000; // 2020-01-01
    let d = |m: u64, s: u8| Decimal::from_parts(false, u128::from(m), s).unwrap_or_default();
    let mut out = Vec::with_capacity(((to - from) * symbols) as usize);
    for s in 0..symbols {
        let symbol = Symbol::parse(&format!("S{s}USDT")).unwrap();
        for i in from..to {
            let h = (s * 2_654_435_761 + i * 40_503) % 100_000;
            let open = 1_000_000 + h;
            let close = 1_000_000 + (h * 7 + 13) % 100_000;
            let open_time = base + i as i64 * H4;
            out.push(Event::Candle(Candle {
                symbol: symbol.clone(),
                interval: Interval::H4,
                open_time,
                close_time: open_time + H4 - 1,
                open: d(open, 6),
                high: d(open.max(close) + 500, 6),
                low: d(open.min(close) - 500, 6),
                close: d(close, 6),
                volume: d(h * 37, 0),
                quote_volume: d(h * 37 * open / 1000, 6),
                trades: h % 5000,
                taker_buy_volume: d(h * 18, 0),
                taker_buy_quote_volume: d(h * 18 * open / 1000, 6),
            }));
        }
    }
    out
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() { dir_bytes(&e.path()) } else { m.len() };
    }
    total
}

/// Nightly backups after one more day each, to a repository that takes a
/// full snapshot every time (as before issue 12), one that takes deltas, and
/// one spaced (the default, `snapshot_tail_percent = 2`: segments only until the log since
/// its snapshot is 2 % of it), the order rotating night by night; prints each,
/// the medians and the means (a spaced repository's cost per night over its
/// snapshot cycle), then restores the head from the delta and the spaced
/// repositories (each one verified step; the spaced one replays its tail).
fn nightly(store: &mut Store, tmp: &std::path::Path, symbols: u64, from: u64, nights: u64) {
    let full_policy = SnapshotPolicy { delta: DeltaPolicy { chain_max: 0, ..DeltaPolicy::default() }, ..SnapshotPolicy::every_backup() };
    let repos = [
        ("full", DirRepository::open(&tmp.join("repo-full")).unwrap(), full_policy),
        ("delta", DirRepository::open(&tmp.join("repo-delta")).unwrap(), SnapshotPolicy::every_backup()),
        ("spaced", DirRepository::open(&tmp.join("repo-spaced")).unwrap(), SnapshotPolicy::default()),
    ];
    for (name, repo, policy) in &repos {
        let t = Instant::now();
        let r = backup_with(store, repo, *policy).unwrap();
        println!("nightly: first backup to the {name} repository: {:.1} s, {} bytes", t.elapsed().as_secs_f64(), r.bytes_uploaded);
        if let Some(a) = &r.anchor {
            store.append(&[Event::Anchor(a.clone())]).unwrap();
        }
    }
    let mut results: [Vec<(f64, u64)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for night in 0..nights {
        store.append(&candles(symbols, from + night * 6, from + night * 6 + 6)).unwrap();
        for k in 0..3 {
            let i = (k + night as usize) % 3;
            let (name, repo, policy) = &repos[i];
            let t = Instant::now();
            let r = backup_with(store, repo, *policy).unwrap();
            let secs = t.elapsed().as_secs_f64();
            // As the `backup` command does: the snapshot's anchor lets the next night carry the log's digests.
            if let Some(a) = &r.anchor {
                store.append(&[Event::Anchor(a.clone())]).unwrap();
            }
            let snap = match &r.snapshot {
                Some(s) => format!("snapshot {} bytes{}", s.file_bytes, if s.parent.is_some() { ", a delta" } else { "" }),
                None => "segments only".to_string(),
            };
            println!(
                "nightly {night}: {name:<6} backup after one more day ({} candles): {secs:.2} s, {} bytes uploaded ({snap})",
                symbols * 6,
                r.bytes_uploaded,
            );
            results[i].push((secs, r.bytes_uploaded));
        }
    }
    for (i, (name, _, _)) in repos.iter().enumerate() {
        let mut t: Vec<f64> = results[i].iter().map(|r| r.0).collect();
        let mut b: Vec<u64> = results[i].iter().map(|r| r.1).collect();
        t.sort_by(f64::total_cmp);
        b.sort();
        if let (Some(t), Some(b)) = (t.get(t.len() / 2), b.get(b.len() / 2)) {
            println!("nightly median, {name}: {t:.2} s, {b} bytes uploaded");
        }
        let n = results[i].len().max(1) as f64;
        let (t, b) = results[i].iter().fold((0.0, 0), |(t, b), r| (t + r.0, b + r.1));
        println!("nightly mean, {name}: {:.2} s, {:.0} bytes uploaded per night", t / n, b as f64 / n);
    }
    for (name, repo, _) in &repos[1..] {
        let into = tmp.join(format!("restored-{name}"));
        let t = Instant::now();
        let r = candlelog::ops::restore::restore(repo, &into, candlelog::ops::restore::Cut::Head, false).unwrap();
        println!(
            "nightly: restore of the head from the {name} repository: {:.2} s (snapshot at LSN {:?}, head {})",
            secs(t),
            r.snapshot_lsn,
            r.head_lsn
        );
        let _ = std::fs::remove_dir_all(&into);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// `PRAGMA integrity_check` of `db` on a connection of its own (bundled SQLite).
fn integrity_check(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

/// Rewrites the database at `db` (no WAL beside it) with SQLite's default
/// 4 KiB pages (untimed): what the replaced system's plain SQLite file had.
fn with_default_pages(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA page_size=4096; VACUUM;").unwrap();
    assert_eq!(conn.query_row("PRAGMA page_size", [], |r| r.get::<_, u32>(0)).unwrap(), 4096);
}

/// A copy of the database at `db` (its WAL included) at `out`, with 4 KiB pages.
fn default_pages_copy(db: &Path, out: &Path) {
    let _ = std::fs::remove_file(out);
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute("VACUUM INTO ?1", [out.to_str().unwrap()]).unwrap();
    with_default_pages(out);
}

fn main() {
    let symbols = env("SYMBOLS", 2000);
    let runs = env("RUNS", 3).max(1) as usize;
    let sizes: Vec<u64> = std::env::var("SIZES")
        .unwrap_or_else(|_| "1000000,3000000,10000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let zstd_cli = std::process::Command::new("zstd").arg("--version").output().is_ok_and(|o| o.status.success());
    println!(
        "commit {}; zstd reference: {}",
        std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        if zstd_cli { "`zstd -d` (CLI)" } else { "zstd crate streaming decoder (no zstd CLI on PATH)" }
    );
    let mut summary = Vec::new();
    for size in sizes {
        summary.push(one_size(symbols, size, runs, zstd_cli));
    }
    println!("\nsummary (medians of {runs}; ratio = candlelog ÷ reference, of the medians (and the median of each run's ratio))");
    println!(
        "| candles | recover | replaced way | ratio | unpack_to | zstd -d | ratio | zstd -d + fdatasync | ratio | verify --deep | integrity_check | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for line in summary {
        println!("{line}");
    }
}

/// Writes back every dirty page (`sync`), so a timed step does not pay for the
/// writes of the one before it (a copy left in the page cache is written back
/// while the next step waits on the disk).
fn settle() {
    let _ = std::process::Command::new("sync").status();
    let ms = std::env::var("SETTLE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

fn one_size(symbols: u64, size: u64, runs: usize, zstd_cli: bool) -> String {
    let per = (size / symbols).max(2);
    let tail_per = (per / 10).max(1);
    // KEEP_DIR=path keeps the stores (data, repo) there for profiling afterwards.
    let (_guard, tmp) = match std::env::var_os("KEEP_DIR") {
        Some(d) => (None, tempfile::Builder::new().prefix("recovery-").tempdir_in(d).unwrap().keep()),
        None => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let paths = Paths::new(&tmp.join("data"), None);
    init(&paths).unwrap();
    let repo_dir = tmp.join("repo");
    let repo = DirRepository::open(&repo_dir).unwrap();
    let total = symbols * per;
    println!("\n== {symbols} symbols × {per} 4h candles = {total} candles; tail after the backup {}", symbols * tail_per);

    let t = Instant::now();
    let mut store = Store::open(&paths, StoreOptions::default()).unwrap();
    store.begin_bulk().unwrap();
    for chunk in (0..per - tail_per).step_by(250) {
        store.append(&candles(symbols, chunk, (chunk + 250).min(per - tail_per))).unwrap();
    }
    store.end_bulk().unwrap();
    println!("load before backup: {:.1} s", secs(t));

    let t = Instant::now();
    let r = backup(&mut store, &repo).unwrap();
    println!("backup: {:.1} s, {} bytes ({} segments)", secs(t), r.bytes_uploaded, r.segments_uploaded);
    let manifest = r.snapshot.unwrap();
    let snapshot_file = repo_dir.join(&manifest.file);

    let t = Instant::now();
    store.append(&candles(symbols, per - tail_per, per)).unwrap();
    println!("tail of {} candles committed: {:.1} s", symbols * tail_per, secs(t));

    // An incremental backup after one more "sync" (a day of candles per symbol).
    store.append(&candles(symbols, per, per + 6)).unwrap();
    let before = dir_bytes(&repo_dir);
    let t = Instant::now();
    let r2 = backup(&mut store, &repo).unwrap();
    println!(
        "incremental backup: {:.1} s, {} bytes uploaded ({} new segments, {} already there), repository grew {} bytes",
        secs(t),
        r2.bytes_uploaded,
        r2.segments_uploaded,
        r2.segments_present,
        dir_bytes(&repo_dir) - before
    );
    nightly(&mut store, &tmp, symbols, per + 6, env("NIGHTS", 3));
    // Drop the second snapshot so recovery needs the tail replay.
    if let Some(m2) = r2.snapshot {
        repo.delete(&m2.file).unwrap();
        repo.delete(&m2.manifest_name()).unwrap();
    }
    drop(store);

    // The replaced system's backup file: the snapshot, unpacked (untimed).
    let legacy_backup = tmp.join("legacy-backup.sqlite");
    candlelog::snapshot::unpack_to(&manifest, std::fs::File::open(&snapshot_file).unwrap(), &legacy_backup).unwrap();
    with_default_pages(&legacy_backup);

    let (mut rec, mut old, mut unpack, mut zstd_d, mut deep, mut check) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut zstd_durable = vec![];
    let mut check4 = vec![];
    for run in 1..=runs {
        // Disaster: the projection is destroyed.
        for f in ["candles.sqlite-wal", "candles.sqlite-shm"] {
            let _ = std::fs::remove_file(paths.root.join(f));
        }
        std::fs::write(&paths.projection, b"destroyed").unwrap();
        settle();
        let t = Instant::now();
        let rep = recover(&paths, &[&repo as &dyn Repository], StoreOptions::default()).unwrap();
        rec.push(secs(t));
        println!("run {run} (load {}): recover {:.2} s end to end, ok = {}", load(), rec[run - 1], rep.ok);
        for s in &rep.steps {
            println!("  {:<17} {:>8} ms  {}", s.name, s.ms, s.detail);
        }
        assert!(rep.ok, "{rep:?}");
        let _ = std::fs::remove_dir_all(paths.root.join("quarantine"));

        // The replaced system's way: integrity_check of the newest backup file, then copy it over.
        settle();
        let t = Instant::now();
        let ok = integrity_check(&legacy_backup);
        std::fs::copy(&legacy_backup, tmp.join("legacy-restored.sqlite")).unwrap();
        old.push(secs(t));
        println!(
            "  replaced way (integrity_check {ok} + copy): {:.2} s, losing the {} candles after the backup",
            old[run - 1],
            symbols * (tail_per + 6)
        );

        // Restoring the snapshot file alone, against zstd -d of it. The order
        // alternates from run to run: whichever goes first follows the heavy
        // writes above, and this guest's disk can stay slow for a second after
        // a `sync` returns (the host still writing them back).
        let out = tmp.join("unpacked.sqlite");
        let ours = || {
            settle();
            let t = Instant::now();
            candlelog::snapshot::unpack_to(&manifest, std::fs::File::open(&snapshot_file).unwrap(), &out).unwrap();
            let durable = secs(t);
            let _ = std::fs::remove_file(&out);
            // The same without the fsync that makes the restored file durable (as zstd -d writes it).
            settle();
            let t = Instant::now();
            candlelog::snapshot::unpack_scratch(&manifest, std::fs::File::open(&snapshot_file).unwrap(), &out).unwrap();
            let scratch = secs(t);
            let _ = std::fs::remove_file(&out);
            (durable, scratch)
        };
        let reference = || {
            settle();
            let t = Instant::now();
            if zstd_cli {
                let st = std::process::Command::new("zstd").args(["-d", "-q", "-f", "-o"]).arg(&out).arg(&snapshot_file).status().unwrap();
                assert!(st.success());
            } else {
                let mut w = std::fs::File::create(&out).unwrap();
                zstd::stream::copy_decode(std::fs::File::open(&snapshot_file).unwrap(), &mut w).unwrap();
            }
            let plain = secs(t);
            std::fs::File::open(&out).unwrap().sync_data().unwrap();
            let durable = secs(t);
            let _ = std::fs::remove_file(&out);
            (plain, durable)
        };
        let ((durable, scratch), (plain, plain_durable)) = if run % 2 == 1 {
            let o = ours();
            (o, reference())
        } else {
            let r = reference();
            (ours(), r)
        };
        unpack.push(durable);
        zstd_d.push(plain);
        zstd_durable.push(plain_durable);
        println!(
            "  snapshot: unpack_to {:.2} s ({scratch:.2} s without its fsync), zstd -d {:.2} s, and its output's fdatasync {:.2} s",
            unpack[run - 1],
            zstd_d[run - 1],
            zstd_durable[run - 1]
        );

        // verify --deep of the recovered directory against integrity_check alone.
        settle();
        let t = Instant::now();
        let ok = integrity_check(&paths.projection);
        check.push(secs(t));
        let t = Instant::now();
        let v = candlelog::ops::verify::verify(&paths, true).unwrap();
        deep.push(secs(t));
        assert!(v.ok, "{:?}", v.problems);
        let copy = tmp.join("pages-4k.sqlite");
        default_pages_copy(&paths.projection, &copy);
        settle();
        let t = Instant::now();
        let ok4 = integrity_check(&copy);
        check4.push(secs(t));
        let _ = std::fs::remove_file(&copy);
        println!(
            "  verify --deep {:.2} s ({} candles); integrity_check alone {:.2} s ({ok}); of a 4 KiB-page copy {:.2} s ({ok4})",
            deep[run - 1],
            v.candles,
            check[run - 1],
            check4[run - 1]
        );
    }
    // Each run's pair ran back to back: the median of their ratios is the
    // figure least moved by the host's speed drifting between runs.
    let by_run = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(a, b)| a / b).collect());
    let paired = [by_run(&rec, &old), by_run(&unpack, &zstd_d), by_run(&deep, &check), by_run(&unpack, &zstd_durable)];
    let (rec, old, unpack, zstd_d, deep, check) = (median(rec), median(old), median(unpack), median(zstd_d), median(deep), median(check));
    let zstd_durable = median(zstd_durable);
    println!(
        "medians at {total} candles: recover {rec:.2} s vs replaced way {old:.2} s = {:.2}; unpack_to {unpack:.2} s vs zstd -d {zstd_d:.2} s = {:.2}; verify --deep {deep:.2} s vs integrity_check {check:.2} s = {:.2}",
        rec / old,
        unpack / zstd_d,
        deep / check
    );
    println!("median of each run's ratio: recover {:.2}, unpack_to {:.2}, verify --deep {:.2}", paired[0], paired[1], paired[2]);
    println!(
        "unpack_to vs zstd -d with its output fdatasynced (the same durability): {unpack:.2} s vs {zstd_durable:.2} s = {:.2} ({:.2})",
        unpack / zstd_durable,
        paired[3]
    );
    let check4 = median(check4);
    println!("verify --deep vs integrity_check of a 4 KiB-page copy: {deep:.2} s vs {check4:.2} s = {:.2}", deep / check4);
    format!(
        "| {total} | {rec:.2} s | {old:.2} s | {:.2} ({:.2}) | {unpack:.2} s | {zstd_d:.2} s | {:.2} ({:.2}) | {zstd_durable:.2} s | {:.2} ({:.2}) | {deep:.2} s | {check:.2} s | {:.2} ({:.2}) |",
        rec / old,
        paired[0],
        unpack / zstd_d,
        paired[1],
        unpack / zstd_durable,
        paired[3],
        deep / check,
        paired[2]
    )
}
