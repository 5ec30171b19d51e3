//! What the client did, for logs and the Prometheus metrics
//! (`candlelog_exchange_rate_limited_total`, `candlelog_exchange_banned_total`).

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the client's counters since it was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP requests sent (every attempt counts, retries included).
    pub requests: u64,
    /// Attempts that were a retry of a failed one.
    pub retries: u64,
    /// Total request weight spent (by our own count).
    pub weight_used: u64,
    /// HTTP 429 responses (`candlelog_exchange_rate_limited_total`).
    pub responses_429: u64,
    /// Whether the exchange has banned this IP (HTTP 418) or its firewall
    /// refused it (HTTP 403); the client then refuses every request.
    pub banned: bool,
    /// HTTP 418 responses (`candlelog_exchange_banned_total`).
    pub bans: u64,
    /// HTTP 403 responses (the exchange's firewall).
    pub forbidden: u64,
    /// 5xx and 408 responses.
    pub server_errors: u64,
    /// Of those, "server overloaded" answers (HTTP 503 or code -1008).
    pub overloaded: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Connection errors other than timeouts.
    pub transport_errors: u64,
    /// The highest `X-MBX-USED-WEIGHT-1M` the exchange reported.
    pub max_used_weight_header: u32,
    /// The per-minute weight limit in force (from `exchangeInfo`, or the default).
    pub weight_limit_per_minute: u32,
    /// Times a request waited for the next minute's budget, and the total wait.
    pub limiter_waits: u64,
    pub limiter_wait_ms: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub weight_used: AtomicU64,
    pub responses_429: AtomicU64,
    pub bans: AtomicU64,
    pub forbidden: AtomicU64,
    pub server_errors: AtomicU64,
    pub overloaded: AtomicU64,
    pub timeouts: AtomicU64,
    pub transport_errors: AtomicU64,
    pub max_used_weight_header: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ClientStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClientStats {
            requests: get(&self.requests),
            retries: get(&self.retries),
            weight_used: get(&self.weight_used),
            responses_429: get(&self.responses_429),
            banned: get(&self.bans) > 0 || get(&self.forbidden) > 0,
            bans: get(&self.bans),
            forbidden: get(&self.forbidden),
            server_errors: get(&self.server_errors),
            overloaded: get(&self.overloaded),
            timeouts: get(&self.timeouts),
            transport_errors: get(&self.transport_errors),
            max_used_weight_header: u32::try_from(get(&self.max_used_weight_header)).unwrap_or(u32::MAX),
            ..ClientStats::default()
        }
    }
}
