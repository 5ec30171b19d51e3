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
        DirLock::exclusive_for(path, None)
    }

    /// [`DirLock::exclusive`] for a long-running holder named `role` (e.g. [`SERVICE_ROLE`]):
    /// the lock file says so, and a writer refused meanwhile is told who holds it.
    pub fn exclusive_for(path: &Path, role: Option<&str>) -> Result<DirLock> {
        let mut file = open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let (pid, holder) = holder_of(&mut file);
                return Err(Error::Locked { path: dir_of(path), pid, service: holder.as_deref() == Some(SERVICE_ROLE) });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
        let pid = match role {
            Some(r) => format!("{} {r}", std::process::id()),
            None => std::process::id().to_string(),
        };
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .map_err(|e| Error::io("write", path, e))?;
        Ok(DirLock { _file: file })
    }
}

/// The pid of the writer holding the lock at `path` right now, found without
/// touching the lock: readers never take it (taking it, even for a moment,
/// could make a writer starting in that instant exit 75). Read from
/// `/proc/locks`, where the kernel lists every flock with its file's device
/// and inode. `None` when no writer holds it, or where `/proc/locks` cannot be
/// read (then readers simply cannot tell a write in flight from a torn tail).
///
/// The kernel builds that listing page by page while locks come and go (every
/// redb reader takes and drops byte-range locks), and a line can slip past a
/// page boundary and be skipped: a listing without the writer is read again,
/// up to three times (`LOCK_READS`), before "no writer" is believed.
pub fn writer_pid(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let (major, minor) = (rustix::fs::major(meta.dev()), rustix::fs::minor(meta.dev()));
    (0..LOCK_READS).find_map(|_| flock_holder(&std::fs::read_to_string("/proc/locks").ok()?, (major, minor, meta.ino())))
}

/// How many times [`writer_pid`] reads `/proc/locks` before it says no writer holds the lock.
const LOCK_READS: usize = 3;

/// The pid holding a write flock on the file `(major, minor, inode)` in a `/proc/locks` listing.
fn flock_holder(locks: &str, (major, minor, inode): (u32, u32, u64)) -> Option<u32> {
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 17618 fe:00:10010654 0 EOF"; waiters are listed as "1: -> FLOCK ...".
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, "FLOCK", _, "WRITE", pid, id, ..] = f.as_slice() else { return None };
        let mut parts = id.split(':');
        let maj = u32::from_str_radix(parts.next()?, 16).ok()?;
        let min = u32::from_str_radix(parts.next()?, 16).ok()?;
        let ino: u64 = parts.next()?.parse().ok()?;
        (maj == major && min == minor && ino == inode).then(|| pid.parse().ok()).flatten()
    })
}

/// The pid of the service (`candlelog run`) when it is the writer holding the lock at `path`
/// right now; like [`writer_pid`], found without touching the lock.
pub fn service_pid(path: &Path) -> Option<u32> {
    let pid = writer_pid(path)?;
    let mut file = File::open(path).ok()?;
    match holder_of(&mut file) {
        (Some(p), Some(role)) if p == pid && role == SERVICE_ROLE => Some(pid),
        _ => None,
    }
}

fn open(path: &Path) -> Result<File> {
    // A directory, FIFO or device where the lock file belongs: say so (recover moves it aside).
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.is_file()
    {
        return Err(Error::Failed(format!(
            "{} is not a regular file, so the data directory cannot be locked; move it aside (`candlelog recover` does) and run again",
            path.display()
        )));
    }
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(|e| Error::io("open lock file", path, e))
}

/// The role `candlelog run` writes after its pid in the lock file.
pub const SERVICE_ROLE: &str = "service";

/// The holder's pid and role, as the lock file says (`PID` or `PID ROLE`).
fn holder_of(file: &mut File) -> (Option<u32>, Option<String>) {
    let mut s = String::new();
    if file.read_to_string(&mut s).is_err() {
        return (None, None);
    }
    let mut words = s.split_whitespace();
    (words.next().and_then(|p| p.parse().ok()), words.next().map(str::to_string))
}

fn dir_of(path: &Path) -> std::path::PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_the_writer_without_taking_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(writer_pid(&path), None);
        let held = DirLock::exclusive(&path).unwrap();
        assert_eq!(writer_pid(&path), Some(std::process::id()));
        // Looking did not take it: the lock is still the writer's, and a second writer is refused.
        assert!(matches!(DirLock::exclusive(&path), Err(Error::Locked { .. })));
        drop(held);
        assert_eq!(writer_pid(&path), None);
    }

    #[test]
    fn only_a_held_write_flock_on_that_file_names_its_writer() {
        let listing = "1: POSIX  ADVISORY  WRITE 900 fe:00:77 0 EOF\n\
                       2: -> FLOCK  ADVISORY  WRITE 901 fe:00:77 0 EOF\n\
                       3: FLOCK  ADVISORY  WRITE 902 fe:00:78 0 EOF\n\
                       4: FLOCK  ADVISORY  WRITE 903 fe:01:77 0 EOF\n\
                       5: FLOCK  ADVISORY  WRITE 904 fe:00:77 0 EOF\n";
        assert_eq!(flock_holder(listing, (0xfe, 0, 77)), Some(904), "not a POSIX lock, a waiter, another inode or device");
        assert_eq!(flock_holder(&listing.replace("5: FLOCK", "5: POSIX"), (0xfe, 0, 77)), None);
    }

    #[test]
    fn a_writer_refused_by_the_service_is_told_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = DirLock::exclusive_for(&path, Some(SERVICE_ROLE)).unwrap();
        let refused = DirLock::exclusive(&path).unwrap_err();
        assert!(matches!(refused, Error::Locked { service: true, pid: Some(p), .. } if p == std::process::id()), "{refused:?}");
        assert!(refused.to_string().contains("candlelog run"), "{refused}");
        drop(held);
        let plain = DirLock::exclusive(&path).unwrap();
        assert!(matches!(DirLock::exclusive(&path), Err(Error::Locked { service: false, .. })));
        drop(plain);
    }
}
