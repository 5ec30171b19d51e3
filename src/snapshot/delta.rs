//! Delta snapshot objects: the pages of a projection copy that differ from
//! its parent snapshot's, so a night's snapshot costs what the night changed
//! (format/repository.md, "Delta snapshots").
//!
//! The object is one zstd frame of this stream (all integers little-endian):
//!
//! ```text
//! offset  size  field
//!      0     8  magic "CLDELTA1"
//!      8     4  page_size (u32): the database's page size, a power of two from 512 to 65536
//!     12     8  page_count (u64): pages of the database it restores to; page_count × page_size = raw_bytes
//!     20     8  changed (u64): how many pages follow, at most page_count
//!     28     …  changed × { page_no (u64, 0-based, strictly increasing, < page_count) ‖ page_size bytes }
//! ```
//!
//! Applying it to the parent's database: truncate or extend the file to
//! `page_count` pages, write each page at `page_no × page_size`. The result
//! is proven by its manifest's `raw_bytes` and `raw_blake3` (`check_raw`),
//! each object of the chain by its own `file_bytes` and `file_blake3`.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{Hashing, SnapshotManifest, check_manifest};
use crate::error::{Error, Result};

pub const DELTA_MAGIC: &[u8; 8] = b"CLDELTA1";
const HEADER: usize = 28;

/// The raw delta stream of `pages` (0-based, increasing) of the database at
/// `path`, read one page at a time.
pub struct DeltaSource {
    file: std::fs::File,
    page_size: u32,
    pages: std::vec::IntoIter<u64>,
    buf: Vec<u8>,
    pos: usize,
}

impl DeltaSource {
    pub fn new(path: &Path, page_size: u32, page_count: u64, pages: Vec<u64>) -> Result<DeltaSource> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut buf = Vec::with_capacity(HEADER + 8 + page_size as usize);
        buf.extend_from_slice(DELTA_MAGIC);
        buf.extend_from_slice(&page_size.to_le_bytes());
        buf.extend_from_slice(&page_count.to_le_bytes());
        buf.extend_from_slice(&(pages.len() as u64).to_le_bytes());
        Ok(DeltaSource { file, page_size, pages: pages.into_iter(), buf, pos: 0 })
    }
}

impl Read for DeltaSource {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            let Some(page) = self.pages.next() else { return Ok(0) };
            let size = self.page_size as usize;
            self.buf.clear();
            self.buf.extend_from_slice(&page.to_le_bytes());
            self.buf.resize(8 + size, 0);
            self.file.read_exact_at(&mut self.buf[8..], page * size as u64)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Applies the delta object of manifest `m`, streamed from `compressed`, to
/// the database of its parent at `db` (in place), checking the object's size
/// and blake3 against `m` and the stream's structure on the way. The whole
/// result is checked by [`check_raw`] after the last delta of a chain.
pub fn apply_delta(m: &SnapshotManifest, compressed: impl Read, db: &Path) -> Result<()> {
    check_manifest(m)?;
    let damaged = |what: String| Error::Damaged(format!("snapshot {}: {what}: the object is damaged", m.file));
    let mut input = Hashing::new(compressed.take(m.file_bytes + 1));
    let applied = (|| -> std::result::Result<(), String> {
        let decoder = zstd::stream::read::Decoder::new(&mut input).map_err(|e| format!("does not decompress: {e}"))?;
        // Never more than the pages of the database and their numbers, plus the header.
        let mut raw = std::io::BufReader::new(decoder.take(HEADER as u64 + m.raw_bytes + m.raw_bytes / 64 + 8));
        let mut header = [0u8; HEADER];
        raw.read_exact(&mut header).map_err(|e| format!("does not decompress to a delta header: {e}"))?;
        let field = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or([0; 8]));
        let page_size = u32::from_le_bytes(header[8..12].try_into().unwrap_or([0; 4]));
        let (page_count, changed) = (field(12), field(20));
        if !header.starts_with(DELTA_MAGIC) || super::pages::page_size_valid(page_size).is_none() {
            return Err("not a delta (magic or page size)".into());
        }
        if page_count.checked_mul(u64::from(page_size)) != Some(m.raw_bytes) || changed > page_count {
            return Err(format!(
                "its header says {page_count} pages of {page_size} bytes, {changed} changed; the manifest says {} bytes",
                m.raw_bytes
            ));
        }
        let file = std::fs::OpenOptions::new().write(true).open(db).map_err(|e| format!("open {}: {e}", db.display()))?;
        file.set_len(m.raw_bytes).map_err(|e| format!("resize {}: {e}", db.display()))?;
        let mut page = vec![0u8; page_size as usize];
        let mut previous: Option<u64> = None;
        for k in 0..changed {
            let mut no = [0u8; 8];
            raw.read_exact(&mut no).and_then(|()| raw.read_exact(&mut page)).map_err(|e| format!("page {k} of {changed}: {e}"))?;
            let no = u64::from_le_bytes(no);
            if no >= page_count || previous.is_some_and(|p| no <= p) {
                return Err(format!("page number {no} out of order or beyond its {page_count} pages"));
            }
            previous = Some(no);
            file.write_all_at(&page, no * u64::from(page_size)).map_err(|e| format!("write {}: {e}", db.display()))?;
        }
        if raw.read(&mut [0u8; 1]).map_err(|e| format!("does not decompress: {e}"))? != 0 {
            return Err("bytes after its last page".into());
        }
        Ok(())
    })();
    // Whatever follows the zstd frame is part of the object too.
    let drained = std::io::copy(&mut input, &mut std::io::sink());
    let (file_bytes, file_blake3) = input.digest();
    if file_bytes != m.file_bytes || file_blake3 != m.file_blake3 {
        return Err(damaged(format!(
            "size or blake3 differs from its manifest ({file_bytes} bytes with blake3 {file_blake3}, the manifest says {} and {})",
            m.file_bytes, m.file_blake3
        )));
    }
    drained.map_err(|e| damaged(format!("read: {e}")))?;
    applied.map_err(damaged)
}

