//! Throughput of candlelog's hot paths, in candles per second.
//!
//! `cargo bench --bench engine` (about two minutes on 2 cores). Every group
//! generates its own deterministic data in memory or in temp dirs: 50
//! symbols × one year (2024) of 4h candles = 109,800 candles, with prices of
//! 6 decimals from a random walk and integer base volumes, in import order
//! (symbol by symbol); `verify` and `rebuild` also run on 200 symbols =
//! 439,200 candles, the size of tools/bench_import.sh's data set. See
//! docs/performance.md for the targets and results.
//!
//! | benchmark                    | what one iteration does                                          |
//! |------------------------------|------------------------------------------------------------------|
//! | `append/encode_only`         | `codec::encode_events` of every frame (≤ 65,536 events)          |
//! | `append/no_fsync`            | encode + zstd level 3 + `encode_frame` into a Vec (writer's CPU) |
//! | `append/fsync_10k`           | `LogWriter::append` in commits of 10,000 candles (fdatasync each)|
//! | `decode/rows`                | `rows::decode_candle_rows` of every frame's payload (a rebuild's)|
//! | `decode/full`                | `codec::decode_events_into` of every frame's payload (to events) |
//! | `store/append_100k`          | `Store::append`: log + redb index + SQLite, commits of 100,000   |
//! | `verify/shallow/N`, `deep/N` | `ops::verify::verify(paths, deep)` on a closed dir of N candles  |
//! | `rebuild/sqlite_and_index/N` | `Store::rebuild` (drop, replay into SQLite and redb) of N candles|
//! | `import/archives_600`        | `ops::import` of 600 monthly zips (+ .CHECKSUM) into a fresh dir |

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use candlelog::event::codec::{Columns, decode_events_into, encode_events};
use candlelog::event::rows::decode_candle_rows;
use candlelog::event::{Candle, Decimal, Event, Interval, Symbol};
use candlelog::log::frame::encode_frame;
use candlelog::log::writer::MAX_FRAME_EVENTS;
use candlelog::log::{LogWriter, WriterOptions};
use candlelog::ops::import::{ImportOptions, import};
use candlelog::ops::verify::verify;
use candlelog::source::discover;
use candlelog::store::{Paths, Store, StoreOptions, init};

const SYMBOLS: usize = 50;
/// The size of tools/bench_import.sh's data set (2,400 archives).
const SYMBOLS_LARGE: usize = 200;
/// 2024-01-01T00:00:00Z.
const YEAR_START_MS: i64 = 1_704_067_200_000;
const H4_MS: i64 = 4 * 3_600_000;
/// 2024 has 366 days of 6 candles.
const CANDLES_PER_SYMBOL: usize = 366 * 6;
const SCALE: u128 = 1_000_000;
/// Commit sizes: a live sync's batch and an import's group commit.
const SYNC_BATCH: usize = 10_000;
const IMPORT_BATCH: usize = 100_000;

/// splitmix64: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Roughly normal (Irwin–Hall of 4), mean 0, standard deviation 1.
    fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.unit()).sum::<f64>() - 2.0) * 3f64.sqrt()
    }
}

fn symbol_name(i: usize) -> String {
    const REAL: [&str; 20] = [
        "BTC", "ETH", "BNB", "SOL", "XRP", "DOGE", "ADA", "TRX", "AVAX", "LINK", "DOT", "TON", "SHIB", "LTC", "BCH", "NEAR", "UNI", "APT",
        "ICP", "FIL",
    ];
    match REAL.get(i) {
        Some(base) => format!("{base}USDT"),
        None => {
            let j = i - REAL.len();
            let letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
            format!("Q{}{}USDT", letters[(j / 26) % 26] as char, letters[j % 26] as char)
        }
    }
}

fn dec(mag: u128, scale: u8) -> Decimal {
    Decimal::from_parts(false, mag, scale).expect("decimal in range")
}

