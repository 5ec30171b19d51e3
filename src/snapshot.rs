//! Snapshots: a consistent copy of the SQLite projection at a known LSN and
//! head hash, checked, zstd-compressed and hashed, with a JSON manifest that
//! is published last (format/repository.md). Both directions stream: packing
//! reads the copy, compresses and hashes it on the way out; unpacking hashes,
//! decompresses and writes on the way in, so a snapshot of any size costs a
//! few MiB of memory. A snapshot is a full copy or (format 3) a delta: the
//! pages that differ from its parent's (delta.rs), taken from page-stable
//! copies (pages.rs).

pub mod delta;
pub mod pages;

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::projection::digest::{Digests, differences};
use crate::projection::{Projection, hex};

/// Repository format this build writes; it reads every format from 1 to it
/// (format/repository.md, "Compatibility and version history").
pub const REPO_FORMAT: u32 = 3;
/// Largest snapshot accepted on restore (decompression is bounded by it).
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 30;
/// zstd level of snapshot files.
const LEVEL: i32 = 3;

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
    /// Table → digest of its rows as the log gives them at `lsn`
    /// (src/projection/digest.rs), for every table with rows. Absent from
    /// manifests written before backups recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_digests: Option<BTreeMap<String, String>>,
    pub created_ms: i64,
    pub candlelog_version: String,
    /// A delta snapshot (format 3): the `file` of the snapshot whose database
    /// its pages are applied to. Absent: a full snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The parent's `raw_blake3`: which database exactly the delta applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_raw_blake3: Option<String>,
}

impl SnapshotManifest {
    /// Why this snapshot was refused, naming it: `e` as it is when it names
    /// the snapshot already (the checks here and unpacking do), else with the
    /// snapshot's object in front.
    pub fn refusal(&self, e: Error) -> String {
        match e {
            Error::Damaged(message) if message.starts_with("snapshot ") => message,
            e => format!("snapshot {}: {e}", self.file),
        }
    }

    /// Whether its head hash is the chain's at its LSN, `boundaries` holding
    /// the chain hash at every frame boundary of a verified log.
    pub fn on_chain(&self, boundaries: &std::collections::HashMap<u64, [u8; 32]>) -> bool {
        boundaries.get(&self.lsn).is_some_and(|h| hex(h) == self.head_hash)
    }

    /// The manifest's own object name (`<stem>.json`).
    pub fn manifest_name(&self) -> String {
        let stem = self.file.strip_suffix(".sqlite.zst").or_else(|| self.file.strip_suffix(".delta.zst")).unwrap_or(&self.file);
        format!("{stem}.json")
    }
}

/// A reader that hashes and counts what passes through it.
pub struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Hashing<R> {
        Hashing { inner, hasher: blake3::Hasher::new(), bytes: 0 }
    }
    /// (bytes read, their blake3 in hex).
    pub fn digest(&self) -> (u64, String) {
        (self.bytes, self.hasher.finalize().to_hex().to_string())
    }
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or(&[]));
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A projection copy being packed: read it to the end for the compressed
/// bytes, then [`Pack::manifest`].
/// What a pack reads from (the copy, or a delta of it), hashed on the way.
type Source = Hashing<Box<dyn Read + Send>>;

pub struct Pack {
    out: Hashing<zstd::stream::read::Encoder<'static, BufReader<Source>>>,
    /// A delta: the database's size and blake3 (its pages were hashed before), and its parent.
    delta: Option<(u64, String, String, String)>,
    rows: BTreeMap<String, u64>,
    lsn: u64,
    head_hash: [u8; 32],
    name: String,
    created_ms: i64,
}

/// Opens the projection copy at `raw_path` (`Store::snapshot_projection`) for packing as
/// object `name`; checks it first with `quick_check`. `created_ms` is the one
/// in `name` (format/repository.md, "Object names").
pub fn pack(raw_path: &Path, lsn: u64, head_hash: [u8; 32], name: &str, created_ms: i64) -> Result<Pack> {
    let rows = checked_rows(raw_path)?;
    let file = std::fs::File::open(raw_path).map_err(|e| Error::io("open", raw_path, e))?;
    let source: Box<dyn Read + Send> = Box::new(file);
    let encoder = zstd::stream::read::Encoder::new(Hashing::new(source), LEVEL).map_err(|e| Error::io("compress", raw_path, e))?;
    Ok(Pack { out: Hashing::new(encoder), delta: None, rows, lsn, head_hash, name: name.to_string(), created_ms })
}

