//! The request-weight budget: every request reserves its weight in the
//! current minute window before it is sent, and waits for the next window
//! when the budget (the exchange's per-minute limit less a safety margin)
//! would be exceeded. Windows follow the exchange's clock; the exchange's own
//! count (`X-MBX-USED-WEIGHT-1M`) corrects ours upward.
//!
//! The window is a minute, as on the exchange; its length is a parameter
//! only so tests can run against a fake exchange with shortened windows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::clock::Clock;

/// The exchange counts request weight per minute of its clock.
pub(crate) const MINUTE_MS: i64 = 60_000;

/// Binance's documented default USD-M limit, used until `exchangeInfo` says otherwise.
pub const DEFAULT_WEIGHT_LIMIT: u32 = 2_400;

/// Request weight of `GET /fapi/v1/klines` for a `limit` (Binance's table:
/// 1–99 → 1, 100–499 → 2, 500–1000 → 5, above 1000 → 10). 0 is not a valid
/// limit; it is priced like the smallest row.
pub fn klines_weight(limit: u16) -> u32 {
    match limit {
        0..=99 => 1,
        100..=499 => 2,
        500..=1000 => 5,
        _ => 10,
    }
}

/// Weight of `GET /fapi/v1/time` and `GET /fapi/v1/exchangeInfo`.
pub const LIGHT_WEIGHT: u32 = 1;

/// The window `ms` falls in (windows start on multiples of `window_ms` since the epoch: whole minutes).
pub(crate) fn window_of(ms: i64, window_ms: i64) -> i64 {
    ms.div_euclid(window_ms.max(1))
}

/// Start of the window after the one `ms` falls in.
pub(crate) fn next_window_start(ms: i64, window_ms: i64) -> i64 {
    window_of(ms, window_ms).saturating_add(1).saturating_mul(window_ms.max(1))
}

/// The weight counted in the current minute window. Pure: the caller passes
/// "now", so the window math is tested with any clock.
#[derive(Debug, Clone)]
pub(crate) struct WindowBudget {
    limit: u32,
    margin: f64,
    /// The share of the allowance still used: 1, lowered by each 429 (see [`Self::slow_down`]).
    pace: f64,
    window_ms: i64,
    window: i64,
    used: u32,
}

impl WindowBudget {
    pub fn new(limit: u32, margin: f64, window_ms: i64) -> WindowBudget {
        WindowBudget { limit, margin, pace: 1.0, window_ms: window_ms.max(1), window: i64::MIN, used: 0 }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
    }

    /// What one window may spend: the limit less the margin (times the pace
    /// after 429s), at least 1.
    pub fn allowance(&self) -> u32 {
        let keep = (f64::from(self.limit) * (1.0 - self.margin) * self.pace).floor();
        // Float → int `as` saturates; the margin is validated to be in [0, 1).
        (keep as u32).max(1)
    }

    /// Weight counted in the window `now` falls in.
    pub fn used(&mut self, now_ms: i64) -> u32 {
        self.roll(now_ms);
        self.used
    }

    /// Moves to the window of `now`. A clock that steps back by up to one
    /// window (a new server-time anchor across a boundary) keeps the later
    /// window's count rather than forgetting it; a bigger step (the first
    /// anchor, moving from the local clock to a very different server clock)
    /// starts afresh, or the budget would wait for a window that never comes.
    fn roll(&mut self, now_ms: i64) {
        let window = window_of(now_ms, self.window_ms);
        if window > self.window || window < self.window.saturating_sub(1) {
            self.window = window;
            self.used = 0;
        }
    }

    /// Counts `weight` in the current window and returns that window, or
    /// returns the time (ms) at which the next window opens. A request heavier
    /// than the whole allowance goes alone into an empty window.
    pub fn try_reserve(&mut self, now_ms: i64, weight: u32) -> Result<i64, i64> {
        self.roll(now_ms);
        let fits = self.used.saturating_add(weight) <= self.allowance() || self.used == 0;
        if fits {
            self.used = self.used.saturating_add(weight);
            Ok(self.window)
        } else {
            Err(self.window.saturating_add(1).saturating_mul(self.window_ms))
        }
    }

