//! The sealed segments a data directory knows a repository holds, so a
//! nightly backup does not read and hash its whole log again to learn that
//! only the newest segment is missing.
//!
//! A sealed segment never changes, and its footer (read without reading the
//! segment) ends in the chain's head hash, which covers every frame before
//! it. So a segment whose number, length and footer head hash are those
//! recorded here, under an object name the repository still lists for that
//! number, is that object: the backup counts it present without reading it.
//! Anything else (a segment not recorded, a footer that differs, an object the
//! repository no longer lists) takes the full path: the segment is read,
//! scanned, hashed, and uploaded or matched by name.
//!
//! `DIR/backup-pages/<key>.segments`, beside the page hashes of the same
//! repository (`local_state_path`): one line per segment, `seq length
//! head_hash(hex) object-name`. Local state, never in a repository; a missing
//! or unreadable file is an empty one, and a lost write costs only the reads.

use std::collections::HashMap;
use std::path::Path;

/// What one sealed segment looked like when the repository was known to hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    bytes: u64,
    head_hash: [u8; 32],
    name: String,
}

/// The segments recorded for one repository, by number.
#[derive(Debug, Default)]
pub struct Uploaded {
    by_seq: HashMap<u64, Known>,
}

impl Uploaded {
    /// Reads the record at `path`; an absent or malformed one is empty.
    pub fn load(path: &Path) -> Uploaded {
        let Ok(text) = std::fs::read_to_string(path) else { return Uploaded::default() };
        let parsed: Option<HashMap<u64, Known>> = text.lines().map(parse_line).collect();
        Uploaded { by_seq: parsed.unwrap_or_default() }
    }

    /// The object name recorded for segment `seq` when its length and footer
    /// head hash are still `bytes` and `head_hash`.
    pub fn name(&self, seq: u64, bytes: u64, head_hash: &[u8; 32]) -> Option<&str> {
        self.by_seq.get(&seq).filter(|k| k.bytes == bytes && &k.head_hash == head_hash).map(|k| k.name.as_str())
    }

    /// Records that the repository holds segment `seq` as object `name`.
    pub fn record(&mut self, seq: u64, bytes: u64, head_hash: [u8; 32], name: String) {
        self.by_seq.insert(seq, Known { bytes, head_hash, name });
    }

    /// Writes the record to `path` (durably: temporary, fsync, rename).
    pub fn save(&self, path: &Path) -> crate::durable::Result<()> {
        let mut seqs: Vec<&u64> = self.by_seq.keys().collect();
        seqs.sort();
        let mut text = String::new();
        for seq in seqs {
            let k = &self.by_seq[seq];
            text.push_str(&format!("{seq} {} {} {}\n", k.bytes, crate::projection::hex(&k.head_hash), k.name));
        }
        crate::durable::create_dir(crate::durable::parent_of(path))?;
        crate::durable::write(path, text.as_bytes())
    }
}

fn parse_line(line: &str) -> Option<(u64, Known)> {
    let mut f = line.split(' ');
    let seq = f.next()?.parse().ok()?;
    let bytes = f.next()?.parse().ok()?;
    let head_hash = crate::projection::unhex32(f.next()?)?;
    let name = f.next()?.to_string();
    f.next().is_none().then_some((seq, Known { bytes, head_hash, name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_is_known_only_with_its_length_and_footer_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup-pages").join("k.segments");
        let mut u = Uploaded::load(&path);
        assert_eq!(u.name(1, 10, &[1; 32]), None, "no record yet");
        u.record(1, 10, [1; 32], "segments/00000000000000000001-ab.seg".into());
        u.record(2, 20, [2; 32], "segments/00000000000000000002-cd.seg".into());
        u.save(&path).unwrap();
        let u = Uploaded::load(&path);
        assert_eq!(u.name(1, 10, &[1; 32]), Some("segments/00000000000000000001-ab.seg"));
        assert_eq!(u.name(2, 20, &[2; 32]), Some("segments/00000000000000000002-cd.seg"));
        assert_eq!(u.name(1, 11, &[1; 32]), None, "another length");
        assert_eq!(u.name(1, 10, &[9; 32]), None, "another footer: another history");
        assert_eq!(u.name(3, 10, &[1; 32]), None);
    }

    #[test]
    fn a_malformed_record_is_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.segments");
        std::fs::write(&path, format!("1 10 {} a\n2 x y z\n", "00".repeat(32))).unwrap();
        assert_eq!(Uploaded::load(&path).name(1, 10, &[0; 32]), None);
        std::fs::write(&path, format!("1 10 {} a extra\n", "00".repeat(32))).unwrap();
        assert_eq!(Uploaded::load(&path).name(1, 10, &[0; 32]), None);
    }
}