/// [`pack`] as a delta (delta.rs): only the pages of the copy at `raw_path`
/// (whose pages `image` hashed) that differ from those of `parent`'s database
/// (`parent_image`); `name` ends in `.delta.zst`.
pub fn pack_delta(
    raw_path: &Path,
    (image, parent_image): (&pages::PageImage, &pages::PageImage),
    parent: &SnapshotManifest,
    (lsn, head_hash): (u64, [u8; 32]),
    name: &str,
    created_ms: i64,
) -> Result<Pack> {
    let rows = checked_rows(raw_path)?;
    let changed = image.changed_since(parent_image);
    let source: Box<dyn Read + Send> = Box::new(delta::DeltaSource::new(raw_path, image.page_size, image.hashes.len() as u64, changed)?);
    let encoder = zstd::stream::read::Encoder::new(Hashing::new(source), LEVEL).map_err(|e| Error::io("compress", raw_path, e))?;
    let raw = (image.raw_bytes, hex(&image.raw_blake3), parent.file.clone(), parent.raw_blake3.clone());
    Ok(Pack { out: Hashing::new(encoder), delta: Some(raw), rows, lsn, head_hash, name: name.to_string(), created_ms })
}

/// The rows per table of a projection copy that passes `quick_check`.
fn checked_rows(raw_path: &Path) -> Result<BTreeMap<String, u64>> {
    let p = Projection::open_read_only(raw_path)?;
    let problems = p.integrity_check(true)?;
    if !problems.is_empty() {
        return Err(Error::Damaged(format!("snapshot copy {} fails quick_check: {}", raw_path.display(), problems.join("; "))));
    }
    Ok(p.row_counts()?.into_iter().map(|(i, n)| (i.table().to_string(), n)).collect())
}

impl Read for Pack {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.out.read(buf)
    }
}

impl Pack {
    /// The object name it is packed as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The manifest of what was read out; call after reading to the end.
    pub fn manifest(&mut self) -> SnapshotManifest {
        let (file_bytes, file_blake3) = self.out.digest();
        let (raw_bytes, raw_blake3, parent, parent_raw_blake3) = match self.delta.clone() {
            Some((bytes, blake3, parent, parent_raw)) => (bytes, blake3, Some(parent), Some(parent_raw)),
            None => {
                let (bytes, blake3) = self.out.get_mut().get_mut().get_mut().digest();
                (bytes, blake3, None, None)
            }
        };
        SnapshotManifest {
            format: REPO_FORMAT,
            lsn: self.lsn,
            head_hash: hex(&self.head_hash),
            file: self.name.clone(),
            file_bytes,
            file_blake3,
            raw_bytes,
            raw_blake3,
            rows: std::mem::take(&mut self.rows),
            row_digests: None,
            created_ms: self.created_ms,
            candlelog_version: env!("CARGO_PKG_VERSION").to_string(),
            parent,
            parent_raw_blake3,
        }
    }
}

/// Refuses a manifest this build cannot read.
pub fn check_manifest(m: &SnapshotManifest) -> Result<()> {
    if !(1..=REPO_FORMAT).contains(&m.format) {
        return Err(Error::Damaged(format!(
            "snapshot {} was written in repository format {} (this build reads 1 to {REPO_FORMAT}); upgrade candlelog",
            m.file, m.format
        )));
    }
    if m.parent.is_some() != m.parent_raw_blake3.is_some() || (m.parent.is_some() && m.format < 3) {
        return Err(Error::Damaged(format!(
            "snapshot {}: a delta (parent and parent_raw_blake3, both) exists from repository format 3 on; its manifest is format {}",
            m.file, m.format
        )));
    }
    if m.raw_bytes > MAX_SNAPSHOT_BYTES {
        return Err(Error::Damaged(format!(
            "snapshot {}: declared size {} exceeds the limit of {MAX_SNAPSHOT_BYTES} bytes",
            m.file, m.raw_bytes
        )));
    }
    Ok(())
}

