//! The projection recover keeps or replaces: is it trusted, and else the
//! newest good snapshot.

use super::*;

/// quick_check passes and the recorded head is on the log's chain.
pub(super) fn projection_trusted(path: &Path, boundaries: &HashMap<u64, [u8; 32]>, head: u64) -> bool {
    let Ok(p) = Projection::open_read_only(path) else { return false };
    if !p.integrity_check(true).map(|e| e.is_empty()).unwrap_or(false) {
        return false;
    }
    match p.applied() {
        Ok(a) if a.lsn == 0 => true,
        Ok(a) => a.lsn <= head && boundaries.get(&a.lsn) == Some(&a.hash),
        Err(_) => false,
    }
}

/// The newest snapshot that is good, unpacked as the projection. "On the
/// chain" (its LSN is a boundary of the verified log with its hash) is
/// monotone over snapshots ordered by LSN, so a binary search finds the newest
/// such point; that snapshot is then confirmed, falling back newest-first.
/// Each snapshot refused is added to `rejected`, naming it.
///
/// Confirming is the hash and size of its bytes while they are unpacked, then
/// `Trust::Deferred`: its schema and state row (`snapshot::check_restored`),
/// leaving `quick_check` and its rows against the log to the final
/// `verify --deep`, which proves both for the whole projection; or
/// `Trust::Checked`: all of `snapshot::check_contents` now (schema,
/// quick_check, state row, rows against the local log at its LSN), for the
/// second round, after the final audit found the projection wrong.
pub(super) fn best_snapshot(
    repos: &[&dyn Repository],
    boundaries: &HashMap<u64, [u8; 32]>,
    head: u64,
    paths: &Paths,
    trust: Trust,
    rejected: &mut Vec<String>,
) -> Result<Option<SnapshotManifest>> {
    let dest = &paths.projection;
    let mut refuse = |why: String| {
        tracing::warn!("snapshot skipped: {why}");
        if !rejected.contains(&why) {
            rejected.push(why);
        }
    };
    for repo in repos {
        let (list, _) = manifests(*repo)?;
        let on_chain = |m: &SnapshotManifest| m.lsn <= head && m.on_chain(boundaries);
        // partition_point: the first index where the monotone predicate turns false.
        let cut = list.partition_point(on_chain);
        // Confirm from the binary search's answer down; then, should a manifest in the middle
        // have broken the order, every other on-chain snapshot, newest first.
        let rest = list[cut..].iter().rev().filter(|m| on_chain(m));
        for m in list[..cut].iter().rev().chain(rest) {
            let checked = crate::backup::chain::materialize(*repo, &list, m, dest).and_then(|()| match trust {
                Trust::Deferred => snapshot::check_restored(m, dest),
                Trust::Checked => snapshot::check_contents(m, dest, || crate::store::log_digests_at(paths, m.lsn).map(Some)).map(|_| ()),
            });
            match checked {
                Ok(()) => return Ok(Some(m.clone())),
                Err(e) => refuse(m.refusal(e)),
            }
            crate::durable::remove_with_companions(dest);
        }
    }
    Ok(None)
}

/// How much of a snapshot's contents `best_snapshot` checks before using it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trust {
    /// Schema and state row now; quick_check and rows in the final audit.
    Deferred,
    /// Everything now (`snapshot::check_contents`).
    Checked,
}