/// The database at `db` against `m`'s `raw_bytes` and `raw_blake3`: the proof
/// that a chain of snapshot objects restored exactly the database `m` describes.
pub fn check_raw(m: &SnapshotManifest, db: &Path) -> Result<()> {
    let mut hasher = blake3::Hasher::new();
    let n = std::fs::File::open(db)
        .and_then(|f| std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, f.take(m.raw_bytes + 1)), &mut hasher))
        .map_err(|e| Error::io("read", db, e))?;
    let h = hasher.finalize().to_hex();
    if n != m.raw_bytes || h.as_str() != m.raw_blake3 {
        return Err(Error::Damaged(format!(
            "snapshot {}: the database its chain restores to differs from its manifest ({n} bytes with blake3 {h}, the manifest says {} and {}): an object of its chain is damaged",
            m.file, m.raw_bytes, m.raw_blake3
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::pages::{PageImage, page_copy};

    /// A manifest for a delta stream `raw` (compressed here) building `db_bytes`.
    fn manifest_of(raw: &[u8], db_bytes: &[u8]) -> (Vec<u8>, SnapshotManifest) {
        let compressed = zstd::bulk::compress(raw, 3).unwrap();
        let m = SnapshotManifest {
            format: 3,
            lsn: 2,
            head_hash: "00".repeat(32),
            file: "snapshots/x.delta.zst".into(),
            file_bytes: compressed.len() as u64,
            file_blake3: blake3::hash(&compressed).to_hex().to_string(),
            raw_bytes: db_bytes.len() as u64,
            raw_blake3: blake3::hash(db_bytes).to_hex().to_string(),
            rows: Default::default(),
            row_digests: None,
            created_ms: 2,
            candlelog_version: "test".into(),
            parent: Some("snapshots/p.sqlite.zst".into()),
            parent_raw_blake3: Some("00".repeat(32)),
        };
        (compressed, m)
    }

    #[test]
    fn a_delta_builds_its_database_and_a_broken_stream_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let live = rusqlite::Connection::open(dir.path().join("live.sqlite")).unwrap();
        live.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY, y BLOB);").unwrap();
        for i in 0..500 {
            live.execute("INSERT INTO t VALUES (?1, randomblob(300))", [i]).unwrap();
        }
        let (a, b) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
        page_copy(&live, &a).unwrap();
        live.execute_batch("INSERT INTO t VALUES (9000, randomblob(3000)); UPDATE t SET y = x'00' WHERE x = 7;").unwrap();
        page_copy(&live, &b).unwrap();
        let (ia, ib) = (PageImage::scan(&a).unwrap(), PageImage::scan(&b).unwrap());
        let changed = ib.changed_since(&ia);
        let mut raw = Vec::new();
        DeltaSource::new(&b, ib.page_size, ib.hashes.len() as u64, changed.clone()).unwrap().read_to_end(&mut raw).unwrap();
        let want = std::fs::read(&b).unwrap();
        let (compressed, m) = manifest_of(&raw, &want);

        let out = dir.path().join("out.sqlite");
        std::fs::copy(&a, &out).unwrap();
        apply_delta(&m, &compressed[..], &out).unwrap();
        check_raw(&m, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), want);

        // Each broken stream, with hashes that match it, is refused naming the object and why.
        let page = ib.page_size as usize;
        let entry = 8 + page;
        let mut swapped = raw.clone();
        if changed.len() >= 2 {
            let (first, second) = (28..28 + entry, 28 + entry..28 + 2 * entry);
            let (x, y) = (raw[first.clone()].to_vec(), raw[second.clone()].to_vec());
            swapped[first].copy_from_slice(&y);
            swapped[second].copy_from_slice(&x);
        }
        let mut trailing = raw.clone();
        trailing.push(0);
        let mut wrong_count = raw.clone();
        wrong_count[12..20].copy_from_slice(&(ib.hashes.len() as u64 + 1).to_le_bytes());
        let mut magic = raw.clone();
        magic[0] = b'X';
        for (stream, says) in
            [(swapped, "out of order"), (trailing, "bytes after its last page"), (wrong_count, "the manifest says"), (magic, "not a delta")]
        {
            let (compressed, m) = manifest_of(&stream, &want);
            std::fs::copy(&a, &out).unwrap();
            let e = apply_delta(&m, &compressed[..], &out).unwrap_err().to_string();
            assert!(e.contains("snapshots/x.delta.zst") && e.contains(says), "{says}: {e}");
        }
        // A flipped byte of the object: its hash, before anything else.
        let (mut compressed, m) = manifest_of(&raw, &want);
        let mid = compressed.len() / 2;
        compressed[mid] ^= 1;
        std::fs::copy(&a, &out).unwrap();
        let e = apply_delta(&m, &compressed[..], &out).unwrap_err().to_string();
        assert!(e.contains("size or blake3 differs from its manifest"), "{e}");
        // Applied to another parent, the result is not the manifest's database.
        std::fs::copy(&b, &out).unwrap();
        std::fs::OpenOptions::new().write(true).open(&out).unwrap().set_len(0).unwrap();
        let (compressed, m) = manifest_of(&raw, &want);
        apply_delta(&m, &compressed[..], &out).unwrap();
        assert!(check_raw(&m, &out).unwrap_err().to_string().contains("an object of its chain is damaged"));
    }
}
