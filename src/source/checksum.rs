//! The `.CHECKSUM` file data.binance.vision puts beside each archive:
//! `<sha256 hex>  <file name>` (sha256sum's format, no trailing newline).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::SourceError;

/// Where the checksum of `path` lives: the same name plus `.CHECKSUM`.
pub(crate) fn checksum_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".CHECKSUM");
    PathBuf::from(p)
}

/// A `.CHECKSUM` is one line of about 100 bytes; anything over this is refused unread.
const MAX_CHECKSUM_FILE: usize = 4096;

/// Reads at most one byte more than a checksum file may hold, from a regular file only.
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    f.take(MAX_CHECKSUM_FILE as u64 + 1).read_to_end(&mut out)?;
    Ok(out)
}

/// Checks `bytes` (the content of `path`) against `path.CHECKSUM` when that
/// file exists; returns whether a checksum was verified.
pub(crate) fn verify_if_present(path: &Path, bytes: &[u8]) -> Result<bool, SourceError> {
    let checksum_path = checksum_path(path);
    let text = match read_capped(&checksum_path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(SourceError::io("read", checksum_path, e)),
    };
    if text.len() > MAX_CHECKSUM_FILE {
        // Not echoed: whatever it is, it is not a checksum line.
        let message = format!("larger than {MAX_CHECKSUM_FILE} bytes: not a checksum file");
        return Err(SourceError::ChecksumFile { checksum_path, message });
    }
    let expected = parse(&checksum_path, &text, path)?;
    let actual: [u8; 32] = Sha256::digest(bytes).into();
    if actual != expected {
        return Err(SourceError::Checksum { path: path.to_path_buf(), checksum_path, expected: hex(&expected), actual: hex(&actual) });
    }
    Ok(true)
}

/// Parses `<64 hex digits>  <name>` (or sha256sum's binary form ` *<name>`);
/// the name must be the archive's own.
fn parse(checksum_path: &Path, text: &[u8], archive: &Path) -> Result<[u8; 32], SourceError> {
    let fail = |message: String| SourceError::ChecksumFile { checksum_path: checksum_path.to_path_buf(), message };
    let text = std::str::from_utf8(text).map_err(|_| fail("not UTF-8 text".into()))?;
    // The archive's own files have no newline; a hand-made one usually does.
    let line = text.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(text);
    if line.is_empty() {
        return Err(fail("empty".into()));
    }
    if line.contains('\n') {
        return Err(fail("more than one line".into()));
    }
    let (hex_digits, rest) = line.split_at_checked(64).ok_or_else(|| fail(format!("{line:?} is too short")))?;
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex_digits.as_bytes().chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (pair.first().and_then(hex_value), pair.get(1).and_then(hex_value)) else {
            return Err(fail(format!("{hex_digits:?} is not 64 hex digits")));
        };
        *byte = hi << 4 | lo;
    }
    let name = rest
        .strip_prefix("  ")
        .or_else(|| rest.strip_prefix(" *"))
        .ok_or_else(|| fail(format!("no two spaces and a file name after the sha256 in {line:?}")))?;
    let own = archive.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name != own {
        return Err(fail(format!("it is for {name:?}, not for {own:?}")));
    }
    Ok(digest)
}

fn hex_value(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn check(content: &str) -> Result<[u8; 32], SourceError> {
        parse(Path::new("A-1h-2026-01.zip.CHECKSUM"), content.as_bytes(), Path::new("/d/A-1h-2026-01.zip"))
    }

    #[test]
    fn accepts_the_archive_format() {
        let d = check(&format!("{EMPTY_SHA}  A-1h-2026-01.zip")).unwrap();
        assert_eq!(hex(&d), EMPTY_SHA);
        assert!(check(&format!("{}  A-1h-2026-01.zip\n", EMPTY_SHA.to_uppercase())).is_ok());
        assert!(check(&format!("{EMPTY_SHA} *A-1h-2026-01.zip\r\n")).is_ok());
    }

    #[test]
    fn rejects_malformed_files() {
        for (content, needle) in [
            (String::new(), "empty"),
            ("abc  A-1h-2026-01.zip".to_string(), "too short"),
            (format!("{}g  A-1h-2026-01.zip", &EMPTY_SHA[..63]), "not 64 hex digits"),
            (format!("{EMPTY_SHA} A-1h-2026-01.zip"), "no two spaces"),
            (format!("{EMPTY_SHA}  B-1h-2026-01.zip"), "not for \"A-1h-2026-01.zip\""),
            (format!("{EMPTY_SHA}  A-1h-2026-01.zip\nx"), "more than one line"),
        ] {
            let e = check(&content).unwrap_err();
            assert!(matches!(e, SourceError::ChecksumFile { .. }), "{e}");
            let e = e.to_string();
            assert!(e.contains(needle) && e.contains("A-1h-2026-01.zip.CHECKSUM"), "{content:?}: {e}");
        }
    }
}
