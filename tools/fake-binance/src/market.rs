//! The market: symbols, intervals, and deterministic candles.
//!
//! Generated candles are a pure function of (symbol, interval, open time) — and, for the
//! one candle that is still open, of the server time. Prices come from a smooth
//! multi-scale "value noise" curve `p(t)` that depends only on the symbol and the instant
//! `t`, so `close` of a candle is exactly the `open` of the next one, and candles of
//! different intervals agree on their open/close prices. Wicks, volumes and trade counts
//! come from a hash of (symbol, interval, open time). Every value is computed in integer
//! units (ticks) and rendered as a fixed-point decimal string, so the text is stable.
//!
//! Recorded series (see [`crate::FakeExchange::load_klines`]) replace generation for one
//! (symbol, interval) and are served verbatim.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::SymbolSpec;
use crate::outages::{Holes, Outage};

/// 2024-01-01T00:00:00Z, the onboard date of the default symbols.
pub const DEFAULT_ONBOARD_MS: i64 = 1_704_067_200_000;
/// The `deliveryDate` Binance reports for perpetual contracts (2100-12-25T08:00:00Z).
pub const PERPETUAL_DELIVERY_MS: i64 = 4_133_404_800_000;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;
/// 1970-01-05 was the first Monday after the epoch.
const FIRST_MONDAY: i64 = 4 * DAY;

/// A kline interval, as accepted by `GET /fapi/v1/klines`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    M1,
    M3,
    M5,
    M15,
    M30,
    H1,
    H2,
    H4,
    H6,
    H8,
    H12,
    D1,
    D3,
    W1,
    Mo1,
}

impl Interval {
    /// All 15 intervals, shortest first.
    pub const ALL: [Interval; 15] = [
        Interval::M1,
        Interval::M3,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H2,
        Interval::H4,
        Interval::H6,
        Interval::H8,
        Interval::H12,
        Interval::D1,
        Interval::D3,
        Interval::W1,
        Interval::Mo1,
    ];

    /// Parses Binance's spelling (`"1m"`, `"4h"`, `"1M"`, …). Case matters: `1m` is a minute, `1M` a month.
    pub fn parse(s: &str) -> Option<Interval> {
        Interval::ALL.into_iter().find(|i| i.as_str() == s)
    }

    /// Binance's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M3 => "3m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H2 => "2h",
            Interval::H4 => "4h",
            Interval::H6 => "6h",
            Interval::H8 => "8h",
            Interval::H12 => "12h",
            Interval::D1 => "1d",
            Interval::D3 => "3d",
            Interval::W1 => "1w",
            Interval::Mo1 => "1M",
        }
    }

    /// The length in ms for intervals of fixed length (all but `1M`).
    pub fn fixed_ms(self) -> Option<i64> {
        Some(match self {
            Interval::M1 => MINUTE,
            Interval::M3 => 3 * MINUTE,
            Interval::M5 => 5 * MINUTE,
            Interval::M15 => 15 * MINUTE,
            Interval::M30 => 30 * MINUTE,
            Interval::H1 => HOUR,
            Interval::H2 => 2 * HOUR,
            Interval::H4 => 4 * HOUR,
            Interval::H6 => 6 * HOUR,
            Interval::H8 => 8 * HOUR,
            Interval::H12 => 12 * HOUR,
            Interval::D1 => DAY,
            Interval::D3 => 3 * DAY,
            Interval::W1 => WEEK,
            Interval::Mo1 => return None,
        })
    }

    /// The open time of the candle that contains `t`. Fixed intervals up to `3d` are aligned to
    /// the Unix epoch, weeks start on Monday 00:00 UTC, months on the 1st at 00:00 UTC.
    pub fn open_of(self, t: i64) -> i64 {
        match self {
            Interval::W1 => (t - FIRST_MONDAY).div_euclid(WEEK) * WEEK + FIRST_MONDAY,
            Interval::Mo1 => {
                let (y, m, _) = civil_from_days(t.div_euclid(DAY));
                days_from_civil(y, m, 1) * DAY
            }
            _ => {
                let len = self.fixed_ms().unwrap_or(DAY);
                t.div_euclid(len) * len
            }
        }
    }

    /// The open time of the candle after the one that opens at `open` (which must be aligned).
    pub fn next_open(self, open: i64) -> i64 {
        match self {
            Interval::Mo1 => {
                let (y, m, _) = civil_from_days(open.div_euclid(DAY));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * DAY
            }
            _ => open + self.fixed_ms().unwrap_or(DAY),
        }
    }

    /// The open time of the candle before the one that opens at `open` (which must be aligned).
    pub fn prev_open(self, open: i64) -> i64 {
        match self {
            Interval::Mo1 => {
                let (y, m, _) = civil_from_days(open.div_euclid(DAY));
                let (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
                days_from_civil(y, m, 1) * DAY
            }
            _ => open - self.fixed_ms().unwrap_or(DAY),
        }
    }

    /// The open time of the first candle that opens at or after `t`.
    pub fn ceil_open(self, t: i64) -> i64 {
        let o = self.open_of(t);
        if o == t { o } else { self.next_open(o) }
    }

    fn index(self) -> u64 {
        Interval::ALL.iter().position(|&i| i == self).unwrap_or(0) as u64
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a count of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

// ---------------------------------------------------------------------------------------------
// Hashing

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243F_6A88_85A3_08D3, |acc, &p| mix(acc ^ p))
}

