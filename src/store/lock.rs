//! The data directory's writer lock: a kernel file lock (flock) on `DIR/lock`.
//! The kernel drops it when the process dies, so a `kill -9`ed writer leaves
//! no stale lock behind; the pid inside is only for the error message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// The one writer: exclusive, fails at once when another process holds it.
    pub fn exclusive(path: &Path) -> Result<DirLock> {
        let mut file = open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Locked { path: dir_of(path), pid: holder_pid(&mut file) }),
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .map_err(|e| Error::io("write", path, e))?;
        Ok(DirLock { _file: file })
    }

    /// A reader (verify, status): shared with other readers, excluded by the writer.
    pub fn shared(path: &Path) -> Result<DirLock> {
        let mut file = open(path)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::Locked { path: dir_of(path), pid: holder_pid(&mut file) }),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", path, e)),
        }
    }
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(|e| Error::io("open lock file", path, e))
}

fn holder_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

fn dir_of(path: &Path) -> std::path::PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}
