//! Which files an import reads: files as given, directories walked for
//! `*.zip` and `*.csv` in path order, so two runs read the same sequence.

use std::fs;
use std::path::{Path, PathBuf};

use super::SourceError;

/// Expands `paths` into the files to read. A file is taken as given (its
/// format decides later); a directory contributes every `*.zip` and `*.csv`
/// below it (case-insensitive extension, hidden entries skipped, symlinked
/// directories not followed), sorted by path. Results keep argument order.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SourceError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = fs::metadata(path).map_err(|e| SourceError::io("stat", path, e))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            out.extend(found);
        } else if meta.is_file() {
            out.push(path.clone());
        } else {
            // A FIFO, device or socket would block the read (and the import, holding the lock).
            let message = "not a regular file (a FIFO, device or socket?): refused; give archives or directories of them".to_string();
            return Err(SourceError::File { path: path.clone(), message });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let entries = fs::read_dir(dir).map_err(|e| SourceError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SourceError::io("read directory", dir, e))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let file_type = entry.file_type().map_err(|e| SourceError::io("stat", &path, e))?;
        if file_type.is_dir() {
            walk(&path, found)?;
        } else if is_candle_file(&path) && (file_type.is_file() || path.is_file()) {
            found.push(path);
        }
    }
    Ok(())
}

fn is_candle_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip") || e.eq_ignore_ascii_case("csv"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_directories_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/4h")).unwrap();
        fs::create_dir_all(root.join("a")).unwrap();
        fs::create_dir_all(root.join(".hidden")).unwrap();
        for f in [
            "b/4h/X-4h-2026-02.zip",
            "b/4h/X-4h-2026-01.zip",
            "b/4h/X-4h-2026-01.zip.CHECKSUM",
            "a/Y-1h-2026-01.CSV",
            "a/notes.txt",
            ".hidden/Z-1h-2026-01.zip",
        ] {
            fs::write(root.join(f), b"").unwrap();
        }
        let given = root.join("a/notes.txt");
        let got = discover(&[given.clone(), root.to_path_buf()]).unwrap();
        let want = vec![given, root.join("a/Y-1h-2026-01.CSV"), root.join("b/4h/X-4h-2026-01.zip"), root.join("b/4h/X-4h-2026-02.zip")];
        assert_eq!(got, want);
    }

    #[test]
    fn missing_path_is_an_error_naming_it() {
        let e = discover(&[PathBuf::from("/nonexistent/candles")]).unwrap_err();
        assert!(matches!(e, SourceError::Io { .. }));
        assert!(e.to_string().contains("/nonexistent/candles"), "{e}");
    }
}
