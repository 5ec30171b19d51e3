//! `fake-binance`: a loopback server that behaves like the Binance USD-M futures REST API for
//! the three endpoints candlelog's sync uses — `GET /fapi/v1/time`, `GET /fapi/v1/exchangeInfo`
//! and `GET /fapi/v1/klines` — with a controllable clock, request-weight limits and scripted
//! faults, and the combined kline stream (`/stream`, websocket) with its own faults.
//!
//! ```no_run
//! use fake_binance::{Clock, Config, FakeExchange, Fault, FaultKind};
//!
//! let ex = FakeExchange::start(Config { clock: Clock::Fixed(1_735_689_600_000), ..Config::default() }).unwrap();
//! ex.push_fault(Fault::klines(FaultKind::Status(503)).for_symbol("BTCUSDT"));
//! let url = format!("{}/fapi/v1/klines?symbol=BTCUSDT&interval=4h&startTime=0&limit=1500", ex.url());
//! // … the first such request gets a 503, the next ones real candles.
//! let expected = ex.closed_klines("BTCUSDT", "4h", 0, ex.now_ms());
//! # let _ = (url, expected);
//! ```
//!
//! Generated candles are deterministic: a function of (symbol, interval, open time) for closed
//! candles, plus the server time for the one still open. See `README.md` for the HTTP side.

mod control;
mod faults;
mod limits;
mod market;
mod outages;
mod routes;
mod stream;
mod stream_state;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use faults::{Fault, FaultKind, FaultKindSpec, FaultSpec};
pub use limits::klines_weight;
pub use market::{DEFAULT_ONBOARD_MS, Interval, PERPETUAL_DELIVERY_MS, default_symbols, extra_symbols};
pub use stream_state::{
    CONNECTION_LIFETIME_MS, CONNECTION_WINDOW, CONNECTIONS_PER_WINDOW, DEFAULT_UPDATE, INCOMING_PER_SECOND, MAX_CLOSES_PER_UPDATE,
    MAX_STREAMS_PER_CONNECTION, PING_EVERY_MS, StreamFault, StreamStats, UNANSWERED_PINGS_LIMIT,
};

/// How the fake exchange is set up. `Config::default()`: the 60 default symbols, a weight limit of
/// 2400 per minute, the real clock, no latency, a ban after 3 consecutive 429s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The symbols of exchangeInfo (plus [`extra_symbols`], always listed after them).
    pub symbols: Vec<SymbolSpec>,
    /// REQUEST_WEIGHT per window (a minute unless [`FakeExchange::set_rate_window`]), advertised
    /// in exchangeInfo and enforced.
    pub weight_limit: u32,
    /// The server clock (candles, `serverTime`). Rate limiting always runs on real time.
    pub clock: Clock,
    /// Added to every `/fapi` response.
    pub latency: Duration,
    /// A client that keeps requesting while over the limit gets 418 (banned for 2 minutes
    /// unless [`FakeExchange::set_ban_duration`]) after this many consecutive 429s.
    /// `u32::MAX` never bans.
    pub ban_after_429s: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config { symbols: default_symbols(60), weight_limit: 2400, clock: Clock::Real, latency: Duration::ZERO, ban_after_429s: 3 }
    }
}

/// A symbol as listed in exchangeInfo.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SymbolSpec {
    pub symbol: String,
    /// `TRADING`, `SETTLING`, `PENDING_TRADING`, `CLOSE`, …
    pub status: String,
    /// `PERPETUAL`, `CURRENT_QUARTER`, `NEXT_QUARTER`, …
    pub contract_type: String,
    pub quote_asset: String,
    /// `onboardDate`; candles exist from the interval that contains it.
    pub onboard_ms: i64,
}

impl SymbolSpec {
    /// A TRADING USDT perpetual.
    pub fn perpetual(symbol: &str, onboard_ms: i64) -> SymbolSpec {
        SymbolSpec {
            symbol: symbol.to_string(),
            status: "TRADING".to_string(),
            contract_type: "PERPETUAL".to_string(),
            quote_asset: "USDT".to_string(),
            onboard_ms,
        }
    }
}