    /// The exchange reported `used` weight for a request reserved in
    /// `window`: its count is authoritative when higher than ours. A report
    /// about a window we have left says nothing about the current one.
    pub fn observe(&mut self, now_ms: i64, window: i64, used: u32) {
        self.roll(now_ms);
        if window == self.window && used > self.used {
            self.used = used;
        }
    }

    /// The exchange said "too many requests": spend nothing more this window.
    pub fn saturate(&mut self, now_ms: i64) {
        self.roll(now_ms);
        self.used = self.used.max(self.allowance());
    }

    /// The exchange said "too many requests" although we kept to our count:
    /// someone else spends weight on this IP, or its clock is not what we
    /// measured. Every later window spends a fifth less (down to half the
    /// allowance) for the rest of the client's life, so a 429 is not followed
    /// by another and then by a ban.
    pub fn slow_down(&mut self) {
        self.pace = (self.pace * 0.8).max(0.5);
    }
}

/// The shared, async face of [`WindowBudget`].
pub(crate) struct Limiter {
    budget: Mutex<WindowBudget>,
    /// Nothing is sent before this instant (the exchange's `Retry-After`).
    /// Monotonic, because it is a duration from the exchange, and the clock
    /// the windows follow may be re-anchored meanwhile.
    hold: Mutex<Option<Instant>>,
    clock: Arc<dyn Clock>,
    waits: AtomicU64,
    waited_ms: AtomicU64,
}

