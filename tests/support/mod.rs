//! Shared helpers for the integration tests: run the real binary, generate
//! data.binance.vision-style archives, read the projection.

#![allow(dead_code)]

pub mod s3;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::Digest;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_candlelog"));
    c.env_remove("CANDLELOG_DATA_DIR").env_remove("RUST_LOG");
    // `candlelog run` serves HTTP on 127.0.0.1:9469 by default: tests running side by side
    // (and whatever else holds that port) must not collide, so any free port unless told.
    c.env("CANDLELOG_LISTEN", "127.0.0.1:0");
    c
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `candlelog --data-dir DIR ARGS...`.
pub fn run(dir: &Path, args: &[&str]) -> Run {
    let out = bin().arg("--data-dir").arg(dir).args(args).output().expect("spawn candlelog");
    finish(out)
}

pub fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", r.stdout, r.stderr))
}

/// `../shared/data/binance`, the real exchange data the tests read in place.
/// Without it the whole test binary stops at the first test that needs it,
/// with one line saying what is missing (not a panic per test).
pub fn shared_data() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/binance");
    if !p.is_dir() {
        // On the real stderr: libtest captures eprintln!, and the exit would swallow it.
        let _ = writeln!(
            std::io::stderr(),
            "error: the tests read real exchange data in place from {}, which is missing: check out `shared/` beside this repository",
            p.display()
        );
        std::process::exit(1);
    }
    p
}

/// The real SKRUSDT archives in ../shared/data.
pub fn shared_archives() -> PathBuf {
    shared_data().join("data.binance.vision/futures/um/monthly/klines/SKRUSDT/4h")
}

pub fn shared_klines_json() -> PathBuf {
    shared_data().join("SKRUSDT-4h-klines.json")
}

/// A small deterministic generator (xorshift) so fixtures never change.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub const H4: i64 = 4 * 3600 * 1000;

/// 4h CSV rows for one calendar month: `(open_time, line)`.
pub fn month_rows(symbol_seed: u64, year: i32, month: u8) -> Vec<String> {
    let start = month_start(year, month);
    let end = if month == 12 { month_start(year + 1, 1) } else { month_start(year, month + 1) };
    let mut rng = Rng(symbol_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (start as u64) | 1);
    let mut price: i64 = 1_000_000 + rng.below(50_000_000) as i64; // in 1e-6 units
    let mut rows = Vec::new();
    let mut t = start;
    while t < end {
        let open = price;
        let close = (open + rng.below(20_001) as i64 - 10_000).max(1000);
        let high = open.max(close) + rng.below(5_000) as i64;
        let low = (open.min(close) - rng.below(5_000) as i64).max(1);
        let volume = rng.below(10_000_000);
        let quote = volume as u128 * open as u128 / 1_000_000;
        let trades = rng.below(100_000);
        let tbv = volume / 2;
        let f6 = |v: i64| format!("{}.{:06}", v / 1_000_000, v % 1_000_000);
        rows.push(format!(
            "{t},{},{},{},{},{volume},{},{quote}.{:06},{trades},{tbv},{}.000000,0",
            f6(open),
            f6(high),
            f6(low),
            f6(close),
            t + H4 - 1,
            rng.below(1_000_000),
            quote / 2
        ));
        price = close;
        t += H4;
    }
    rows
}

pub fn month_start(year: i32, month: u8) -> i64 {
    jiff::civil::date(year as i16, month as i8, 1).to_zoned_datetime(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_millisecond()
}

pub const HEADER: &str =
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore";

/// Writes `SYMBOL-4h-YYYY-MM.zip` (+ `.CHECKSUM`) into `dir`; returns the zip path.
pub fn write_archive(dir: &Path, symbol: &str, year: i32, month: u8, rows: &[String], header: bool) -> PathBuf {
    let name = format!("{symbol}-4h-{year}-{month:02}");
    let zip_path = dir.join(format!("{name}.zip"));
    let mut csv = String::new();
    if header {
        csv.push_str(HEADER);
        csv.push('\n');
    }
    for r in rows {
        csv.push_str(r);
        csv.push('\n');
    }
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zw = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zw.start_file(format!("{name}.csv"), opts).unwrap();
        zw.write_all(csv.as_bytes()).unwrap();
        zw.finish().unwrap();
    }
    let bytes = buf.into_inner();
    std::fs::write(&zip_path, &bytes).unwrap();
    let sum = sha2::Sha256::digest(&bytes);
    let hexsum: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(dir.join(format!("{name}.zip.CHECKSUM")), format!("{hexsum}  {name}.zip")).unwrap();
    zip_path
}

/// Generates `symbols × months` monthly 4h archives starting January 2024.
pub fn gen_archives(dir: &Path, symbols: usize, months: u8) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let mut total = 0;
    for s in 0..symbols {
        let symbol = format!("SYM{s}USDT");
        for m in 0..months {
            let (year, month) = (2024 + i32::from(m / 12), m % 12 + 1);
            let rows = month_rows(s as u64 + 1, year, month);
            total += rows.len() as u64;
            write_archive(dir, &symbol, year, month, &rows, true);
        }
    }
    total
}

