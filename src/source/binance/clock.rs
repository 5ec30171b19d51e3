//! The exchange's clock as seen from here: the last server time we were told,
//! advanced by local monotonic time. Rate-limit windows and the "closed
//! candle" cut both follow the exchange's minutes, not the local wall clock.

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of "now" in ms since the epoch; injected so the limiter's
/// window math can be tested without waiting for real minutes.
pub(crate) trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// Server time estimate: `server_ms` was true at local `Instant` `at`.
///
/// The anchor is taken when the response arrives, so the estimate lags the
/// exchange by about half a round trip. That is the safe direction: a window
/// we think has not yet ended has ended, never the other way round.
#[derive(Default)]
pub(crate) struct ServerClock {
    anchor: Mutex<Option<(i64, Instant)>>,
}

impl ServerClock {
    pub fn record(&self, server_ms: i64, at: Instant) {
        *self.anchor.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((server_ms, at));
    }

    /// The server's time now, if the server ever told us its time.
    pub fn server_now_ms(&self) -> Option<i64> {
        let anchor = *self.anchor.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        anchor.map(|(ms, at)| ms.saturating_add(i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX)))
    }
}

impl Clock for ServerClock {
    /// Server time when known, else the local wall clock.
    fn now_ms(&self) -> i64 {
        self.server_now_ms().unwrap_or_else(local_now_ms)
    }
}

pub(crate) fn local_now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn advances_the_last_server_time_by_local_elapsed_time() {
        let clock = ServerClock::default();
        assert_eq!(clock.server_now_ms(), None);
        assert!((clock.now_ms() - local_now_ms()).abs() < 1_000, "falls back to the local clock");
        let at = Instant::now().checked_sub(Duration::from_millis(1_500)).unwrap();
        clock.record(1_000_000, at);
        let now = clock.server_now_ms().unwrap();
        assert!((1_001_500..1_003_000).contains(&now), "{now}");
        assert_eq!(clock.now_ms() / 1_000, now / 1_000);
    }
}
