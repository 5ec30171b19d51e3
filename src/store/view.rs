//! How readers see a data directory while a writer may be running: they never
//! take the writer's lock; they pin a committed state instead (a SQLite read
//! transaction on the projection, a redb read transaction on the index) and
//! read the log only up to where those point, or to the last whole frame.

use std::time::{Duration, Instant};

use crate::projection::{Applied, Index, IndexError, Projection, ProjectionError};

/// How long a reader waits for a running writer to bring the projection and
/// the index to the same LSN (it applies each commit to both, one after the
/// other, in a few milliseconds).
const SETTLE: Duration = Duration::from_secs(2);

/// Why a pair could not be pinned.
#[derive(Debug)]
pub enum PinError {
    Projection(ProjectionError),
    Index(IndexError),
}

/// Pins the projection and the index at the same LSN when they can be: with a
/// writer running (`writer_active`), re-pins both until they agree (for up to
/// a couple of seconds); without one, a difference is the real state (a
/// killed writer's lag) and is returned as it is.
pub fn pin_together(projection: &mut Projection, index: &mut Index, writer_active: bool) -> Result<(Applied, Applied), PinError> {
    let started = Instant::now();
    loop {
        let p = projection.pin().map_err(PinError::Projection)?;
        let i = index.pin().map_err(PinError::Index)?;
        if p.lsn == i.lsn || !writer_active || started.elapsed() > SETTLE {
            return Ok((p, i));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
