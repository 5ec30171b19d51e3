//! Snapshots: a consistent copy of the SQLite projection at a known LSN and
//! head hash, checked, zstd-compressed and hashed, with a JSON manifest that
//! is published last.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::projection::{Projection, hex};

/// Repository format this build writes and reads.
pub const REPO_FORMAT: u32 = 1;
/// Largest snapshot accepted on restore (decompression is bounded by it).
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 30;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotManifest {
    pub format: u32,
    pub lsn: u64,
    pub head_hash: String,
    /// Object name of the compressed file.
    pub file: String,
    pub file_bytes: u64,
    pub file_blake3: String,
    pub raw_bytes: u64,
    pub raw_blake3: String,
    pub rows: BTreeMap<String, u64>,
    pub created_ms: i64,
    pub candlelog_version: String,
}

/// Compresses a projection copy at `raw_path` (already VACUUMed) into a
/// snapshot object named `name`; checks it first with `quick_check`.
/// `created_ms` is the one in `name` (format/repository.md, "Object names").
pub fn build(raw_path: &Path, lsn: u64, head_hash: [u8; 32], name: &str, created_ms: i64) -> Result<(Vec<u8>, SnapshotManifest)> {
    let p = Projection::open_read_only(raw_path)?;
    let problems = p.integrity_check(true)?;
    if !problems.is_empty() {
        return Err(Error::Usage(format!("snapshot copy {} fails quick_check: {}", raw_path.display(), problems.join("; "))));
    }
    let rows = p.row_counts()?.into_iter().map(|(i, n)| (i.table().to_string(), n)).collect();
    drop(p);
    let raw = std::fs::read(raw_path).map_err(|e| Error::io("read", raw_path, e))?;
    let compressed = zstd::bulk::compress(&raw, 3).map_err(|e| Error::io("compress", raw_path, e))?;
    let manifest = SnapshotManifest {
        format: REPO_FORMAT,
        lsn,
        head_hash: hex(&head_hash),
        file: name.to_string(),
        file_bytes: compressed.len() as u64,
        file_blake3: blake3::hash(&compressed).to_hex().to_string(),
        raw_bytes: raw.len() as u64,
        raw_blake3: blake3::hash(&raw).to_hex().to_string(),
        rows,
        created_ms,
        candlelog_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok((compressed, manifest))
}

/// Checks a downloaded snapshot against its manifest and returns the SQLite bytes.
pub fn unpack(m: &SnapshotManifest, compressed: &[u8]) -> Result<Vec<u8>> {
    if m.format != REPO_FORMAT {
        return Err(Error::Usage(format!(
            "snapshot {} was written in repository format {} (this build reads {REPO_FORMAT}); upgrade candlelog",
            m.file, m.format
        )));
    }
    if compressed.len() as u64 != m.file_bytes || blake3::hash(compressed).to_hex().as_str() != m.file_blake3 {
        return Err(Error::Usage(format!("snapshot {}: size or blake3 differs from its manifest: the object is damaged", m.file)));
    }
    if m.raw_bytes > MAX_SNAPSHOT_BYTES {
        return Err(Error::Usage(format!("snapshot {}: declared size {} exceeds the limit", m.file, m.raw_bytes)));
    }
    let raw = zstd::bulk::decompress(compressed, m.raw_bytes as usize)
        .map_err(|e| Error::Usage(format!("snapshot {}: does not decompress: {e}", m.file)))?;
    if raw.len() as u64 != m.raw_bytes || blake3::hash(&raw).to_hex().as_str() != m.raw_blake3 {
        return Err(Error::Usage(format!("snapshot {}: decompressed bytes differ from the manifest", m.file)));
    }
    Ok(raw)
}
