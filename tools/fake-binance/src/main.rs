//! `fake-binance`: runs the fake Binance USD-M futures server until killed.
//! Prints exactly one line, `listening on http://127.0.0.1:PORT`, once it accepts connections.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fake_binance::{Clock, Config, FakeExchange, StreamFault, default_symbols};

/// A loopback stand-in for the Binance USD-M futures REST API (time, exchangeInfo, klines),
/// with a controllable clock and scripted faults (see /_fake/* in README.md).
#[derive(Parser, Debug)]
#[command(name = "fake-binance", version)]
struct Args {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// REQUEST_WEIGHT limit per window.
    #[arg(long, default_value_t = 2400)]
    weight_limit: u32,
    /// Latency added to every /fapi response, in ms.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Server clock: `real`, a fixed Unix time in ms, or `offset:MS` (real + MS, may be negative).
    #[arg(long, default_value = "real", value_parser = parse_clock)]
    time: Clock,
    /// Number of TRADING USDT perpetuals (the first 60 have real-looking names).
    #[arg(long, conflicts_with = "symbol_list")]
    symbols: Option<usize>,
    /// Explicit TRADING USDT perpetuals, comma-separated.
    #[arg(long, value_delimiter = ',')]
    symbol_list: Vec<String>,
    /// Serve a recorded klines JSON file for a series: SYMBOL:INTERVAL:PATH (repeatable).
    #[arg(long = "klines", value_name = "SYMBOL:INTERVAL:PATH")]
    klines: Vec<String>,
    /// 418 after this many consecutive 429s (u32::MAX = never).
    #[arg(long, default_value_t = 3)]
    ban_after: u32,
    /// Rate-limit window length in ms (windows aligned to multiples of it, real time).
    #[arg(long, default_value_t = 60_000)]
    window_ms: u64,
    /// Ban length in ms.
    #[arg(long, default_value_t = 120_000)]
    ban_ms: u64,
    /// Rate-limit windows run on real time plus this many ms (may be negative); pair it with
    /// `--time offset:MS` for an exchange whose clock is MS off this machine's.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    window_offset_ms: i64,
    /// Set a symbol's exchangeInfo status: SYMBOL:STATUS, e.g. BTCUSDT:BREAK (repeatable).
    #[arg(long, value_name = "SYMBOL:STATUS")]
    symbol_status: Vec<String>,
    /// Delist a symbol at AT_MS (status SETTLING unless given, deliveryDate AT_MS, no candle
    /// opens at or after AT_MS): SYMBOL:AT_MS[:STATUS] (repeatable).
    #[arg(long, value_name = "SYMBOL:AT_MS[:STATUS]")]
    delist: Vec<String>,
    /// Remove a symbol from exchangeInfo (its klines answer -1121) (repeatable).
    #[arg(long, value_name = "SYMBOL")]
    remove_symbol: Vec<String>,
    /// An outage: no candle opens in [FROM_MS, TO_MS] (inclusive) for SYMBOL and INTERVAL, either
    /// of which may be `*` (every one); with only FROM_MS-TO_MS, for every series (repeatable).
    #[arg(long, value_name = "[SYMBOL:INTERVAL:]FROM_MS-TO_MS")]
    outage: Vec<String>,
    /// Run the server clock this many times faster than real time, from its start value
    /// (`--time`) on; streams, candles and 24-hour disconnects follow it.
    #[arg(long, default_value_t = 1)]
    speed: u32,
    /// Stream update period in real ms (default 250, as documented).
    #[arg(long, default_value_t = 250)]
    stream_update_ms: u64,
    /// Streams one websocket connection may carry.
    #[arg(long, default_value_t = fake_binance::MAX_STREAMS_PER_CONNECTION)]
    max_streams: usize,
    /// Drop every open stream connection every this many real ms (0 = never).
    #[arg(long, default_value_t = 0)]
    stream_drop_every_ms: u64,
    /// Send the first N stream messages malformed (not JSON).
    #[arg(long, default_value_t = 0)]
    stream_malformed: u32,
    /// Send the first N stream closes twice.
    #[arg(long, default_value_t = 0)]
    stream_duplicate: u32,
    /// Never send the first N stream closes.
    #[arg(long, default_value_t = 0)]
    stream_miss_close: u32,
    /// Send nothing on any stream for the first MS real ms.
    #[arg(long, default_value_t = 0)]
    stream_silence_ms: u64,
}

fn parse_clock(s: &str) -> Result<Clock, String> {
    if s == "real" {
        return Ok(Clock::Real);
    }
    if let Some(o) = s.strip_prefix("offset:") {
        return o.parse().map(Clock::Offset).map_err(|e| format!("bad offset {o:?}: {e}"));
    }
    s.parse().map(Clock::Fixed).map_err(|_| format!("expected `real`, a Unix time in ms, or `offset:MS`, got {s:?}"))
}

/// An `--outage` argument, parsed; `None` is every symbol or interval.
#[derive(Debug, PartialEq, Eq)]
struct OutageArg<'a> {
    symbol: Option<&'a str>,
    interval: Option<&'a str>,
    from_ms: i64,
    to_ms: i64,
}

