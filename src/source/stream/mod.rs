//! The Binance USD-M combined kline streams (websocket), the live source of `candlelog run`:
//! closed candles as the exchange closes them, validated like REST ones.
//!
//! ```text
//!  symbols × intervals ─► stream names, split by the per-connection limit (1024)
//!        │ one task per connection: connect ─► read ─► (silence > threshold, error, close)
//!        │                                     │        └─► Disconnected, back off, reconnect
//!        │   pings answered by tungstenite     ▼
//!        └──────────── StreamEvent::Connected / Candle (closed only, each once) ─► channel
//! ```
//!
//! The stream is only trusted after the caller has filled the gap since the last candle it
//! has through REST: every (re)connect is announced as [`StreamEvent::Connected`] for that.
//! Files: `event` (one message → a [`Candle`]), `conn` (one connection's loop).

mod conn;
mod event;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use event::{KlineEvent, parse_message, stream_name};

use crate::event::{Candle, Interval, Symbol};

/// Streams one connection may carry, as Binance documents for USD-M futures.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;
/// New connections one IP may open per [`CONNECT_WINDOW`], as Binance documents ("300
/// connections per attempt every 5 minutes per IP"): every attempt of every connection
/// of the client passes one gate, which waits when the window is full.
pub const CONNECTS_PER_WINDOW: usize = 300;
pub const CONNECT_WINDOW: Duration = Duration::from_secs(300);

/// How the stream client connects.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// The stream host, e.g. `wss://fstream.binance.com` (a trailing `/stream` or `/` is
    /// dropped); `/stream?streams=…` is appended.
    pub base_url: String,
    pub symbols: Vec<Symbol>,
    pub intervals: Vec<Interval>,
    /// At most this many streams per connection.
    pub max_streams_per_connection: usize,
    /// No message at all for this long: the connection is taken for dead and replaced.
    /// The exchange sends every stream's open candle every 250 ms, so seconds are plenty.
    pub silence_timeout: Duration,
    /// Giving up on one connection attempt.
    pub connect_timeout: Duration,
    /// The first wait before reconnecting; doubled on each failed attempt up to
    /// `max_backoff`, reset once a connection delivers a message.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Connection attempts allowed per window, all connections together.
    pub connects_per_window: (usize, Duration),
}

impl Default for StreamOptions {
    fn default() -> StreamOptions {
        StreamOptions {
            base_url: "wss://fstream.binance.com".into(),
            symbols: Vec::new(),
            intervals: Vec::new(),
            max_streams_per_connection: MAX_STREAMS_PER_CONNECTION,
            silence_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            connects_per_window: (CONNECTS_PER_WINDOW, CONNECT_WINDOW),
        }
    }
}

/// What the stream client reports, in the order it happens on each connection.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// Connection `connection` is (again) receiving. Candles closed while it was down are not
    /// coming by stream: fill them through REST before trusting it.
    Connected { connection: usize, streams: Vec<(Symbol, Interval)>, reconnect: bool },
    /// Connection `connection` is down and will be retried; `reason` says why.
    Disconnected { connection: usize, reason: String },
    /// A closed candle, validated, the first time it arrives (a repeat is dropped).
    Closed { candle: Box<Candle>, event_ms: i64, received_ms: i64 },
    /// Candles opening in `from..=to` closed on this connection without their close ever
    /// arriving (seen from a later close or update): fill them through REST.
    Missed { symbol: Symbol, interval: Interval, from: i64, to: i64 },
}

/// What is wrong with a message or a connection.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("malformed stream message: {detail}; message starts {excerpt:?}")]
    Malformed { detail: String, excerpt: String },
    #[error("stream {stream}: kline opening at {open_time}: field {field}: {message}")]
    Invalid { stream: String, open_time: u64, field: &'static str, message: String },
    #[error("stream URL {url:?}: {message}")]
    Url { url: String, message: String },
}

/// Counters since start; [`StreamClient::stats`] reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    /// Connections configured (streams split by the per-connection limit).
    pub connections: u64,
    /// Connections receiving now.
    pub connected: u64,
    /// Successful connects after the first one of each connection.
    pub reconnects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Attempts held back because the connections-per-IP window was full.
    pub connect_waits: u64,
    /// Reconnects forced by silence beyond the threshold.
    pub silences: u64,
    /// Text messages received.
    pub messages: u64,
    /// Messages that were not valid kline events (counted, logged, skipped).
    pub malformed: u64,
    /// Closed candles passed on.
    pub closed: u64,
    /// Closes that repeated one already passed on (dropped).
    pub duplicates: u64,
    /// Closes that never arrived, detected from a later message ([`StreamEvent::Missed`]).
    pub missed: u64,
    /// Receive time minus the exchange's event time of the last message, ms (assumes both
    /// clocks agree; negative when the exchange's runs ahead).
    pub last_lag_ms: i64,
    /// The highest such lag seen.
    pub max_lag_ms: i64,
    /// Local time of the last message received, ms (0: none yet).
    pub last_message_ms: i64,
}

