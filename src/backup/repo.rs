//! A backup repository: a place that stores named objects. Objects are
//! published atomically (written under a temporary name, made durable, then
//! renamed), so a backup killed midway leaves the repository as it was plus
//! unreferenced temporary files.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Storage for backup objects, addressed by relative `/`-separated names.
pub trait Repository {
    /// Where the repository is, for messages and metrics labels.
    fn location(&self) -> String;
    fn put(&self, name: &str, bytes: &[u8]) -> Result<()>;
    fn get(&self, name: &str) -> Result<Vec<u8>>;
    fn exists(&self, name: &str) -> Result<bool>;
    /// Names under `prefix/`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    fn delete(&self, name: &str) -> Result<()>;
}

/// Rejects names that could leave the repository or name one object two
/// ways: names come from manifests and listings, which are untrusted. A plain
/// relative path is one or more `/`-separated parts, none empty, `.` or `..`,
/// none holding a backslash or NUL (format/repository.md, "Object names").
pub fn check_name(name: &str) -> Result<()> {
    let plain = |part: &str| !part.is_empty() && part != "." && part != ".." && !part.contains(['\\', '\0']);
    if name.split('/').all(plain) {
        Ok(())
    } else {
        Err(Error::Usage(format!("backup repository object name {name:?} is not a plain relative path; refusing it")))
    }
}

/// A repository in a local directory.
pub struct DirRepository {
    root: PathBuf,
}

impl DirRepository {
    pub fn open(root: &Path) -> Result<DirRepository> {
        std::fs::create_dir_all(root).map_err(|e| Error::io("create directory", root, e))?;
        Ok(DirRepository { root: root.to_path_buf() })
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join(name))
    }
}

impl Repository for DirRepository {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(name)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        crate::durable::create_dir(&dir)?;
        Ok(crate::durable::write(&path, bytes)?)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.path(name)?;
        std::fs::read(&path).map_err(|e| Error::io("read", &path, e))
    }

    fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.path(name)?.is_file())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.path(prefix)?;
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        for e in entries {
            let e = e.map_err(|e| Error::io("list", &dir, e))?;
            if let Some(n) = e.file_name().to_str().filter(|n| !n.starts_with('.')) {
                out.push(format!("{prefix}/{n}"));
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &path, e)),
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
}