fn str_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// A uniform number in [0, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

// ---------------------------------------------------------------------------------------------
// Symbols

/// Real-looking USD-M perpetual names with a rough price level (used to scale generated prices).
// The same 60 names, in the same order, as candlelog's default set (conf/candlelog.example.toml).
const DEFAULT_NAMES: [(&str, f64); 60] = [
    ("BTCUSDT", 60_000.0),
    ("ETHUSDT", 3_000.0),
    ("BNBUSDT", 600.0),
    ("SOLUSDT", 150.0),
    ("XRPUSDT", 0.6),
    ("DOGEUSDT", 0.15),
    ("ADAUSDT", 0.45),
    ("TRXUSDT", 0.12),
    ("AVAXUSDT", 30.0),
    ("LINKUSDT", 15.0),
    ("DOTUSDT", 6.0),
    ("BCHUSDT", 400.0),
    ("LTCUSDT", 80.0),
    ("NEARUSDT", 5.0),
    ("UNIUSDT", 8.0),
    ("APTUSDT", 9.0),
    ("ARBUSDT", 1.1),
    ("OPUSDT", 2.2),
    ("ATOMUSDT", 8.0),
    ("ETCUSDT", 25.0),
    ("FILUSDT", 5.0),
    ("ICPUSDT", 12.0),
    ("INJUSDT", 25.0),
    ("SUIUSDT", 1.2),
    ("SEIUSDT", 0.5),
    ("TIAUSDT", 10.0),
    ("AAVEUSDT", 100.0),
    ("LDOUSDT", 2.0),
    ("RUNEUSDT", 5.0),
    ("STXUSDT", 2.0),
    ("IMXUSDT", 2.0),
    ("HBARUSDT", 0.09),
    ("VETUSDT", 0.03),
    ("ALGOUSDT", 0.18),
    ("XLMUSDT", 0.11),
    ("EGLDUSDT", 40.0),
    ("SANDUSDT", 0.45),
    ("MANAUSDT", 0.45),
    ("AXSUSDT", 7.0),
    ("GALAUSDT", 0.03),
    ("APEUSDT", 1.3),
    ("CRVUSDT", 0.5),
    ("DYDXUSDT", 2.0),
    ("GMXUSDT", 30.0),
    ("SNXUSDT", 1.5),
    ("COMPUSDT", 50.0),
    ("ZECUSDT", 30.0),
    ("1000PEPEUSDT", 0.01),
    ("WIFUSDT", 2.5),
    ("ORDIUSDT", 40.0),
    ("JUPUSDT", 1.0),
    ("PYTHUSDT", 0.4),
    ("ENAUSDT", 0.8),
    ("WLDUSDT", 5.0),
    ("FETUSDT", 1.5),
    ("RENDERUSDT", 7.0),
    ("TAOUSDT", 400.0),
    ("ONDOUSDT", 1.0),
    ("1000SHIBUSDT", 0.02),
    ("SKRUSDT", 0.04),
];

/// `n` TRADING USDT perpetuals onboarded on 2024-01-01: the 60 built-in names first, then
/// synthetic ones (`SYN061USDT`, …).
pub fn default_symbols(n: usize) -> Vec<SymbolSpec> {
    (0..n)
        .map(|i| match DEFAULT_NAMES.get(i) {
            Some((name, _)) => SymbolSpec::perpetual(name, DEFAULT_ONBOARD_MS),
            None => SymbolSpec::perpetual(&format!("SYN{:03}USDT", i + 1), DEFAULT_ONBOARD_MS),
        })
        .collect()
}