/// The server clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The machine's clock.
    Real,
    /// Frozen at this Unix time in ms.
    Fixed(i64),
    /// The machine's clock plus this many ms.
    Offset(i64),
    /// `factor` times faster than the machine's clock: `at_ms` at the real time `since_real_ms`
    /// (Unix ms), then `at_ms + (real - since_real_ms) * factor`. Build it with
    /// [`Clock::accelerated`] or [`FakeExchange::set_speed`].
    Scaled { at_ms: i64, since_real_ms: i64, factor: u32 },
}

impl Clock {
    /// Starts at `start_ms` now and runs `factor` times faster than the machine's clock.
    pub fn accelerated(start_ms: i64, factor: u32) -> Clock {
        Clock::Scaled { at_ms: start_ms, since_real_ms: real_ms(), factor }
    }

    fn now_ms(self) -> i64 {
        match self {
            Clock::Real => real_ms(),
            Clock::Fixed(t) => t,
            Clock::Offset(o) => real_ms() + o,
            Clock::Scaled { at_ms, since_real_ms, factor } => at_ms + (real_ms() - since_real_ms) * factor as i64,
        }
    }

    fn advanced(self, ms: i64) -> Clock {
        match self {
            Clock::Real => Clock::Offset(ms),
            Clock::Fixed(t) => Clock::Fixed(t + ms),
            Clock::Offset(o) => Clock::Offset(o + ms),
            Clock::Scaled { at_ms, since_real_ms, factor } => Clock::Scaled { at_ms: at_ms + ms, since_real_ms, factor },
        }
    }

    /// The same time now, running `factor` times faster than the machine's clock from here on.
    fn with_speed(self, factor: u32) -> Clock {
        Clock::accelerated(self.now_ms(), factor)
    }
}

/// Counters since start. Only `/fapi` requests count (control requests do not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// All `/fapi` requests, whatever their answer.
    pub requests: u64,
    /// `/fapi/v1/klines` requests, whatever their answer.
    pub klines_requests: u64,
    /// Weight of all requests the limiter accepted.
    pub weight_used_total: u64,
    /// The highest weight used within one rate-limit window.
    pub max_weight_in_a_minute: u32,
    /// 429s, from the limiter or scripted.
    pub responses_429: u64,
    /// 418s, from the limiter or scripted.
    pub responses_418: u64,
    /// Requests answered (or delayed) by a scripted fault.
    pub faults_served: u64,
    /// Requests answered `503` / `-1008` during an overload span ([`FakeExchange::overload_for`]).
    pub overloaded: u64,
    /// Kline rows in all `200` answers to `/fapi/v1/klines`, as sent (a `Duplicated` or
    /// `OutOfRange` fault's extra row counts; a `Truncated` or `Malformed` answer counts 0).
    #[serde(default)]
    pub klines_served: u64,
}

pub(crate) fn real_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Everything the handlers share.
pub(crate) struct State {
    pub clock: Clock,
    pub latency: Duration,
    pub market: market::Market,
    pub limiter: limits::RateLimiter,
    pub faults: faults::FaultQueue,
    pub stats: Stats,
    /// Rate-limit windows (and bans) run on real time plus this.
    pub window_offset_ms: i64,
    /// Until this real time (ms), every request to this path (`"*"`: any `/fapi` path) that the
    /// limiter accepts gets 503 / -1008.
    pub overload: Option<(String, i64)>,
    /// The websocket streams' settings, faults and counters.
    pub stream: stream_state::StreamState,
}

