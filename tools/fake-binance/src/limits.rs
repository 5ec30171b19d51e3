//! Request-weight accounting, the way Binance does it for one IP.
//!
//! Windows are fixed and aligned to wall-clock multiples of the window length since the Unix
//! epoch (by default whole minutes: a request at 00:01:23.456 counts towards the 00:01:00
//! window). They run on REAL time, never on the fake server clock, so that freezing the
//! server's time does not freeze rate limiting.
//!
//! A request whose weight would push the window's total past the limit is refused with 429
//! and does not count. After `ban_after` consecutive 429s (no accepted request in between),
//! the next refused request starts a ban: every request gets 418 until it ends. Weight lookup
//! and bans apply to all loopback clients together (they share one IP).

use std::time::Duration;

/// The endpoint weights of `GET /fapi/v1/klines`, by `limit`.
pub fn klines_weight(limit: u32) -> u32 {
    match limit {
        0..=99 => 1,
        100..=499 => 2,
        500..=1000 => 5,
        _ => 10,
    }
}

/// What the limiter says about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    /// 429: wait `retry_after_secs` (until the next window).
    TooMany {
        retry_after_secs: u64,
    },
    /// 418: banned until `until_ms` (real time), `retry_after_secs` from now.
    Banned {
        until_ms: i64,
        retry_after_secs: u64,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct RateLimiter {
    pub limit: u32,
    pub window_ms: i64,
    pub ban_after: u32,
    pub ban_ms: i64,
    window: i64,
    used: u32,
    strikes: u32,
    banned_until: Option<i64>,
    /// The most weight used in any one window.
    pub max_used: u32,
}

fn ceil_secs(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000).max(1)
}

impl RateLimiter {
    pub fn new(limit: u32, ban_after: u32) -> RateLimiter {
        RateLimiter {
            limit,
            window_ms: 60_000,
            ban_after,
            ban_ms: 120_000,
            window: i64::MIN,
            used: 0,
            strikes: 0,
            banned_until: None,
            max_used: 0,
        }
    }

    pub fn set_window(&mut self, d: Duration) {
        self.window_ms = (d.as_millis() as i64).max(1);
        self.window = i64::MIN;
        self.used = 0;
    }

    pub fn set_ban(&mut self, d: Duration) {
        self.ban_ms = d.as_millis() as i64;
    }

    fn roll(&mut self, now: i64) {
        let w = now.div_euclid(self.window_ms);
        if w != self.window {
            self.window = w;
            self.used = 0;
        }
    }

    /// The weight used in the window that contains `now` (the `X-MBX-USED-WEIGHT-1M` value).
    pub fn used(&mut self, now: i64) -> u32 {
        self.roll(now);
        self.used
    }

    /// Accounts a request of `weight` at real time `now` (ms).
    pub fn check(&mut self, now: i64, weight: u32) -> Verdict {
        self.roll(now);
        if let Some(until) = self.banned_until {
            if now < until {
                return Verdict::Banned { until_ms: until, retry_after_secs: ceil_secs(until - now) };
            }
            self.banned_until = None;
            self.strikes = 0;
        }
        if self.used.saturating_add(weight) > self.limit {
            if self.strikes >= self.ban_after {
                let until = now + self.ban_ms;
                self.banned_until = Some(until);
                self.strikes = 0;
                return Verdict::Banned { until_ms: until, retry_after_secs: ceil_secs(until - now) };
            }
            self.strikes += 1;
            let next = (self.window + 1) * self.window_ms;
            return Verdict::TooMany { retry_after_secs: ceil_secs(next - now) };
        }
        self.used += weight;
        self.strikes = 0;
        self.max_used = self.max_used.max(self.used);
        Verdict::Allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_by_limit() {
        assert_eq!([1, 99, 100, 499, 500, 1000, 1001, 1500].map(klines_weight), [1, 1, 2, 2, 5, 5, 10, 10]);
    }

    #[test]
    fn windows_reset_on_minute_boundaries() {
        let mut l = RateLimiter::new(10, 3);
        let t0 = 1_700_000_040_000; // a whole minute
        assert_eq!(l.check(t0 + 1_000, 6), Verdict::Allowed);
        assert_eq!(l.check(t0 + 2_000, 4), Verdict::Allowed);
        assert_eq!(l.used(t0 + 2_000), 10);
        assert_eq!(l.check(t0 + 58_500, 1), Verdict::TooMany { retry_after_secs: 2 });
        assert_eq!(l.used(t0 + 59_999), 10);
        assert_eq!(l.used(t0 + 60_000), 0);
        assert_eq!(l.check(t0 + 60_000, 1), Verdict::Allowed);
        assert_eq!(l.max_used, 10);
    }

    #[test]
    fn ban_after_consecutive_429s_then_lifted() {
        let mut l = RateLimiter::new(2, 2);
        let t0 = 1_700_000_040_000;
        assert_eq!(l.check(t0, 2), Verdict::Allowed);
        assert!(matches!(l.check(t0 + 1, 1), Verdict::TooMany { .. }));
        assert!(matches!(l.check(t0 + 2, 1), Verdict::TooMany { .. }));
        let v = l.check(t0 + 3, 1);
        assert_eq!(v, Verdict::Banned { until_ms: t0 + 3 + 120_000, retry_after_secs: 120 });
        // Banned even in a fresh window.
        assert!(matches!(l.check(t0 + 61_000, 1), Verdict::Banned { .. }));
        // Lifted afterwards, with the strike count reset.
        assert_eq!(l.check(t0 + 3 + 120_000, 1), Verdict::Allowed);
    }

    #[test]
    fn an_accepted_request_resets_the_strikes() {
        let mut l = RateLimiter::new(3, 1);
        let t0 = 1_700_000_040_000;
        assert_eq!(l.check(t0, 2), Verdict::Allowed);
        assert!(matches!(l.check(t0, 2), Verdict::TooMany { .. }));
        assert_eq!(l.check(t0, 1), Verdict::Allowed);
        assert!(matches!(l.check(t0, 2), Verdict::TooMany { .. }));
        assert!(matches!(l.check(t0, 2), Verdict::Banned { .. }));
    }

    #[test]
    fn scaled_windows() {
        let mut l = RateLimiter::new(1, u32::MAX);
        l.set_window(Duration::from_secs(2));
        assert_eq!(l.check(4_000, 1), Verdict::Allowed);
        assert_eq!(l.check(4_100, 1), Verdict::TooMany { retry_after_secs: 2 });
        for _ in 0..100 {
            assert!(matches!(l.check(4_200, 1), Verdict::TooMany { .. }), "u32::MAX never bans");
        }
        assert_eq!(l.check(6_000, 1), Verdict::Allowed);
    }
}