/// Streams a snapshot's compressed bytes from `compressed` into the SQLite
/// file `dest` (written durably), checking sizes and hashes against the
/// manifest on the way. On any mismatch `dest` is removed and the snapshot
/// reported damaged.
pub fn unpack_to(m: &SnapshotManifest, compressed: impl Read, dest: &Path) -> Result<()> {
    unpack(m, compressed, dest, true)
}

/// [`unpack_to`] for a copy that is checked and thrown away (`backup verify
/// --deep`): the same checks, without the fsyncs that make a file durable
/// (they cost more than the bytes of a small snapshot).
pub fn unpack_scratch(m: &SnapshotManifest, compressed: impl Read, dest: &Path) -> Result<()> {
    unpack(m, compressed, dest, false)
}

fn unpack(m: &SnapshotManifest, compressed: impl Read, dest: &Path, durable: bool) -> Result<()> {
    check_manifest(m)?;
    if let Some(parent) = &m.parent {
        return Err(Error::Failed(format!("snapshot {} is a delta of {parent}: it is restored through its chain", m.file)));
    }
    let mut input = Hashing::new(compressed.take(m.file_bytes + 1));
    let mut fill = |f: &mut std::fs::File| {
        let decoder = zstd::stream::read::Decoder::new(&mut input)?;
        decompress_into(decoder.take(m.raw_bytes + 1), f, durable)
    };
    let written = if durable {
        crate::durable::write_with(dest, fill)
    } else {
        std::fs::File::create(dest)
            .map_err(|e| crate::durable::IoError::new("create", dest, e))
            .and_then(|mut f| fill(&mut f).map_err(|e| crate::durable::IoError::new("write", dest, e)))
    };
    let damaged = |what: String| {
        let _ = std::fs::remove_file(dest);
        Err(Error::Damaged(format!("snapshot {}: {what}: the object is damaged", m.file)))
    };
    let (raw_bytes, raw_blake3) = match written {
        Ok(d) => d,
        Err(e) if e.op == "write" => return damaged(format!("does not decompress: {}", e.source)),
        Err(e) => return Err(e.into()),
    };
    // Whatever follows the zstd frame is part of the file too.
    if let Err(e) = std::io::copy(&mut input, &mut std::io::sink()) {
        return damaged(format!("read: {e}"));
    }
    let (file_bytes, file_blake3) = input.digest();
    if file_bytes != m.file_bytes || file_blake3 != m.file_blake3 {
        return damaged(format!(
            "size or blake3 differs from its manifest ({file_bytes} bytes with blake3 {file_blake3}, the manifest says {} and {})",
            m.file_bytes, m.file_blake3
        ));
    }
    if raw_bytes != m.raw_bytes || raw_blake3 != m.raw_blake3 {
        return damaged(format!("decompressed bytes differ from the manifest ({raw_bytes} bytes, manifest {})", m.raw_bytes));
    }
    Ok(())
}

/// Bytes handed from the decompressing thread to the writing one at a time.
const CHUNK: usize = 1 << 20;

/// Bytes written between two write-backs started early (`durable` unpacking).
const FLUSH_EVERY: u64 = 32 << 20;

