//! A backup repository: a place that stores named objects, moved as streams
//! so no object is ever held whole in memory (litestream's `ReplicaClient`).
//! Objects are published atomically — written under a temporary name, made
//! durable, then renamed (a directory), or one PUT / a completed multipart
//! upload (S3) — so a backup killed midway leaves the repository as it was
//! plus, at most, unreferenced temporary files.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::RepoError;

/// The largest JSON object read (marker, manifests, log start): a manifest
/// is under 1 KiB (a few dozen per-table entries at most), so 64 KiB is
/// ample; a larger one is refused before it is parsed, so no manifest can
/// make a reader hold or parse more (format/repository.md, "What readers must refuse").
pub const MAX_JSON_OBJECT: u64 = 64 << 10;

/// Storage for backup objects, addressed by relative `/`-separated names.
/// Every backend runs the same conformance tests (tests/it/repository.rs).
pub trait Repository {
    /// Where the repository is, for messages and metrics labels.
    fn location(&self) -> String;
    /// A stream of the object's bytes. Errors while reading surface as I/O
    /// errors of the reader.
    fn open_reader(&self, name: &str) -> Result<Box<dyn Read + '_>, RepoError>;
    /// Stores everything `reader` yields as object `name`, atomically: readers
    /// see the old object (or none) until the whole new one is in place.
    /// Returns the bytes written.
    fn write_from(&self, name: &str, reader: &mut dyn Read) -> Result<u64, RepoError>;
    fn exists(&self, name: &str) -> Result<bool, RepoError>;
    /// The objects directly under `prefix/` (one level, as an S3 listing with
    /// a delimiter), sorted; hidden (`.`-prefixed) names are not listed.
    fn list(&self, prefix: &str) -> Result<Vec<String>, RepoError>;
    /// Deletes `name`; deleting what is not there is not an error.
    fn delete(&self, name: &str) -> Result<(), RepoError>;

    /// Removes what a killed writer of this repository left behind (a
    /// directory's temporary files of processes that are gone); returns their
    /// names. Objects are never touched. Nothing to do on an object store,
    /// where a PUT or a multipart upload is whole or absent.
    fn remove_stale_temporaries(&self) -> Result<Vec<String>, RepoError> {
        Ok(Vec::new())
    }

    /// Stores bytes already in memory.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), RepoError> {
        self.write_from(name, &mut &bytes[..]).map(|_| ())
    }

    /// Reads a whole object of at most `max` bytes; a larger one is refused as
    /// damaged (nothing read from a repository can make candlelog use unbounded memory).
    fn read_all(&self, name: &str, max: u64) -> Result<Vec<u8>, RepoError> {
        let mut out = Vec::new();
        self.open_reader(name)?.take(max + 1).read_to_end(&mut out).map_err(|e| RepoError::Io {
            location: self.location(),
            op: "read",
            name: name.into(),
            source: e,
        })?;
        if out.len() as u64 > max {
            return Err(RepoError::damaged(self.location(), name, format!("larger than the {max} bytes such an object may hold")));
        }
        Ok(out)
    }

    /// A small JSON object (marker, manifest, log start).
    fn get(&self, name: &str) -> Result<Vec<u8>, RepoError> {
        self.read_all(name, MAX_JSON_OBJECT)
    }

    /// The blake3 of an object, streamed.
    fn hash(&self, name: &str) -> Result<(blake3::Hash, u64), RepoError> {
        let mut hasher = blake3::Hasher::new();
        let n = std::io::copy(&mut self.open_reader(name)?, &mut hasher).map_err(|e| RepoError::Io {
            location: self.location(),
            op: "read",
            name: name.into(),
            source: e,
        })?;
        Ok((hasher.finalize(), n))
    }
}

/// Rejects names that could leave the repository or name one object two
/// ways: names come from manifests and listings, which are untrusted. A plain
/// relative path is one or more `/`-separated parts, none empty, `.` or `..`,
/// none holding a backslash or NUL (format/repository.md, "Object names").
pub fn check_name(name: &str) -> Result<(), RepoError> {
    let plain = |part: &str| !part.is_empty() && part != "." && part != ".." && !part.contains(['\\', '\0']);
    if name.split('/').all(plain) { Ok(()) } else { Err(RepoError::BadName { name: name.to_string() }) }
}

