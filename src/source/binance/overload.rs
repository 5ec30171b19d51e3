//! "Server overloaded" (HTTP 503 / code -1008): one backoff for the whole
//! client. When the exchange says it is overloaded, every series waits for
//! the same hold (the limiter holds every request until it ends), so sixty
//! series do not each hammer the exchange on their own schedule; the hold
//! doubles while the overload lasts (2 s, 4 s, … up to a minute), with jitter.
//!
//! Only an answer that arrives after the current hold ended raises the level:
//! the answers to requests that were already in flight when the hold began
//! join it instead of doubling it again.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::retry::RetryPolicy;

#[derive(Default)]
pub(crate) struct Overload {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Overloaded answers in a row, each after the previous hold ended.
    level: u32,
    /// The shared hold in force, if any.
    until: Option<Instant>,
}

impl Overload {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An overloaded answer arrived at `now`: returns when the shared hold ends
    /// (the one in force, or a new, longer one).
    pub fn hit(&self, policy: &RetryPolicy, now: Instant) -> Instant {
        let mut s = self.state();
        if let Some(until) = s.until.filter(|until| now < *until) {
            return until;
        }
        let hold = policy.with_jitter(policy.overload_hold(s.level));
        s.level = s.level.saturating_add(1);
        let until = now.checked_add(hold).unwrap_or(now);
        s.until = Some(until);
        until
    }

    /// A request succeeded at `now`: once no hold is in force, the next
    /// overload starts again from the shortest hold.
    pub fn succeeded(&self, now: Instant) {
        let mut s = self.state();
        if s.until.is_none_or(|until| now >= until) {
            s.level = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_in_flight_join_the_hold_later_ones_double_it_success_resets() {
        let policy = RetryPolicy { max_jitter: Duration::ZERO, ..RetryPolicy::default() };
        let o = Overload::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(o.hit(&policy, t0), at(2_000));
        // Seven more series' answers while the hold is in force: the same hold.
        for ms in [1, 10, 500, 1_999] {
            assert_eq!(o.hit(&policy, at(ms)), at(2_000));
        }
        // A success of a request sent before the hold does not reset the level.
        o.succeeded(at(1_000));
        assert_eq!(o.hit(&policy, at(2_010)), at(6_010), "after the hold: twice as long");
        assert_eq!(o.hit(&policy, at(6_020)), at(14_020));
        o.succeeded(at(14_100));
        assert_eq!(o.hit(&policy, at(20_000)), at(22_000), "a new overload starts short again");
    }
}