/// Symbols that every fake exchangeInfo lists besides the configured ones, so that a client's
/// "all TRADING USDT perpetuals" filter has something to filter out: two delivery contracts,
/// two USDC perpetuals, a SETTLING one and a PENDING_TRADING one. Klines are served for them too.
pub fn extra_symbols() -> Vec<SymbolSpec> {
    let spec = |symbol: &str, status: &str, contract_type: &str, quote: &str, onboard_ms: i64| SymbolSpec {
        symbol: symbol.to_string(),
        status: status.to_string(),
        contract_type: contract_type.to_string(),
        quote_asset: quote.to_string(),
        onboard_ms,
    };
    vec![
        spec("BTCUSDT_260327", "TRADING", "CURRENT_QUARTER", "USDT", 1_758_873_600_000),
        spec("ETHUSDT_260626", "TRADING", "NEXT_QUARTER", "USDT", 1_766_736_000_000),
        spec("BTCUSDC", "TRADING", "PERPETUAL", "USDC", DEFAULT_ONBOARD_MS),
        spec("ETHUSDC", "TRADING", "PERPETUAL", "USDC", DEFAULT_ONBOARD_MS),
        spec("MATICUSDT", "SETTLING", "PERPETUAL", "USDT", DEFAULT_ONBOARD_MS),
        spec("BERAUSDT", "PENDING_TRADING", "PERPETUAL", "USDT", DEFAULT_ONBOARD_MS),
    ]
}

/// A symbol plus everything derived from it that generation needs.
#[derive(Clone, Debug)]
pub(crate) struct SymbolMeta {
    pub spec: SymbolSpec,
    key: u64,
    base_price: f64,
    price_dp: u32,
    qty_dp: u32,
    quote_dp: u32,
    /// Average traded notional (quote asset) per minute.
    notional_per_min: f64,
    /// Set by [`crate::FakeExchange::delist`]: exchangeInfo's `deliveryDate`, and no candle
    /// opens at or after it.
    pub delisted_ms: Option<i64>,
}

impl SymbolMeta {
    fn new(spec: SymbolSpec) -> SymbolMeta {
        let key = str_hash(&spec.symbol);
        let pair = pair_of(&spec.symbol);
        let base_price = DEFAULT_NAMES
            .iter()
            .find(|(n, _)| *n == pair || pair.strip_suffix("USDC").is_some_and(|b| n.strip_suffix("USDT") == Some(b)))
            .map(|&(_, p)| p)
            // log-uniform in [0.001, 1000)
            .unwrap_or_else(|| 10f64.powf(-3.0 + 6.0 * unit(hash(&[key, 0xBA5E]))));
        let price_dp = if base_price >= 1.0 {
            6
        } else if base_price >= 0.01 {
            7
        } else {
            8
        };
        let qty_dp = if base_price >= 1.0 { 3 } else { 0 };
        let notional_per_min = 10f64.powf(4.0 + 2.0 * unit(hash(&[key, 0x707])));
        SymbolMeta { spec, key, base_price, price_dp, qty_dp, quote_dp: price_dp, notional_per_min, delisted_ms: None }
    }
}

/// `BTCUSDT_260327` → `BTCUSDT`.
fn pair_of(symbol: &str) -> &str {
    symbol.split('_').next().unwrap_or(symbol)
}

fn base_asset_of(spec: &SymbolSpec) -> String {
    let pair = pair_of(&spec.symbol);
    pair.strip_suffix(spec.quote_asset.as_str()).filter(|b| !b.is_empty()).unwrap_or(pair).to_string()
}

/// The delivery date of a dated contract `XXX_YYMMDD` (08:00 UTC), else the perpetual one.
fn delivery_of(spec: &SymbolSpec) -> i64 {
    let parse = |s: &str| -> Option<i64> {
        let d = s.split('_').nth(1)?;
        if d.len() != 6 || !d.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (y, m, day) = (d[0..2].parse::<i64>().ok()?, d[2..4].parse::<u32>().ok()?, d[4..6].parse::<u32>().ok()?);
        Some(days_from_civil(2000 + y, m, day) * DAY + 8 * HOUR)
    };
    if spec.contract_type == "PERPETUAL" { PERPETUAL_DELIVERY_MS } else { parse(&spec.symbol).unwrap_or(PERPETUAL_DELIVERY_MS) }
}

/// `deliveryDate` in exchangeInfo: the delisting if there is one, else [`delivery_of`].
fn delivery_date(meta: &SymbolMeta) -> i64 {
    meta.delisted_ms.unwrap_or_else(|| delivery_of(&meta.spec))
}

/// A status as exchangeInfo could report it: `TRADING`, `BREAK`, `SETTLING`, …
fn check_status(status: &str) -> Result<(), String> {
    if status.is_empty() || !status.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        return Err(format!("bad status {status:?}: expected capitals and '_' (TRADING, BREAK, SETTLING, CLOSE, …)"));
    }
    Ok(())
}

fn quote_asset_guess(symbol: &str) -> &'static str {
    let pair = pair_of(symbol);
    ["USDT", "USDC", "BUSD", "FDUSD"].into_iter().find(|q| pair.ends_with(q)).unwrap_or("USDT")
}

