//! When a failed request is tried again, and after how long. The policy is
//! data (tests shrink the waits); the classification of responses and the
//! parsing of the exchange's ban and Retry-After hints are pure functions.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[cfg(test)]
use super::limiter::MINUTE_MS;
use super::limiter::next_window_start;

/// Retry counts and backoffs. The defaults are the documented ones.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after a timeout or connection error (default 3)…
    pub transport_retries: u32,
    /// …the first waiting this long, each next one twice as long (default 1 s: 1 s, 2 s, 4 s).
    pub transport_backoff: Duration,
    /// Retries after HTTP 5xx or 408 (default 2)…
    pub server_retries: u32,
    /// …the first waiting this long, then doubling (default 2 s: 2 s, 4 s).
    pub server_backoff: Duration,
    /// Retries after HTTP 429 (default 2). Each waits `Retry-After`, or else
    /// until the exchange's next minute.
    pub rate_limit_retries: u32,
    /// A `Retry-After` longer than this is not waited out: the request fails
    /// at once with `RateLimited` (default 120 s).
    pub max_retry_after: Duration,
    /// Every wait gets a random extra of up to 10 % of it, at most this much
    /// (default 250 ms), so that clients do not come back in step.
    pub max_jitter: Duration,
    /// "Server overloaded" (HTTP 503, or code -1008 with any 5xx) holds every
    /// request of the client, not just the one that saw it: first this long
    /// (default 2 s), doubling with each overloaded answer after a hold ended…
    pub overload_backoff: Duration,
    /// …up to this long per hold (default 60 s)…
    pub max_overload_backoff: Duration,
    /// …and a request keeps waiting for an overload to pass for at most this
    /// long in all (default 15 min), never past the run's deadline
    /// ([`BinanceClient::set_deadline`](super::BinanceClient::set_deadline)).
    pub max_overload_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            transport_retries: 3,
            transport_backoff: Duration::from_secs(1),
            server_retries: 2,
            server_backoff: Duration::from_secs(2),
            rate_limit_retries: 2,
            max_retry_after: Duration::from_secs(120),
            max_jitter: Duration::from_millis(250),
            overload_backoff: Duration::from_secs(2),
            max_overload_backoff: Duration::from_secs(60),
            max_overload_wait: Duration::from_secs(15 * 60),
        }
    }
}

/// What a response status means for the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusClass {
    Success,
    /// 429: over the rate limit; wait and retry.
    RateLimited,
    /// 418: the IP is banned; stop everything.
    Banned,
    /// 403: the exchange's firewall (WAF) refused the request; stop everything, as for a ban.
    Forbidden,
    /// 5xx and 408: the exchange's trouble; back off and retry.
    Retryable,
    /// Any other status: our request is wrong; retrying cannot help.
    Fatal,
}

pub(crate) fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        429 => StatusClass::RateLimited,
        418 => StatusClass::Banned,
        403 => StatusClass::Forbidden,
        408 | 500..=599 => StatusClass::Retryable,
        _ => StatusClass::Fatal,
    }
}

/// Binance's "Server is currently overloaded with other requests" code.
pub(crate) const OVERLOADED_CODE: i64 = -1008;

/// True for an answer that says the exchange is overloaded: HTTP 503, or any
/// 5xx carrying code -1008. Such answers are waited out together (see
/// [`RetryPolicy::overload_backoff`]), not retried twice per request.
pub(crate) fn is_overloaded(status: u16, code: Option<i64>) -> bool {
    status == 503 || ((500..=599).contains(&status) && code == Some(OVERLOADED_CODE))
}

/// The retry budgets, counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetryKind {
    Transport,
    Server,
    RateLimited,
}

