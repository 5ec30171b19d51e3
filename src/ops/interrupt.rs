//! A stop request for long runs (sync, import): the CLI sets it on SIGINT or
//! SIGTERM; a run polls it at its safe points, commits what it has, records
//! its `Run` with the reason "interrupted" and reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Shared between the signal handler and the run; cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicUsize>);

impl Interrupt {
    /// The cell a signal handler stores the signal's number in.
    pub fn cell(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.0)
    }

    /// Asks the run to stop, as signal `signal` would.
    pub fn raise(&self, signal: i32) {
        self.0.store(signal.max(1) as usize, Ordering::SeqCst);
    }

    /// The signal that asked the run to stop, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }

    /// The reason a run records and reports.
    pub fn reason(&self) -> Option<String> {
        self.signal().map(|s| {
            let name = match s {
                2 => "SIGINT",
                15 => "SIGTERM",
                _ => "a signal",
            };
            format!("interrupted by {name}: stopped at a safe point after committing what it had")
        })
    }
}