impl Limiter {
    pub fn new(budget: WindowBudget, clock: Arc<dyn Clock>) -> Limiter {
        Limiter { budget: Mutex::new(budget), hold: Mutex::new(None), clock, waits: AtomicU64::new(0), waited_ms: AtomicU64::new(0) }
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, WindowBudget> {
        self.budget.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `weight` fits in a window, counts it there and returns the
    /// window. Waiters re-check under the lock when they wake, so a crowd
    /// waking at a minute boundary lets through only what the budget allows;
    /// the rest wait for the next boundary.
    pub async fn acquire(&self, weight: u32) -> i64 {
        loop {
            let hold = *self.hold.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(until) = hold.filter(|until| *until > Instant::now()) {
                tracing::debug!(weight, wait_ms = until.saturating_duration_since(Instant::now()).as_millis(), "held by Retry-After");
                self.count_wait(until.saturating_duration_since(Instant::now()));
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
            let now = self.clock.now_ms();
            let attempt = self.budget().try_reserve(now, weight);
            match attempt {
                Ok(window) => return window,
                Err(wake_at) => {
                    // At most one window at a time: the clock may be re-anchored meanwhile.
                    let (until_wake, window_ms) = (wake_at.saturating_sub(now), self.window_ms());
                    let wait_ms = u64::try_from(until_wake.min(window_ms)).unwrap_or(0).max(1);
                    let (used, allowance) = {
                        let mut b = self.budget();
                        (b.used(now), b.allowance())
                    };
                    tracing::debug!(weight, used, allowance, wait_ms, "request weight budget spent; waiting for the next minute");
                    self.count_wait(Duration::from_millis(wait_ms));
                    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                }
            }
        }
    }

    pub fn observe(&self, window: i64, used: u32) {
        let now = self.clock.now_ms();
        self.budget().observe(now, window, used);
    }

    /// A 429: spend nothing more this window (unless `retry_after` says how
    /// long to hold every request instead), and slow every later window.
    pub fn rate_limited(&self, retry_after: Option<Duration>) {
        match retry_after {
            Some(wait) => self.hold_for(wait),
            None => {
                let now = self.clock.now_ms();
                self.budget().saturate(now);
            }
        }
        self.budget().slow_down();
    }

    /// Holds every request for `wait` from now.
    pub fn hold_for(&self, wait: Duration) {
        let Some(until) = Instant::now().checked_add(wait) else { return };
        self.hold_until(until);
    }

    /// Holds every request until `until` (or a later hold already in force).
    pub fn hold_until(&self, until: Instant) {
        let mut hold = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        *hold = Some(hold.map_or(until, |h| h.max(until)));
    }

    fn count_wait(&self, wait: Duration) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waited_ms.fetch_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn set_limit(&self, limit: u32) {
        self.budget().set_limit(limit);
    }

    pub fn limit(&self) -> u32 {
        self.budget().limit()
    }

    pub fn window_ms(&self) -> i64 {
        self.budget().window_ms()
    }

    /// (times a request waited for a window, total ms waited).
    pub fn waits(&self) -> (u64, u64) {
        (self.waits.load(Ordering::Relaxed), self.waited_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    const T0: i64 = 1_772_323_200_000; // 2026-03-01 00:00:00 UTC, a minute boundary

    #[test]
    fn klines_weight_follows_the_documented_table() {
        for (limit, weight) in [(0, 1), (1, 1), (99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10), (1500, 10), (u16::MAX, 10)] {
            assert_eq!(klines_weight(limit), weight, "limit {limit}");
        }
    }

    #[test]
    fn windows_are_whole_minutes() {
        assert_eq!(next_window_start(T0, MINUTE_MS), T0 + MINUTE_MS);
        assert_eq!(next_window_start(T0 - 1, MINUTE_MS), T0);
        assert_eq!(next_window_start(T0 + 59_999, MINUTE_MS), T0 + MINUTE_MS);
        assert_eq!(window_of(-1, MINUTE_MS), -1, "before the epoch still floors");
    }

    #[test]
    fn spends_the_limit_less_the_margin_then_waits_for_the_next_minute() {
        let mut b = WindowBudget::new(60, 0.1, MINUTE_MS);
        assert_eq!(b.allowance(), 54);
        for i in 0..27 {
            assert_eq!(b.try_reserve(T0 + 100 + i, 2), Ok(window_of(T0, MINUTE_MS)));
        }
        assert_eq!(b.try_reserve(T0 + 200, 1), Err(T0 + MINUTE_MS), "54 of 54 spent");
        assert_eq!(b.try_reserve(T0 + 59_999, 1), Err(T0 + MINUTE_MS));
        assert_eq!(b.try_reserve(T0 + MINUTE_MS, 5), Ok(window_of(T0, MINUTE_MS) + 1), "a new minute, a new budget");
        assert_eq!(b.used(T0 + MINUTE_MS + 1), 5);
        assert_eq!(b.used(T0 + 3 * MINUTE_MS), 0);
    }

    #[test]
    fn the_exchange_count_corrects_ours_upward_only_for_the_same_window() {
        let mut b = WindowBudget::new(2400, 0.1, MINUTE_MS);
        let w = b.try_reserve(T0 + 10, 5).unwrap();
        b.observe(T0 + 20, w, 2000);
        assert_eq!(b.used(T0 + 20), 2000, "another process on this IP spent weight");
        b.observe(T0 + 30, w, 3);
        assert_eq!(b.used(T0 + 30), 2000, "a lower count never lowers ours");
        assert_eq!(b.try_reserve(T0 + 40, 160), Ok(w));
        assert_eq!(b.try_reserve(T0 + 40, 1), Err(T0 + MINUTE_MS));
        b.observe(T0 + MINUTE_MS + 5, w, 2159);
        assert_eq!(b.used(T0 + MINUTE_MS + 5), 0, "a late report about the last minute");
    }

    #[test]
    fn a_429_spends_the_rest_of_the_window_and_limits_change() {
        let mut b = WindowBudget::new(100, 0.1, MINUTE_MS);
        b.saturate(T0 + 5);
        assert_eq!(b.try_reserve(T0 + 6, 1), Err(T0 + MINUTE_MS));
        b.set_limit(1000);
        assert_eq!(b.allowance(), 900);
        assert!(b.try_reserve(T0 + 7, 1).is_ok());
        let mut tiny = WindowBudget::new(5, 0.5, MINUTE_MS);
        assert_eq!(tiny.allowance(), 2);
        assert!(tiny.try_reserve(T0, 10).is_ok(), "too heavy for any window: goes alone into an empty one");
        assert!(tiny.try_reserve(T0 + 1, 1).is_err());
        assert_eq!(WindowBudget::new(1, 0.9, MINUTE_MS).allowance(), 1);
    }

    #[test]
    fn each_429_slows_every_later_window_down_to_half() {
        let mut b = WindowBudget::new(100, 0.1, MINUTE_MS);
        b.slow_down();
        assert_eq!(b.allowance(), 72);
        b.slow_down();
        assert_eq!(b.allowance(), 57);
        for _ in 0..10 {
            b.slow_down();
        }
        assert_eq!(b.allowance(), 45, "never below half");
    }

    #[test]
    fn a_clock_stepping_back_a_little_keeps_the_later_count_a_lot_starts_afresh() {
        let mut b = WindowBudget::new(10, 0.0, MINUTE_MS);
        assert!(b.try_reserve(T0 + MINUTE_MS, 10).is_ok());
        assert_eq!(b.try_reserve(T0 + 59_000, 1), Err(T0 + 2 * MINUTE_MS));
        let two_years_back = T0 - 2 * 365 * 24 * 60 * MINUTE_MS;
        assert_eq!(b.try_reserve(two_years_back, 1), Ok(window_of(two_years_back, MINUTE_MS)));
        b.saturate(two_years_back + 1);
        assert_eq!(b.try_reserve(two_years_back + 2, 1), Err(two_years_back + MINUTE_MS));
    }

    #[tokio::test]
    async fn a_retry_after_hold_is_monotonic_whatever_the_clock_does() {
        let clock = Arc::new(ShiftedClock { start: Instant::now(), at: AtomicI64::new(T0) });
        let limiter = Limiter::new(WindowBudget::new(100, 0.1, MINUTE_MS), clock.clone());
        limiter.hold_for(Duration::from_millis(150));
        limiter.hold_for(Duration::from_millis(10));
        clock.at.store(T0 - 365 * 24 * 60 * MINUTE_MS, Ordering::Relaxed);
        let started = Instant::now();
        limiter.acquire(1).await;
        assert!((Duration::from_millis(140)..Duration::from_secs(2)).contains(&started.elapsed()), "{:?}", started.elapsed());
        assert_eq!(limiter.waits().0, 1);
    }

    /// A clock that starts just before a minute boundary and runs in real time.
    struct ShiftedClock {
        start: Instant,
        at: AtomicI64,
    }

    impl Clock for ShiftedClock {
        fn now_ms(&self) -> i64 {
            self.at.load(Ordering::Relaxed) + self.start.elapsed().as_millis() as i64
        }
    }

    #[tokio::test]
    async fn waiters_sleep_until_the_boundary_and_only_the_budget_gets_through() {
        let clock = Arc::new(ShiftedClock { start: Instant::now(), at: AtomicI64::new(T0 + MINUTE_MS - 150) });
        let limiter = Arc::new(Limiter::new(WindowBudget::new(10, 0.0, MINUTE_MS), clock.clone()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let tasks: Vec<_> = (0..25)
            .map(|_| {
                let (l, c, tx) = (limiter.clone(), clock.clone(), tx.clone());
                tokio::spawn(async move {
                    let window = l.acquire(1).await;
                    let _ = tx.send((window, c.now_ms()));
                })
            })
            .collect();
        let mut per_window = std::collections::BTreeMap::new();
        for _ in 0..20 {
            let (window, at) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            assert_eq!(window, window_of(at, MINUTE_MS), "counted in the window it was sent in");
            *per_window.entry(window).or_insert(0) += 1;
        }
        assert_eq!(per_window.into_iter().collect::<Vec<_>>(), [(window_of(T0, MINUTE_MS), 10), (window_of(T0, MINUTE_MS) + 1, 10)]);
        // The 15 that woke at the boundary did not all go: 5 wait for the next minute.
        assert!(tokio::time::timeout(Duration::from_millis(200), rx.recv()).await.is_err(), "a stampede past the budget");
        let (waits, waited_ms) = limiter.waits();
        assert!(waits >= 20 && waited_ms >= 15 * 100, "{waits} waits, {waited_ms} ms");
        for t in tasks {
            t.abort();
        }
    }
}
