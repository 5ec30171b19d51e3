//! The repository marker, `candlelog-repository.json`: that a directory or
//! prefix is a candlelog repository, which format it follows, and — from
//! format 2 on — the identity of the one chain it holds
//! (src/store/identity.rs; format/repository.md, "The marker").
//!
//! ```text
//! {"format": 1}                                            format 1: no identity
//! {"format": 2, "chain": {"lsn": 2, "hash": "18dbb734…"}}  format 2
//! {"format": 3, "chain": {"lsn": 2, "hash": "18dbb734…"}}  format 3: delta snapshots
//! ```

use serde::{Deserialize, Serialize};

use super::error::RepoError;
use super::repo::Repository;
use crate::error::Result;
use crate::snapshot::REPO_FORMAT;
use crate::store::ChainId;

pub const MARKER: &str = "candlelog-repository.json";
/// The oldest repository format this build still reads (and upgrades when it backs up into it).
pub const OLDEST_REPO_FORMAT: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Marker {
    pub format: u32,
    /// The chain's identity; absent in format 1, and until the first backup
    /// of a log that holds a frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainId>,
}

impl Marker {
    /// Whether a backup rewrites it: an older format, or no identity yet when one is known.
    pub fn needs_update(&self, identity: Option<&ChainId>) -> bool {
        self.format < REPO_FORMAT || (self.chain.is_none() && identity.is_some())
    }
}

/// The marker, `None` when there is none. Refuses a marker that is not JSON,
/// has no integer `format`, a format this build does not read, or (format
/// 2) a `chain` that is not an LSN ≥ 1 with 64 lowercase hex digits.
pub fn read_marker(repo: &dyn Repository) -> Result<Option<Marker>> {
    if !repo.exists(MARKER)? {
        return Ok(None);
    }
    let location = repo.location();
    let v: serde_json::Value =
        serde_json::from_slice(&repo.get(MARKER)?).map_err(|e| RepoError::damaged(&location, MARKER, e.to_string()))?;
    let format = match v.get("format").and_then(|f| f.as_u64()) {
        Some(f) if (u64::from(OLDEST_REPO_FORMAT)..=u64::from(REPO_FORMAT)).contains(&f) => f as u32,
        Some(f) => return Err(RepoError::NewerFormat { location, found: f, supported: REPO_FORMAT }.into()),
        None => return Err(RepoError::incomplete(location, format!("{MARKER} has no format number")).into()),
    };
    let chain = match v.get("chain") {
        // Format-1 readers ignored other keys; so does this one for a format-1 marker.
        _ if format < 2 => None,
        None | Some(serde_json::Value::Null) => None,
        Some(c) => {
            let id: Option<ChainId> = serde_json::from_value(c.clone()).ok().filter(|id: &ChainId| id.pos().is_some());
            let message = format!("chain {c} is not {{\"lsn\": N ≥ 1, \"hash\": 64 lowercase hex digits}}");
            Some(id.ok_or_else(|| RepoError::damaged(&location, MARKER, message))?)
        }
    };
    Ok(Some(Marker { format, chain }))
}

/// Writes the marker (pretty-printed, a newline at the end).
pub fn write_marker(repo: &dyn Repository, marker: &Marker) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(marker).map_err(|e| crate::Error::io("serialise marker", "", std::io::Error::other(e)))?;
    json.push(b'\n');
    Ok(repo.put(MARKER, &json)?)
}

/// Refuses what is not a repository this build reads; with `create`, marks
/// a new one (format 3, no identity yet: `backup` records it).
pub fn check_format(repo: &dyn Repository, create: bool) -> Result<()> {
    match read_marker(repo)? {
        Some(_) => Ok(()),
        None if create => write_marker(repo, &Marker { format: REPO_FORMAT, chain: None }),
        None => Err(RepoError::NotARepository { location: repo.location(), marker: MARKER }.into()),
    }
}