impl RetryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryKind::Transport => "transport",
            RetryKind::Server => "server",
            RetryKind::RateLimited => "rate_limited",
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based) after a transport or
    /// server failure, jitter not included; `None` when no retry is left.
    pub(crate) fn backoff(&self, kind: RetryKind, retry: u32) -> Option<Duration> {
        let (retries, base) = match kind {
            RetryKind::Transport => (self.transport_retries, self.transport_backoff),
            RetryKind::Server => (self.server_retries, self.server_backoff),
            RetryKind::RateLimited => return None,
        };
        if retry >= retries {
            return None;
        }
        Some(base.saturating_mul(2u32.saturating_pow(retry)))
    }

    /// The wait before retry number `retry` after a 429: `Retry-After`
    /// seconds when sent, else until the next minute of `now_ms` (the
    /// exchange's clock when known; `window_ms` is a minute but for tests).
    /// `None` when no retry is left or the exchange asks for more than
    /// [`max_retry_after`](Self::max_retry_after).
    pub(crate) fn rate_limit_wait(&self, retry: u32, retry_after: Option<u64>, now_ms: i64, window_ms: i64) -> Option<Duration> {
        if retry >= self.rate_limit_retries {
            return None;
        }
        let wait = match retry_after {
            Some(secs) => Duration::from_secs(secs),
            None => Duration::from_millis(u64::try_from(next_window_start(now_ms, window_ms).saturating_sub(now_ms)).unwrap_or(0)),
        };
        (wait <= self.max_retry_after).then_some(wait)
    }

    /// The shared hold after the `level`-th overloaded answer in a row (0-based),
    /// jitter not included: `overload_backoff` doubled `level` times, capped at
    /// `max_overload_backoff`.
    pub(crate) fn overload_hold(&self, level: u32) -> Duration {
        self.overload_backoff.saturating_mul(2u32.saturating_pow(level.min(20))).min(self.max_overload_backoff)
    }

    /// Every backoff of this policy multiplied by `factor` (the 429 waits are
    /// not ours to shorten: they follow the exchange). For tests that must
    /// sit through minutes of overload in seconds.
    pub fn scaled(&self, factor: f64) -> RetryPolicy {
        let s = |d: Duration| d.mul_f64(factor);
        RetryPolicy {
            transport_backoff: s(self.transport_backoff),
            server_backoff: s(self.server_backoff),
            max_jitter: s(self.max_jitter),
            overload_backoff: s(self.overload_backoff),
            max_overload_backoff: s(self.max_overload_backoff),
            max_overload_wait: s(self.max_overload_wait),
            ..self.clone()
        }
    }

    /// `wait` plus a random extra of up to 10 % of it, capped at `max_jitter`.
    pub(crate) fn with_jitter(&self, wait: Duration) -> Duration {
        let cap = (wait / 10).min(self.max_jitter);
        wait + cap.mul_f64(random_fraction())
    }
}

/// A number in [0, 1); good enough to spread retries, not for anything secret.
fn random_fraction() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The end of an IP ban from the exchange's message, e.g. "Way too many
/// requests; IP(1.2.3.4) banned until 1767225600000. Please use the
/// websocket for live updates to avoid bans."
pub(crate) fn parse_ban_until(msg: &str) -> Option<i64> {
    const MARKER: &str = "banned until";
    let lower = msg.to_ascii_lowercase();
    let at = lower.find(MARKER)? + MARKER.len();
    let rest = msg.get(at..)?.trim_start();
    let digits = rest.find(|c: char| !c.is_ascii_digit()).map_or(rest, |end| rest.get(..end).unwrap_or(""));
    digits.parse().ok()
}