#[derive(Default)]
pub(crate) struct Counters {
    connected: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    connect_waits: AtomicU64,
    silences: AtomicU64,
    messages: AtomicU64,
    malformed: AtomicU64,
    closed: AtomicU64,
    duplicates: AtomicU64,
    missed: AtomicU64,
    last_lag_ms: AtomicI64,
    max_lag_ms: AtomicI64,
    last_message_ms: AtomicI64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The client's side of the connections-per-IP limit: the times of its recent attempts.
pub(crate) struct ConnectGate {
    max: usize,
    window: Duration,
    recent: std::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>,
}

impl ConnectGate {
    fn new((max, window): (usize, Duration)) -> ConnectGate {
        ConnectGate { max: max.max(1), window, recent: Default::default() }
    }

    /// Takes a place for one attempt now, or says how long until the oldest leaves the window.
    fn try_take(&self) -> Result<(), Duration> {
        let now = tokio::time::Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        while recent.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            recent.pop_front();
        }
        if recent.len() < self.max {
            recent.push_back(now);
            return Ok(());
        }
        let oldest = recent.front().copied().unwrap_or(now);
        Err((oldest + self.window).saturating_duration_since(now).max(Duration::from_millis(1)))
    }
}

/// A running set of stream connections. Dropping it (or [`StreamClient::stop`]) ends them.
pub struct StreamClient {
    counters: Arc<Counters>,
    connections: usize,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl StreamClient {
    /// Starts one task per connection on the current tokio runtime. Closed candles and
    /// connection changes arrive on the returned channel.
    pub fn spawn(opts: StreamOptions) -> Result<(StreamClient, mpsc::Receiver<StreamEvent>), StreamError> {
        let base = stream_base(&opts.base_url)?;
        let mut series = Vec::new();
        for s in &opts.symbols {
            for &i in &opts.intervals {
                if !series.contains(&(s.clone(), i)) {
                    series.push((s.clone(), i));
                }
            }
        }
        let per = opts.max_streams_per_connection.max(1);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(4096);
        let (stop, stop_rx) = watch::channel(false);
        let gate = Arc::new(ConnectGate::new(opts.connects_per_window));
        let tasks: Vec<_> = series
            .chunks(per)
            .enumerate()
            .map(|(n, chunk)| {
                let c = conn::Conn::new(n, &base, chunk.to_vec(), &opts, (counters.clone(), gate.clone()), tx.clone(), stop_rx.clone());
                tokio::spawn(c.run())
            })
            .collect();
        Ok((StreamClient { counters, connections: tasks.len(), stop, tasks }, rx))
    }

    /// The counters now.
    pub fn stats(&self) -> StreamStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StreamStats {
            connections: self.connections as u64,
            connected: get(&c.connected),
            reconnects: get(&c.reconnects),
            connect_failures: get(&c.connect_failures),
            connect_waits: get(&c.connect_waits),
            silences: get(&c.silences),
            messages: get(&c.messages),
            malformed: get(&c.malformed),
            closed: get(&c.closed),
            duplicates: get(&c.duplicates),
            missed: get(&c.missed),
            last_lag_ms: c.last_lag_ms.load(Ordering::Relaxed),
            max_lag_ms: c.max_lag_ms.load(Ordering::Relaxed),
            last_message_ms: c.last_message_ms.load(Ordering::Relaxed),
        }
    }

    /// Closes every connection and waits for the tasks to end.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for StreamClient {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `ws://` or `wss://` host (and optional path prefix) without a trailing `/stream` or `/`.
fn stream_base(url: &str) -> Result<String, StreamError> {
    let trimmed = url.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/stream").unwrap_or(trimmed);
    if !(trimmed.starts_with("ws://") || trimmed.starts_with("wss://")) || trimmed.contains('?') {
        return Err(StreamError::Url {
            url: url.to_string(),
            message: "expected ws:// or wss:// and a host, e.g. wss://fstream.binance.com (no query)".into(),
        });
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod url_tests {
    use super::stream_base;

    #[test]
    fn stream_urls() {
        assert_eq!(stream_base("wss://fstream.binance.com").unwrap(), "wss://fstream.binance.com");
        assert_eq!(stream_base("wss://fstream.binance.com/stream/").unwrap(), "wss://fstream.binance.com");
        assert_eq!(stream_base("ws://127.0.0.1:9/market").unwrap(), "ws://127.0.0.1:9/market");
        for bad in ["https://fstream.binance.com", "fstream.binance.com", "wss://x/stream?streams=a"] {
            assert!(stream_base(bad).is_err(), "{bad}");
        }
    }
}