// ---------------------------------------------------------------------------------------------
// Generation

/// (period ms, amplitude of ln(price)) of the octaves of the price curve.
const OCTAVES: [(i64, f64); 6] =
    [(MINUTE, 0.0008), (15 * MINUTE, 0.003), (4 * HOUR, 0.012), (3 * DAY, 0.05), (30 * DAY, 0.15), (365 * DAY, 0.35)];

/// The price of a symbol at instant `t`: smooth, deterministic, positive.
fn price_at(meta: &SymbolMeta, t: i64) -> f64 {
    let mut x = 0.0;
    for (k, &(period, amp)) in OCTAVES.iter().enumerate() {
        let i = t.div_euclid(period);
        let frac = t.rem_euclid(period) as f64 / period as f64;
        let a = 2.0 * unit(hash(&[meta.key, k as u64, i as u64])) - 1.0;
        let b = 2.0 * unit(hash(&[meta.key, k as u64, (i + 1) as u64])) - 1.0;
        let w = frac * frac * (3.0 - 2.0 * frac);
        x += amp * (a + (b - a) * w);
    }
    meta.base_price * x.exp()
}

fn pow10(dp: u32) -> u128 {
    10u128.pow(dp)
}

/// Renders `units` × 10^-dp as a fixed-point decimal with exactly `dp` places.
pub(crate) fn fmt_units(units: u128, dp: u32) -> String {
    if dp == 0 {
        return units.to_string();
    }
    let p = pow10(dp);
    format!("{}.{:0width$}", units / p, units % p, width = dp as usize)
}

/// One candle in integer units.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Bar {
    open_time: i64,
    close_time: i64,
    open: u128,
    high: u128,
    low: u128,
    close: u128,
    volume: u128,
    quote_volume: u128,
    trades: u64,
    taker_base: u128,
    taker_quote: u128,
}

impl Bar {
    fn to_row(&self, m: &SymbolMeta) -> Vec<Value> {
        vec![
            json!(self.open_time),
            Value::String(fmt_units(self.open, m.price_dp)),
            Value::String(fmt_units(self.high, m.price_dp)),
            Value::String(fmt_units(self.low, m.price_dp)),
            Value::String(fmt_units(self.close, m.price_dp)),
            Value::String(fmt_units(self.volume, m.qty_dp)),
            json!(self.close_time),
            Value::String(fmt_units(self.quote_volume, m.quote_dp)),
            json!(self.trades),
            Value::String(fmt_units(self.taker_base, m.qty_dp)),
            Value::String(fmt_units(self.taker_quote, m.quote_dp)),
            Value::String("0".to_string()),
        ]
    }
}

/// The candle of `meta` opening at `open` (aligned), as seen at server time `now` (≥ open).
/// Closed candles (close time < now) do not depend on `now`; the open one is partial.
fn gen_bar(meta: &SymbolMeta, interval: Interval, open: i64, now: i64) -> Bar {
    let close_time = interval.next_open(open) - 1;
    let closed = close_time < now;
    let len = (close_time + 1 - open) as f64;
    let f = if closed { 1.0 } else { ((now - open + 1).max(1) as f64 / len).min(1.0) };
    let scale = pow10(meta.price_dp) as f64;
    let ticks = |p: f64| ((p * scale).round() as u128).max(1);
    let o = ticks(price_at(meta, open));
    let c = ticks(price_at(meta, if closed { close_time + 1 } else { now.max(open) }));
    let h0 = hash(&[meta.key, interval.index(), open as u64]);
    let minutes = len / MINUTE as f64;
    let sigma = (0.0015 * minutes.sqrt()).min(0.25);
    let (top, bottom) = (o.max(c), o.min(c));
    let up = (top as f64 * sigma * unit(hash(&[h0, 1])) * f).round() as u128;
    let down = ((bottom as f64 * sigma * unit(hash(&[h0, 2])) * f).round() as u128).min(bottom - 1);
    let (high, low) = (top + up, bottom - down);
    let price_o = o as f64 / scale;
    let factor = 0.3 + 1.7 * unit(hash(&[h0, 3]));
    let base_volume = meta.notional_per_min / price_o * minutes * factor * f;
    let volume = (base_volume * pow10(meta.qty_dp) as f64).round() as u128;
    let vwap = (o + high + low + c) as f64 / 4.0 / scale;
    let quote_volume = (volume as f64 / pow10(meta.qty_dp) as f64 * vwap * pow10(meta.quote_dp) as f64).round() as u128;
    let avg_trade = 50.0 + 950.0 * unit(hash(&[h0, 4]));
    let trades = if volume == 0 { 0 } else { ((quote_volume as f64 / pow10(meta.quote_dp) as f64 / avg_trade).round() as u64).max(1) };
    let taker = 0.35 + 0.3 * unit(hash(&[h0, 5]));
    let taker_base = (volume as f64 * taker).floor() as u128;
    let taker_quote = (quote_volume as f64 * taker).floor() as u128;
    Bar {
        open_time: open,
        close_time,
        open: o,
        high,
        low,
        close: c,
        volume,
        quote_volume,
        trades,
        taker_base: taker_base.min(volume),
        taker_quote: taker_quote.min(quote_volume),
    }
}

