//! The log's file layer: every file-system call the writer makes (on open and
//! while appending) goes through [`LogFs`], so that tests can run the real
//! writer over a simulated disk that keeps live and durable bytes apart and
//! cuts the power at any write or fsync (raft-engine's `FileSystem`, redb's
//! crash backend). [`StdFs`] is the real one, on `std::fs`.
//!
//! Methods return plain `std::io::Result`; the writer adds the operation and
//! the path it meant (a handle can outlive the name it was created under).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The directory operations of the log. The contract of each method is what
/// the writer relies on for durability; an implementation must not make
/// anything durable earlier than a real file system could (a test one may
/// make it durable later, or never).
pub trait LogFs: Send + Sync {
    /// Creates `dir` and its missing parents; on return each created entry
    /// is durable (its parent directory fsynced).
    fn create_dir(&self, dir: &Path) -> std::io::Result<()>;
    /// Names of the entries in `dir`, in no particular order; empty when
    /// `dir` does not exist.
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>>;
    /// The whole content of a file.
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    /// Up to `len` bytes from `offset`: fewer when the file ends first.
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>>;
    fn file_len(&self, path: &Path) -> std::io::Result<u64>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn LogFile>>;
    /// Creates an empty file (truncating one that exists). Its entry is
    /// durable only after [`LogFs::sync_dir`] on its directory.
    fn create(&self, path: &Path) -> std::io::Result<Box<dyn LogFile>>;
    /// Renames `from` to `to` within one directory; open handles stay valid.
    /// Durable only after [`LogFs::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// Removes a file. Durable only after [`LogFs::sync_dir`].
    fn remove(&self, path: &Path) -> std::io::Result<()>;
    /// fsyncs a directory: entries created, renamed or removed in it become durable.
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()>;
}

/// An open log file. Bytes written are durable only after
/// [`LogFile::sync_data`] (or [`LogFile::sync_all`]) returns Ok.
pub trait LogFile: Send + Sync {
    /// Writes all of `bytes` at the end of the file. On an error an unknown
    /// prefix of them may have been written.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Cuts (or extends with zeros) the file to `len`; appends continue there.
    fn set_len(&mut self, len: u64) -> std::io::Result<()>;
    /// `fdatasync`: the file's bytes (and its length) become durable.
    fn sync_data(&mut self) -> std::io::Result<()>;
    /// `fsync`: bytes and all metadata become durable.
    fn sync_all(&mut self) -> std::io::Result<()>;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

impl LogFs for StdFs {
    fn create_dir(&self, dir: &Path) -> std::io::Result<()> {
        crate::durable::create_dir(dir).map_err(|e| std::io::Error::new(e.source.kind(), e.to_string()))
    }

    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            // Names that are not UTF-8 are not the log's.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len);
        f.take(len as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn file_len(&self, path: &Path) -> std::io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn LogFile>> {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        file.seek(SeekFrom::End(0))?;
        Ok(Box::new(StdFile(file)))
    }

    fn create(&self, path: &Path) -> std::io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

struct StdFile(File);

impl LogFile for StdFile {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)?;
        self.0.seek(SeekFrom::Start(len)).map(|_| ())
    }

    fn sync_data(&mut self) -> std::io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&mut self) -> std::io::Result<()> {
        self.0.sync_all()
    }
}
