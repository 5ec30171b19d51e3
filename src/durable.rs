//! Durable writes: every file or directory entry that must survive a power cut
//! goes through here. A write is durable once its bytes are fsynced *and* the
//! directory entry that names it is fsynced; these helpers do both, in that
//! order, so no caller has to remember the second half.
//!
//! Below the log in the layer order: it knows files, not candles.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed filesystem operation: which one, on which path.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct IoError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> IoError {
        IoError { op, path: path.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, IoError>;

/// The files SQLite keeps beside a database, by suffix: its rollback
/// journal, write-ahead log and shared-memory index. Any of them left beside
/// a path is applied by SQLite to whatever database is next put there, so a
/// database is always moved, removed or replaced together with them.
pub const SQLITE_COMPANIONS: [&str; 3] = ["-journal", "-wal", "-shm"];

/// `path` with `suffix` appended to its file name (`db.sqlite` + `-wal`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `path` and the SQLite companions beside it ([`SQLITE_COMPANIONS`]).
pub fn with_companions(path: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    std::iter::once(path.to_path_buf()).chain(SQLITE_COMPANIONS.iter().map(move |s| with_suffix(path, s)))
}

/// Removes a SQLite database and its companions, best effort: for scratch
/// copies and refused restores, where nothing is worth keeping.
pub fn remove_with_companions(path: &Path) {
    for f in with_companions(path) {
        let _ = std::fs::remove_file(f);
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// The temporary name a file is written under before its rename: hidden,
/// beside the target (same filesystem, so the rename is atomic), per process,
/// and never ending in the target's extension (node_exporter's textfile
/// collector reads every `*.prom`).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    parent_of(path).join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Whether `name` is a temporary file of [`temp_path`] (or a directory named
/// like one) whose process is gone: `.<name>.tmp-<pid>` with no such pid
/// running. What a killed writer leaves; safe to remove.
pub fn is_stale_temporary(name: &str, marker: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else { return false };
    let Some((_, pid)) = rest.rsplit_once(marker) else { return false };
    pid.parse::<u32>().is_ok_and(process_is_gone)
}

/// Whether no process `pid` is running (and it is not this one): what a
/// temporary named after its writer's pid needs before it may be removed.
pub fn process_is_gone(pid: u32) -> bool {
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `name` is a leftover of a killed creation of the file named
/// `target`: its temporary `.<target>.tmp-<pid>` (see [`temp_path`]) or a
/// companion file of it (SQLite's `…-wal`, `…-shm`, `…-journal`), with no
/// process `pid` running.
fn is_stale_temporary_of(name: &str, target: &str) -> bool {
    let Some(rest) = name.strip_prefix(&format!(".{target}.tmp-")) else { return false };
    let (pid, companion) = rest.split_once('-').map_or((rest, None), |(p, c)| (p, Some(c)));
    companion.is_none_or(|c| matches!(c, "wal" | "shm" | "journal")) && is_stale_temporary(&format!(".x.tmp-{pid}"), ".tmp-")
}

/// Removes what killed creations of `path` left beside it (temporaries of
/// processes that are gone, and their companions). Returns what was removed.
pub fn remove_stale_temporaries(path: &Path) -> Result<Vec<PathBuf>> {
    let dir = parent_of(path);
    let Some(target) = path.file_name().and_then(|n| n.to_str()) else { return Ok(Vec::new()) };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IoError::new("list", dir, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IoError::new("list", dir, e))?;
        let stale = entry.file_name().to_str().is_some_and(|n| is_stale_temporary_of(n, target));
        if stale && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path()).map_err(|e| IoError::new("remove stale temporary", entry.path(), e))?;
            removed.push(entry.path());
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Creates the file at `path` atomically, when it does not exist yet:
/// `build` creates and fully initialises it at the temporary path it is
/// given, closing every handle before it returns; the temporary is fsynced
/// and renamed to `path` (never over an existing file), and the directory
/// fsynced. A crash at any moment leaves either no file at `path` or the whole
/// new one, never a half-initialised one; what a killed creation left beside
/// it is removed here first. Returns whether this call created the file.
pub fn create_new<E>(path: &Path, build: impl FnOnce(&Path) -> std::result::Result<(), E>) -> std::result::Result<bool, E>
where
    E: From<IoError>,
{
    remove_stale_temporaries(path)?;
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(false);
    }
    let tmp = temp_path(path);
    let remove_tmp = || remove_with_companions(&tmp);
    remove_tmp();
    let result = build(&tmp).and_then(|()| publish_new(&tmp, path).map_err(E::from));
    // After a rename only companions a closed SQLite left (empty) remain.
    remove_tmp();
    result
}

/// Puts the file built at `tmp` in place at `path`: fsyncs it, renames it
/// without replacing anything already at `path` (`RENAME_NOREPLACE`), and
/// fsyncs the directory. `false` when `path` exists (`tmp` is left for the
/// caller to remove).
fn publish_new(tmp: &Path, path: &Path) -> Result<bool> {
    File::open(tmp).and_then(|f| f.sync_all()).map_err(|e| IoError::new("fsync", tmp, e))?;
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, tmp, CWD, path, RenameFlags::NOREPLACE) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => return Ok(false),
        // A filesystem without RENAME_NOREPLACE: the caller holds the data
        // directory's lock, so nothing else creates `path` in between.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) if std::fs::symlink_metadata(path).is_err() => {
            std::fs::rename(tmp, path).map_err(|e| IoError::new("rename", tmp, e))?
        }
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => return Ok(false),
        Err(e) => return Err(IoError::new("rename", tmp, e.into())),
    }
    sync_dir(parent_of(path))?;
    Ok(true)
}