/// Adds `n` units of the last decimal place to a decimal string (`"1.50"` + 1 → `"1.51"`).
/// Returns `None` if `s` is not a plain non-negative decimal.
pub(crate) fn bump_decimal(s: &str, n: u64) -> Option<String> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    let out = fmt_units(digits.checked_add(n as u128)?, frac.len() as u32);
    Some(if s.contains('.') && frac.is_empty() { format!("{out}.") } else { out })
}

/// Which revision of a closed candle to render.
#[derive(Clone, Copy)]
enum Serve {
    /// A response: counts a serve of each closed candle when revisions are on.
    Respond,
    /// A look-up (`closed_klines`): the values most recently served, counting nothing.
    Peek,
}

/// A recorded row and its open/close times.
#[derive(Clone, Debug)]
struct Recorded {
    open_time: i64,
    close_time: i64,
    row: Vec<Value>,
}

/// An error answered with HTTP 400 and a Binance error body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: i32,
    pub msg: String,
}

impl ApiError {
    pub fn bad_request(code: i32, msg: impl Into<String>) -> ApiError {
        ApiError { status: 400, code, msg: msg.into() }
    }
}

/// The state of the market.
#[derive(Debug)]
pub(crate) struct Market {
    symbols: Vec<SymbolMeta>,
    by_name: HashMap<String, usize>,
    recorded: HashMap<(String, Interval), Vec<Recorded>>,
    revise: HashSet<String>,
    /// How many times each closed candle was served while revisions were on.
    served: HashMap<(String, Interval, i64), u64>,
    outages: Vec<Outage>,
}

impl Market {
    pub fn new(symbols: &[SymbolSpec]) -> Market {
        let mut market = Market {
            symbols: Vec::new(),
            by_name: HashMap::new(),
            recorded: HashMap::new(),
            revise: HashSet::new(),
            served: HashMap::new(),
            outages: Vec::new(),
        };
        for spec in symbols.iter().cloned().chain(extra_symbols()) {
            market.add_symbol(spec);
        }
        market
    }

    fn add_symbol(&mut self, spec: SymbolSpec) -> usize {
        if let Some(&i) = self.by_name.get(&spec.symbol) {
            return i;
        }
        self.by_name.insert(spec.symbol.clone(), self.symbols.len());
        self.symbols.push(SymbolMeta::new(spec));
        self.symbols.len() - 1
    }

    pub fn symbol(&self, name: &str) -> Option<&SymbolMeta> {
        self.by_name.get(name).map(|&i| &self.symbols[i])
    }

    pub fn symbols(&self) -> Vec<SymbolSpec> {
        self.symbols.iter().map(|m| m.spec.clone()).collect()
    }

    fn meta_mut(&mut self, symbol: &str) -> Result<&mut SymbolMeta, String> {
        let i = *self.by_name.get(symbol).ok_or_else(|| format!("unknown symbol {symbol:?} (not in exchangeInfo)"))?;
        self.symbols.get_mut(i).ok_or_else(|| format!("symbol {symbol:?}: index out of date"))
    }

    /// See [`crate::FakeExchange::set_symbol_status`].
    pub fn set_status(&mut self, symbol: &str, status: &str) -> Result<(), String> {
        check_status(status)?;
        self.meta_mut(symbol)?.spec.status = status.to_string();
        Ok(())
    }

    /// See [`crate::FakeExchange::delist`].
    pub fn delist(&mut self, symbol: &str, at_ms: i64, status: &str) -> Result<(), String> {
        check_status(status)?;
        let meta = self.meta_mut(symbol)?;
        meta.spec.status = status.to_string();
        meta.delisted_ms = Some(at_ms);
        Ok(())
    }

    /// See [`crate::FakeExchange::remove_symbol`]: forgets the symbol, its recordings and revisions.
    pub fn remove(&mut self, symbol: &str) -> Result<(), String> {
        let i = *self.by_name.get(symbol).ok_or_else(|| format!("unknown symbol {symbol:?} (not in exchangeInfo)"))?;
        self.symbols.remove(i);
        self.by_name = self.symbols.iter().enumerate().map(|(i, m)| (m.spec.symbol.clone(), i)).collect();
        self.recorded.retain(|(s, _), _| s != symbol);
        self.revise.remove(symbol);
        self.served.retain(|(s, _, _), _| s != symbol);
        Ok(())
    }

