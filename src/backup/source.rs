//! A repository as a source of segments for the chain walk
//! (src/log/chain.rs): its segment objects from its log start on, each
//! checked against the blake3 in its name as it is read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::RepoError;
use super::prune::{LogStart, log_start};
use super::repo::Repository;
use crate::log::{ChainPos, DamageKind, ReadFailure, SegmentEntry, SegmentSource};

/// The largest segment object read into memory; the writer rolls segments at
/// `--segment-bytes` (64 MiB by default), far below it.
pub const MAX_SEGMENT_OBJECT: u64 = 1 << 30;

/// `segments/<seq:020>-<blake3 hex>.seg` → (seq, hash hex): exactly 20
/// decimal digits (seq ≥ 1) and 64 lowercase hex digits, as backups write
/// them. Any other name in `segments/` is not a segment object.
pub fn parse_segment_object(name: &str) -> Option<(u64, String)> {
    let file = name.strip_prefix("segments/")?.strip_suffix(".seg")?;
    let (seq, hash) = file.split_once('-')?;
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (seq.len() == 20 && seq.bytes().all(|b| b.is_ascii_digit()) && hash.len() == 64 && hash.bytes().all(lower_hex)).then_some(())?;
    let seq: u64 = seq.parse().ok().filter(|&s| s >= 1)?;
    Some((seq, hash.to_string()))
}

/// The object name of a segment with these bytes' hash.
pub fn segment_object_name(seq: u64, hash: &blake3::Hash) -> String {
    format!("segments/{seq:020}-{}.seg", hash.to_hex())
}

/// A repository's segments, listed once, where its chain starts, and how to read them.
pub struct RepoSegments<'r> {
    repo: &'r dyn Repository,
    /// seq → (object name, blake3 hex); a repository with two objects for one seq is refused.
    objects: BTreeMap<u64, (String, String)>,
    pub start: Option<LogStart>,
}

impl<'r> RepoSegments<'r> {
    pub fn list(repo: &'r dyn Repository) -> Result<RepoSegments<'r>, crate::Error> {
        let start = log_start(repo)?;
        let objects = super::segment_objects(repo)?.into_iter().map(|(seq, name, hash)| (seq, (name, hash))).collect();
        Ok(RepoSegments { repo, objects, start })
    }

    /// The first segment of the chain and the position it starts at.
    pub fn chain_start(&self) -> Result<(u64, ChainPos), crate::Error> {
        match &self.start {
            Some(s) => Ok((s.first_seq, ChainPos::new(s.first_lsn - 1, s.base_hash()?))),
            None => Ok(crate::log::chain::log_start()),
        }
    }

    /// (seq, object name, blake3 hex) from the chain's start on.
    pub fn objects(&self) -> impl Iterator<Item = (u64, &str, &str)> {
        let first = self.start.as_ref().map_or(1, |s| s.first_seq);
        self.objects.range(first..).map(|(s, (n, h))| (*s, n.as_str(), h.as_str()))
    }

    pub fn repo(&self) -> &'r dyn Repository {
        self.repo
    }

    /// Segment `seq`'s object, its bytes checked against the hash in its name.
    pub fn fetch(&self, seq: u64) -> Result<Option<Vec<u8>>, RepoError> {
        let Some((name, hash)) = self.objects.get(&seq) else { return Ok(None) };
        let bytes = self.repo.read_all(name, MAX_SEGMENT_OBJECT)?;
        if blake3::hash(&bytes).to_hex().as_str() != hash {
            return Err(RepoError::damaged(self.repo.location(), name.clone(), "blake3 differs from the hash in its name"));
        }
        Ok(Some(bytes))
    }
}

impl SegmentSource for RepoSegments<'_> {
    fn location(&self) -> String {
        self.repo.location()
    }

    fn list(&self, first_seq: u64) -> Result<Vec<SegmentEntry>, ReadFailure> {
        Ok(self.objects.range(first_seq..).map(|(seq, (name, _))| SegmentEntry { seq: *seq, name: PathBuf::from(name) }).collect())
    }

    fn read(&self, entry: &SegmentEntry) -> Result<Vec<u8>, ReadFailure> {
        match self.fetch(entry.seq) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(ReadFailure { kind: DamageKind::MissingSegment, message: "listed but gone".into() }),
            Err(RepoError::Damaged { message, .. }) => Err(ReadFailure { kind: DamageKind::ObjectHash, message }),
            Err(e) => Err(ReadFailure { kind: DamageKind::Unreadable, message: e.to_string() }),
        }
    }

    /// Repositories hold sealed segments only.
    fn may_be_active(&self) -> bool {
        false
    }
}