/// Every row of an `ohlcv_*` table, ordered, with floats as bit patterns.
pub fn table_rows(db: &Path, table: &str) -> Vec<(i64, String, [u64; 6], i64)> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT timestamp, symbol, open, high, low, close, volume, quote_volume, trades_count FROM {table} ORDER BY timestamp, symbol"
        ))
        .unwrap();
    stmt.query_map([], |r| {
        let f = |i| r.get::<_, f64>(i).map(f64::to_bits);
        Ok((r.get(0)?, r.get(1)?, [f(2)?, f(3)?, f(4)?, f(5)?, f(6)?, f(7)?], r.get(8)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// The fake exchange's closed 4h candles of `symbol` in `[start, end]`, as
/// projection rows (open time, symbol, floats as bit patterns, trades).
pub fn expected_rows(fx: &fake_binance::FakeExchange, symbol: &str, start: i64, end: i64) -> Vec<(i64, String, [u64; 6], i64)> {
    fx.closed_klines(symbol, "4h", start, end)
        .into_iter()
        .map(|k| {
            let f = |i: usize| k[i].as_str().unwrap().parse::<f64>().unwrap().to_bits();
            (k[0].as_i64().unwrap(), symbol.to_string(), [f(1), f(2), f(3), f(4), f(5), f(7)], k[8].as_i64().unwrap())
        })
        .collect()
}

/// The stored 4h rows of `symbol` in the data directory `dir`.
pub fn rows_of(dir: &Path, symbol: &str) -> Vec<(i64, String, [u64; 6], i64)> {
    table_rows(&dir.join("candles.sqlite"), "ohlcv_h4").into_iter().filter(|r| r.1 == symbol).collect()
}

/// Every file under `dir`, as (relative `/` path, bytes), sorted: hidden
/// temporaries too, so "nothing was written" compares the whole tree.
pub fn tree_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().replace('\\', "/");
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A data directory with many small segments (3 generated symbols × 3
/// months, then the real SKRUSDT archives on top), backed up once in between
/// to `repo` that keeps only its newest snapshot (`keep_days = 0`), so a
/// later backup can prune up to it. Returns (data directory, repository).
pub fn two_imports_one_backup(tmp: &Path) -> (PathBuf, PathBuf) {
    let dir = tmp.join("data");
    let repo = tmp.join("repo");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("candlelog.toml"), format!("[[backup.repositories]]\npath = {:?}\nkeep_days = 0\n", repo.to_str().unwrap()))
        .unwrap();
    let fixtures = tmp.join("fixtures");
    gen_archives(&fixtures, 3, 3);
    assert_eq!(run(&dir, &["--segment-bytes", "4096", "import", "--group-files", "1", fixtures.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["backup"]).code, 0);
    assert_eq!(run(&dir, &["--segment-bytes", "4096", "import", shared_archives().to_str().unwrap()]).code, 0);
    (dir, repo)
}

/// Flips the bits `mask` of the middle byte of the first snapshot file in
/// `repo` (a real damaged object); returns its path.
pub fn flip_snapshot_byte(repo: &Path, mask: u8) -> PathBuf {
    let snap = std::fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_str().unwrap().ends_with(".zst"))
        .unwrap();
    let mut b = std::fs::read(&snap).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= mask;
    std::fs::write(&snap, &b).unwrap();
    snap
}

/// Leaves at `dest` the `-journal` (a hot rollback journal) or `-wal` (a WAL
/// not yet checkpointed) of another database, copied while its transaction is
/// open: what a process killed mid-write leaves, which SQLite applies to any
/// database next opened beside it.
pub fn plant_foreign_companion(dest: &Path, suffix: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("foreign.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mode = if suffix == "-wal" { "WAL" } else { "DELETE" };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode={mode}; PRAGMA synchronous=OFF; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(x);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         INSERT INTO t SELECT randomblob(3000) FROM n;"
    ))
    .unwrap();
    // Rewrites every page: the journal holds their old images, the WAL the new ones.
    conn.execute_batch(if suffix == "-wal" { "UPDATE t SET x = randomblob(3000);" } else { "BEGIN; UPDATE t SET x = randomblob(3000);" })
        .unwrap();
    let mut companion = db.as_os_str().to_owned();
    companion.push(suffix);
    std::fs::copy(PathBuf::from(companion), dest).unwrap();
    assert!(std::fs::metadata(dest).unwrap().len() > 100_000, "the planted {suffix} holds pages");
}

/// `TMP/data`, imported from `symbols` × `months` generated archives (in
/// `TMP/fixtures`) and passing `verify --deep`: the start of a damage test.
pub fn imported_dir(tmp: &Path, symbols: usize, months: u8) -> PathBuf {
    let dir = tmp.join("data");
    let fixtures = tmp.join("fixtures");
    gen_archives(&fixtures, symbols, months);
    assert_eq!(run(&dir, &["import", fixtures.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    dir
}