/// `symbols` × one year of realistic 4h candles, symbol by symbol (import order).
fn gen_candles(symbols: usize) -> Vec<Candle> {
    let mut out = Vec::with_capacity(symbols * CANDLES_PER_SYMBOL);
    for s in 0..symbols {
        let mut rng = Rng(0x00C0_FFEE ^ (s as u64).wrapping_mul(0x1234_5678_9ABC_DEF1));
        let symbol = Symbol::parse(&symbol_name(s)).expect("valid symbol");
        let decades = rng.range(-3.0, 4.8);
        let price = 10f64.powf(decades);
        let mut close = ((price * SCALE as f64) as u128).max(1_000);
        let base_volume = ((rng.range(2e4, 5e6) * 50.0 / price.max(0.01)) as u128).max(50);
        let trades_per_unit = rng.range(0.0002, 0.01);
        let vol = rng.range(0.006, 0.03);
        for k in 0..CANDLES_PER_SYMBOL {
            let open_time = YEAR_START_MS + k as i64 * H4_MS;
            let o = close;
            let c = ((o as f64 * (1.0 + rng.normal() * vol)) as u128).max(1_000);
            let (hi, lo) = (o.max(c), o.min(c));
            let h = hi + (hi as f64 * (rng.normal() * vol * 0.6).abs()) as u128;
            let l = lo.saturating_sub((lo as f64 * (rng.normal() * vol * 0.6).abs()) as u128).max(1);
            let volume = ((base_volume as f64 * (rng.normal() * 0.5).exp()) as u128).max(1);
            let vwap = rng.range(l as f64, h as f64);
            let quote = (volume as f64 * vwap) as u128;
            let share = rng.range(0.42, 0.58);
            let trades = (volume as f64 * trades_per_unit * rng.range(0.8, 1.2)) as u64 + 50 + rng.next() % 450;
            close = c;
            let candle = Candle {
                symbol: symbol.clone(),
                interval: Interval::H4,
                open_time,
                close_time: open_time + H4_MS - 1,
                open: dec(o, 6),
                high: dec(h, 6),
                low: dec(l, 6),
                close: dec(c, 6),
                volume: dec(volume, 0),
                quote_volume: dec(quote, 6),
                trades,
                taker_buy_volume: dec((volume as f64 * share) as u128, 0),
                taker_buy_quote_volume: dec((quote as f64 * share) as u128, 6),
            };
            debug_assert_eq!(candle.validate(), Ok(()));
            out.push(candle);
        }
    }
    out
}

fn events_of(candles: &[Candle]) -> Vec<Event> {
    candles.iter().cloned().map(Event::Candle).collect()
}

/// The writer's CPU path for one commit (src/log/writer.rs `append_inner`
/// without the write and fdatasync). Returns the framed bytes.
fn frame_all(events: &[Event], compressor: &mut zstd::bulk::Compressor<'_>, raw: &mut Vec<u8>, out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut prev = [0u8; 32];
    let mut lsn = 1u64;
    for chunk in events.chunks(MAX_FRAME_EVENTS) {
        raw.clear();
        encode_events(raw, chunk);
        let payload = compressor.compress(raw).expect("zstd");
        let (_, hash) = encode_frame(out, &prev, lsn, chunk.len() as u32, 1_700_000_000_000, raw, &payload);
        prev = hash;
        lsn += chunk.len() as u64;
    }
    out.len()
}

/// A data directory holding `events`, committed in import-sized groups; the
/// store is closed (lock released) on return.
fn build_store(dir: &Path, events: &[Event]) -> Paths {
    let paths = Paths::new(dir, None);
    init(&paths).expect("init");
    let mut store = Store::open(&paths, StoreOptions::default()).expect("open store");
    for chunk in events.chunks(IMPORT_BATCH) {
        store.append(chunk).expect("append");
    }
    paths
}

