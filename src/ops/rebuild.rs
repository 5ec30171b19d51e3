//! `rebuild`: drop the projection and the index and rebuild both from the log.
//! A projection or index too damaged to open or drop is moved to
//! `DIR/quarantine/<stamp>/` first — only the files candlelog owns: a
//! projection inside an agent's database is never moved.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::{Paths, RebuildStats, Store, StoreOptions, quarantine};

/// What a rebuild did.
pub struct Rebuilt {
    pub store: Store,
    pub stats: RebuildStats,
    /// Where damaged files went, and why, when the first attempt failed on them.
    pub quarantined: Option<(PathBuf, String)>,
}

/// Rebuilds; `owns_projection` says whether the projection file is
/// candlelog's own (`DIR/candles.sqlite`) and may be quarantined.
pub fn rebuild(paths: &Paths, opts: StoreOptions, owns_projection: bool) -> Result<Rebuilt> {
    match attempt(paths, opts) {
        Ok((store, stats)) => Ok(Rebuilt { store, stats, quarantined: None }),
        Err(e @ (Error::Projection(_) | Error::Index(_))) => {
            // Only the file that failed: a healthy index keeps its counters.
            let mut files: Vec<&Path> = Vec::new();
            if matches!(e, Error::Index(_)) {
                files.push(&paths.index);
            }
            if owns_projection && matches!(e, Error::Projection(_)) {
                files.push(&paths.projection);
            }
            let dir = quarantine(paths, &files)?;
            let (store, stats) = attempt(paths, opts)?;
            Ok(Rebuilt { store, stats, quarantined: Some((dir, e.to_string())) })
        }
        Err(e) => Err(e),
    }
}

fn attempt(paths: &Paths, opts: StoreOptions) -> Result<(Store, RebuildStats)> {
    let mut store = Store::open_raw(paths, opts)?;
    let stats = store.rebuild()?;
    Ok((store, stats))
}