/// `[SYMBOL:INTERVAL:]FROM_MS-TO_MS`, `*` for every symbol or interval.
fn parse_outage(spec: &str) -> Result<OutageArg<'_>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (symbol, interval, span) = match parts[..] {
        [span] => ("*", "*", span),
        [symbol, interval, span] => (symbol, interval, span),
        _ => return Err(format!("--outage {spec:?}: expected [SYMBOL:INTERVAL:]FROM_MS-TO_MS")),
    };
    let (from, to) = span.split_once('-').ok_or_else(|| format!("--outage {spec:?}: expected FROM_MS-TO_MS, got {span:?}"))?;
    let ms = |v: &str| v.parse::<i64>().map_err(|e| format!("--outage {spec:?}: bad time {v:?} ({e}); give Unix ms"));
    Ok(OutageArg { symbol: star_is_any(symbol), interval: star_is_any(interval), from_ms: ms(from)?, to_ms: ms(to)? })
}

fn star_is_any(v: &str) -> Option<&str> {
    (v != "*").then_some(v)
}

fn run(args: Args) -> Result<FakeExchange, String> {
    let symbols = if !args.symbol_list.is_empty() {
        args.symbol_list.iter().map(|s| fake_binance::SymbolSpec::perpetual(s.trim(), fake_binance::DEFAULT_ONBOARD_MS)).collect()
    } else {
        default_symbols(args.symbols.unwrap_or(60))
    };
    let config = Config {
        symbols,
        weight_limit: args.weight_limit,
        clock: args.time,
        latency: Duration::from_millis(args.latency_ms),
        ban_after_429s: args.ban_after,
    };
    let ex = FakeExchange::start_at(config, SocketAddr::from(([127, 0, 0, 1], args.port))).map_err(|e| format!("cannot listen: {e}"))?;
    ex.set_rate_window(Duration::from_millis(args.window_ms));
    ex.set_ban_duration(Duration::from_millis(args.ban_ms));
    ex.set_window_offset(args.window_offset_ms);
    for spec in &args.klines {
        let mut parts = spec.splitn(3, ':');
        let (Some(symbol), Some(interval), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("--klines {spec:?}: expected SYMBOL:INTERVAL:PATH"));
        };
        let body = std::fs::read_to_string(PathBuf::from(path)).map_err(|e| format!("--klines {spec:?}: {e}"))?;
        ex.load_klines(symbol, interval, &body).map_err(|e| format!("--klines {spec:?}: {e}"))?;
    }
    for spec in &args.symbol_status {
        let (symbol, status) = spec.split_once(':').ok_or_else(|| format!("--symbol-status {spec:?}: expected SYMBOL:STATUS"))?;
        ex.set_symbol_status(symbol, status).map_err(|e| format!("--symbol-status {spec:?}: {e}"))?;
    }
    for spec in &args.delist {
        let mut parts = spec.splitn(3, ':');
        let (Some(symbol), Some(at)) = (parts.next(), parts.next()) else {
            return Err(format!("--delist {spec:?}: expected SYMBOL:AT_MS[:STATUS]"));
        };
        let at: i64 = at.parse().map_err(|e| format!("--delist {spec:?}: bad time {at:?} ({e}); give Unix ms"))?;
        ex.delist(symbol, at).map_err(|e| format!("--delist {spec:?}: {e}"))?;
        if let Some(status) = parts.next() {
            ex.set_symbol_status(symbol, status).map_err(|e| format!("--delist {spec:?}: {e}"))?;
        }
    }
    for symbol in &args.remove_symbol {
        ex.remove_symbol(symbol).map_err(|e| format!("--remove-symbol {symbol:?}: {e}"))?;
    }
    for spec in &args.outage {
        let o = parse_outage(spec)?;
        ex.add_outage(o.symbol, o.interval, o.from_ms, o.to_ms).map_err(|e| format!("--outage {spec:?}: {e}"))?;
    }
    if args.speed != 1 {
        ex.set_speed(args.speed);
    }
    ex.set_stream_update(Duration::from_millis(args.stream_update_ms));
    ex.set_max_streams_per_connection(args.max_streams);
    for (n, fault) in [
        (args.stream_malformed, StreamFault::Malformed as fn(u32) -> StreamFault),
        (args.stream_duplicate, StreamFault::Duplicate),
        (args.stream_miss_close, StreamFault::MissClose),
    ] {
        if n > 0 {
            ex.push_stream_fault(fault(n));
        }
    }
    if args.stream_silence_ms > 0 {
        ex.silence_streams(Duration::from_millis(args.stream_silence_ms));
    }
    Ok(ex)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let drop_every = Duration::from_millis(args.stream_drop_every_ms);
    match run(args) {
        Ok(ex) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {}", ex.url());
            let _ = out.flush();
            drop(out);
            loop {
                if drop_every.is_zero() {
                    std::thread::park();
                } else {
                    std::thread::sleep(drop_every);
                    ex.drop_streams();
                }
            }
        }
        Err(e) => {
            eprintln!("fake-binance: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{OutageArg, parse_outage};

    fn arg<'a>(symbol: Option<&'a str>, interval: Option<&'a str>, from_ms: i64, to_ms: i64) -> Result<OutageArg<'a>, String> {
        Ok(OutageArg { symbol, interval, from_ms, to_ms })
    }

    #[test]
    fn outage_specs() {
        assert_eq!(parse_outage("100-200"), arg(None, None, 100, 200));
        assert_eq!(parse_outage("BTCUSDT:1m:100-200"), arg(Some("BTCUSDT"), Some("1m"), 100, 200));
        assert_eq!(parse_outage("*:4h:100-200"), arg(None, Some("4h"), 100, 200));
        assert_eq!(parse_outage("BTCUSDT:*:5-5"), arg(Some("BTCUSDT"), None, 5, 5));
        for bad in ["", "100", "BTCUSDT:100-200", "a:b:c:1-2", "x-2", "1-y"] {
            assert!(parse_outage(bad).is_err(), "{bad:?}");
        }
    }
}
