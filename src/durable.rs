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
    pid.parse::<u32>().is_ok_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
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
