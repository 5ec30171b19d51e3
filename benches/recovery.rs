//! Recovery benchmark driver (run once, timed step by step; not criterion):
//! a store of SYMBOLS × CANDLES 4h candles (default 2,000 × 5,000 = 10,000,000),
//! a backup taken before the last TAIL candles (default 1,000,000), the
//! projection destroyed, then `recover` (snapshot + tail replay + deep verify)
//! against the replaced system's way (integrity_check of the newest backup
//! file, then copying it over, losing every candle after it). Also a backup
//! and an incremental backup (time and bytes), then NIGHTS nightly backups after one
//! more day each (SYMBOLS × 6 4h candles), to a repository taking full snapshots (the
//! way before issue 12) and one taking delta snapshots, interleaved (issue 12, target 6).
//!
//! `cargo bench --bench recovery` (env SYMBOLS, CANDLES, TAIL, NIGHTS to scale down; KEEP_DIR
//! to keep the stores for profiling).

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

fn dir_bytes(p: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() { dir_bytes(&e.path()) } else { m.len() };
    }
    total
}

/// Nightly backups after one more day each, to a repository that takes a
/// full snapshot every time (as before issue 12) and to one that takes deltas,
/// the order alternating night by night; prints each and the medians.
fn nightly(store: &mut Store, tmp: &std::path::Path, symbols: u64, from: u64, nights: u64) {
    let full_policy = SnapshotPolicy { every_ms: None, delta: DeltaPolicy { chain_max: 0, ..DeltaPolicy::default() } };
    let delta_policy = SnapshotPolicy::default();
    let repos = [
        ("full", DirRepository::open(&tmp.join("repo-full")).unwrap(), full_policy),
        ("delta", DirRepository::open(&tmp.join("repo-delta")).unwrap(), delta_policy),
    ];
    for (name, repo, policy) in &repos {
        let t = Instant::now();
        let r = backup_with(store, repo, *policy).unwrap();
        println!("nightly: first backup to the {name} repository: {:.1} s, {} bytes", t.elapsed().as_secs_f64(), r.bytes_uploaded);
    }
    let mut results: [Vec<(f64, u64)>; 2] = [Vec::new(), Vec::new()];
    for night in 0..nights {
        store.append(&candles(symbols, from + night * 6, from + night * 6 + 6)).unwrap();
        let order: [usize; 2] = if night % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (name, repo, policy) = &repos[i];
            let t = Instant::now();
            let r = backup_with(store, repo, *policy).unwrap();
            let secs = t.elapsed().as_secs_f64();
            let snap = r.snapshot.as_ref().unwrap();
            println!(
                "nightly {night}: {name:<5} backup after one more day ({} candles): {secs:.1} s, {} bytes uploaded (snapshot {} bytes{})",
                symbols * 6,
                r.bytes_uploaded,
                snap.file_bytes,
                if snap.parent.is_some() { ", a delta" } else { "" }
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
            println!("nightly median, {name}: {t:.1} s, {b} bytes uploaded");
        }
    }
}

fn main() {
    let (symbols, per, tail) = (env("SYMBOLS", 2000), env("CANDLES", 5000), env("TAIL", 1_000_000));
    let tail_per = (tail / symbols).min(per);
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
    println!("store: {symbols} symbols × {per} 4h candles = {} candles; tail after the backup {}", symbols * per, symbols * tail_per);

    let t = Instant::now();
    let mut store = Store::open(&paths, StoreOptions::default()).unwrap();
    store.begin_bulk().unwrap();
    for chunk in (0..per - tail_per).step_by(250) {
        store.append(&candles(symbols, chunk, (chunk + 250).min(per - tail_per))).unwrap();
    }
    store.end_bulk().unwrap();
    println!("load before backup: {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let r = backup(&mut store, &repo).unwrap();
    println!("backup: {:.1} s, {} bytes ({} segments)", t.elapsed().as_secs_f64(), r.bytes_uploaded, r.segments_uploaded);
    let snapshot_file = repo_dir.join(&r.snapshot.as_ref().unwrap().file);

    let t = Instant::now();
    store.append(&candles(symbols, per - tail_per, per)).unwrap();
    println!("tail of {} candles committed: {:.1} s", symbols * tail_per, t.elapsed().as_secs_f64());

    // An incremental backup after one more "sync" (a day of candles per symbol).
    store.append(&candles(symbols, per, per + 6)).unwrap();
    let before = dir_bytes(&repo_dir);
    let t = Instant::now();
    let r2 = backup(&mut store, &repo).unwrap();
    println!(
        "incremental backup: {:.1} s, {} bytes uploaded ({} new segments, {} already there), repository grew {} bytes",
        t.elapsed().as_secs_f64(),
        r2.bytes_uploaded,
        r2.segments_uploaded,
        r2.segments_present,
        dir_bytes(&repo_dir) - before
    );
    nightly(&mut store, &tmp, symbols, per + 6, env("NIGHTS", 3));
    // Drop the second snapshot so recovery needs the tail replay.
    let m2 = r2.snapshot.unwrap();
    repo.delete(&m2.file).unwrap();
    repo.delete(&m2.manifest_name()).unwrap();
    drop(store);

    // Disaster: the projection is destroyed.
    std::fs::write(&paths.projection, b"destroyed").unwrap();
    let t = Instant::now();
    let rep = recover(&paths, &[&repo as &dyn Repository], StoreOptions::default()).unwrap();
    println!("recover: {:.1} s end to end, ok = {}", t.elapsed().as_secs_f64(), rep.ok);
    for s in &rep.steps {
        println!("  {:<17} {:>8} ms  {}", s.name, s.ms, s.detail);
    }

    // The replaced system's way: integrity_check of the newest backup file, then copy it over.
    let legacy_backup = tmp.join("legacy-backup.sqlite");
    candlelog::snapshot::unpack_to(&r.snapshot.unwrap(), std::fs::File::open(&snapshot_file).unwrap(), &legacy_backup).unwrap();
    let t = Instant::now();
    let conn = rusqlite::Connection::open(&legacy_backup).unwrap();
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    drop(conn);
    std::fs::copy(&legacy_backup, tmp.join("legacy-restored.sqlite")).unwrap();
    println!(
        "replaced system (integrity_check {ok} + copy of the newest backup): {:.1} s, and it loses the {} candles after that backup",
        t.elapsed().as_secs_f64(),
        symbols * tail_per + symbols * 6
    );
}
