//! The streams' settings, scripted faults and counters, shared by every websocket connection.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Streams one connection may carry, as documented for USD-M futures.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;
/// How often each stream sends an update of its current candle (real time), as documented.
pub const DEFAULT_UPDATE: Duration = Duration::from_millis(250);
/// A ping frame every 3 minutes of server time.
pub const PING_EVERY_MS: i64 = 3 * 60_000;
/// Unanswered pings in a row after which the server drops the connection: the documented
/// 10 minutes without a pong, counted in pings so that a clock jump cannot cut a live client.
pub const UNANSWERED_PINGS_LIMIT: u32 = 4;
/// A connection lives 24 hours of server time, then is closed.
pub const CONNECTION_LIFETIME_MS: i64 = 24 * 3_600_000;
/// Text or binary messages a client may send per second (real time) before it is dropped.
pub const INCOMING_PER_SECOND: u32 = 10;
/// New connections one IP may open per [`CONNECTION_WINDOW`] (real time), as Binance documents
/// for its websocket streams ("300 connections per attempt every 5 minutes per IP"); past it
/// the upgrade is refused with HTTP 429.
pub const CONNECTIONS_PER_WINDOW: usize = 300;
pub const CONNECTION_WINDOW: Duration = Duration::from_secs(300);
/// At most this many closes per stream per update: after a clock jump, older closes are skipped.
pub const MAX_CLOSES_PER_UPDATE: usize = 100;

/// A scripted stream fault. Each applies to the next `n` messages or closes of any connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFault {
    /// The next `n` messages (updates or closes) are sent as text that is not JSON.
    Malformed(u32),
    /// The next `n` closes (`"x":true`) are sent twice in a row.
    Duplicate(u32),
    /// The next `n` closes are never sent: the stream goes on with the next candle's updates.
    MissClose(u32),
}

/// Counters of the websocket side since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStats {
    /// Connections accepted (upgraded) so far.
    pub connections_opened: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Upgrade requests refused (bad or too many streams, or too many new connections).
    pub connections_refused: u64,
    /// Of those, refused for the connections-per-IP limit (HTTP 429).
    pub connections_rate_limited: u64,
    /// Connections the server ended: dropped on request, 24 hours, unanswered pings, too many
    /// incoming messages.
    pub connections_dropped: u64,
    /// Kline messages sent (updates and closes, duplicates and malformed ones included).
    pub messages_sent: u64,
    /// Closes (`"x":true`) sent, duplicates included.
    pub closes_sent: u64,
    /// Closes left out by `MissClose`.
    pub closes_missed: u64,
    /// Messages (updates, closes, pings) not sent because of a silence.
    pub messages_silenced: u64,
    pub malformed_sent: u64,
    pub duplicates_sent: u64,
    pub pings_sent: u64,
    pub pongs_received: u64,
}

pub(crate) struct StreamState {
    pub max_streams: usize,
    /// New connections per IP per window (`CONNECTIONS_PER_WINDOW`, `CONNECTION_WINDOW`).
    pub connections_per_window: (usize, Duration),
    /// Real times (ms) of the connections each IP opened within the window.
    pub attempts: std::collections::HashMap<std::net::IpAddr, std::collections::VecDeque<i64>>,
    pub update: Duration,
    /// Bumped by every drop request: a connection that sees a newer generation ends.
    pub drop_generation: u64,
    /// No message at all (not even a ping) before this real time, ms.
    pub silent_until_real_ms: i64,
    pub malformed: u32,
    pub duplicate: u32,
    pub miss_close: u32,
    pub stats: StreamStats,
}

impl Default for StreamState {
    fn default() -> StreamState {
        StreamState {
            max_streams: MAX_STREAMS_PER_CONNECTION,
            connections_per_window: (CONNECTIONS_PER_WINDOW, CONNECTION_WINDOW),
            attempts: Default::default(),
            update: DEFAULT_UPDATE,
            drop_generation: 0,
            silent_until_real_ms: 0,
            malformed: 0,
            duplicate: 0,
            miss_close: 0,
            stats: StreamStats::default(),
        }
    }
}

impl StreamState {
    pub fn push(&mut self, fault: StreamFault) {
        match fault {
            StreamFault::Malformed(n) => self.malformed = self.malformed.saturating_add(n),
            StreamFault::Duplicate(n) => self.duplicate = self.duplicate.saturating_add(n),
            StreamFault::MissClose(n) => self.miss_close = self.miss_close.saturating_add(n),
        }
    }

    pub fn clear_faults(&mut self) {
        self.malformed = 0;
        self.duplicate = 0;
        self.miss_close = 0;
        self.silent_until_real_ms = 0;
    }

    /// Counts a new connection from `ip` at real time `now_ms`; false when the IP already
    /// opened its limit within the window (the attempt is then not counted).
    pub fn admit(&mut self, ip: std::net::IpAddr, now_ms: i64) -> bool {
        let (max, window) = self.connections_per_window;
        let times = self.attempts.entry(ip).or_default();
        while times.front().is_some_and(|t| now_ms - t >= window.as_millis() as i64) {
            times.pop_front();
        }
        if times.len() >= max {
            return false;
        }
        times.push_back(now_ms);
        true
    }

    /// Takes one use of a counter fault.
    pub fn take(counter: &mut u32) -> bool {
        if *counter > 0 {
            *counter -= 1;
            true
        } else {
            false
        }
    }
}