/// `Retry-After` in seconds (the form Binance sends; an HTTP date is ignored).
pub(crate) fn parse_retry_after(value: &str) -> Option<u64> {
    value.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_backoffs() {
        let p = RetryPolicy::default();
        let waits = |kind| (0..5).map_while(|n| p.backoff(kind, n)).collect::<Vec<_>>();
        assert_eq!(waits(RetryKind::Transport), [1, 2, 4].map(Duration::from_secs));
        assert_eq!(waits(RetryKind::Server), [2, 4].map(Duration::from_secs));
        assert_eq!(waits(RetryKind::RateLimited), []);
        assert_eq!(p.rate_limit_retries, 2);
        assert!(p.max_jitter <= Duration::from_millis(250));
    }

    #[test]
    fn statuses_are_classified_as_the_issue_says() {
        use StatusClass::*;
        for (status, class) in [
            (200, Success),
            (204, Success),
            (429, RateLimited),
            (418, Banned),
            (408, Retryable),
            (500, Retryable),
            (502, Retryable),
            (503, Retryable),
            (504, Retryable),
            (400, Fatal),
            (401, Fatal),
            (403, Forbidden),
            (404, Fatal),
            (451, Fatal),
            (302, Fatal),
        ] {
            assert_eq!(classify_status(status), class, "{status}");
        }
    }

    #[test]
    fn overload_holds_double_up_to_a_minute_and_scale_for_tests() {
        let p = RetryPolicy::default();
        let holds: Vec<_> = (0..8).map(|n| p.overload_hold(n).as_secs()).collect();
        assert_eq!(holds, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.overload_hold(u32::MAX), Duration::from_secs(60));
        let fast = p.scaled(0.01);
        assert_eq!((fast.overload_hold(0), fast.max_overload_wait), (Duration::from_millis(20), Duration::from_secs(9)));
        assert_eq!((fast.rate_limit_retries, fast.max_retry_after), (p.rate_limit_retries, p.max_retry_after), "429s follow the exchange");
        assert!(is_overloaded(503, None) && is_overloaded(503, Some(-1001)) && is_overloaded(500, Some(-1008)));
        assert!(!is_overloaded(500, Some(-1000)) && !is_overloaded(502, None) && !is_overloaded(400, Some(-1008)));
    }

    #[test]
    fn a_429_waits_retry_after_or_until_the_next_minute() {
        let p = RetryPolicy::default();
        let t0 = 1_772_323_200_000; // a minute boundary
        assert_eq!(p.rate_limit_wait(0, Some(7), t0 + 5, MINUTE_MS), Some(Duration::from_secs(7)));
        assert_eq!(p.rate_limit_wait(1, None, t0 - 300, MINUTE_MS), Some(Duration::from_millis(300)));
        assert_eq!(p.rate_limit_wait(0, None, t0, MINUTE_MS), Some(Duration::from_secs(60)));
        assert_eq!(p.rate_limit_wait(2, None, t0 - 300, MINUTE_MS), None, "two retries at most");
        assert_eq!(p.rate_limit_wait(0, Some(3600), t0, MINUTE_MS), None, "an hour is a ban in all but name");
    }

    #[test]
    fn jitter_is_small_and_varies() {
        let p = RetryPolicy::default();
        let waits: Vec<_> = (0..50).map(|_| p.with_jitter(Duration::from_secs(1))).collect();
        assert!(waits.iter().all(|w| (Duration::from_secs(1)..=Duration::from_millis(1_100)).contains(w)), "{waits:?}");
        assert!(waits.iter().any(|w| *w != waits[0]), "{waits:?}");
        let long = p.with_jitter(Duration::from_secs(30));
        assert!(long <= Duration::from_millis(30_250), "{long:?}");
        assert_eq!(p.with_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn parses_the_ban_end_from_the_message() {
        for (msg, until) in [
            ("Way too many requests; IP(1.2.3.4) banned until 1767225600000. Please use the websocket.", Some(1_767_225_600_000)),
            ("IP banned until 1234567890123", Some(1_234_567_890_123)),
            ("IP(10.0.0.1) Banned Until 1234567890123.", Some(1_234_567_890_123)),
            ("banned until soon", None),
            ("Too many requests.", None),
            ("banned until 99999999999999999999999", None),
            ("", None),
        ] {
            assert_eq!(parse_ban_until(msg), until, "{msg}");
        }
        assert_eq!(parse_retry_after(" 12 "), Some(12));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