fn bench_append(c: &mut Criterion, candles: &[Candle]) {
    let events = events_of(candles);
    let n = events.len() as u64;
    let mut compressor = zstd::bulk::Compressor::new(WriterOptions::default().zstd_level).expect("zstd");
    let mut raw = Vec::with_capacity(4 << 20);
    let mut out = Vec::with_capacity(8 << 20);
    let framed = frame_all(&events, &mut compressor, &mut raw, &mut out);
    let mut encoded = 0usize;
    for chunk in events.chunks(MAX_FRAME_EVENTS) {
        raw.clear();
        encode_events(&mut raw, chunk);
        encoded += raw.len();
    }
    println!(
        "dataset: {n} candles ({SYMBOLS} symbols x {CANDLES_PER_SYMBOL}); encoded {:.1} B/candle, framed (zstd 3) {:.1} B/candle",
        encoded as f64 / n as f64,
        framed as f64 / n as f64
    );

    let mut g = c.benchmark_group("append");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).throughput(Throughput::Elements(n));
    g.bench_function("encode_only", |b| {
        b.iter(|| {
            let mut total = 0;
            for chunk in events.chunks(MAX_FRAME_EVENTS) {
                raw.clear();
                encode_events(&mut raw, black_box(chunk));
                total += raw.len();
            }
            total
        })
    });
    g.bench_function("no_fsync", |b| b.iter(|| frame_all(black_box(&events), &mut compressor, &mut raw, &mut out)));

    // The real writer: one fdatasync per 10,000-candle commit. The log grows
    // across iterations (and rolls at 64 MiB), like a long-running writer.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut writer, _) = LogWriter::open(&dir.path().join("log"), WriterOptions::default()).expect("open log");
    g.sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(4));
    g.bench_function("fsync_10k", |b| {
        b.iter(|| {
            for batch in events.chunks(SYNC_BATCH) {
                writer.append(batch).expect("append");
            }
        })
    });
    g.finish();
    drop(writer);
    bench_decode(c, &events);

    // The whole commit path import uses: log + redb index + SQLite, each
    // iteration into a fresh data dir (setup untimed).
    let mut g = c.benchmark_group("store");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(n));
    g.bench_function("append_100k", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let paths = Paths::new(dir.path(), None);
                init(&paths).expect("init");
                let store = Store::open(&paths, StoreOptions::default()).expect("open store");
                (dir, store)
            },
            |(dir, mut store)| {
                for chunk in events.chunks(IMPORT_BATCH) {
                    store.append(chunk).expect("append");
                }
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// A measurement time that fits 10 samples of a path whose cost grows with `n`.
fn scaled(secs_at_small: f64, n: u64) -> Duration {
    let small = (SYMBOLS * CANDLES_PER_SYMBOL) as f64;
    Duration::from_secs_f64(secs_at_small * (n as f64 / small).max(1.0) * 1.2)
}

/// verify and rebuild on data dirs of each size: the SQLite projection's cost
/// per row grows once its B-trees outgrow SQLite's page cache.
/// The two decoders of a frame's payload: a rebuild's rows (main thread)
/// and the full decoder (the index's thread, verify, the catch-up).
fn bench_decode(c: &mut Criterion, events: &[Event]) {
    let payloads: Vec<(Vec<u8>, usize)> = events
        .chunks(MAX_FRAME_EVENTS)
        .map(|chunk| {
            let mut raw = Vec::new();
            encode_events(&mut raw, chunk);
            (raw, chunk.len())
        })
        .collect();
    let mut g = c.benchmark_group("decode");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(events.len() as u64));
    let (mut dict, mut rows) = (Vec::new(), Vec::new());
    g.bench_function("rows", |b| {
        b.iter(|| {
            let mut n = 0;
            for (payload, count) in &payloads {
                decode_candle_rows(black_box(payload), *count, &mut dict, &mut rows).expect("decode rows");
                n += rows.len();
            }
            n
        })
    });
    let (mut cols, mut out) = (Columns::default(), Vec::new());
    g.bench_function("full", |b| {
        b.iter(|| {
            let mut n = 0;
            for (payload, count) in &payloads {
                decode_events_into(black_box(payload), *count, 1, &mut cols, &mut out).expect("decode events");
                n += out.len();
            }
            n
        })
    });
    g.finish();
}