/// fsyncs a directory so an entry created, renamed or removed in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| IoError::new("fsync directory", dir, e))
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entry
/// was created, so the whole path survives a crash. An error names `dir`.
pub fn create_dir(dir: &Path) -> Result<()> {
    create_dir_inner(dir).map_err(|e| IoError::new("create directory", dir, e))
}

fn create_dir_inner(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_inner(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    File::open(parent_of(dir)).and_then(|f| f.sync_all())
}

/// Writes a whole file atomically and durably: `fill` writes the content to a
/// temporary file beside `path`, which is fsynced, renamed over `path`, and
/// the directory fsynced. Readers see the old file or the whole new one; a
/// crash leaves at most a stray `.tmp-*` file. Returns what `fill` returns.
pub fn write_with<T>(path: &Path, fill: impl FnOnce(&mut File) -> std::io::Result<T>) -> Result<T> {
    let tmp = temp_path(path);
    let result = write_temp(&tmp, fill).and_then(|v| {
        std::fs::rename(&tmp, path).map_err(|e| IoError::new("rename", path, e))?;
        Ok(v)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let value = result?;
    sync_dir(parent_of(path))?;
    Ok(value)
}

fn write_temp<T>(tmp: &Path, fill: impl FnOnce(&mut File) -> std::io::Result<T>) -> Result<T> {
    let mut f = File::create(tmp).map_err(|e| IoError::new("create", tmp, e))?;
    let v = fill(&mut f).map_err(|e| IoError::new("write", tmp, e))?;
    f.sync_all().map_err(|e| IoError::new("fsync", tmp, e))?;
    Ok(v)
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to
/// disk, without waiting for them and without flushing the disk's cache: a
/// large file written this way as it grows finds little left to write at its
/// final fsync, and the writing overlaps whatever produces the bytes. Only a
/// hint: durability still comes from the fsync, which also reports any
/// write-back error.
///
/// On Linux this is `posix_fadvise(POSIX_FADV_DONTNEED)`, which starts the
/// write-back of the range's dirty pages and drops only pages already clean
/// (the bytes just written are dirty, so they stay cached for whoever reads
/// the file next). Elsewhere it is an `fdatasync`, which waits, and on a disk
/// with a write-back cache flushes it each time (docs/performance.md).
pub fn start_writeback(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        rustix::fs::fadvise(file, offset, std::num::NonZeroU64::new(len), rustix::fs::Advice::DontNeed)?;
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (offset, len);
        file.sync_data()
    }
}

/// [`write_with`] for bytes already in memory (manifests, small files).
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |f| f.write_all(bytes))
}

/// Renames `from` to `to` and fsyncs both directories, so the move survives
/// a crash (moving aside, quarantine, putting a restored directory in place).
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| IoError::new("rename", from, e))?;
    sync_dir(parent_of(to))?;
    if parent_of(from) != parent_of(to) {
        sync_dir(parent_of(from))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_whole_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/file.json");
        create_dir(parent_of(&p)).unwrap();
        write(&p, b"one").unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(parent_of(&p)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn create_new_publishes_whole_files_and_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.redb");
        // A failed build leaves nothing: no file, no temporary.
        let err = create_new(&p, |tmp| {
            std::fs::write(tmp, b"half").map_err(|e| IoError::new("write", tmp, e))?;
            Err(IoError::new("build", tmp, std::io::Error::other("killed")))
        })
        .unwrap_err();
        assert_eq!(err.op, "build");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(create_new(&p, |tmp| std::fs::write(tmp, b"one").map_err(|e| IoError::new("write", tmp, e))).unwrap());
        assert!(!create_new(&p, |tmp| std::fs::write(tmp, b"two").map_err(|e| IoError::new("write", tmp, e))).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporaries_are_those_of_gone_processes_and_their_companions() {
        let dead = u32::MAX - 1; // beyond pid_max: never running
        let me = std::process::id();
        for (name, stale) in [
            (format!(".index.redb.tmp-{dead}"), true),
            (format!(".candles.sqlite.tmp-{dead}-wal"), true),
            (format!(".candles.sqlite.tmp-{dead}-journal"), true),
            (format!(".candles.sqlite.tmp-{dead}-other"), false),
            (format!(".index.redb.tmp-{me}"), false),
            (format!("index.redb.tmp-{dead}"), false),
            (".index.redb.tmp-".to_string(), false),
        ] {
            let target = if name.contains("sqlite") { "candles.sqlite" } else { "index.redb" };
            assert_eq!(is_stale_temporary_of(&name, target), stale, "{name}");
        }
        assert!(!is_stale_temporary_of(&format!(".index.redb.tmp-{dead}"), "candles.sqlite"));
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write(&p, b"old").unwrap();
        let err = write_with(&p, |f| {
            f.write_all(b"half")?;
            Err::<(), _>(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.op, "write");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
