//! Page-stable copies of the projection and the hashes of their pages, the
//! ground delta snapshots stand on (format/repository.md, "Delta snapshots").
//!
//! `VACUUM INTO` (and a copy of the rows into a new file) lays every page out
//! afresh, so two copies a day apart share almost no page. SQLite's online
//! backup copies the database page by page as it is, in one read transaction:
//! a page the day's candles did not touch is byte for byte last night's, and
//! a delta against last night's copy holds only the pages that changed.
//!
//! ```text
//! the page hashes of a copy, kept in the data directory (PageImage::save / load):
//! offset  size  field
//!      0     8  magic "CLPAGES1"
//!      8     4  page_size (u32 LE)
//!     12     8  page_count (u64 LE)
//!     20    32  raw_blake3: blake3 of the whole copy
//!     52     2  name_len (u16 LE), then name_len bytes: the snapshot object the copy was published as
//!      …  32×n  blake3 of each page, in page order
//!    end    32  blake3 of every byte before it
//! ```

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const PAGES_MAGIC: &[u8; 8] = b"CLPAGES1";

/// A copy of the projection as pages: their size, each one's blake3, and the
/// size and blake3 of the whole file (a snapshot's `raw_bytes` and `raw_blake3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageImage {
    pub page_size: u32,
    pub hashes: Vec<[u8; 32]>,
    pub raw_bytes: u64,
    pub raw_blake3: [u8; 32],
}

/// Copies the main database of `conn` into a new file at `dest` with SQLite's
/// online backup, every page in one step (one read transaction: a consistent
/// copy at the state `conn` sees). Pages keep their numbers and bytes; only
/// the header's journal-mode bytes (18, 19) are set to 1, the rollback
/// journal, as `VACUUM INTO` leaves them, so the copy opens without a WAL.
pub fn page_copy(conn: &rusqlite::Connection, dest: &Path) -> Result<()> {
    let _ = std::fs::remove_file(dest);
    let fail = |op: &str, e: rusqlite::Error| Error::Failed(format!("{}: {op}: {e}", dest.display()));
    {
        let mut to = rusqlite::Connection::open(dest).map_err(|e| fail("create the snapshot copy", e))?;
        to.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;").map_err(|e| fail("configure the snapshot copy", e))?;
        let backup = rusqlite::backup::Backup::new(conn, &mut to).map_err(|e| fail("start the online backup", e))?;
        backup.run_to_completion(i32::MAX, std::time::Duration::ZERO, None).map_err(|e| fail("copy the projection's pages", e))?;
    }
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(dest).map_err(|e| Error::io("open", dest, e))?;
    f.write_all_at(&[1, 1], 18).map_err(|e| Error::io("write", dest, e))?;
    Ok(())
}

impl PageImage {
    /// Reads the SQLite file at `path` once: the blake3 of each page and of the whole.
    pub fn scan(path: &Path) -> Result<PageImage> {
        let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut header = [0u8; 100];
        f.read_exact(&mut header).map_err(|e| Error::io("read the header of", path, e))?;
        let page_size = page_size_of(&header).ok_or_else(|| Error::Damaged(format!("{}: not a SQLite 3 database", path.display())))?;
        let len = f.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        if len % u64::from(page_size) != 0 {
            return Err(Error::Damaged(format!("{}: {len} bytes is not a whole number of {page_size}-byte pages", path.display())));
        }
        let mut f = std::io::BufReader::with_capacity(1 << 20, std::io::Cursor::new(header).chain(f));
        let mut whole = blake3::Hasher::new();
        let mut hashes = Vec::with_capacity((len / u64::from(page_size)) as usize);
        let mut page = vec![0u8; page_size as usize];
        for _ in 0..len / u64::from(page_size) {
            f.read_exact(&mut page).map_err(|e| Error::io("read", path, e))?;
            whole.update(&page);
            hashes.push(*blake3::hash(&page).as_bytes());
        }
        Ok(PageImage { page_size, hashes, raw_bytes: len, raw_blake3: *whole.finalize().as_bytes() })
    }

    /// The pages (0-based numbers) of `self` that `parent` does not hold as they are.
    pub fn changed_since(&self, parent: &PageImage) -> Vec<u64> {
        (0..self.hashes.len()).filter(|&i| parent.hashes.get(i) != self.hashes.get(i)).map(|i| i as u64).collect()
    }