fn bench_replay(c: &mut Criterion, datasets: &[&[Candle]]) {
    let mut dirs = Vec::new();
    for candles in datasets {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = build_store(dir.path(), &events_of(candles));
        dirs.push((dir, paths, candles.len() as u64));
    }

    let mut g = c.benchmark_group("verify");
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    for (_, paths, n) in &dirs {
        g.throughput(Throughput::Elements(*n)).sampling_mode(SamplingMode::Auto).measurement_time(Duration::from_secs(3));
        g.bench_with_input(BenchmarkId::new("shallow", n), paths, |b, paths| {
            b.iter(|| {
                let r = verify(paths, false).expect("verify");
                assert!(r.ok, "{:?}", r.problems);
                r.frames
            })
        });
        g.sampling_mode(SamplingMode::Flat).measurement_time(scaled(5.0, *n));
        g.bench_with_input(BenchmarkId::new("deep", n), paths, |b, paths| {
            b.iter(|| {
                let r = verify(paths, true).expect("verify");
                assert!(r.ok && r.candles == *n, "{:?}", r.problems);
                r.candles
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rebuild");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(6)).sampling_mode(SamplingMode::Flat);
    for (_, paths, n) in &dirs {
        let mut store = Store::open(paths, StoreOptions::default()).expect("open store");
        g.throughput(Throughput::Elements(*n)).measurement_time(scaled(6.0, *n));
        g.bench_function(BenchmarkId::new("sqlite_and_index", n), |b| {
            b.iter(|| {
                let stats = store.rebuild().expect("rebuild");
                assert_eq!(stats.candles, *n);
                stats.events
            })
        });
    }
    g.finish();
}

/// Writes `candles` as data.binance.vision monthly archives (zip + .CHECKSUM).
fn write_archives(root: &Path, candles: &[Candle]) -> usize {
    const HEADER: &str =
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n";
    let mut files = 0;
    for series in candles.chunk_by(|a, b| a.symbol == b.symbol) {
        let symbol = series[0].symbol.as_str();
        let dir = root.join(format!("data.binance.vision/futures/um/monthly/klines/{symbol}/4h"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let month_of = |c: &Candle| jiff::Timestamp::from_millisecond(c.open_time).expect("time").strftime("%Y-%m").to_string();
        for month in series.chunk_by(|a, b| month_of(a) == month_of(b)) {
            let stem = format!("{symbol}-4h-{}", month_of(&month[0]));
            let mut csv = String::from(HEADER);
            for c in month {
                csv += &format!(
                    "{},{},{},{},{},{},{},{},{},{},{},0\n",
                    c.open_time,
                    c.open,
                    c.high,
                    c.low,
                    c.close,
                    c.volume,
                    c.close_time,
                    c.quote_volume,
                    c.trades,
                    c.taker_buy_volume,
                    c.taker_buy_quote_volume
                );
            }
            let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            zip.start_file(format!("{stem}.csv"), opts).expect("zip entry");
            zip.write_all(csv.as_bytes()).expect("zip write");
            let bytes = zip.finish().expect("zip finish").into_inner();
            let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(dir.join(format!("{stem}.zip")), &bytes).expect("write zip");
            std::fs::write(dir.join(format!("{stem}.zip.CHECKSUM")), format!("{sha}  {stem}.zip")).expect("write checksum");
            files += 1;
        }
    }
    files
}

fn bench_import(c: &mut Criterion, candles: &[Candle]) {
    let n = candles.len() as u64;
    let src = tempfile::tempdir().expect("tempdir");
    let files_written = write_archives(src.path(), candles);
    let files = discover(&[src.path().to_path_buf()]).expect("discover");
    assert_eq!(files.len(), files_written);

    let mut g = c.benchmark_group("import");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(n));
    g.bench_function(format!("archives_{files_written}"), |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let paths = Paths::new(dir.path(), None);
                init(&paths).expect("init");
                let store = Store::open(&paths, StoreOptions::default()).expect("open store");
                (dir, store, files.clone())
            },
            |(dir, mut store, files)| {
                let r = import(&mut store, files, &ImportOptions::default()).expect("import");
                assert!(r.ok && r.appended == n);
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let all = gen_candles(SYMBOLS_LARGE);
    let candles = &all[..SYMBOLS * CANDLES_PER_SYMBOL];
    bench_append(c, candles);
    bench_replay(c, &[candles, &all]);
    bench_import(c, candles);
}

criterion_group!(engine, benches);
criterion_main!(engine);