/// Copies `raw` (the decompressing reader) into `f`, returning the bytes
/// copied and their blake3. Two threads: this one reads and decompresses
/// (and hashes the compressed bytes, in the reader), the other hashes what
/// comes out and writes it, so a restore takes about as long as zstd alone;
/// at most a few chunks are in flight (memory stays a few MiB). With
/// `durable`, a third thread starts the write-back of every [`FLUSH_EVERY`]
/// bytes written ([`crate::durable::start_writeback`]) while the rest is
/// still being decompressed, so the caller's final fsync finds little left
/// to write. It does not wait for the disk or flush its cache: an
/// `fdatasync` per 32 MiB did, and on a disk with a write-back cache their
/// number set the time (docs/performance.md). A write-back error is
/// reported by the caller's fsync.
fn decompress_into(mut raw: impl Read, f: &mut std::fs::File, durable: bool) -> std::io::Result<(u64, String)> {
    use std::io::Write;
    use std::sync::mpsc::sync_channel;
    let flush_handle = if durable { Some(f.try_clone()?) } else { None };
    std::thread::scope(|s| {
        let (full, filled) = sync_channel::<Vec<u8>>(4);
        let (empty, emptied) = sync_channel::<Vec<u8>>(8);
        let (tick, ticks) = sync_channel::<(u64, u64)>(1);
        let flusher = flush_handle.map(|h| {
            s.spawn(move || -> std::io::Result<()> {
                for (from, to) in ticks {
                    crate::durable::start_writeback(&h, from, to - from)?;
                }
                Ok(())
            })
        });
        let writer = s.spawn(move || -> std::io::Result<(u64, String)> {
            let mut hasher = blake3::Hasher::new();
            let mut bytes = 0u64;
            let mut flushed = 0u64;
            for chunk in filled {
                hasher.update(&chunk);
                f.write_all(&chunk)?;
                bytes += chunk.len() as u64;
                let _ = empty.try_send(chunk);
                // Bytes a tick the flusher has not taken yet leaves out go with the next.
                if bytes - flushed >= FLUSH_EVERY && tick.try_send((flushed, bytes)).is_ok() {
                    flushed = bytes;
                }
            }
            Ok((bytes, hasher.finalize().to_hex().to_string()))
        });
        let read = loop {
            let mut chunk = emptied.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
            chunk.clear();
            match (&mut raw).take(CHUNK as u64).read_to_end(&mut chunk) {
                Ok(0) => break Ok(()),
                // The writer stopped (its error is returned below).
                Ok(_) if full.send(chunk).is_err() => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        drop(full);
        let written = writer.join().unwrap_or_else(|_| Err(std::io::Error::other("the snapshot writer thread panicked")));
        let synced =
            flusher.map_or(Ok(()), |t| t.join().unwrap_or_else(|_| Err(std::io::Error::other("the snapshot flush thread panicked"))));
        read.and(written).and_then(|w| synced.map(|()| w))
    })
}

/// Digests as a manifest's `row_digests` holds them: table → 64 hex digits.
pub fn row_digests_json(d: &Digests) -> BTreeMap<String, String> {
    d.iter().filter(|(_, t)| t.rows > 0).map(|(i, t)| (i.table().to_string(), hex(&t.digest))).collect()
}

/// [`check_contents`] for a snapshot built at `db` (its bytes proven by its
/// manifest's `raw_blake3`) that `anchor` names: the backup that published
/// it checked these exact bytes (`quick_check`, every index against its
/// table, its rows against the log at its LSN) and recorded the result in
/// the chain-hashed log, so the same checks on the same bytes are not run
/// again. What is checked: the anchor is this snapshot's, with every check
/// passed; the schema and state row; the manifest's `row_digests` and the
/// log's rows at its LSN (`from_log`, when at hand) against the anchor's
/// table digests.
pub fn check_anchored(m: &SnapshotManifest, db: &Path, anchor: &crate::event::Anchor, from_log: Option<&Digests>) -> Result<()> {
    let refuse = |what: String| refused(m, what);
    if !anchors(anchor, m) {
        return refuse(format!("the anchor at LSN {} names other bytes or not every check", anchor.lsn));
    }
    check_restored(m, db)?;
    let proven: Digests =
        anchor.tables.iter().map(|t| (t.interval, crate::projection::digest::TableDigest { rows: t.rows, digest: t.digest })).collect();
    if let Some((table, found, recorded)) = row_digests_differ(m, &proven) {
        return refuse(format!(
            "its manifest's row_digests differ from the digests the log's anchor proved for it (table {table}: the anchor {}, the manifest {})",
            found.as_deref().unwrap_or("no rows"),
            recorded.as_deref().unwrap_or("no rows")
        ));
    }
    if let Some((i, e, f)) = from_log.and_then(|expected| differences(expected, &proven).first().copied()) {
        return refuse(format!(
            "its anchor's rows differ from the log's at LSN {} (table {}: {} rows, the log gives {} rows)",
            m.lsn,
            i.table(),
            f.rows,
            e.rows
        ));
    }
    Ok(())
}

/// The first table whose digest in `m`'s `row_digests` is not `found`'s, as
/// (table, the digest `found` gives, the manifest's); `None` when they agree
/// or the manifest records none.
fn row_digests_differ(m: &SnapshotManifest, found: &Digests) -> Option<(String, Option<String>, Option<String>)> {
    let recorded = m.row_digests.as_ref()?;
    let found = row_digests_json(found);
    let table = found.keys().chain(recorded.keys()).find(|t| found.get(*t) != recorded.get(*t))?;
    Some((table.clone(), found.get(table).cloned(), recorded.get(table).cloned()))
}

/// Whether `anchor` proves snapshot `m`: its LSN, head hash and raw bytes,
/// with every check passed on them.
pub fn anchors(anchor: &crate::event::Anchor, m: &SnapshotManifest) -> bool {
    anchor.lsn == m.lsn
        && hex(&anchor.head_hash) == m.head_hash
        && hex(&anchor.raw_blake3) == m.raw_blake3
        && anchor.raw_bytes == m.raw_bytes
        && anchor.checks & crate::event::CHECKS_ALL == crate::event::CHECKS_ALL
}

/// How far the rows of a snapshot that passed [`check_contents`] were checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowsChecked {
    /// Against the log's rows at its LSN (and the manifest's digests, when it has them).
    Log,
    /// Against the manifest's `row_digests` only: the log before it is not at hand.
    Manifest,
    /// Not at all: neither the log before it nor a digest in its manifest.
    Unchecked,
}

/// The checks of [`check_contents`] that cost no scan of the rows, for a
/// snapshot unpacked at `db` by [`unpack_to`] (so its bytes are the ones its
/// manifest's `raw_blake3` names: the file the backup checked with
/// `quick_check` and against the log's rows before publishing it): its schema
/// is exactly candlelog's (nothing in it can run when rows are applied on top)
/// and its state row is the manifest's LSN and head hash. What it leaves out,
/// `quick_check` and the rows against the log, the caller must prove
/// afterwards: `recover` proves them for the whole projection in its final
/// `verify --deep`, and goes back to [`check_contents`] when that fails.
pub fn check_restored(m: &SnapshotManifest, db: &Path) -> Result<()> {
    let p = match Projection::open_read_only(db) {
        Ok(p) => p,
        Err(e) => return refused(m, format!("cannot be opened: {e}")),
    };
    check_schema_and_state(m, &p)
}

fn refused<T>(m: &SnapshotManifest, what: String) -> Result<T> {
    Err(Error::Damaged(format!("snapshot {} (LSN {}): {what}; refused", m.file, m.lsn)))
}

/// The snapshot's schema is exactly candlelog's and its state row is its manifest's.
fn check_schema_and_state(m: &SnapshotManifest, p: &Projection) -> Result<()> {
    match crate::projection::sqlite::schema_problems(p.connection()) {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => return refused(m, format!("its schema is not candlelog's: {}", problems.join("; "))),
        Err(e) => return refused(m, format!("its schema cannot be read: {e}")),
    }
    match p.applied() {
        Ok(a) if a.lsn == m.lsn && hex(&a.hash) == m.head_hash => Ok(()),
        Ok(a) => refused(
            m,
            format!(
                "its candlelog_state says LSN {} with head hash {}, its manifest LSN {} with {}: it is another snapshot relabelled",
                a.lsn,
                hex(&a.hash),
                m.lsn,
                m.head_hash
            ),
        ),
        Err(e) => refused(m, format!("its candlelog_state cannot be read: {e}")),
    }
}

/// Checks the snapshot of manifest `m`, unpacked at `db` (by [`unpack_to`]),
/// before anything uses it; a failure refuses the snapshot. In this order:
/// its schema is exactly candlelog's tables and indexes (so no trigger can
/// fire later, no view or other table comes along: reading the schema runs
/// nothing in it); `quick_check`; its state row is the manifest's LSN and
/// head hash; the digest of its rows equals the manifest's `row_digests`, if
/// any, and the log's rows at its LSN from `from_log` (asked only when all
/// else passed; `Ok(None)` when the log before the snapshot is not at hand).
pub fn check_contents(m: &SnapshotManifest, db: &Path, from_log: impl FnOnce() -> Result<Option<Digests>>) -> Result<RowsChecked> {
    let refuse = |what: String| refused(m, what);
    let p = match Projection::open_read_only(db) {
        Ok(p) => p,
        Err(e) => return refuse(format!("cannot be opened: {e}")),
    };
    match crate::projection::sqlite::schema_problems(p.connection()) {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => return refuse(format!("its schema is not candlelog's: {}", problems.join("; "))),
        Err(e) => return refuse(format!("its schema cannot be read: {e}")),
    }
    match p.integrity_check(true) {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => return refuse(format!("fails quick_check: {}", problems.join("; "))),
        Err(e) => return refuse(format!("fails quick_check: {e}")),
    }
    check_schema_and_state(m, &p)?;
    let found = match p.digests() {
        Ok(d) => d,
        Err(e) => return refuse(format!("its rows cannot be read: {e}")),
    };
    drop(p);
    if let Some((table, found, recorded)) = row_digests_differ(m, &found) {
        return refuse(format!(
            "its rows differ from the manifest's row_digests (table {table}: digest {}, the manifest says {})",
            found.as_deref().unwrap_or("of no rows"),
            recorded.as_deref().unwrap_or("no rows")
        ));
    }
    let Some(expected) = from_log()? else {
        return Ok(if m.row_digests.is_some() { RowsChecked::Manifest } else { RowsChecked::Unchecked });
    };
    if let Some((i, e, f)) = differences(&expected, &found).first() {
        return refuse(format!(
            "its rows differ from the log's at LSN {} (table {}: {} rows, the log gives {} rows{})",
            m.lsn,
            i.table(),
            f.rows,
            e.rows,
            if e.rows == f.rows { " with other values" } else { "" }
        ));
    }
    Ok(RowsChecked::Log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_and_unpack_stream_and_catch_a_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("copy.sqlite");
        {
            let c = rusqlite::Connection::open(&raw).unwrap();
            c.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3);").unwrap();
        }
        let mut pack = pack(&raw, 7, [3; 32], "snapshots/x.sqlite.zst", 5).unwrap();
        let mut compressed = Vec::new();
        pack.read_to_end(&mut compressed).unwrap();
        let m = pack.manifest();
        assert_eq!((m.file_bytes, m.raw_bytes), (compressed.len() as u64, std::fs::metadata(&raw).unwrap().len()));
        assert_eq!(m.file_blake3, blake3::hash(&compressed).to_hex().as_str());

        let out = dir.path().join("restored.sqlite");
        unpack_to(&m, &compressed[..], &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&raw).unwrap());

        let mut bad = compressed.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        assert!(matches!(unpack_to(&m, &bad[..], &out), Err(Error::Damaged(_))));
        assert!(!out.exists(), "a damaged snapshot leaves no file behind");
    }

    /// A snapshot larger than [`FLUSH_EVERY`]: its write-back is started as it
    /// is written (`durable::start_writeback`), and the bytes come out whole.
    #[test]
    fn a_snapshot_larger_than_a_write_back_step_unpacks_whole() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("copy.sqlite");
        {
            let c = rusqlite::Connection::open(&raw).unwrap();
            let rows = FLUSH_EVERY / (64 << 10) * 5 / 4;
            c.execute_batch(&format!(
                "CREATE TABLE t (b BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
                 INSERT INTO t SELECT randomblob(65536) FROM n;"
            ))
            .unwrap();
        }
        assert!(std::fs::metadata(&raw).unwrap().len() > FLUSH_EVERY);
        let mut pack = pack(&raw, 7, [3; 32], "snapshots/x.sqlite.zst", 5).unwrap();
        let mut compressed = Vec::new();
        pack.read_to_end(&mut compressed).unwrap();
        let m = pack.manifest();
        let out = dir.path().join("restored.sqlite");
        unpack_to(&m, &compressed[..], &out).unwrap();
        assert_eq!(blake3::hash(&std::fs::read(&out).unwrap()), blake3::hash(&std::fs::read(&raw).unwrap()));
    }
}