impl State {
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn stats(&self) -> Stats {
        Stats { max_weight_in_a_minute: self.limiter.max_used, ..self.stats }
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake exchange on loopback. Dropping it shuts the server down.
pub struct FakeExchange {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeExchange {
    /// Starts a server on `127.0.0.1:0` (a free port) on its own thread and tokio runtime.
    /// Returns once the socket is listening.
    pub fn start(config: Config) -> std::io::Result<FakeExchange> {
        FakeExchange::start_at(config, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Like [`FakeExchange::start`], on a chosen address.
    pub fn start_at(config: Config, addr: SocketAddr) -> std::io::Result<FakeExchange> {
        let state = State {
            clock: config.clock,
            latency: config.latency,
            market: market::Market::new(&config.symbols),
            limiter: limits::RateLimiter::new(config.weight_limit, config.ban_after_429s),
            faults: faults::FaultQueue::default(),
            stats: Stats::default(),
            window_offset_ms: 0,
            overload: None,
            stream: stream_state::StreamState::default(),
        };
        let shared = Arc::new(Shared { state: Mutex::new(state) });
        let std_listener = TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("fake-binance").enable_all().build()?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = routes::router(shared.clone());
        let thread = std::thread::Builder::new().name(format!("fake-binance-{}", addr.port())).spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    // The peer address: the stream's connections-per-IP limit counts by it.
                    _ = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()) => {}
                    _ = rx => {}
                }
            });
            // Dropping the runtime cancels in-flight requests (e.g. a Hang fault).
            runtime.shutdown_background();
        })?;
        Ok(FakeExchange { shared, addr, shutdown: Some(tx), thread: Some(thread) })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Freezes the server clock at `ms`.
    pub fn set_time(&self, ms: i64) {
        self.shared.lock().clock = Clock::Fixed(ms);
    }

    /// Moves the server clock forward by `ms` (backwards if negative). A real clock becomes
    /// `Clock::Offset(ms)`.
    pub fn advance(&self, ms: i64) {
        let mut s = self.shared.lock();
        s.clock = s.clock.advanced(ms);
    }

    /// Replaces the server clock.
    pub fn set_clock(&self, clock: Clock) {
        self.shared.lock().clock = clock;
    }

    /// From the server time now on, the clock runs `factor` times faster than the machine's
    /// (1 = real speed, 0 = frozen): `Clock::Scaled`. Candles, `serverTime` and the streams
    /// follow it; rate-limit windows stay on real time.
    pub fn set_speed(&self, factor: u32) {
        let mut s = self.shared.lock();
        s.clock = s.clock.with_speed(factor);
    }

    /// The server time now, in ms.
    pub fn now_ms(&self) -> i64 {
        self.shared.lock().now_ms()
    }

    /// Latency added to every `/fapi` response from now on.
    pub fn set_latency(&self, d: Duration) {
        self.shared.lock().latency = d;
    }

    /// Changes the weight limit (also what exchangeInfo advertises).
    pub fn set_weight_limit(&self, limit: u32) {
        self.shared.lock().limiter.limit = limit;
    }

    /// Scales the rate-limit window (default 60 s; windows are aligned to multiples of it since
    /// the epoch, on real time). Resets the current window's count. The header keeps its name
    /// `X-MBX-USED-WEIGHT-1M`.
    pub fn set_rate_window(&self, d: Duration) {
        self.shared.lock().limiter.set_window(d);
    }

    /// Scales the ban that follows too many 429s (default 2 minutes).
    pub fn set_ban_duration(&self, d: Duration) {
        self.shared.lock().limiter.set_ban(d);
    }

    /// Runs the rate-limit windows (and bans) on real time plus `ms` (default 0). With
    /// `set_clock(Clock::Offset(ms))` as well, the fake is an exchange whose one clock is `ms`
    /// ahead of this machine's: its time endpoint and its weight windows agree, and a client
    /// that counts minutes on its local clock straddles two of the exchange's windows. Resets
    /// the current window's count.
    pub fn set_window_offset(&self, ms: i64) {
        let mut s = self.shared.lock();
        s.window_offset_ms = ms;
        let window = Duration::from_millis(s.limiter.window_ms as u64);
        s.limiter.set_window(window);
    }