    /// `(status, deliveryDate)` as exchangeInfo reports them.
    pub fn listing(&self, symbol: &str) -> Option<(String, i64)> {
        self.symbol(symbol).map(|m| (m.spec.status.clone(), delivery_date(m)))
    }

    pub fn add_outage(&mut self, outage: Outage) {
        self.outages.push(outage);
    }

    pub fn clear_outages(&mut self) {
        self.outages.clear();
    }

    pub fn outage_count(&self) -> usize {
        self.outages.len()
    }

    pub fn set_revise(&mut self, symbol: &str, enable: bool) {
        if enable {
            self.revise.insert(symbol.to_string());
        } else {
            self.revise.remove(symbol);
        }
    }

    /// Installs a recorded series. See [`crate::FakeExchange::load_klines`].
    pub fn load(&mut self, symbol: &str, interval: &str, body_json: &str) -> Result<(), String> {
        let iv = Interval::parse(interval).ok_or_else(|| format!("unknown interval {interval:?}"))?;
        if symbol.is_empty() || !symbol.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("bad symbol name {symbol:?}"));
        }
        let rows: Vec<Vec<Value>> = serde_json::from_str(body_json).map_err(|e| format!("klines JSON for {symbol} {interval}: {e}"))?;
        let mut series = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let open_time = row.first().and_then(Value::as_i64).ok_or_else(|| format!("row {i}: open time (field 0) is not an integer"))?;
            let close_time = row.get(6).and_then(Value::as_i64).unwrap_or_else(|| iv.next_open(iv.open_of(open_time)) - 1);
            series.push(Recorded { open_time, close_time, row });
        }
        let onboard = series.iter().map(|r| r.open_time).min().unwrap_or(DEFAULT_ONBOARD_MS);
        // A recording replaces the generated history: the symbol lists from its first candle.
        let idx = match self.by_name.get(symbol).copied() {
            Some(idx) => {
                if let Some(meta) = self.symbols.get_mut(idx) {
                    meta.spec.onboard_ms = onboard;
                }
                Some(idx)
            }
            None => None,
        };
        let idx = match idx {
            Some(idx) => idx,
            None => self.add_symbol(SymbolSpec {
                symbol: symbol.to_string(),
                status: "TRADING".to_string(),
                contract_type: "PERPETUAL".to_string(),
                quote_asset: quote_asset_guess(symbol).to_string(),
                onboard_ms: onboard,
            }),
        };
        {
            // Report the recording's own precision in exchangeInfo.
            let places = |v: Option<&Value>| v.and_then(Value::as_str).map(|s| s.split_once('.').map_or(0, |(_, f)| f.len() as u32));
            if let Some(first) = series.first() {
                let meta = &mut self.symbols[idx];
                if let Some(dp) = places(first.row.get(1)) {
                    meta.price_dp = dp;
                }
                if let Some(dp) = places(first.row.get(5)) {
                    meta.qty_dp = dp;
                }
                if let Some(dp) = places(first.row.get(7)) {
                    meta.quote_dp = dp;
                }
            }
        }
        self.served.retain(|(s, i, _), _| !(s == symbol && *i == iv));
        self.recorded.insert((symbol.to_string(), iv), series);
        Ok(())
    }

    /// `GET /fapi/v1/klines` after parameter validation: candles with open time in
    /// [start, end] (either optional) that exist at server time `now`, ascending, at most `limit`.
    pub fn klines(&mut self, symbol: &str, iv: Interval, start: Option<i64>, end: Option<i64>, limit: usize, now: i64) -> Vec<Vec<Value>> {
        self.select(symbol, iv, start, end, Some(limit), now, Serve::Respond).into_iter().map(|(_, row)| row).collect()
    }

    /// The closed candles (close time < now) with open time in [start, end], as most recently served.
    pub fn closed_klines(&mut self, symbol: &str, iv: Interval, start: i64, end: i64, now: i64) -> Vec<Vec<Value>> {
        let rows = self.select(symbol, iv, Some(start), Some(end), None, now, Serve::Peek);
        rows.into_iter().filter(|(close, _)| *close < now).map(|(_, row)| row).collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn select(
        &mut self,
        symbol: &str,
        iv: Interval,
        start: Option<i64>,
        end: Option<i64>,
        limit: Option<usize>,
        now: i64,
        serve: Serve,
    ) -> Vec<(i64, Vec<Value>)> {
        let Some(meta) = self.symbol(symbol).cloned() else { return Vec::new() };
        let limit = limit.unwrap_or(usize::MAX);
        let end = end.map_or(now, |e| e.min(now));
        // A delisted symbol has no candle that opens at or after the delisting; the one that
        // straddles it stops changing there (it is generated as seen at the delisting).
        let end = meta.delisted_ms.map_or(end, |d| end.min(d.saturating_sub(1)));
        let bar_now = meta.delisted_ms.map_or(now, |d| now.min(d));
        let holes = Holes::of(&self.outages, symbol, iv);
        let lo = start.unwrap_or(i64::MIN);
        let revise = self.revise.contains(symbol);
        let mut out: Vec<(i64, i64, Vec<Value>)> = Vec::new();
        if let Some(series) = self.recorded.get(&(symbol.to_string(), iv)) {
            let matching = series.iter().filter(|r| r.open_time >= lo && r.open_time <= end && holes.at(r.open_time).is_none());
            let picked: Vec<&Recorded> = if start.is_some() {
                matching.take(limit).collect()
            } else {
                let all: Vec<&Recorded> = matching.collect();
                all[all.len().saturating_sub(limit)..].to_vec()
            };
            out.extend(picked.into_iter().map(|r| (r.open_time, r.close_time, r.row.clone())));
        } else {
            let first = iv.open_of(meta.spec.onboard_ms);
            let last = iv.open_of(end);
            let mut opens = Vec::new();
            if start.is_some() {
                let mut o = iv.ceil_open(lo).max(first);
                while o <= last && opens.len() < limit {
                    if let Some((_, to)) = holes.at(o) {
                        if to >= last {
                            break;
                        }
                        o = iv.ceil_open(to + 1);
                        continue;
                    }
                    opens.push(o);
                    o = iv.next_open(o);
                }
            } else {
                let mut o = last;
                while o >= first && o >= lo && opens.len() < limit {
                    if let Some((from, _)) = holes.at(o) {
                        if from <= first {
                            break;
                        }
                        o = iv.open_of(from - 1);
                        continue;
                    }
                    opens.push(o);
                    o = iv.prev_open(o);
                }
                opens.reverse();
            }
            out.extend(opens.into_iter().map(|o| {
                let bar = gen_bar(&meta, iv, o, bar_now);
                (bar.open_time, bar.close_time, bar.to_row(&meta))
            }));
        }
        if revise {
            for (open, close, row) in &mut out {
                if *close >= now {
                    continue;
                }
                let count = self.served.entry((symbol.to_string(), iv, *open)).or_insert(0);
                let rev = match serve {
                    Serve::Respond => {
                        *count += 1;
                        *count - 1
                    }
                    Serve::Peek => count.saturating_sub(1),
                };
                if rev > 0
                    && let Some(bumped) = row.get(5).and_then(Value::as_str).and_then(|v| bump_decimal(v, rev))
                {
                    row[5] = Value::String(bumped);
                }
            }
        }
        out.into_iter().map(|(_, close, row)| (close, row)).collect()
    }

    /// The body of `GET /fapi/v1/exchangeInfo`.
    pub fn exchange_info(&self, now: i64, weight_limit: u32) -> Value {
        let symbols: Vec<Value> = self
            .symbols
            .iter()
            .map(|m| {
                let s = &m.spec;
                let tick = fmt_units(1, m.price_dp);
                let step = fmt_units(1, m.qty_dp);
                json!({
                    "symbol": s.symbol,
                    "pair": pair_of(&s.symbol),
                    "contractType": s.contract_type,
                    "deliveryDate": delivery_date(m),
                    "onboardDate": s.onboard_ms,
                    "status": s.status,
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": base_asset_of(s),
                    "quoteAsset": s.quote_asset,
                    "marginAsset": s.quote_asset,
                    "pricePrecision": m.price_dp,
                    "quantityPrecision": m.qty_dp,
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "underlyingSubType": [],
                    "settlePlan": 0,
                    "triggerProtect": "0.0500",
                    "liquidationFee": "0.012500",
                    "marketTakeBound": "0.05",
                    "maxMoveOrderLimit": 10000,
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000", "tickSize": tick},
                        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "100000000", "stepSize": step},
                        {"filterType": "MARKET_LOT_SIZE", "minQty": step, "maxQty": "10000000", "stepSize": step},
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                        {"filterType": "MIN_NOTIONAL", "notional": "5"},
                        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500", "multiplierDecimal": "4"}
                    ],
                    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"]
                })
            })
            .collect();
        json!({
            "timezone": "UTC",
            "serverTime": now,
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300}
            ],
            "exchangeFilters": [],
            "assets": [
                {"asset": "USDT", "marginAvailable": true, "autoAssetExchange": "-10000"},
                {"asset": "USDC", "marginAvailable": true, "autoAssetExchange": "-10000"}
            ],
            "symbols": symbols
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(y: i64, m: u32, d: u32) -> i64 {
        days_from_civil(y, m, d) * DAY
    }

    #[test]
    fn civil_round_trip() {
        for z in [-800_000, -1, 0, 1, 59, 60, 10_957, 19_723, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(ms(2024, 1, 1), DEFAULT_ONBOARD_MS);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn weeks_open_on_monday_and_months_on_the_first() {
        // 2024-01-01 was a Monday.
        let t = ms(2024, 1, 3) + 5 * HOUR;
        assert_eq!(Interval::W1.open_of(t), ms(2024, 1, 1));
        assert_eq!(Interval::W1.next_open(ms(2024, 1, 1)), ms(2024, 1, 8));
        assert_eq!(Interval::Mo1.open_of(ms(2024, 2, 29) + 123), ms(2024, 2, 1));
        assert_eq!(Interval::Mo1.next_open(ms(2024, 2, 1)), ms(2024, 3, 1));
        assert_eq!(Interval::Mo1.next_open(ms(2024, 12, 1)), ms(2025, 1, 1));
        assert_eq!(Interval::Mo1.prev_open(ms(2025, 1, 1)), ms(2024, 12, 1));
        assert_eq!(Interval::H4.open_of(ms(2024, 1, 1) + 5 * HOUR), ms(2024, 1, 1) + 4 * HOUR);
        assert_eq!(Interval::H4.ceil_open(ms(2024, 1, 1) + 1), ms(2024, 1, 1) + 4 * HOUR);
        for iv in Interval::ALL {
            assert_eq!(Interval::parse(iv.as_str()), Some(iv));
            let o = iv.open_of(ms(2025, 7, 19) + 777);
            assert_eq!(iv.prev_open(iv.next_open(o)), o);
            assert_eq!(iv.open_of(iv.next_open(o) - 1), o);
        }
        assert_eq!(Interval::parse("1s"), None);
    }

    #[test]
    fn generated_bars_are_valid_and_chain() {
        let meta = SymbolMeta::new(SymbolSpec::perpetual("BTCUSDT", DEFAULT_ONBOARD_MS));
        let low_meta = SymbolMeta::new(SymbolSpec::perpetual("1000SATSUSDT", DEFAULT_ONBOARD_MS));
        let odd_meta = SymbolMeta::new(SymbolSpec::perpetual("QQQXUSDT", DEFAULT_ONBOARD_MS));
        let now = ms(2030, 1, 1);
        for m in [&meta, &low_meta, &odd_meta] {
            for iv in Interval::ALL {
                let mut o = iv.open_of(ms(2025, 3, 1) + 12_345);
                let mut prev: Option<Bar> = None;
                for _ in 0..30 {
                    let b = gen_bar(m, iv, o, now);
                    assert!(b.low <= b.open.min(b.close) && b.open.max(b.close) <= b.high, "{b:?}");
                    assert!(b.low >= 1 && b.taker_base <= b.volume && b.taker_quote <= b.quote_volume);
                    assert_eq!(b.close_time, iv.next_open(o) - 1);
                    if let Some(p) = prev {
                        assert_eq!(p.close, b.open, "close chains to the next open");
                    }
                    assert_eq!(gen_bar(m, iv, o, now + 1), b, "closed bars do not depend on now");
                    prev = Some(b);
                    o = iv.next_open(o);
                }
            }
        }
        // The open candle is partial and changes with time.
        let o = Interval::H1.open_of(now);
        let a = gen_bar(&meta, Interval::H1, o, o + 10 * MINUTE);
        let b = gen_bar(&meta, Interval::H1, o, o + 40 * MINUTE);
        assert!(a.volume < b.volume);
        assert!(b.low <= b.open.min(b.close) && b.open.max(b.close) <= b.high);
    }

    #[test]
    fn decimals() {
        assert_eq!(fmt_units(1234567, 6), "1.234567");
        assert_eq!(fmt_units(5, 3), "0.005");
        assert_eq!(fmt_units(42, 0), "42");
        assert_eq!(bump_decimal("246654515", 1).as_deref(), Some("246654516"));
        assert_eq!(bump_decimal("0.999", 1).as_deref(), Some("1.000"));
        assert_eq!(bump_decimal("12.50", 3).as_deref(), Some("12.53"));
        assert_eq!(bump_decimal("-1", 1), None);
    }

    #[test]
    fn default_symbol_names_are_unique() {
        let names: HashSet<String> = default_symbols(100).into_iter().chain(extra_symbols()).map(|s| s.symbol).collect();
        assert_eq!(names.len(), 106);
        assert_eq!(delivery_of(&extra_symbols()[0]), ms(2026, 3, 27) + 8 * HOUR);
    }
}