    /// Writes the page hashes, for the snapshot object `name`, to `path` (durably; see the module doc).
    pub fn save(&self, path: &Path, name: &str) -> Result<()> {
        let mut b = Vec::with_capacity(90 + name.len() + 32 * self.hashes.len());
        b.extend_from_slice(PAGES_MAGIC);
        b.extend_from_slice(&self.page_size.to_le_bytes());
        b.extend_from_slice(&(self.hashes.len() as u64).to_le_bytes());
        b.extend_from_slice(&self.raw_blake3);
        b.extend_from_slice(&(name.len() as u16).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        for h in &self.hashes {
            b.extend_from_slice(h);
        }
        let sum = blake3::hash(&b);
        b.extend_from_slice(sum.as_bytes());
        crate::durable::create_dir(crate::durable::parent_of(path))?;
        Ok(crate::durable::write(path, &b)?)
    }

    /// The page hashes saved at `path` and the snapshot object they describe;
    /// `None` when there are none or they do not check out (a full snapshot is
    /// taken then: these hashes only ever decide what a delta leaves out).
    pub fn load(path: &Path) -> Option<(PageImage, String)> {
        let b = std::fs::read(path).ok()?;
        let (body, sum) = b.split_at_checked(b.len().checked_sub(32)?)?;
        if blake3::hash(body).as_bytes() != sum || !body.starts_with(PAGES_MAGIC) {
            tracing::warn!(path = %path.display(), "page hashes do not check out; the next snapshot is a full one");
            return None;
        }
        let u = |at: usize, n: usize| body.get(at..at + n);
        let page_size = u32::from_le_bytes(u(8, 4)?.try_into().ok()?);
        let pages = u64::from_le_bytes(u(12, 8)?.try_into().ok()?);
        let raw_blake3: [u8; 32] = u(20, 32)?.try_into().ok()?;
        let name_len = u16::from_le_bytes(u(52, 2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(u(54, name_len)?).ok()?.to_string();
        let rest = body.get(54 + name_len..)?;
        if page_size_valid(page_size).is_none() || rest.len() as u64 != pages.checked_mul(32)? {
            return None;
        }
        let hashes = rest.chunks_exact(32).filter_map(|c| c.try_into().ok()).collect();
        Some((PageImage { page_size, hashes, raw_bytes: pages * u64::from(page_size), raw_blake3 }, name))
    }
}

/// A page size SQLite allows (a power of two from 512 to 65536).
pub fn page_size_valid(size: u32) -> Option<u32> {
    (size.is_power_of_two() && (512..=65536).contains(&size)).then_some(size)
}

/// The page size a SQLite header records (bytes 16-17, big-endian; 1 means 65536).
fn page_size_of(header: &[u8; 100]) -> Option<u32> {
    if !header.starts_with(SQLITE_MAGIC) {
        return None;
    }
    let raw = u32::from(u16::from_be_bytes([header[16], header[17]]));
    page_size_valid(if raw == 1 { 65536 } else { raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_copies_keep_untouched_pages_and_hashes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let live = rusqlite::Connection::open(dir.path().join("live.sqlite")).unwrap();
        live.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (x INTEGER PRIMARY KEY, y BLOB);").unwrap();
        for i in 0..2000 {
            live.execute("INSERT INTO t VALUES (?1, zeroblob(200))", [i]).unwrap();
        }
        let (a, b) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
        page_copy(&live, &a).unwrap();
        live.execute("INSERT INTO t VALUES (5000, zeroblob(200))", []).unwrap();
        page_copy(&live, &b).unwrap();
        let (pa, pb) = (PageImage::scan(&a).unwrap(), PageImage::scan(&b).unwrap());
        assert_eq!(pa.raw_blake3, *blake3::hash(&std::fs::read(&a).unwrap()).as_bytes());
        let changed = pb.changed_since(&pa);
        assert!(!changed.is_empty() && changed.len() * 10 < pb.hashes.len(), "{changed:?} of {}", pb.hashes.len());
        // A rollback-journal file, as VACUUM INTO leaves it.
        assert_eq!(std::fs::read(&b).unwrap()[18..20], [1, 1]);
        let saved = dir.path().join("pages/x.pages");
        pb.save(&saved, "snapshots/x.sqlite.zst").unwrap();
        assert_eq!(PageImage::load(&saved), Some((pb, "snapshots/x.sqlite.zst".to_string())));
        let mut bytes = std::fs::read(&saved).unwrap();
        bytes[60] ^= 1;
        std::fs::write(&saved, bytes).unwrap();
        assert_eq!(PageImage::load(&saved), None);
    }
}