/// A repository in a local directory.
pub struct DirRepository {
    root: PathBuf,
}

impl DirRepository {
    pub fn open(root: &Path) -> Result<DirRepository, RepoError> {
        crate::durable::create_dir(root).map_err(|e| RepoError::Io {
            location: root.display().to_string(),
            op: "create directory",
            name: String::new(),
            source: e.source,
        })?;
        Ok(DirRepository { root: root.to_path_buf() })
    }

    /// The file of an object. No part of the name may be a symbolic link: a
    /// repository's objects are never followed outside it.
    fn path(&self, name: &str) -> Result<PathBuf, RepoError> {
        check_name(name)?;
        let mut p = self.root.clone();
        for part in name.split('/') {
            p.push(part);
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                let message = format!("{} is a symbolic link; objects are never followed outside the repository", p.display());
                return Err(RepoError::damaged(self.location(), name, message));
            }
        }
        Ok(p)
    }

    fn io(&self, op: &'static str, name: &str) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
        let name = name.to_string();
        move |source| RepoError::Io { location: self.location(), op, name, source }
    }
}

impl Repository for DirRepository {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn open_reader(&self, name: &str) -> Result<Box<dyn Read + '_>, RepoError> {
        let f = std::fs::File::open(self.path(name)?).map_err(self.io("open", name))?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
    }

    fn write_from(&self, name: &str, reader: &mut dyn Read) -> Result<u64, RepoError> {
        let path = self.path(name)?;
        let dir = crate::durable::parent_of(&path).to_path_buf();
        crate::durable::create_dir(&dir).map_err(|e| RepoError::Io {
            location: self.location(),
            op: e.op,
            name: name.into(),
            source: e.source,
        })?;
        crate::durable::write_with(&path, |f| std::io::copy(reader, f)).map_err(|e| RepoError::Io {
            location: self.location(),
            op: e.op,
            name: name.into(),
            source: e.source,
        })
    }

    fn exists(&self, name: &str) -> Result<bool, RepoError> {
        Ok(std::fs::symlink_metadata(self.path(name)?).is_ok_and(|m| m.is_file()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, RepoError> {
        let dir = self.path(prefix)?;
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(self.io("list", prefix)(e)),
        };
        for e in entries {
            let e = e.map_err(self.io("list", prefix))?;
            // Objects only (what `exists` calls one): a subdirectory holds
            // deeper names, as a prefix does on S3.
            if !e.file_type().is_ok_and(|t| t.is_file()) {
                continue; // a subdirectory, or a symbolic link (never followed)
            }
            if let Some(n) = e.file_name().to_str().filter(|n| !n.starts_with('.')) {
                out.push(format!("{prefix}/{n}"));
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove_stale_temporaries(&self) -> Result<Vec<String>, RepoError> {
        let mut removed = Vec::new();
        for dir in ["", "segments", "snapshots"] {
            let path = self.root.join(dir);
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type().is_ok_and(|t| t.is_file()) && crate::durable::is_stale_temporary(&name, ".tmp-") {
                    std::fs::remove_file(entry.path()).map_err(self.io("remove", &name))?;
                    removed.push(if dir.is_empty() { name } else { format!("{dir}/{name}") });
                }
            }
        }
        Ok(removed)
    }

    fn delete(&self, name: &str) -> Result<(), RepoError> {
        let path = self.path(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("remove", name)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_repository() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "a\\b", "a//b", "a/./b", "./a", "a/", ".", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("segments/00000000000000000001-ab.seg").is_ok());
    }

    #[test]
    fn read_all_refuses_an_object_larger_than_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let repo = DirRepository::open(dir.path()).unwrap();
        repo.put("snapshots/x.json", &[b'x'; 100]).unwrap();
        assert_eq!(repo.read_all("snapshots/x.json", 100).unwrap().len(), 100);
        assert!(matches!(repo.read_all("snapshots/x.json", 99), Err(RepoError::Damaged { .. })));
    }
}
