//! Run reports of commands other than sync (`backup`, `drill`): saved as
//! `DIR/runs/<kind>-<stamp>.json` beside the sync reports, where `sla` reads
//! them, keeping the newest of each kind.

use std::path::Path;

use super::sync::report::{KEEP_RUNS, prune};

/// Saves `report` atomically and prunes old reports of the kind. A report
/// that cannot be saved is a warning: the run itself already happened.
pub fn save(data_dir: &Path, kind: &str, stamp: &str, report: &impl serde::Serialize) {
    let dir = data_dir.join("runs");
    let file = dir.join(format!("{kind}-{stamp}.json"));
    let saved = crate::durable::create_dir(&dir)
        .and_then(|()| crate::durable::write(&file, &serde_json::to_vec_pretty(report).unwrap_or_default()));
    if let Err(e) = saved {
        tracing::warn!("could not save the {kind} report {}: {e}", file.display());
    }
    if let Err(e) = prune(&dir, KEEP_RUNS) {
        tracing::warn!("could not prune old run reports in {}: {e}", dir.display());
    }
}
