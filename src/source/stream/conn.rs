//! One stream connection's life: connect, read until silence, error or close, report,
//! back off, connect again, until stopped. Closed candles go out once each.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::{ConnectGate, Counters, StreamEvent, StreamOptions, bump, event, stream_name};
use crate::event::{Interval, Symbol};
use crate::log::writer::now_ms;

pub(crate) struct Conn {
    index: usize,
    url: String,
    series: Vec<(Symbol, Interval)>,
    names: HashMap<String, (Symbol, Interval)>,
    /// The open time of the newest close passed on, per stream: older or equal ones are repeats.
    last_closed: HashMap<String, i64>,
    /// The newest close seen (or reported missed) per stream, across reconnects: a later candle
    /// that is not its successor means closes went missing. Kept over a reconnect because the
    /// caller's REST fill at the reconnect cannot cover closes lost on the new connection
    /// before its first message (a stalled start); reporting them again is cheap.
    seen: HashMap<String, i64>,
    silence: Duration,
    connect_timeout: Duration,
    backoff: Duration,
    max_backoff: Duration,
    counters: Arc<Counters>,
    gate: Arc<ConnectGate>,
    tx: mpsc::Sender<StreamEvent>,
    stop: watch::Receiver<bool>,
}

impl Conn {
    /// A [`StreamEvent::Missed`] if `ev` shows that closes before it never arrived: for a close,
    /// any candle between the last close seen and it; for an update, also the one before it.
    fn missed_before(&mut self, ev: &event::KlineEvent) -> Option<StreamEvent> {
        let c = &ev.candle;
        let Some(&last) = self.seen.get(&ev.stream) else {
            if ev.closed {
                self.seen.insert(ev.stream.clone(), c.open_time);
            }
            return None;
        };
        let first_due = c.interval.next_open(last)?;
        let newest_due = c.interval.prev_open(c.open_time)?;
        // An update stands for the close before it, a close for itself: either way, seen.
        let seen = if ev.closed { c.open_time } else { newest_due };
        self.seen.insert(ev.stream.clone(), seen.max(last));
        (newest_due >= first_due).then(|| {
            bump(&self.counters.missed);
            StreamEvent::Missed { symbol: c.symbol.clone(), interval: c.interval, from: first_due, to: newest_due }
        })
    }
}

/// Why a connection ended.
enum End {
    Stopped,
    Lost(String),
}

impl Conn {
    pub fn new(
        index: usize,
        base: &str,
        series: Vec<(Symbol, Interval)>,
        opts: &StreamOptions,
        (counters, gate): (Arc<Counters>, Arc<ConnectGate>),
        tx: mpsc::Sender<StreamEvent>,
        stop: watch::Receiver<bool>,
    ) -> Conn {
        let names: HashMap<String, (Symbol, Interval)> = series.iter().map(|(s, i)| (stream_name(s, *i), (s.clone(), *i))).collect();
        let list: Vec<String> = series.iter().map(|(s, i)| stream_name(s, *i)).collect();
        Conn {
            index,
            url: format!("{base}/stream?streams={}", list.join("/")),
            series,
            names,
            last_closed: HashMap::new(),
            seen: HashMap::new(),
            silence: opts.silence_timeout,
            connect_timeout: opts.connect_timeout,
            backoff: opts.backoff,
            max_backoff: opts.max_backoff,
            counters,
            gate,
            tx,
            stop,
        }
    }

    pub async fn run(mut self) {
        let mut wait = self.backoff;
        let mut connected_before = false;
        loop {
            if *self.stop.borrow() {
                return;
            }
            if !self.wait_for_the_gate().await {
                return;
            }
            let attempt = tokio::time::timeout(self.connect_timeout, tokio_tungstenite::connect_async(self.url.as_str())).await;
            let ws = match attempt {
                Ok(Ok((ws, _))) => ws,
                Ok(Err(e)) => {
                    self.lost_attempt(format!("cannot connect to {}: {e}", self.url), &mut wait).await;
                    continue;
                }
                Err(_) => {
                    self.lost_attempt(format!("connecting to {} took over {:?}", self.url, self.connect_timeout), &mut wait).await;
                    continue;
                }
            };
            bump(&self.counters.connected);
            if connected_before {
                bump(&self.counters.reconnects);
            }
            let hello = StreamEvent::Connected { connection: self.index, streams: self.series.clone(), reconnect: connected_before };
            connected_before = true;
            if self.tx.send(hello).await.is_err() {
                return;
            }
            let (end, received) = self.read(ws).await;
            self.counters.connected.fetch_sub(1, Ordering::Relaxed);
            if received {
                wait = self.backoff;
            }
            match end {
                End::Stopped => return,
                End::Lost(reason) => {
                    tracing::warn!(connection = self.index, "stream connection lost: {reason}; reconnecting");
                    if self.tx.send(StreamEvent::Disconnected { connection: self.index, reason }).await.is_err() {
                        return;
                    }
                    self.sleep(&mut wait).await;
                }
            }
        }
    }