    /// "Server overloaded" for `d` from now (real time): every request to `path`
    /// (`"/fapi/v1/klines"`, …, or `"*"` for any `/fapi` path) that passes the rate limiter is
    /// answered `503` with code -1008 (its weight counts), before any scripted fault is taken.
    /// `Duration::ZERO` ends an overload at once.
    pub fn overload_for(&self, path: &str, d: Duration) {
        let until = real_ms() + d.as_millis() as i64;
        self.shared.lock().overload = Some((path.to_string(), until));
    }

    /// Serves a recorded series (the body of a `GET /fapi/v1/klines` response: an array of
    /// kline arrays) for `symbol` and `interval` instead of generated candles. Rows are served
    /// verbatim (same JSON values, same decimal text), in file order, filtered by open time like
    /// generated ones (only rows with open time ≤ server time exist). The close time is field 6.
    /// Rows are not validated beyond "field 0 is an integer", so impossible candles can be
    /// served on purpose. An unknown symbol is added to exchangeInfo (TRADING PERPETUAL, quote
    /// guessed from the name, onboardDate = first open time, precisions from the first row).
    pub fn load_klines(&self, symbol: &str, interval: &str, body_json: &str) -> Result<(), String> {
        self.shared.lock().market.load(symbol, interval, body_json)
    }

    /// Changes the `status` exchangeInfo reports for `symbol` (`TRADING`, `BREAK`, `HALT`,
    /// `PENDING_TRADING`, `SETTLING`, `CLOSE`, `DELIVERING`, `DELIVERED`, `PRE_SETTLE`, … any
    /// non-empty run of capitals and `_`). Klines are served as before: a status alone does not
    /// stop them, and it does not undo a [`FakeExchange::delist`]. Errors on an unknown symbol
    /// or a bad status.
    pub fn set_symbol_status(&self, symbol: &str, status: &str) -> Result<(), String> {
        self.shared.lock().market.set_status(symbol, status)
    }

    /// Delists `symbol` at `at_ms` (server time, need not be aligned): exchangeInfo reports
    /// status `SETTLING` (change it afterwards with [`FakeExchange::set_symbol_status`], e.g. to
    /// `CLOSE`) and `deliveryDate` = `at_ms`; klines only exist for candles that open before
    /// `at_ms`, for every interval, recorded series included. The candle that contains
    /// `at_ms - 1` is the last one; it keeps its normal `closeTime`, so it counts as closed once
    /// the server time passes that, and its generated values stop changing at `at_ms` (they are
    /// the candle as seen at the delisting). Delisting again moves the date. Errors on an
    /// unknown symbol.
    pub fn delist(&self, symbol: &str, at_ms: i64) -> Result<(), String> {
        self.shared.lock().market.delist(symbol, at_ms, "SETTLING")
    }

    /// Removes `symbol` from exchangeInfo: klines for it then answer 400 / -1121 `Invalid
    /// symbol.` like any unknown symbol. Its recorded series and revision counts are dropped
    /// too; outages naming it stay. Errors on an unknown symbol.
    pub fn remove_symbol(&self, symbol: &str) -> Result<(), String> {
        self.shared.lock().market.remove(symbol)
    }

    /// An exchange outage: candles whose open time is in `[from_ms, to_ms]` do not exist for
    /// `symbol` (`None`: every symbol) and `interval` (`None`: every interval), generated or
    /// recorded. Every klines answer skips them and `limit` counts only the candles served, so
    /// a page that starts before the hole goes on after it; [`FakeExchange::closed_klines`]
    /// skips them too. Outages add up. Errors on an unknown interval, an empty symbol or
    /// `from_ms > to_ms`.
    pub fn add_outage(&self, symbol: Option<&str>, interval: Option<&str>, from_ms: i64, to_ms: i64) -> Result<(), String> {
        let outage = outages::Outage::new(symbol, interval, from_ms, to_ms)?;
        self.shared.lock().market.add_outage(outage);
        Ok(())
    }

