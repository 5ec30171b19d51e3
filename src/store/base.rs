//! The log base: where a log starts when its older history was pruned.
//!
//! A data directory restored from a repository whose first segments were
//! pruned (`backup --prune-segments-before`) holds the log from segment
//! `first_seq` on. Beside the segments it keeps the snapshot it was restored
//! from, so the directory still stands on its own:
//!
//! ```text
//! DIR/log/base.sqlite.zst   the snapshot, byte for byte as in the repository
//! DIR/log/base.json         LogBase: first_seq, first_lsn, base_hash, the snapshot's manifest, the chain's identity
//! ```
//!
//! The projection's rows are the snapshot's rows (at its LSN, on the chain)
//! plus the log after that LSN: `verify --deep` checks exactly that, and
//! `rebuild` starts from the snapshot instead of LSN 0. A data directory
//! without `base.json` starts at segment 1, LSN 1.

use serde::{Deserialize, Serialize};

use super::Paths;
use crate::error::{Error, Result};
use crate::projection::{Applied, unhex32};
use crate::snapshot::SnapshotManifest;
use crate::snapshot::unpack_scratch;

pub const BASE_FORMAT: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogBase {
    pub format: u32,
    /// The first segment the log holds.
    pub first_seq: u64,
    /// Its header's `first_lsn` and `base_hash` (the chain hash before it).
    pub first_lsn: u64,
    pub base_hash: String,
    /// The snapshot in `base.sqlite.zst`; its LSN is at least `first_lsn - 1`.
    pub snapshot: SnapshotManifest,
    /// The identity of the chain (src/store/identity.rs), which the pruned
    /// log no longer holds: copied from the repository's marker at restore.
    /// Absent in bases written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<super::identity::ChainId>,
}

impl LogBase {
    /// The base of the log in `paths`, if it has one.
    pub fn load(paths: &Paths) -> Result<Option<LogBase>> {
        let path = paths.base_manifest();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let base: LogBase = serde_json::from_slice(&bytes).map_err(|e| Error::Damaged(format!("{}: {e}", path.display())))?;
        if base.format != BASE_FORMAT {
            return Err(Error::Damaged(format!(
                "{}: log base format {} (this build reads {BASE_FORMAT}): upgrade candlelog",
                path.display(),
                base.format
            )));
        }
        // Well-formed from here on: both hashes parse.
        base.base_hash()?;
        base.applied()?;
        if let Some(c) = base.chain.as_ref().filter(|c| c.pos().is_none()) {
            return Err(Error::Damaged(format!("{}: chain {c} is not an LSN ≥ 1 with 64 lowercase hex digits", path.display())));
        }
        if base.snapshot.lsn + 1 < base.first_lsn || base.first_seq == 0 {
            return Err(Error::Damaged(format!(
                "{}: the snapshot at LSN {} is older than the log's first LSN {}: the log base is inconsistent",
                path.display(),
                base.snapshot.lsn,
                base.first_lsn
            )));
        }
        Ok(Some(base))
    }

    /// Writes the snapshot (streamed from `compressed`), then the manifest
    /// that makes it the base, both durably.
    pub fn write(&self, paths: &Paths, compressed: &mut dyn std::io::Read) -> Result<()> {
        let file = paths.base_snapshot();
        crate::durable::write_with(&file, |f| std::io::copy(compressed, f))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::io("serialise log base", "", std::io::Error::other(e)))?;
        Ok(crate::durable::write(&paths.base_manifest(), &json)?)
    }

    /// The base snapshot's bytes against this manifest (size and blake3),
    /// streamed: the file is never held in memory whole.
    pub fn check_snapshot_file(&self, paths: &Paths) -> Result<()> {
        let file = paths.base_snapshot();
        let mut hasher = blake3::Hasher::new();
        let bytes = std::fs::File::open(&file)
            .and_then(|f| std::io::copy(&mut std::io::Read::take(f, self.snapshot.file_bytes + 1), &mut hasher))
            .map_err(|e| Error::io("read the base snapshot", &file, e))?;
        if bytes != self.snapshot.file_bytes || hasher.finalize().to_hex().as_str() != self.snapshot.file_blake3 {
            return Err(Error::Damaged(format!(
                "{}: size or blake3 differs from log/base.json: the base snapshot is damaged; restore the data directory from a repository",
                file.display()
            )));
        }
        Ok(())
    }

    /// The chain position the snapshot reflects.
    pub fn applied(&self) -> Result<Applied> {
        let hash = unhex32(&self.snapshot.head_hash)
            .ok_or_else(|| Error::Damaged(format!("log base: snapshot head hash {:?} is not 64 hex digits", self.snapshot.head_hash)))?;
        Ok(Applied { lsn: self.snapshot.lsn, hash })
    }

    /// The chain hash before the first segment.
    pub fn base_hash(&self) -> Result<[u8; 32]> {
        unhex32(&self.base_hash)
            .ok_or_else(|| Error::Damaged(format!("log base: base_hash {:?} is not 64 lowercase hex digits", self.base_hash)))
    }

    /// Adds the snapshot's rows to `rows`: the state before the log's frames after `snapshot.lsn`.
    pub fn rows_into(&self, paths: &Paths, rows: &mut crate::projection::LogRows) -> Result<()> {
        let tmp = std::env::temp_dir().join(format!("candlelog-base-{}-{}.sqlite", std::process::id(), self.snapshot.lsn));
        let read = self.unpack_scratch(paths, &tmp).and_then(|()| {
            Ok(crate::projection::Projection::open_read_only(&tmp)?.for_each_row(|i, ts, sym, v, t| rows.insert_row(sym, i, ts, v, t))?)
        });
        crate::durable::remove_with_companions(&tmp);
        read
    }

    /// Checks the snapshot against its manifest while streaming the SQLite
    /// file to `dest`, then what it holds (schema, quick_check, state row, the
    /// manifest's row digests: `snapshot::check_contents`), as a restore did
    /// before it became the base: nothing in it is used unchecked. `dest` is
    /// a scratch copy, read and removed by the caller, so it is not made
    /// durable (`snapshot::unpack_scratch`): what must survive a crash is
    /// what the caller commits from it.
    pub fn unpack_scratch(&self, paths: &Paths, dest: &std::path::Path) -> Result<()> {
        let file = paths.base_snapshot();
        let compressed = std::fs::File::open(&file).map_err(|e| Error::io("open", &file, e))?;
        let checked = unpack_scratch(&self.snapshot, std::io::BufReader::new(compressed), dest)
            .and_then(|()| crate::snapshot::check_contents(&self.snapshot, dest, || Ok(None)).map(|_| ()));
        if checked.is_err() {
            crate::durable::remove_with_companions(dest);
        }
        checked.map_err(|e| match e {
            Error::Damaged(m) => Error::Damaged(format!("{}: {m}", file.display())),
            other => other,
        })
    }
}