    /// Waits until the connections-per-IP window has a place; false when stopped meanwhile.
    async fn wait_for_the_gate(&mut self) -> bool {
        let mut told = false;
        loop {
            match self.gate.try_take() {
                Ok(()) => return true,
                Err(wait) => {
                    if !told {
                        bump(&self.counters.connect_waits);
                        tracing::warn!(connection = self.index, "the connections-per-IP limit is reached: next attempt in {wait:?}");
                        told = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.changed() => return false,
                    }
                }
            }
        }
    }

    async fn lost_attempt(&mut self, reason: String, wait: &mut Duration) {
        bump(&self.counters.connect_failures);
        tracing::warn!(connection = self.index, "{reason}; retrying in {wait:?}");
        self.sleep(wait).await;
    }

    /// Waits `wait` (or until stopped) and doubles it for next time.
    async fn sleep(&mut self, wait: &mut Duration) {
        tokio::select! {
            _ = tokio::time::sleep(*wait) => {}
            _ = self.stop.changed() => {}
        }
        *wait = (*wait * 2).min(self.max_backoff);
    }

    /// Reads until the connection ends; true in the second place if any message came.
    async fn read(
        &mut self,
        mut ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    ) -> (End, bool) {
        let mut received = false;
        loop {
            let next = tokio::select! {
                _ = self.stop.changed() => {
                    let _ = ws.close(None).await;
                    return (End::Stopped, received);
                }
                next = tokio::time::timeout(self.silence, ws.next()) => next,
            };
            let msg = match next {
                Err(_) => {
                    bump(&self.counters.silences);
                    return (End::Lost(format!("no message for {:?}", self.silence)), received);
                }
                Ok(None) => return (End::Lost("the exchange closed the connection".into()), received),
                Ok(Some(Err(e))) => return (End::Lost(format!("connection error: {e}")), received),
                Ok(Some(Ok(m))) => m,
            };
            received = true;
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(frame) => {
                    let why = frame.map(|f| format!(" ({} {})", f.code, f.reason)).unwrap_or_default();
                    return (End::Lost(format!("the exchange closed the connection{why}")), received);
                }
                // tungstenite queues the pong for a ping and sends it with the next read.
                _ => continue,
            };
            let now = now_ms();
            bump(&self.counters.messages);
            self.counters.last_message_ms.store(now, Ordering::Relaxed);
            let names = &self.names;
            let parsed = event::parse_message(&text, |stream| names.get(stream).cloned());
            let ev = match parsed {
                Ok(ev) => ev,
                Err(e) => {
                    bump(&self.counters.malformed);
                    tracing::warn!(connection = self.index, "skipped: {e}");
                    continue;
                }
            };
            let lag = now - ev.event_ms;
            self.counters.last_lag_ms.store(lag, Ordering::Relaxed);
            self.counters.max_lag_ms.fetch_max(lag, Ordering::Relaxed);
            if let Some(missed) = self.missed_before(&ev)
                && self.tx.send(missed).await.is_err()
            {
                return (End::Stopped, received);
            }
            if !ev.closed {
                continue;
            }
            let last = self.last_closed.entry(ev.stream).or_insert(i64::MIN);
            if ev.candle.open_time <= *last {
                bump(&self.counters.duplicates);
                continue;
            }
            *last = ev.candle.open_time;
            bump(&self.counters.closed);
            let out = StreamEvent::Closed { candle: Box::new(ev.candle), event_ms: ev.event_ms, received_ms: now };
            if self.tx.send(out).await.is_err() {
                return (End::Stopped, received);
            }
        }
    }
}