    /// Ends every outage: the candles in them exist again.
    pub fn clear_outages(&self) {
        self.shared.lock().market.clear_outages();
    }

    /// Queues a scripted fault. See [`Fault`].
    pub fn push_fault(&self, f: Fault) {
        self.shared.lock().faults.push(f);
    }

    /// Drops all queued faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// How many fault uses remain queued.
    pub fn pending_faults(&self) -> u64 {
        self.shared.lock().faults.pending()
    }

    /// When enabled, every closed candle of `symbol` (any interval) gets a new revision each
    /// time a klines response serves it again: the n-th serve after it closed (n from 0) has
    /// its volume (field 5) raised by n units of its last decimal place. Models the exchange
    /// correcting data.
    pub fn revise_after_close(&self, symbol: &str, enable: bool) {
        self.shared.lock().market.set_revise(symbol, enable);
    }

    /// `ws://127.0.0.1:PORT`: append `/stream?streams=btcusdt@kline_1m/…`.
    pub fn stream_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// How often (real time) each stream sends its current candle and any closes; default
    /// 250 ms as documented. Applies to connections opened from now on.
    pub fn set_stream_update(&self, d: Duration) {
        self.shared.lock().stream.update = d.max(Duration::from_millis(1));
    }

    /// Streams one connection may carry (default [`MAX_STREAMS_PER_CONNECTION`], 1024); an
    /// upgrade request with more is refused with 400.
    pub fn set_max_streams_per_connection(&self, n: usize) {
        self.shared.lock().stream.max_streams = n;
    }

    /// New stream connections one IP may open per window of real time (default
    /// [`CONNECTIONS_PER_WINDOW`] per [`CONNECTION_WINDOW`]: 300 per 5 minutes, as documented);
    /// past it the upgrade is refused with HTTP 429, code -1003.
    pub fn set_connections_per_window(&self, max: usize, window: Duration) {
        self.shared.lock().stream.connections_per_window = (max, window);
    }

    /// Drops every open stream connection at its next update (no close frame, as when a
    /// network path dies). New connections are accepted as usual.
    pub fn drop_streams(&self) {
        self.shared.lock().stream.drop_generation += 1;
    }

    /// For `d` from now (real time), no stream connection sends anything: no update, no close,
    /// no ping. Closes due meanwhile are lost, as on a stalled connection. `Duration::ZERO` ends it.
    pub fn silence_streams(&self, d: Duration) {
        self.shared.lock().stream.silent_until_real_ms = real_ms() + d.as_millis() as i64;
    }

    /// Queues a scripted stream fault. See [`StreamFault`].
    pub fn push_stream_fault(&self, f: StreamFault) {
        self.shared.lock().stream.push(f);
    }

    /// Drops queued stream faults and ends a silence.
    pub fn clear_stream_faults(&self) {
        self.shared.lock().stream.clear_faults();
    }

    /// The websocket side's counters.
    pub fn stream_stats(&self) -> StreamStats {
        self.shared.lock().stream.stats
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }

    /// The symbols listed in exchangeInfo, in order (configured, extra, then loaded ones).
    pub fn symbols(&self) -> Vec<SymbolSpec> {
        self.shared.lock().market.symbols()
    }

    /// What the exchange serves as CLOSED candles (close time < server time now) with open
    /// time in [start_ms, end_ms], ascending, without any limit. With revisions on, each candle
    /// is shown as most recently served (or as it will first be served, if never served); this
    /// call counts as no serve. Unknown symbol or interval: empty.
    pub fn closed_klines(&self, symbol: &str, interval: &str, start_ms: i64, end_ms: i64) -> Vec<Vec<serde_json::Value>> {
        let Some(iv) = Interval::parse(interval) else { return Vec::new() };
        let mut s = self.shared.lock();
        let now = s.now_ms();
        s.market.closed_klines(symbol, iv, start_ms, end_ms, now)
    }
}

impl Drop for FakeExchange {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for FakeExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeExchange").field("addr", &self.addr).finish_non_exhaustive()
    }
}
